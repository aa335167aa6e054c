"""DelTA's tensor kernels: the per-chunk arithmetic both estimator forms are built from.

Pure torch, no state. The one-shot estimator (`coefficients.delta_coefficients`, through
`coefficients.DenseVectors`), the streaming one (`streaming.DeltaStream`), the LM-head vectors
(`proxies.LMHeadGradients`, which shares the constants) and the packed cache (`packed.py`) all
call these, so a change here changes every path alike.

Shapes: n rows of a chunk (flattened tokens), H the vector size (hidden size for dense
proxies), B responses, T tokens per response. Conventions:

- ``side`` (n,) int8 in {+1, -1, 0}: the positive side (A > 0), the negative side (A < 0), or
  neither (A = 0 or an invalid token; `token_sides` makes it). Side axes of the results put the
  positive side at index 0 and the negative side at index 1.
- ``weight`` (n,) float: |A| of each row's response, times alpha in the refinement passes.
- Sums that later pass through a centroid difference are float64 (accumulated across chunks,
  micro-batches and ranks); per-row quantities (margins, alpha, lambda) are float32.
- gamma (2,) is the assignment temperature per side (gamma+, gamma-), not the sampling
  temperature.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from delta_rlvr.core.config import (
    BOUND_TOLERANCE,
    COEF_QUANTILES,
    Assignment,
    Contrast,
    DeltaConfig,
    DeltaStats,
)
from delta_rlvr.core.masked import quantiles

#: Floors of the method: the side mass in a centroid's denominator and a side's margin variance.
MASS_EPS = 1e-8
VAR_EPS = 1e-8
#: Rows per chunk: 2**24 floats (64 MiB in float32) whatever the hidden size.
CHUNK_ELEMENTS = 1 << 24
#: Rows summed in float32 before a partial sum is added in float64 (see side_weighted_sums).
SUM_BLOCK = 256


# --------------------------------------------------------------------------------------------
# Sides, sums and centroids.


def token_sides(advantages: Tensor, mask: Tensor) -> Tensor:
    """(B, T) int8: +1 positive side, -1 negative side, 0 neither (A = 0 or invalid), for
    advantages (B,) (one per response) and mask (B, T) bool (True = valid)."""
    return torch.sign(advantages).to(torch.int8).unsqueeze(-1) * mask.to(torch.int8)


def side_weighted_sums(v: Tensor, side: Tensor, weight: Tensor) -> Tensor:
    """(2, H) float64: sum over each side of weight * v, for rows v (n, H) float32, side (n,),
    weight (n,) (any float dtype; used in float32).

    Blocked summation: float32 products summed over blocks of SUM_BLOCK rows (one batched
    matmul), the block sums then added in float64. A single float32 matmul over 10^5 rows loses
    ~1e-5 of the sum's magnitude, and the centroid difference mu+ - mu- is a small difference of
    large, nearly equal vectors (the shared background): that error would reach the margins.
    """
    w2 = torch.where(side_indicators(side), weight.float(), 0.0)  # (2, n)
    n, h = v.shape
    nb = n // SUM_BLOCK
    head = nb * SUM_BLOCK
    total = torch.zeros(2, h, dtype=torch.float64, device=v.device)
    if nb:
        blocks = w2[:, :head].reshape(2, nb, SUM_BLOCK).transpose(0, 1)  # (nb, 2, SUM_BLOCK)
        total += torch.bmm(blocks, v[:head].reshape(nb, SUM_BLOCK, h)).sum(0, dtype=torch.float64)
    if head < n:
        total += (w2[:, head:] @ v[head:]).double()
    return total


def side_indicators(side: Tensor) -> Tensor:
    """(2, n) bool: row on the positive side, row on the negative side, for side (n,)."""
    return torch.stack([side > 0, side < 0])


def side_masses(side: Tensor, weight: Tensor) -> Tensor:
    """(2,) float64: sum of weight over each side, for side (n,) and weight (n,)."""
    return torch.where(side_indicators(side), weight.double(), 0.0).sum(1)


def centroids(sums: Tensor, masses: Tensor) -> Tensor:
    """(2, ...) float64: mu = sum / max(mass, 1e-8) for side sums (2, ...) of any trailing shape
    ((2, H) dense, (2, V, H) LM-head gradients) and masses (2,); a side with no mass gets the
    zero vector."""
    return sums / masses.clamp_min(MASS_EPS).reshape((2,) + (1,) * (sums.dim() - 1))


def centroid_geometry(mu: Tensor) -> tuple[Tensor, Tensor]:
    """(||mu+||, ||mu-||) as a (2,) float32 tensor and their cosine, a () float32 (0 when either
    is zero), for centroids (2, ...) of any trailing shape (flattened: Frobenius norms for
    matrices)."""
    flat = mu.reshape(2, -1)
    norms = flat.norm(dim=-1)
    cos = (flat[0] @ flat[1]) / (norms[0] * norms[1]).clamp_min(1e-30)
    return norms.float(), cos.float()


# --------------------------------------------------------------------------------------------
# Margins, their spread (gamma) and the soft assignment.


def margins(v: Tensor, side: Tensor, mu: Tensor, contrast: Contrast) -> Tensor:
    """(n,) float32 margin Delta of each row on its own side; 0 for rows on neither side, for
    rows v (n, H) float32, side (n,) and centroids mu (2, H) float64.

    two_sided: Delta = +-(2 v.(mu+ - mu-) + ||mu-||^2 - ||mu+||^2), sign by the row's side.
    within_side: Delta = -||v - mu_own||^2.
    """
    zero = torch.zeros((), dtype=torch.float32, device=v.device)
    if contrast == "two_sided":
        # ||mu-||^2 - ||mu+||^2 = -(mu+ - mu-).(mu+ + mu-), so the offset is computed as one
        # float64 dot product instead of a difference of two large squared norms.
        direction = 2.0 * (mu[0] - mu[1])
        offset = (-0.5 * direction @ (mu[0] + mu[1])).float()
        d = v @ direction.float() + offset
        return torch.where(side > 0, d, torch.where(side < 0, -d, zero))
    proj = v @ mu.float().T  # (n, 2)
    own = torch.where(side > 0, proj[:, 0], proj[:, 1])
    mu_sq = mu.square().sum(-1).float()
    own_sq = torch.where(side > 0, mu_sq[0], mu_sq[1])
    d = -(torch.linalg.vector_norm(v, dim=-1).square() - 2.0 * own + own_sq)
    return torch.where(side != 0, d, zero)


def margin_moments(delta: Tensor, side: Tensor) -> Tensor:
    """(2, 3) float64: per side (count, sum Delta, sum Delta^2) of margins delta (n,), for side
    (n,) - mergeable across chunks and ranks by addition."""
    on = side_indicators(side)
    dz = torch.where(on, delta.double(), 0.0)  # (2, n)
    return torch.stack([on.sum(1).double(), dz.sum(1), dz.square().sum(1)], dim=1)


def std_from_moments(moments: Tensor) -> Tensor:
    """(2,) float64 population std per side from moments (2, 3) float64 (count, sum, sum of
    squares, as `margin_moments`), floored at sqrt(1e-8) as the method's gamma = sqrt(max(Var,
    1e-8)): the measured spread that sets the assignment temperature gamma."""
    n = moments[:, 0].clamp_min(1)
    mean = moments[:, 1] / n
    var = (moments[:, 2] / n - mean.square()).clamp_min(0)
    return var.clamp_min(VAR_EPS).sqrt()


def assign(delta: Tensor, side: Tensor, gamma: Tensor, assignment: Assignment) -> Tensor:
    """(n,) float32 alpha in [0, 1] for margins delta (n,) float32, side (n,) and the assignment
    temperatures gamma (2,) (gamma+, gamma-): sigmoid(Delta / gamma_side), or 1[Delta > 0] for
    hard (gamma unused). 0 for rows on neither side."""
    zero = torch.zeros((), dtype=torch.float32, device=delta.device)
    if assignment == "hard":
        alpha = (delta > 0).float()
    else:
        g = gamma.float()
        alpha = torch.sigmoid(delta / torch.where(side > 0, g[0], g[1]))
    return torch.where(side != 0, alpha, zero)


# --------------------------------------------------------------------------------------------
# Coefficients and their statistics.


def coefficient_map(alpha: Tensor, side: Tensor, valid: Tensor, config: DeltaConfig) -> Tensor:
    """(n,) float32 un-normalised lambda, for alpha (n,) float32, side (n,) and valid (n,) bool:
    the range map of alpha on signed tokens; the map's value at alpha = 0 for zero-advantage
    tokens (coef_min, or 0 without the range map); 0 for invalid tokens."""
    lo, hi = config.map_range
    lam = lo + (hi - lo) * alpha
    zero = torch.zeros((), dtype=lam.dtype, device=lam.device)
    return torch.where(side != 0, lam, torch.where(valid, torch.full_like(lam, lo), zero))


def batch_stats(coef: Tensor, alpha: Tensor, side: Tensor, **pooled: Tensor) -> DeltaStats:
    """DeltaStats from flattened coef (n,) float32, alpha (n,) float32 and side (n,) plus the
    pooled fields (the DeltaStats fields other than the coefficient statistics, as keywords);
    the coefficient statistics are over signed tokens (NaN when there are none)."""
    signed = side != 0
    c = coef[signed]
    a = alpha[signed]
    nan = torch.tensor(float("nan"), device=coef.device)
    empty = c.numel() == 0
    return DeltaStats(
        coef_mean=nan if empty else c.mean(),
        coef_std=nan if empty else c.std(correction=0),
        coef_quantiles=quantiles(c, COEF_QUANTILES),
        frac_at_min=nan if empty else (a <= BOUND_TOLERANCE).float().mean(),
        frac_at_max=nan if empty else (a >= 1.0 - BOUND_TOLERANCE).float().mean(),
        **pooled,
    )


# --------------------------------------------------------------------------------------------
# Chunking and input checks.


def row_chunks(v2d: Tensor) -> Iterator[tuple[int, int, Tensor]]:
    """Yield (start, stop, rows (stop - start, H) as contiguous float32) over an (N, H) tensor,
    at most CHUNK_ELEMENTS values per chunk. Chunks of a contiguous float32 input are views;
    other dtypes are converted one chunk at a time."""
    n, h = v2d.shape
    step = max(1, CHUNK_ELEMENTS // max(h, 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        yield start, stop, v2d[start:stop].float().contiguous()


def check_finite(sums: Tensor, where: str) -> None:
    """Raise if a pass produced non-finite sums (a tensor of any shape): NaN/inf in the proxy,
    typically at padded positions (a zero weight times NaN is still NaN)."""
    if not bool(torch.isfinite(sums).all()):
        raise ValueError(
            f"delta_coefficients: the gradient proxy holds NaN or inf ({where}). Padded hidden "
            "states can be garbage: build the proxy with row_proxy(hidden, logp, mask) so that "
            "invalid positions are zeroed, and check the model's outputs at valid positions"
        )


def check_inputs(v: Tensor, advantages: Tensor, mask: Tensor) -> None:
    """Shapes of a dense proxy v (B, T, H), the advantages (B,) and the mask (B, T) bool."""
    if v.dim() != 3:
        raise ValueError(f"the token-gradient proxy must have shape (B, T, H), got {tuple(v.shape)}")
    check_token_inputs(v.shape[0], v.shape[1], advantages, mask)


def check_token_inputs(b: int, t: int, advantages: Tensor, mask: Tensor) -> None:
    """Shapes of the advantages (B,) and the mask (B, T) bool for vectors of token shape (B, T)."""
    if tuple(advantages.shape) != (b,):
        raise ValueError(
            f"advantages must have shape (B,) = ({b},), got {tuple(advantages.shape)}; "
            "DelTA takes one advantage per response"
        )
    if tuple(mask.shape) != (b, t) or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool tensor of shape (B, T) = ({b}, {t}) with True = valid token, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
