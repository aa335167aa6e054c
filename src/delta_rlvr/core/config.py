"""DelTA's settings (`DeltaConfig`) and the diagnostics record (`DeltaStats`).

The contract shared by both forms of the estimator: the one-shot `coefficients.delta_coefficients`
and the streaming `streaming.DeltaStream` take a `DeltaConfig` and report a `DeltaStats`. Kept
apart from both (and from `kernels.py`, which builds `DeltaStats` in `batch_stats`) so that the
import graph stays a line: config <- kernels <- coefficients, streaming, proxies, packed.

Naming: gamma (one per side, gamma+ for A > 0 and gamma- for A < 0) is DelTA's *assignment
temperature*, the scale of the sigmoid that turns a margin into a soft assignment. It is not the
sampling (rollout) temperature, which only the proxies see (as the temperature of the logits).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from torch import Tensor

Assignment = Literal["soft", "hard"]
Contrast = Literal["two_sided", "within_side"]

#: Quantiles of the coefficients reported in the statistics.
COEF_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: alpha within this distance of 0 or 1 counts as "at the bound" in the statistics.
BOUND_TOLERANCE = 0.01
#: Old metric keys written by `DeltaStats.as_metrics` next to the new ones, with the same
#: values, for one release: the field `temperature` was renamed `gamma` (so `delta/gamma_pos`,
#: `delta/gamma_neg`); logs, dashboards and scripts that read `delta/temperature_*` keep working.
#: Remove after the next release.
METRIC_ALIASES = {"gamma": "temperature"}


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
    """True: freeze gamma, the assignment temperature (not the sampling temperature): every
    iteration uses a fixed gamma per side, measured as gamma^(0) on the first training batch and
    passed back in by the caller as ``gamma=`` ("w/o adaptive gamma"; `core.frozen.FrozenGamma`
    keeps it)."""

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
    Iteration axis: k = 0..K, the centroids mu^(k) and the assignment temperature gamma^(k)
    used with the margins Delta^(k) (k = K gives the final assignment). Statistics of coefficients are over
    signed tokens (valid, A != 0), the tokens DelTA reweights.
    """

    side_mass: Tensor  # (2,) float32: M+ and M-, sum of |A| over the side's tokens
    side_tokens: Tensor  # (2,) int64: valid tokens per side
    zero_adv_tokens: Tensor  # () int64: valid tokens with A = 0 (on neither side)
    valid_tokens: Tensor  # () int64: N
    centroid_norm: Tensor  # (K+1, 2) float32: ||mu^(k)|| per side
    centroid_cosine: Tensor  # (K+1,) float32: cos(mu+^(k), mu-^(k)); 0 if either is 0
    gamma: Tensor  # (K+1, 2) float32: gamma^(k) per side, the assignment temperature
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
                names = [f.name] + ([METRIC_ALIASES[f.name]] if f.name in METRIC_ALIASES else [])
                for name in names:  # the new key, then its old alias (same value, for one release)
                    for s, x in zip(sides, value[-1].tolist()):
                        out[f"{prefix}{name}_{s}"] = x
        return out
