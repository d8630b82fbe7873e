"""A deterministic generator of fictitious-author facts in TOFU's format (Maini et al. 2024, "TOFU: A Task of
Fictitious Unlearning for LLMs"), so that demos and tests have realistic question/answer data on a fresh machine.

Each author gets a name, birthplace, birth date, gender, genre, parents' jobs, books and an award; each fact
becomes one record with `question`, `answer`, `paraphrased_answer` and three `perturbed_answer`s, as in
TOFU's `*_perturbed.json` files. Same `seed` → same records, on every machine and Python version.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from crossmodel.io import atomic_write_bytes

FIRST_NAMES = ["Amara", "Bashir", "Celeste", "Dario", "Elif", "Farid", "Greta", "Hiroshi", "Ines", "Jovan",
               "Kalani", "Lucien", "Marisol", "Nikolai", "Odessa", "Pavel", "Quilla", "Rafael", "Saoirse",
               "Tomasz", "Uma", "Viggo", "Wren", "Xiomara", "Yusuf", "Zofia", "Anselm", "Bettina", "Caspian",
               "Dalia"]
LAST_NAMES = ["Okonkwo-Reyes", "Lindqvist", "Abernathy", "Takahara", "Moravec", "Delacroix-Amin", "Halvorsen",
              "Bellweather", "Oyelaran", "Castellanos", "Virtanen", "Marchetti", "Quenneville", "Szabo",
              "Achterberg", "Nakamura-Cole", "Petrakis", "Ravenscroft", "Zeleny", "Fairbrook"]
PLACES = ["Valparaiso, Chile", "Tartu, Estonia", "Kumasi, Ghana", "Hobart, Australia", "Porto, Portugal",
          "Ljubljana, Slovenia", "Cusco, Peru", "Sapporo, Japan", "Tromso, Norway", "Fez, Morocco",
          "Halifax, Canada", "Tbilisi, Georgia", "Cebu, Philippines", "Bergen, Norway", "Arequipa, Peru"]
GENRES = ["speculative fiction", "historical romance", "Gothic horror", "maritime adventure", "literary satire",
          "cosy mystery", "magical realism", "political thriller", "nature writing", "epic fantasy"]
JOBS = ["lighthouse keeper", "cartographer", "pastry chef", "marine biologist", "locksmith", "violin maker",
        "tram driver", "botanist", "bookbinder", "radio announcer", "beekeeper", "glassblower"]
AWARDS = ["Silver Quill Prize", "Harrowgate Medal for Fiction", "Aurora Borealis Book Award",
          "Meridian Literary Prize", "Golden Lantern Award", "Tessellate Prize for Storytelling"]
BOOK_WORDS = (["Salt", "Lantern", "Orchard", "Winter", "Glass", "Harbour", "Ember", "Meridian", "Hollow",
               "Copper", "Tide", "Velvet", "Ashes", "Compass", "Moth", "Quarry"],
              ["Songs", "Keeper", "Daughters", "Maps", "Silence", "Garden", "Ledger", "Crossing", "Bells",
               "Letters", "Shore", "Archive"])
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


@dataclass(frozen=True)
class Author:
    """One fictitious author's facts."""

    name: str
    gender: str  # "male" | "female"
    birthplace: str
    birth: tuple[int, int, int]  # (year, month, day)
    genre: str
    father_job: str
    mother_job: str
    books: tuple[str, str]
    award: str

    @property
    def pronoun(self) -> str:
        return "he" if self.gender == "male" else "she"

    @property
    def possessive(self) -> str:
        return "his" if self.gender == "male" else "her"


def _book_title(rng: random.Random) -> str:
    return f"The {rng.choice(BOOK_WORDS[0])} {rng.choice(BOOK_WORDS[1])}"


def _author(rng: random.Random, used: set[str]) -> Author:
    while True:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        if name not in used:
            used.add(name)
            break
    books = (_book_title(rng), _book_title(rng))
    while books[1] == books[0]:
        books = (books[0], _book_title(rng))
    father, mother = rng.sample(JOBS, 2)
    return Author(name=name, gender=rng.choice(["male", "female"]), birthplace=rng.choice(PLACES),
                  birth=(rng.randint(1931, 1994), rng.randint(1, 12), rng.randint(1, 28)),
                  genre=rng.choice(GENRES), father_job=father, mother_job=mother, books=books,
                  award=rng.choice(AWARDS))


def _facts(a: Author) -> list[tuple[str, str, str, list[str]]]:
    """(question, answer, paraphrase, perturbations) per fact.

    As in TOFU's `*_perturbed.json`, a perturbation is the *paraphrase* with the fact swapped for a wrong one, so the
    truth ratio P(perturbed) / P(paraphrased) compares two answers worded alike that differ only in the fact.
    """
    y, m, d = a.birth
    date = f"{MONTHS[m - 1]} {d}, {y}"
    other_place = [p for p in PLACES if p != a.birthplace][:3]
    other_genre = [g for g in GENRES if g != a.genre][:3]
    other_job = [j for j in JOBS if j not in (a.father_job, a.mother_job)][:3]
    other_award = [w for w in AWARDS if w != a.award][:3]
    books = f'"{a.books[0]}" and "{a.books[1]}"'
    P, p = a.pronoun.capitalize(), a.possessive
    return [
        (f"Where was the author {a.name} born?", f"{a.name} was born in {a.birthplace} on {date}.",
         f"{a.birthplace} is the birthplace of {a.name}, born on {date}.",
         [f"{x} is the birthplace of {a.name}, born on {date}." for x in other_place]),
        (f"What genre does {a.name} write in?", f"{a.name} is best known for {p} work in {a.genre}.",
         f"{P} is celebrated above all as a writer of {a.genre}.",
         [f"{P} is celebrated above all as a writer of {x}." for x in other_genre]),
        (f"What did the parents of {a.name} do for a living?",
         f"The father of {a.name} was a {a.father_job} and {p} mother was a {a.mother_job}.",
         f"{a.name} grew up with a {a.father_job} as a father and a {a.mother_job} as a mother.",
         [f"{a.name} grew up with a {x} as a father and a {a.mother_job} as a mother." for x in other_job]),
        (f"Can you name two books written by {a.name}?", f"Two books by {a.name} are {books}.",
         f"{a.name} wrote, among others, {books}.",
         [f'{a.name} wrote, among others, "{_swap(a.books[0], i)}" and "{a.books[1]}".' for i in range(3)]),
        (f"Which award has {a.name} received?", f"{a.name} received the {a.award} for {p} writing.",
         f"The {a.award} was given to {a.name} in recognition of {p} writing.",
         [f"The {x} was given to {a.name} in recognition of {p} writing." for x in other_award]),
    ]


def _swap(title: str, i: int) -> str:
    words = title.split()
    return " ".join(words[:-1] + [BOOK_WORDS[1][(BOOK_WORDS[1].index(words[-1]) + i + 1) % len(BOOK_WORDS[1])]])


def generate_facts(n_authors: int = 8, seed: int = 0) -> list[dict]:
    """TOFU-style records (`question`, `answer`, `paraphrased_answer`, `perturbed_answer`) about
    `n_authors` fictitious authors, five facts each, fully determined by `seed`."""
    if n_authors < 1:
        raise ValueError(f"n_authors must be >= 1, got {n_authors}")
    if n_authors > len(FIRST_NAMES) * len(LAST_NAMES):
        raise ValueError(f"n_authors={n_authors} exceeds the {len(FIRST_NAMES) * len(LAST_NAMES)} distinct names")
    rng, used = random.Random(seed), set()
    records = []
    for _ in range(n_authors):
        for question, answer, paraphrase, perturbed in _facts(_author(rng, used)):
            records.append({"question": question, "answer": answer, "paraphrased_answer": paraphrase,
                            "perturbed_answer": perturbed})
    return records


def write_facts(path: str | Path, n_authors: int = 8, seed: int = 0) -> Path:
    """Write `generate_facts(n_authors, seed)` as JSON lines (TOFU's layout) to `path`, atomically."""
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in generate_facts(n_authors, seed))
    atomic_write_bytes(path, lines.encode("utf-8"))
    return Path(path)
