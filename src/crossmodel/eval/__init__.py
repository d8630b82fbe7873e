"""crossmodel.eval: metrics, the TOFU and QA suites, logit-shift analysis and reports, for plain and steered models."""

from crossmodel.eval.metrics import (answer_probability, harmonic_mean, ks_forget_quality, lcs_length, mean_nll,
                                     normalized_probability, rouge_l_f1, rouge_l_recall, rouge_tokens, truth_ratio,
                                     truth_ratio_score)
from crossmodel.eval.scorer import Evaluable, PlainModel
from crossmodel.eval.stem import porter_stem

__all__ = ["Evaluable", "PlainModel", "answer_probability", "harmonic_mean", "ks_forget_quality", "lcs_length",
           "mean_nll", "normalized_probability", "porter_stem", "rouge_l_f1", "rouge_l_recall", "rouge_tokens",
           "truth_ratio", "truth_ratio_score"]
