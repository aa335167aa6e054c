"""Masked reductions: the one home for "mean over valid tokens" and friends.

Masks are bool tensors with True = valid token, the convention everywhere in this project.
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_sum(x: Tensor, mask: Tensor) -> Tensor:
    """Sum of `x` over positions where `mask` is True (0-d tensor). Invalid positions may hold
    anything, NaN included: they are selected away, never multiplied by zero."""
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum()


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of `x` over valid positions; 0 when there are none (a batch of empty responses
    must not poison a loss with NaN)."""
    count = mask.sum()
    return masked_sum(x, mask) / count.clamp_min(1)


def masked_var(x: Tensor, mask: Tensor) -> Tensor:
    """Population variance (divides by the count, not count - 1) over valid positions, in
    float64; 0 when there are no valid positions."""
    x64 = x.double()
    mean = masked_mean(x64, mask)
    return masked_mean((x64 - mean).square(), mask)


def quantiles(values: Tensor, qs: tuple[float, ...]) -> Tensor:
    """Quantiles of a 1-D tensor with linear interpolation (numpy's default method).

    `torch.quantile` refuses inputs of more than 2**24 elements, which one rollout batch of a
    large run exceeds, so this sorts once and interpolates. Returns NaN for an empty input.
    """
    q = torch.tensor(qs, dtype=torch.float64, device=values.device)
    n = values.numel()
    if n == 0:
        return torch.full((len(qs),), float("nan"), dtype=torch.float32, device=values.device)
    ordered = values.double().sort().values
    pos = q * (n - 1)
    lo = pos.floor().long()
    hi = pos.ceil().long()
    frac = pos - lo.double()
    return (ordered[lo] * (1 - frac) + ordered[hi] * frac).float()
