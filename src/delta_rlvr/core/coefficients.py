"""DelTA coefficients: discriminative per-token credit assignment (spec section 3).

Shapes: B responses, T tokens per response, H hidden size, N = B * T flattened tokens.
A token-gradient vector is usually a dense (B, T, H) proxy (`grad_proxy`); the estimator also
takes any `TokenVectors`, an object that computes the two things it needs from the vectors
(side-weighted sums and margins against centroids) without materialising them, such as
`proxies.LMHeadGradients` (token gradients of V x H entries each).

The estimator, in the paper's words: treat the policy-gradient update as a linear
discriminator between the advantage-weighted centroids of the positive side (A > 0) and the
negative side (A < 0) of the batch, softly reassign every token to its own side by how well it
separates the two centroids (a margin passed through a sigmoid at an adaptive assignment
temperature gamma), refine the centroids K times, and map the final assignment alpha* to a
coefficient lambda in [coef_min, coef_max], self-normalised to mean 1 over the valid tokens.

Design choices (numbered as in docs/implementation_details.md):
- Every pass over the (B, T, H) proxy is a matrix product over row chunks, with float64
  accumulators, so that no (B, T, H)-sized temporary is ever made and sums over hundreds of
  thousands of tokens keep float64 accuracy (ledger 3).
- The margin uses the identity ||v-mu-||^2 - ||v-mu+||^2 = 2 v.(mu+ - mu-) + ||mu-||^2 - ||mu+||^2,
  one dot product per token (spec section 3).
- One-shot form: 2K + 2 passes over the proxy (1 for the initial centroids, then per iteration
  one margin pass and, except after the last, one centroid pass), each pass one call of
  `TokenVectors.side_weighted_sums` or `TokenVectors.margins`; a dense tensor is wrapped in
  `DenseVectors`, which runs the chunked kernels below. Centroids may have any trailing shape
  ((2, H) dense, (2, V, H) for LM-head gradients); their geometry is that of the flattened
  vectors. The streaming form, for hidden states recomputed micro-batch by micro-batch, is in
  `streaming.py` (dense proxies only).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

from delta_rlvr.core.masked import quantiles
from delta_rlvr.core.precision import in_full_precision

#: Floors from the spec: the side mass in a centroid's denominator and a side's margin variance.
MASS_EPS = 1e-8
VAR_EPS = 1e-8
#: Quantiles of the coefficients reported in the statistics.
COEF_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: alpha within this distance of 0 or 1 counts as "at the bound" in the statistics.
BOUND_TOLERANCE = 0.01
#: Rows per chunk: 2**24 floats (64 MiB in float32) whatever the hidden size.
CHUNK_ELEMENTS = 1 << 24
#: Rows summed in float32 before a partial sum is added in float64 (see side_weighted_sums).
SUM_BLOCK = 256

Assignment = Literal["soft", "hard"]
Contrast = Literal["two_sided", "within_side"]


@in_full_precision
def grad_proxy(hidden: Tensor, logp: Tensor, mask: Tensor | None = None) -> Tensor:
    """Token-gradient proxy v = (1 - p) * h, in float32 (spec section 3, paper App. F).

    v is the gradient of log p(y_t) with respect to the sampled token's own LM-head row.

    Args:
        hidden: (B, T, H) final hidden states, the input of the LM head (after the final norm).
        logp: (B, T) log-probability of each sampled token under the old policy, at the
            rollout temperature.
        mask: optional (B, T) bool, True = valid. Invalid positions are set to exactly 0, so
            that garbage (even NaN) in padded hidden states cannot reach the estimator.

    Returns:
        (B, T, H) float32. `1 - p` is computed as `-expm1(logp)`, exact also when p is near 1.
    """
    if hidden.shape[:-1] != logp.shape:
        raise ValueError(
            f"grad_proxy: hidden has shape {tuple(hidden.shape)} but logp has shape "
            f"{tuple(logp.shape)}; expected hidden (B, T, H) and logp (B, T)"
        )
    scale = -torch.expm1(logp.float())
    v = hidden.float() * scale.unsqueeze(-1)
    if mask is not None:
        v.masked_fill_(~mask.unsqueeze(-1), 0.0)
    return v


@dataclass(frozen=True)
class DeltaConfig:
    """DelTA settings. Defaults reproduce the paper (K = 1, lambda in [0.8, 1.2]).

    Every variant of the paper's ablations that acts on the coefficients is a field here;
    the gradient-proxy variants act on the proxy and live with the proxies.
    """

    refine_steps: int = 1
    """K, centroid refinement iterations. 0 = the paper's "w/o refinement"."""
    coef_min: float = 0.8
    """lambda_min, the coefficient of a token assigned wholly against its own side."""
    coef_max: float = 1.2
    """lambda_max, the coefficient of a token assigned wholly to its own side."""
    assignment: Assignment = "soft"
    """"soft": alpha = sigmoid(Delta / gamma). "hard": alpha = 1[Delta > 0] ("w/o h(alpha)")."""
    contrast: Contrast = "two_sided"
    """"two_sided": margins against both centroids. "within_side": alpha = sigmoid(-||v - mu_own||^2 / gamma),
    no comparison with the opposite centroid (the paper's "within-side only")."""
    range_map: bool = True
    """False: lambda = alpha* itself ("w/o range map"); coef_min and coef_max are then unused."""
    self_normalise: bool = True
    """False: coefficients are not rescaled to mean 1, so the loss keeps the DAPO token-count
    normaliser ("w/o lambda-norm")."""
    random_coefficients: bool = False
    """True: lambda ~ Uniform[coef_min, coef_max] per signed token ("random lambda"), same
    normalisation; the proxy is not used."""
    freeze_temperature: bool = False
    """True: every iteration uses a fixed gamma per side, measured as gamma^(0) on the first
    training batch and passed back in by the caller ("w/o adaptive gamma")."""

    def __post_init__(self) -> None:
        k = self.refine_steps
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(
                f"DeltaConfig.refine_steps must be an integer >= 0, got {k!r}; "
                "use 1 (the paper's default) or 0 for no refinement"
            )
        for name in ("coef_min", "coef_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"DeltaConfig.{name} must be a number, got {value!r}")
            if not (0.0 <= float(value) < float("inf")):
                raise ValueError(
                    f"DeltaConfig.{name} must be finite and >= 0, got {value!r}: coefficients "
                    "scale the advantage and must not flip its sign; the paper uses [0.8, 1.2]"
                )
        if self.coef_min > self.coef_max:
            raise ValueError(
                f"DeltaConfig.coef_min ({self.coef_min}) is larger than coef_max "
                f"({self.coef_max}); swap them (the paper's range is coef_min=0.8, coef_max=1.2)"
            )
        if self.range_map and self.coef_max == 0:
            raise ValueError(
                "DeltaConfig.coef_max is 0, so every coefficient would be 0 and nothing would "
                "train; use a positive range such as [0.8, 1.2]"
            )
        choices = {"assignment": ("soft", "hard"), "contrast": ("two_sided", "within_side")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"DeltaConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        for name in ("range_map", "self_normalise", "random_coefficients", "freeze_temperature"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"DeltaConfig.{name} must be true or false, got {getattr(self, name)!r}"
                )

    @property
    def map_range(self) -> tuple[float, float]:
        """(lambda at alpha = 0, lambda at alpha = 1)."""
        return (float(self.coef_min), float(self.coef_max)) if self.range_map else (0.0, 1.0)


@dataclass(frozen=True)
class DeltaStats:
    """Diagnostics of one coefficient computation, all tensors (no host sync in the math).

    Index 0 of a side axis is the positive side (A > 0), index 1 the negative side.
    Iteration axis: k = 0..K, the centroids mu^(k) and the temperature gamma^(k) used with the
    margins Delta^(k) (k = K gives the final assignment). Statistics of coefficients are over
    signed tokens (valid, A != 0), the tokens DelTA reweights.
    """

    side_mass: Tensor  # (2,) float32: M+ and M-, sum of |A| over the side's tokens
    side_tokens: Tensor  # (2,) int64: valid tokens per side
    zero_adv_tokens: Tensor  # () int64: valid tokens with A = 0 (on neither side)
    valid_tokens: Tensor  # () int64: N
    centroid_norm: Tensor  # (K+1, 2) float32: ||mu^(k)|| per side
    centroid_cosine: Tensor  # (K+1,) float32: cos(mu+^(k), mu-^(k)); 0 if either is 0
    temperature: Tensor  # (K+1, 2) float32: gamma^(k) per side
    margin_std: Tensor  # (K+1, 2) float32: measured std of Delta^(k) per side
    coef_mean: Tensor  # () float32
    coef_std: Tensor  # () float32, population std
    coef_quantiles: Tensor  # (len(COEF_QUANTILES),) float32
    frac_at_min: Tensor  # () float32: fraction of signed tokens with alpha* <= 0.01
    frac_at_max: Tensor  # () float32: fraction with alpha* >= 0.99
    normaliser: Tensor  # () float32: N / Z (1 when self_normalise is off)

    def as_metrics(self, prefix: str = "delta/") -> dict[str, float]:
        """Flat dict of Python floats for loggers (this is where host syncs happen)."""
        out: dict[str, float] = {}
        sides = ("pos", "neg")
        for f in fields(self):
            value = getattr(self, f.name).detach().double().cpu()
            if f.name == "coef_quantiles":
                for q, x in zip(COEF_QUANTILES, value.tolist()):
                    out[f"{prefix}coef_q{round(q * 100):02d}"] = x
            elif value.dim() == 0:
                out[prefix + f.name] = value.item()
            elif value.dim() == 1 and value.numel() == 2 and f.name.startswith("side"):
                for s, x in zip(sides, value.tolist()):
                    out[f"{prefix}{f.name}_{s}"] = x
            elif f.name == "centroid_cosine":
                out[prefix + f.name] = value[-1].item()
            else:  # (K+1, 2): report the final iteration, which sets the coefficients
                for s, x in zip(sides, value[-1].tolist()):
                    out[f"{prefix}{f.name}_{s}"] = x
        return out


@dataclass(frozen=True)
class DeltaCoefficients:
    """Result of `delta_coefficients`: coef (B, T) float32, 0 at invalid tokens."""

    coef: Tensor
    stats: DeltaStats


# --------------------------------------------------------------------------------------------
# Per-chunk kernels, shared with the streaming form.


def token_sides(advantages: Tensor, mask: Tensor) -> Tensor:
    """(B, T) int8: +1 positive side, -1 negative side, 0 neither (A = 0 or invalid)."""
    return torch.sign(advantages).to(torch.int8).unsqueeze(-1) * mask.to(torch.int8)


def side_weighted_sums(v: Tensor, side: Tensor, weight: Tensor) -> Tensor:
    """(2, H) float64: sum over each side of weight * v, for rows v (n, H), side (n,), weight (n,).

    Blocked summation: float32 products summed over blocks of SUM_BLOCK rows (one batched
    matmul), the block sums then added in float64. A single float32 matmul over 10^5 rows loses
    ~1e-5 of the sum's magnitude, and the centroid difference mu+ - mu- is a small difference of
    large, nearly equal vectors (the shared background): that error would reach the margins.
    """
    w = weight.float()
    zero = torch.zeros((), dtype=w.dtype, device=w.device)
    w2 = torch.stack([torch.where(side > 0, w, zero), torch.where(side < 0, w, zero)])
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


def side_masses(side: Tensor, weight: Tensor) -> Tensor:
    """(2,) float64: sum of weight over each side."""
    w = weight.double()
    zero = torch.zeros((), dtype=w.dtype, device=w.device)
    return torch.stack([torch.where(side > 0, w, zero).sum(), torch.where(side < 0, w, zero).sum()])


def centroids(sums: Tensor, masses: Tensor) -> Tensor:
    """(2, ...) float64: mu = sum / max(mass, 1e-8) for side sums (2, ...) of any trailing shape
    ((2, H) dense, (2, V, H) LM-head gradients); a side with no mass gets the zero vector."""
    return sums / masses.clamp_min(MASS_EPS).reshape((2,) + (1,) * (sums.dim() - 1))


def margins(v: Tensor, side: Tensor, mu: Tensor, contrast: Contrast) -> Tensor:
    """(n,) float32 margin Delta of each row on its own side; 0 for rows on neither side.

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
    """(2, 3) float64: per side (count, sum Delta, sum Delta^2) - mergeable across chunks and ranks."""
    d = delta.double()
    rows = []
    for s in (1, -1):
        on = side == s
        dz = torch.where(on, d, torch.zeros((), dtype=d.dtype, device=d.device))
        rows.append(torch.stack([on.sum().double(), dz.sum(), dz.square().sum()]))
    return torch.stack(rows)


def std_from_moments(moments: Tensor) -> Tensor:
    """(2,) float64 population std per side from (count, sum, sum of squares), floored at
    sqrt(1e-8) as the spec's gamma = sqrt(max(Var, 1e-8))."""
    n = moments[:, 0].clamp_min(1)
    mean = moments[:, 1] / n
    var = (moments[:, 2] / n - mean.square()).clamp_min(0)
    return var.clamp_min(VAR_EPS).sqrt()


def assign(delta: Tensor, side: Tensor, gamma: Tensor, assignment: Assignment) -> Tensor:
    """(n,) float32 alpha in [0, 1]: sigmoid(Delta / gamma_side), or 1[Delta > 0] for hard.
    0 for rows on neither side."""
    zero = torch.zeros((), dtype=torch.float32, device=delta.device)
    if assignment == "hard":
        alpha = (delta > 0).float()
    else:
        g = gamma.float()
        alpha = torch.sigmoid(delta / torch.where(side > 0, g[0], g[1]))
    return torch.where(side != 0, alpha, zero)


def coefficient_map(alpha: Tensor, side: Tensor, valid: Tensor, config: DeltaConfig) -> Tensor:
    """Un-normalised lambda: range map of alpha on signed tokens; the map's value at alpha = 0
    for zero-advantage tokens (coef_min, or 0 without the range map); 0 for invalid tokens."""
    lo, hi = config.map_range
    lam = lo + (hi - lo) * alpha
    zero = torch.zeros((), dtype=lam.dtype, device=lam.device)
    return torch.where(side != 0, lam, torch.where(valid, torch.full_like(lam, lo), zero))


def batch_stats(coef: Tensor, alpha: Tensor, side: Tensor, **pooled: Tensor) -> DeltaStats:
    """DeltaStats from flattened coef, alpha and side (n,) plus the pooled fields; the
    coefficient statistics are over signed tokens."""
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


def centroid_geometry(mu: Tensor) -> tuple[Tensor, Tensor]:
    """(||mu+||, ||mu-||) as a (2,) tensor and their cosine (0 when either is zero), for
    centroids (2, ...) of any trailing shape (flattened: Frobenius norms for matrices)."""
    flat = mu.reshape(2, -1)
    norms = flat.norm(dim=-1)
    cos = (flat[0] @ flat[1]) / (norms[0] * norms[1]).clamp_min(1e-30)
    return norms.float(), cos.float()


def row_chunks(v2d: Tensor):
    """Yield (start, stop, rows as contiguous float32) over an (N, H) tensor. Chunks of a
    contiguous float32 input are views; other dtypes are converted one chunk at a time."""
    n, h = v2d.shape
    step = max(1, CHUNK_ELEMENTS // max(h, 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        yield start, stop, v2d[start:stop].float().contiguous()


def check_finite(sums: Tensor, where: str) -> None:
    """Raise if a pass produced non-finite sums: NaN/inf in the proxy, typically at padded
    positions (a zero weight times NaN is still NaN)."""
    if not bool(torch.isfinite(sums).all()):
        raise ValueError(
            f"delta_coefficients: the gradient proxy holds NaN or inf ({where}). Padded hidden "
            "states can be garbage: build the proxy with grad_proxy(hidden, logp, mask) so that "
            "invalid positions are zeroed, and check the model's outputs at valid positions"
        )


def check_inputs(v: Tensor, advantages: Tensor, mask: Tensor) -> None:
    if v.dim() != 3:
        raise ValueError(f"grad_proxy must have shape (B, T, H), got {tuple(v.shape)}")
    check_token_inputs(v.shape[0], v.shape[1], advantages, mask)


def check_token_inputs(b: int, t: int, advantages: Tensor, mask: Tensor) -> None:
    """Shapes of the advantages (B,) and the mask (B, T) for vectors of token shape (B, T)."""
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


# --------------------------------------------------------------------------------------------
# Token vectors: what the one-shot estimator needs from the proxy.


@runtime_checkable
class TokenVectors(Protocol):
    """Token-gradient vectors of a (B, T) batch, seen only through the two passes the estimator
    makes over them. Flattened token index n = b * T + t; `side` is (N,) int8 in {-1, 0, 1}
    (`token_sides`), 0 for tokens on neither side (A = 0 or invalid)."""

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
        (of the shape `side_weighted_sums` returns), as `margins` for dense rows; 0 on side 0."""
        ...


class DenseVectors:
    """A dense (B, T, H) proxy as `TokenVectors`, through the chunked kernels of this module
    (the path `delta_coefficients` has always taken for a tensor, unchanged)."""

    def __init__(self, v: Tensor) -> None:
        if v.dim() != 3:
            raise ValueError(f"grad_proxy must have shape (B, T, H), got {tuple(v.shape)}")
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
        """(2, H) float64, accumulated chunk by chunk (`side_weighted_sums`)."""
        total = torch.zeros(2, self.v2d.shape[1], dtype=torch.float64, device=self.v2d.device)
        for start, stop, rows in row_chunks(self.v2d):
            total += side_weighted_sums(rows, side[start:stop], weight[start:stop])
        return total

    def margins(self, side: Tensor, mu: Tensor, contrast: Contrast) -> Tensor:
        """(N,) float32, chunk by chunk (`margins`)."""
        delta = torch.empty(self.v2d.shape[0], dtype=torch.float32, device=self.v2d.device)
        for start, stop, rows in row_chunks(self.v2d):
            delta[start:stop] = margins(rows, side[start:stop], mu, contrast)
        return delta


# --------------------------------------------------------------------------------------------


@in_full_precision
def delta_coefficients(
    grad_proxy: Tensor | TokenVectors,
    advantages: Tensor,
    mask: Tensor,
    config: DeltaConfig = DeltaConfig(),
    *,
    temperature: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> DeltaCoefficients:
    """DelTA coefficients for one rollout batch (spec section 3), in one shot.

    Args:
        grad_proxy: (B, T, H) token-gradient proxy, see `grad_proxy`. Must be finite. Or any
            `TokenVectors` of token shape (B, T), e.g. `proxies.LMHeadGradients`; its own
            validity mask should equal `mask` (a position invalid in either is on no side).
        advantages: (B,) one advantage per response; its sign picks the side.
        mask: (B, T) bool, True = valid token.
        config: the estimator's settings.
        temperature: (2,) fixed assignment temperatures (gamma+, gamma-) for every iteration;
            only with `config.freeze_temperature` (pass `stats.temperature[0]` of the first
            batch). None computes the adaptive, lagged temperatures.
        generator: random source for `config.random_coefficients`.

    Returns:
        DeltaCoefficients with coef (B, T) float32: lambda * N / Z on valid tokens (mean 1 over
        them when self_normalise), 0 on invalid tokens; and DeltaStats.
    """
    if isinstance(grad_proxy, Tensor):
        check_inputs(grad_proxy, advantages, mask)
        vectors: TokenVectors = DenseVectors(grad_proxy)
        device = grad_proxy.device
    else:
        if not isinstance(grad_proxy, TokenVectors):
            raise TypeError(
                "delta_coefficients: grad_proxy must be a (B, T, H) tensor or a TokenVectors "
                f"(token_shape, side_weighted_sums, margins), got {type(grad_proxy).__name__}"
            )
        vectors = grad_proxy
        device = mask.device
        check_token_inputs(*vectors.token_shape, advantages, mask)
    if temperature is not None and not config.freeze_temperature:
        raise ValueError(
            "delta_coefficients: a fixed temperature was passed but config.freeze_temperature "
            "is False; set freeze_temperature=True or pass temperature=None"
        )
    b, t = vectors.token_shape
    k_steps = config.refine_steps
    side = token_sides(advantages, mask).reshape(-1)
    valid = mask.reshape(-1)
    weight = advantages.abs().float().unsqueeze(-1).expand(b, t).reshape(-1)

    masses0 = side_masses(side, weight)
    temps = torch.full((k_steps + 1, 2), float("nan"), dtype=torch.float64, device=device)
    stds = temps.clone()
    norms = torch.full((k_steps + 1, 2), float("nan"), dtype=torch.float32, device=device)
    coss = torch.full((k_steps + 1,), float("nan"), dtype=torch.float32, device=device)

    if config.random_coefficients:
        u = torch.rand(b * t, generator=generator, device="cpu" if generator is None else generator.device)
        alpha = torch.where(side != 0, u.to(device), torch.zeros((), device=device))
    else:
        # Pass 1: advantage-weighted centroids mu^(0).
        mu = centroids(_weighted_sums(vectors, side, weight), masses0)
        gamma = None if temperature is None else temperature.to(device=device, dtype=torch.float64)
        fixed = gamma is not None
        for k in range(k_steps + 1):
            # Margin pass: Delta^(k) with mu^(k).
            delta = vectors.margins(side, mu, config.contrast)
            measured = std_from_moments(margin_moments(delta, side))
            if gamma is None:
                gamma = measured  # gamma^(0) is the std of Delta^(0)
            alpha = assign(delta, side, gamma, config.assignment)
            temps[k], stds[k] = gamma, measured
            norms[k], coss[k] = centroid_geometry(mu)
            if k < k_steps:
                # Centroid pass: mu^(k+1) weighted by |A| * alpha^(k).
                w = weight * alpha
                mu = centroids(_weighted_sums(vectors, side, w), side_masses(side, w))
            if not fixed:
                gamma = measured  # lag: Var(Delta^(k)) sets gamma^(k+1)

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
        temperature=temps.float(),
        margin_std=stds.float(),
        normaliser=normaliser.float(),
    )
    return DeltaCoefficients(coef=coef.reshape(b, t), stats=stats)


def _weighted_sums(vectors: TokenVectors, side: Tensor, weight: Tensor) -> Tensor:
    """One pass: (2, ...) float64 side sums of weight * v, checked finite."""
    total = vectors.side_weighted_sums(side, weight)
    check_finite(total, "centroid pass")
    return total
