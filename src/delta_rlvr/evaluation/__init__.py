"""Evaluation: `delta-rlvr eval`, a model x benchmarks x k samples -> dump, report.

- `benchmarks`: benchmark specs -> problems + a verifier that reports its reason.
- `models`: preset / Hugging Face folder / checkpoint / run folder -> weights and run config.
- `backends`: samplers (transformers by default, vLLM on CUDA when installed).
- `dump`, `report`, `runner`: the resumable evaluation and its report.
The estimators (avg@k, pass@k) live in `delta_rlvr.stats` and are re-exported here;
comparison, inspection and the proxy audit are `delta_rlvr.analysis`. See docs/evaluation.md.
"""

from delta_rlvr.evaluation.backends import SamplingSettings
from delta_rlvr.evaluation.benchmarks import Benchmark, resolve_benchmark, task_benchmark
from delta_rlvr.evaluation.models import ModelSource, resolve_model
from delta_rlvr.evaluation.report import BenchmarkScore, EvalReport, build_report, read_report
from delta_rlvr.evaluation.runner import EvalConfig, evaluate
from delta_rlvr.stats.estimators import (
    avg_at_k,
    mean_pass_at_k,
    pass_at_k,
    problem_standard_error,
    sampling_standard_error,
    weighted_average,
)
from delta_rlvr.verifiers.verdicts import Verdict

__all__ = [
    "Benchmark",
    "BenchmarkScore",
    "EvalConfig",
    "EvalReport",
    "ModelSource",
    "SamplingSettings",
    "Verdict",
    "avg_at_k",
    "build_report",
    "evaluate",
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
