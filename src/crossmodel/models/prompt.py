"""The prompt format, in one place for every stage: how messages become the exact text a model reads.

A model reads its tokenizer's own chat template; a model without one (a base model such as gemma-3-270m, a tiny
test tokenizer) reads `PLAIN_CHAT_TEMPLATE`, the plain "Question: …\\nAnswer:" format. Either way the text starts
with the tokenizer's BOS when that tokenizer puts a BOS in front of ordinary text (its own rule, read off the
tokenizer), so a rendered prompt is encoded with `add_special_tokens=False` and still reads exactly as the
model was trained to read — in training, scoring and generation alike.
"""

from __future__ import annotations

from typing import Any

# The plain format for tokenizers without a chat template. The generation prompt ends in "Answer:" (no space),
# so the answer keeps its leading space and tokenizes as it does inside the full "Answer: …" text.
PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}Question: {{ m['content'] }}\n"
    "{% else %}Answer: {{ m['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Answer:{% endif %}"
)
PLAIN_PROMPT = "Question: {question}\nAnswer:"  # one question in the plain format, as PLAIN_CHAT_TEMPLATE renders it


def chat_template_of(tokenizer: Any) -> str:
    """The tokenizer's chat template, or `PLAIN_CHAT_TEMPLATE` when it has none."""
    template = getattr(tokenizer, "chat_template", None)
    return template if isinstance(template, str) and template else PLAIN_CHAT_TEMPLATE


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts its BOS token in front of ordinary text (the rule the model was trained with)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and tokenizer("a", add_special_tokens=True).input_ids[:1] == [bos]


def with_bos(tokenizer: Any, text: str) -> str:
    """`text` with the tokenizer's BOS string in front when the tokenizer adds one and `text` lacks it."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and adds_bos(tokenizer) and not text.startswith(bos):
        return bos + text
    return text


def render(tokenizer: Any, messages: list[dict], chat_template: str | None = None, *,
           generation_prompt: bool) -> str:
    """`messages` as the text the model reads, under `chat_template` (default: the tokenizer's, else the plain
    format), BOS included where the tokenizer wants one; encode it with `add_special_tokens=False`."""
    template = chat_template or chat_template_of(tokenizer)
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=generation_prompt)
    return with_bos(tokenizer, text)


def answer_prefix(tokenizer: Any, chat_template: str | None = None) -> str:
    """The text a chat template puts between the assistant's cue and the answer itself: " " in the plain format
    ("Answer: …"), "" in ChatML ("<|im_start|>assistant\n…"). A scored reference answer starts with it, so that it
    is read as the format writes it."""
    mark = "\x00answer\x00"
    messages = [{"role": "user", "content": "q"}]
    cue = render(tokenizer, messages, chat_template, generation_prompt=True)
    full = render(tokenizer, messages + [{"role": "assistant", "content": mark}], chat_template, generation_prompt=False)
    if not full.startswith(cue) or mark not in full[len(cue):]:
        return ""  # a template that rewrites earlier turns once an answer follows: no separator to read off
    return full[len(cue): full.index(mark, len(cue))]


def chat_prompt(tokenizer: Any, prompt: str | list[dict], chat_template: str | None = None, *,
                system: str | None = None) -> str:
    """`prompt` (one user turn, or a list of {role, content} messages) rendered with the assistant's cue."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system:
        messages = [{"role": "system", "content": system}] + messages
    return render(tokenizer, messages, chat_template, generation_prompt=True)
