"""crossmodel: Cross-model Control (Wu et al., NeurIPS 2024) as a library and CLI.

One tiny delta model, trained once next to a frozen template LLM, steers many other LLMs by adding its
logits to theirs at every decoding step. The package layout is the pipeline:
vocab -> models -> steer -> train -> eval -> cli; a stage imports only stages to its left.
"""

__version__ = "0.1.0"
