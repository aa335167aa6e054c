"""DelTA coefficients: discriminative per-token credit assignment (the DelTA paper's method), one shot.

Shapes: B responses, T tokens per response, H hidden size, N = B * T flattened tokens.
A token-gradient vector is usually a dense (B, T, H) proxy (`proxies.row_proxy`); the estimator
also takes any `TokenVectors`, an object that computes the two things it needs from the vectors
(side-weighted sums and margins against centroids) without materialising them, such as
`proxies.LMHeadGradients` (token gradients of V x H entries each).

The estimator, in the paper's words: treat the policy-gradient update as a linear
discriminator between the advantage-weighted centroids of the positive side (A > 0) and the
negative side (A < 0) of the batch, softly reassign every token to its own side by how well it
separates the two centroids (a margin passed through a sigmoid at an adaptive assignment
temperature gamma), refine the centroids K times, and map the final assignment alpha* to a
coefficient lambda in [coef_min, coef_max], self-normalised to mean 1 over the valid tokens.

Module layout: the settings (`DeltaConfig`) and the statistics (`DeltaStats`) live in
`config.py`, the per-chunk arithmetic in `kernels.py` (shared with the streaming form in
`streaming.py`, dense proxies only); this module holds the one-shot estimator and the
`TokenVectors` protocol it reads the vectors through. `DeltaConfig` and `DeltaStats` are
importable from here too.

Design choices (numbered as in docs/implementation_details.md):
- Every pass over the (B, T, H) proxy is a matrix product over row chunks, with float64
  accumulators, so that no (B, T, H)-sized temporary is ever made and sums over hundreds of
  thousands of tokens keep float64 accuracy (ledger 3).
- The margin uses the identity ||v-mu-||^2 - ||v-mu+||^2 = 2 v.(mu+ - mu-) + ||mu-||^2 - ||mu+||^2,
  one dot product per token (the DelTA paper's method).
- One-shot form: 2K + 2 passes over the proxy (1 for the initial centroids, then per iteration
  one margin pass and, except after the last, one centroid pass), each pass one call of
  `TokenVectors.side_weighted_sums` or `TokenVectors.margins`; a dense tensor is wrapped in
  `DenseVectors`, which runs the chunked kernels. Centroids may have any trailing shape
  ((2, H) dense, (2, V, H) for LM-head gradients); their geometry is that of the flattened
  vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from delta_rlvr.core.config import Contrast, DeltaConfig, DeltaStats
from delta_rlvr.core.kernels import (
    MASS_EPS,
    assign,
    batch_stats,
    centroid_geometry,
    centroids,
    check_finite,
    check_inputs,
    check_token_inputs,
    coefficient_map,
    margin_moments,
    margins,
    row_chunks,
    side_masses,
    side_weighted_sums,
    std_from_moments,
    token_sides,
)
from delta_rlvr.core.precision import in_full_precision

__all__ = ["DeltaCoefficients", "DeltaConfig", "DeltaStats", "DenseVectors", "TokenVectors", "delta_coefficients"]


@dataclass(frozen=True)
class DeltaCoefficients:
    """Result of `delta_coefficients`: coef (B, T) float32, 0 at invalid tokens."""

    coef: Tensor
    stats: DeltaStats


# --------------------------------------------------------------------------------------------
# Token vectors: what the one-shot estimator needs from the proxy.


@runtime_checkable
class TokenVectors(Protocol):
    """Token-gradient vectors of a (B, T) batch, seen only through the two passes the estimator
    makes over them. Flattened token index n = b * T + t; `side` is (N,) int8 in {-1, 0, 1}
    (`kernels.token_sides`), 0 for tokens on neither side (A = 0 or invalid)."""

    @property
    def token_shape(self) -> tuple[int, int]:
        """(B, T)."""
        ...

    def side_weighted_sums(self, side: Tensor, weight: Tensor) -> Tensor:
        """(2, ...) float64: per side (+1 at index 0, -1 at index 1) the sum of weight_n * v_n,
        for weight (N,); tokens with side 0 contribute nothing."""
        ...

    def margins(self, side: Tensor, mu: Tensor, contrast: Contrast) -> Tensor:
        """(N,) float32 margin of each token on its own side against centroids mu (2, ...) float64
        (of the shape `side_weighted_sums` returns), as `kernels.margins` for dense rows; 0 on
        side 0."""
        ...


class DenseVectors:
    """A dense (B, T, H) proxy as `TokenVectors`, through the chunked kernels of `kernels.py`
    (the path `delta_coefficients` has always taken for a tensor, unchanged)."""

    def __init__(self, v: Tensor) -> None:
        if v.dim() != 3:
            raise ValueError(f"the token-gradient proxy must have shape (B, T, H), got {tuple(v.shape)}")
        b, t, h = v.shape
        self._shape = (b, t)
        self.v2d = v.reshape(b * t, h)

    @property
    def token_shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def device(self) -> torch.device:
        return self.v2d.device

    def side_weighted_sums(self, side: Tensor, weight: Tensor) -> Tensor:
        """(2, H) float64, accumulated chunk by chunk (`kernels.side_weighted_sums`)."""
        total = torch.zeros(2, self.v2d.shape[1], dtype=torch.float64, device=self.v2d.device)
        for start, stop, rows in row_chunks(self.v2d):
            total += side_weighted_sums(rows, side[start:stop], weight[start:stop])
        return total

    def margins(self, side: Tensor, mu: Tensor, contrast: Contrast) -> Tensor:
        """(N,) float32, chunk by chunk (`kernels.margins`)."""
        delta = torch.empty(self.v2d.shape[0], dtype=torch.float32, device=self.v2d.device)
        for start, stop, rows in row_chunks(self.v2d):
            delta[start:stop] = margins(rows, side[start:stop], mu, contrast)
        return delta


# --------------------------------------------------------------------------------------------


@in_full_precision
def delta_coefficients(
    vectors: Tensor | TokenVectors,
    advantages: Tensor,
    mask: Tensor,
    config: DeltaConfig = DeltaConfig(),
    *,
    gamma: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> DeltaCoefficients:
    """DelTA coefficients for one rollout batch (the DelTA paper's method), in one shot.

    Args:
        vectors: (B, T, H) token-gradient proxy, see `proxies.row_proxy`. Must be finite. Or any
            `TokenVectors` of token shape (B, T), e.g. `proxies.LMHeadGradients`; its own
            validity mask should equal `mask` (a position invalid in either is on no side).
        advantages: (B,) one advantage per response; its sign picks the side.
        mask: (B, T) bool, True = valid token.
        config: the estimator's settings.
        gamma: (2,) fixed assignment temperatures (gamma+, gamma-) for every iteration (not
            the sampling temperature); only with `config.freeze_temperature` (pass
            `stats.gamma[0]` of the first batch, see `frozen.FrozenGamma`). None computes the
            adaptive, lagged gammas.
        generator: random source for `config.random_coefficients`.

    Returns:
        DeltaCoefficients with coef (B, T) float32: lambda * N / Z on valid tokens (mean 1 over
        them when self_normalise), 0 on invalid tokens; and DeltaStats.
    """
    if isinstance(vectors, Tensor):
        check_inputs(vectors, advantages, mask)
        device = vectors.device
        vectors = DenseVectors(vectors)
    else:
        if not isinstance(vectors, TokenVectors):
            raise TypeError(
                "delta_coefficients: vectors must be a (B, T, H) tensor or a TokenVectors "
                f"(token_shape, side_weighted_sums, margins), got {type(vectors).__name__}"
            )
        device = mask.device
        check_token_inputs(*vectors.token_shape, advantages, mask)
    if gamma is not None and not config.freeze_temperature:
        raise ValueError(
            "delta_coefficients: a fixed gamma (assignment temperature) was passed but "
            "config.freeze_temperature is False; set freeze_temperature=True or pass gamma=None"
        )
    b, t = vectors.token_shape
    k_steps = config.refine_steps
    side = token_sides(advantages, mask).reshape(-1)
    valid = mask.reshape(-1)
    weight = advantages.abs().float().unsqueeze(-1).expand(b, t).reshape(-1)

    masses0 = side_masses(side, weight)
    gammas = torch.full((k_steps + 1, 2), float("nan"), dtype=torch.float64, device=device)
    stds = gammas.clone()
    norms = torch.full((k_steps + 1, 2), float("nan"), dtype=torch.float32, device=device)
    coss = torch.full((k_steps + 1,), float("nan"), dtype=torch.float32, device=device)

    if config.random_coefficients:
        u = torch.rand(b * t, generator=generator, device="cpu" if generator is None else generator.device)
        alpha = torch.where(side != 0, u.to(device), torch.zeros((), device=device))
    else:
        # Pass 1: advantage-weighted centroids mu^(0).
        mu = centroids(_weighted_sums(vectors, side, weight), masses0)
        fixed = None if gamma is None else gamma.to(device=device, dtype=torch.float64)
        g = fixed  # gamma^(k), the assignment temperature of iteration k
        for k in range(k_steps + 1):
            # Margin pass: Delta^(k) with mu^(k).
            delta = vectors.margins(side, mu, config.contrast)
            measured = std_from_moments(margin_moments(delta, side))
            if g is None:
                g = measured  # gamma^(0) is the std of Delta^(0)
            alpha = assign(delta, side, g, config.assignment)
            gammas[k], stds[k] = g, measured
            norms[k], coss[k] = centroid_geometry(mu)
            if k < k_steps:
                # Centroid pass: mu^(k+1) weighted by |A| * alpha^(k).
                w = weight * alpha
                mu = centroids(_weighted_sums(vectors, side, w), side_masses(side, w))
            if fixed is None:
                g = measured  # lag: Var(Delta^(k)) sets gamma^(k+1)

    lam = coefficient_map(alpha, side, valid, config)
    n_valid = valid.sum()
    if config.self_normalise:
        normaliser = n_valid.double() / lam.double().sum().clamp_min(MASS_EPS)
    else:
        normaliser = torch.ones((), dtype=torch.float64, device=device)
    coef = (lam.double() * normaliser).float()
    stats = batch_stats(
        coef,
        alpha,
        side,
        side_mass=masses0.float(),
        side_tokens=torch.stack([(side > 0).sum(), (side < 0).sum()]),
        zero_adv_tokens=(valid & (side == 0)).sum(),
        valid_tokens=n_valid,
        centroid_norm=norms,
        centroid_cosine=coss,
        gamma=gammas.float(),
        margin_std=stds.float(),
        normaliser=normaliser.float(),
    )
    return DeltaCoefficients(coef=coef.reshape(b, t), stats=stats)


def _weighted_sums(vectors: TokenVectors, side: Tensor, weight: Tensor) -> Tensor:
    """One pass: (2, ...) float64 side sums of weight * v, checked finite."""
    total = vectors.side_weighted_sums(side, weight)
    check_finite(total, "centroid pass")
    return total
