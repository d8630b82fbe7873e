"""The options several commands share, declared once (typer `Annotated` aliases): which model, which deltas with
which strength and map, which combination rule, and the prompt format."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Model = Annotated[str, typer.Option(help="user model: zoo name | HF model dir | .gguf file | hub id")]
Deltas = Annotated[list[str], typer.Option("--delta", help="delta directory; repeat to compose several deltas")]
Alphas = Annotated[list[float], typer.Option(
    "--alpha", help="delta strength: none (each delta's saved default), one for all, or one per --delta")]
Maps = Annotated[list[str], typer.Option(
    "--map", help="token map directory per --delta (`crossmodel map`); '-' = the model's own vocabulary")]
Rule = Annotated[Optional[str], typer.Option(help="basenormalize | normalize | add (default: the deltas' own)")]
Dtype = Annotated[str, typer.Option(
    help="the model's weights: float32 | bfloat16 (~2x faster on CPUs with AVX512-BF16; deltas stay float32)")]
Chat = Annotated[bool, typer.Option(
    help="prompt as a user turn: the model's chat template, or the plain 'Question: …\\nAnswer:' format for a "
         "base model (BOS included); --no-chat continues the raw text")]
PromptFormat = Annotated[str, typer.Option(
    help="the user model's prompts: auto = plain when every delta was trained in the plain format (crossmodel "
         "train's default) and is in the model's own vocabulary, else own | own = its chat template (the plain format when it has none) | plain = the "
         "plain 'Question: …\\nAnswer:' format even for an instruct model, so that it reads the same text as a delta "
         "trained in that format")]
Calibration = Annotated[Optional[str], typer.Option(
    help="a `crossmodel calibrate --out` folder: steer the one --delta at the α chosen there for this model "
         "(refused with --alpha, and for another model, delta or map)")]
ExtensionPenalty = Annotated[float, typer.Option(
    help="logit taken off a user token whose text extends past the delta token it maps to (another vocabulary "
         "only; 0 = the CMC reference's plain copy of the delta token's logit; docs/STEERING.md)")]
