"""Accuracy estimators for sampled evaluation: avg@k, unbiased pass@k, weighted averages,
standard errors.

Conventions: one problem has k >= 1 sampled responses, c of them correct. All functions take
plain Python numbers and return floats, so a report recomputed from a dump gives bit-identical
values (no tensor reductions whose order could change).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem from n samples with c correct (Chen et al., 2021):

        pass@k = 1 - C(n - c, k) / C(n, k),

    the probability that a uniformly random k-subset of the n samples holds at least one
    correct sample. Computed with exact integers and one final rounding.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c={c} correct must lie in [0, n={n}]")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k={k} must lie in [1, n={n}]; sample at least k responses per problem")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean, summed left to right (math.fsum: exact up to the final rounding)."""
    if not values:
        raise ValueError("mean of no values; the benchmark has no scored problems")
    return math.fsum(values) / len(values)


def avg_at_k(correct: Sequence[Sequence[bool]]) -> float:
    """avg@k: mean correctness over all samples of all problems; correct is (problems, k)."""
    return mean([mean([float(x) for x in row]) for row in correct])


def mean_pass_at_k(correct: Sequence[Sequence[bool]], k: int) -> float:
    """Mean over problems of the unbiased pass@k; correct is (problems, n) with n >= k."""
    return mean([pass_at_k(len(row), sum(map(bool, row)), k) for row in correct])


def reported_ks(k: int) -> list[int]:
    """The pass@k' reported for k samples: powers of two below k, and k itself (16 -> 1,2,4,8,16)."""
    out, x = [], 1
    while x < k:
        out.append(x)
        x *= 2
    return out + [k]


def weighted_average(values: Sequence[float], weights: Sequence[float]) -> float:
    """sum_b w_b x_b / sum_b w_b: the paper's "Avg", weighted by each benchmark's question count."""
    if len(values) != len(weights) or not values:
        raise ValueError(f"weighted_average: {len(values)} values and {len(weights)} weights; pass one weight per value")
    total = math.fsum(weights)
    if total <= 0:
        raise ValueError(f"weighted_average: weights sum to {total}; use positive question counts")
    return math.fsum(w * x for w, x in zip(weights, values)) / total


def weighted_standard_error(errors: Sequence[float], weights: Sequence[float]) -> float:
    """SE of a weighted average of independent estimates: sqrt(sum_b (w_b / W)^2 se_b^2)."""
    total = math.fsum(weights)
    return math.sqrt(math.fsum((w / total) ** 2 * e**2 for w, e in zip(weights, errors)))


def sampling_standard_error(correct: Sequence[Sequence[bool]]) -> float:
    """The evaluation's own SE of avg@k on a fixed problem set (repeat the sampling, keep the
    problems): sqrt(sum_i s_i^2 / k_i) / n, with s_i^2 the unbiased variance of problem i's k_i
    correctness values. NaN when a problem has fewer than 2 samples (its variance is unknown)."""
    n = len(correct)
    terms = []
    for row in correct:
        k = len(row)
        if k < 2:
            return float("nan")
        p = sum(map(bool, row)) / k
        terms.append(p * (1 - p) * k / (k - 1) / k)
    return math.sqrt(math.fsum(terms)) / n


def problem_standard_error(correct: Sequence[Sequence[bool]]) -> float:
    """SE of avg@k as an estimate over the problem distribution (problems resampled too):
    std(per-problem accuracy, ddof=1) / sqrt(n). NaN for a single problem."""
    n = len(correct)
    if n < 2:
        return float("nan")
    means = [mean([float(x) for x in row]) for row in correct]
    m = mean(means)
    return math.sqrt(math.fsum((x - m) ** 2 for x in means) / (n - 1) / n)
