"""Plain-float statistics shared by training, evaluation and analysis (no torch).

- `estimators`: avg@k, the unbiased pass@k, weighted averages, standard errors.
- `mann_whitney`: the one-sided Mann-Whitney U test, exact and asymptotic.
"""

from delta_rlvr.stats.estimators import (
    avg_at_k,
    mean_pass_at_k,
    pass_at_k,
    problem_standard_error,
    sampling_standard_error,
    weighted_average,
)
from delta_rlvr.stats.mann_whitney import MannWhitneyResult, mann_whitney_greater

__all__ = [
    "MannWhitneyResult",
    "avg_at_k",
    "mann_whitney_greater",
    "mean_pass_at_k",
    "pass_at_k",
    "problem_standard_error",
    "sampling_standard_error",
    "weighted_average",
]
