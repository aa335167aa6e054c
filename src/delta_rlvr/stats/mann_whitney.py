"""One-sided Mann-Whitney U test, written out (no scipy needed at run time; the tests check it
against scipy.stats.mannwhitneyu).

Definitions (x: the method's per-seed scores, n1 of them; y: the baseline's, n2):
- Ranks of the pooled n = n1 + n2 values, ties given their mid-rank.
- U = R_x - n1 (n1 + 1) / 2, R_x the rank sum of x; equivalently the number of pairs (x_i, y_j)
  with x_i > y_j plus half the number of ties.
- H1 ("greater"): x tends to be larger. p = P(U' >= U) under H0 (both samples from one law).
- "exact": without ties, the null distribution of U is counted over all C(n, n1) ways to pick
  which ranks are x's (recursion f(a, b, u) = f(a - 1, b, u - b) + f(a, b - 1, u)).
- "asymptotic": z = (U - n1 n2 / 2 - 0.5) / sigma with the tie-corrected
  sigma^2 = n1 n2 / 12 * ((n + 1) - sum_t (t^3 - t) / (n (n - 1))); p = 1 - Phi(z).
- "auto" (scipy's rule): exact when there are no ties and not both samples exceed 8.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Method = Literal["auto", "exact", "asymptotic"]


@dataclass(frozen=True)
class MannWhitneyResult:
    u: float
    """U of the first sample (x)."""
    p_value: float
    """One-sided p-value for "x is greater than y"."""
    method: str
    """"exact" or "asymptotic", the one actually used."""


def midranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in range(i, j + 1):
            ranks[order[m]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


@lru_cache(maxsize=None)
def _u_counts(a: int, b: int) -> tuple[int, ...]:
    """Number of rank arrangements giving U = 0 .. a*b for samples of sizes a and b."""
    if a == 0 or b == 0:
        return (1,)
    left = _u_counts(a - 1, b)  # the largest value belongs to x: it beats all b y's
    right = _u_counts(a, b - 1)  # the largest value belongs to y: no pair gained
    out = [0] * (a * b + 1)
    for u, count in enumerate(left):
        out[u + b] += count
    for u, count in enumerate(right):
        out[u] += count
    return tuple(out)


def mann_whitney_greater(x: Sequence[float], y: Sequence[float], method: Method = "auto") -> MannWhitneyResult:
    """One-sided Mann-Whitney U test of "x is stochastically greater than y" (see module doc)."""
    n1, n2 = len(x), len(y)
    if n1 < 1 or n2 < 1:
        raise ValueError(f"Mann-Whitney needs both samples non-empty; got {n1} and {n2} values (run more seeds)")
    pooled = [float(v) for v in x] + [float(v) for v in y]
    if any(math.isnan(v) for v in pooled):
        raise ValueError("Mann-Whitney got a NaN score; a run's evaluation is missing or broken")
    ranks = midranks(pooled)
    u = math.fsum(ranks[:n1]) - n1 * (n1 + 1) / 2
    ties = [t for t in Counter(pooled).values() if t > 1]
    if method == "auto":
        method = "asymptotic" if ties or (n1 > 8 and n2 > 8) else "exact"
    if method == "exact":
        if ties:
            raise ValueError("the exact Mann-Whitney distribution assumes no ties; use method='asymptotic'")
        counts = _u_counts(n1, n2)
        p = sum(counts[math.ceil(u):]) / math.comb(n1 + n2, n1)
        return MannWhitneyResult(u, min(1.0, p), "exact")
    if method != "asymptotic":
        raise ValueError(f"method={method!r}; use 'auto', 'exact' or 'asymptotic'")
    n = n1 + n2
    tie_term = sum(t**3 - t for t in ties)
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    if sigma == 0:  # every value equal: no evidence either way
        return MannWhitneyResult(u, 1.0, "asymptotic")
    z = (u - n1 * n2 / 2 - 0.5) / sigma
    return MannWhitneyResult(u, 0.5 * math.erfc(z / math.sqrt(2)), "asymptotic")
