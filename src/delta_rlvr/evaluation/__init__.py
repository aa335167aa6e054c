"""Evaluation, comparison, token views and proxy audits: `delta-rlvr eval`, `compare`, `inspect`, `audit-proxy`.

- `estimators`: avg@k, unbiased pass@k, weighted averages, standard errors (plain floats).
- `mann_whitney`: the one-sided Mann-Whitney U test, exact and asymptotic.
- `benchmarks`: benchmark specs -> problems + a verifier that reports its reason.
- `models`: preset / Hugging Face folder / checkpoint / run folder -> weights and run config.
- `backends`: samplers (transformers by default, vLLM on CUDA when installed).
- `dump`, `report`, `runner`: the resumable evaluation and its report.
- `compare`, `plots`: methods x seeds, trained, evaluated, tested and plotted.
- `inspect`: DelTA coefficients on sampled responses, in the terminal, as HTML, as a token cloud.
- `audit`: coefficients under each token-gradient proxy against a count-sketched full gradient.

See docs/evaluation.md.
"""

from delta_rlvr.evaluation.backends import SamplingSettings
from delta_rlvr.evaluation.benchmarks import Benchmark, Verdict, resolve_benchmark, task_benchmark
from delta_rlvr.evaluation.estimators import (
    avg_at_k,
    mean_pass_at_k,
    pass_at_k,
    problem_standard_error,
    sampling_standard_error,
    weighted_average,
)
from delta_rlvr.evaluation.mann_whitney import MannWhitneyResult, mann_whitney_greater
from delta_rlvr.evaluation.models import ModelSource, resolve_model
from delta_rlvr.evaluation.report import BenchmarkScore, EvalReport, build_report, read_report
from delta_rlvr.evaluation.runner import EvalConfig, evaluate

__all__ = [
    "Benchmark",
    "BenchmarkScore",
    "EvalConfig",
    "EvalReport",
    "MannWhitneyResult",
    "ModelSource",
    "SamplingSettings",
    "Verdict",
    "avg_at_k",
    "build_report",
    "evaluate",
    "mann_whitney_greater",
    "mean_pass_at_k",
    "pass_at_k",
    "problem_standard_error",
    "read_report",
    "resolve_benchmark",
    "resolve_model",
    "sampling_standard_error",
    "task_benchmark",
    "weighted_average",
]
