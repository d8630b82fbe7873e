"""crossmodel.eval: metrics, the TOFU, QA and IFEval suites, logit-shift analysis and reports, for plain and steered
models.

The stage API: pure metrics (`metrics.py`, `paired.py`), the `Evaluable` interface and `PlainModel` (`scorer.py`),
the suites (`run_tofu`, `run_qa`, `run_ifeval`, `compare_shifts`), reports (`render_report`, `compare_runs`),
`run_eval(EvalConfig)`, which `crossmodel eval` calls, and `run_calibration(CalibrateConfig)` / `load_calibration`,
what `crossmodel calibrate` and `--calibration` call. Formulas and references: docs/EVALUATION.md; the calibration:
docs/STEERING.md.
"""

from crossmodel.eval.calibrate import CalibrateConfig, choose_alpha, run_calibration
from crossmodel.eval.calibration import Calibration, calibrated_alphas, load_calibration
from crossmodel.eval.data import TOFU_SPLITS, QAItem, TofuItem, load_qa, load_tofu_split
from crossmodel.eval.ifeval import IFEvalChecker, IFEvalItem, load_checker, load_ifeval, run_ifeval
from crossmodel.eval.logit_shift import ShiftPair, compare_shifts, model_logprobs, similarity, steered_logprobs
from crossmodel.eval.metrics import (answer_probability, degenerate, degenerate_reason, harmonic_mean,
                                     ks_forget_quality, lcs_length, mean_nll, normalized_probability, rouge_l_f1,
                                     rouge_l_recall, rouge_tokens, truth_ratio, truth_ratio_score)
from crossmodel.eval.paired import mcnemar_exact, paired_comparison, paired_nll_gap
from crossmodel.eval.qa import run_qa
from crossmodel.eval.report import compare_runs, render_report
from crossmodel.eval.runner import EvalConfig, run_eval
from crossmodel.eval.scorer import Evaluable, PlainModel
from crossmodel.eval.stem import porter_stem
from crossmodel.eval.tofu import run_tofu, tofu_files

__all__ = ["CalibrateConfig", "Calibration", "EvalConfig", "Evaluable", "IFEvalChecker", "IFEvalItem", "PlainModel",
           "QAItem", "ShiftPair", "TOFU_SPLITS", "TofuItem", "answer_probability", "calibrated_alphas", "choose_alpha",
           "compare_runs", "compare_shifts", "degenerate", "degenerate_reason", "harmonic_mean", "ks_forget_quality",
           "lcs_length", "load_calibration", "load_checker", "load_ifeval", "load_qa", "load_tofu_split",
           "mcnemar_exact", "mean_nll", "model_logprobs", "normalized_probability", "paired_comparison",
           "paired_nll_gap", "porter_stem", "render_report", "rouge_l_f1", "rouge_l_recall", "rouge_tokens",
           "run_calibration", "run_eval", "run_ifeval", "run_qa", "run_tofu", "similarity", "steered_logprobs",
           "tofu_files", "truth_ratio", "truth_ratio_score"]
