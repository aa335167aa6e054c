"""The ``delta`` namespace of a verl config (its own top-level key; verl has no ``delta``).

    delta:
      enable: true          # false = stock verl
      pooling: local        # local: per data-parallel rank (the paper's code); global: all-reduce
      proxy: row            # the token-gradient proxy; verl supports the paper's row proxy only
      refine_steps: 1       # ... every DeltaConfig field, same names and defaults
      cache_mib: 8192       # cap of the packed proxy cache per rank; above it, K + 1 re-forwards
      offload_cache: false  # keep the cache in CPU memory

Passed to the workers with each old-log-prob call as a plain dict (``as_dict``), so the workers
need no config plumbing of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from delta_rlvr.adapters.common import DELTA_FIELDS, check_pooling, delta_config_from_prefixed
from delta_rlvr.core import DeltaConfig

#: the keys of the delta namespace that are the adapter's, not DeltaConfig's
ADAPTER_KEYS: tuple[str, ...] = ("enable", "pooling", "proxy", "cache_mib", "offload_cache")


@dataclass(frozen=True)
class DeltaSettings:
    enable: bool = False
    """Run DelTA. False leaves verl's behaviour untouched."""
    pooling: str = "local"
    """"local": statistics of each data-parallel rank's share of the batch (as the paper's
    released code); "global": summed over all data-parallel ranks with an all-reduce."""
    config: DeltaConfig = field(default_factory=DeltaConfig)
    """The estimator's settings."""
    proxy: str = "row"
    """Only "row" here: under FSDP the LM-head matrix that topk_hidden and lm_head need is
    sharded across ranks, and full_sketch needs a backward pass per token."""
    cache_mib: float | None = 8192.0
    """Cap (MiB per rank) of the packed cache of the signed tokens' hidden states that lets every
    estimator pass run without a model forward. A batch over the cap streams instead: the same
    coefficients from K + 1 more forwards. None: no cap; 0: always stream."""
    offload_cache: bool = False
    """Keep the cache in CPU memory (pinned) instead of on the GPU."""

    def __post_init__(self) -> None:
        check_pooling(self.pooling, "delta.pooling")
        if self.proxy != "row":
            raise ValueError(
                f"delta.proxy={self.proxy!r} is not available in the verl adapter (the LM-head matrix is sharded "
                "under FSDP); use delta.proxy=row, or the TRL adapter / delta-rlvr train for topk_hidden and lm_head"
            )
        cap = self.cache_mib
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or not (0 <= cap < float("inf"))):
            raise ValueError(f"delta.cache_mib must be a number >= 0 (MiB per rank) or null, got {cap!r}")
        if not isinstance(self.offload_cache, bool):
            raise ValueError(f"delta.offload_cache must be true or false, got {self.offload_cache!r}")

    def as_dict(self) -> dict[str, Any]:
        return {"enable": self.enable, "pooling": self.pooling, "proxy": self.proxy, "cache_mib": self.cache_mib,
                "offload_cache": self.offload_cache, **asdict(self.config)}

    def describe(self) -> str:
        """The one line the driver log shows when DelTA is on."""
        c = self.config
        cache = "off (streamed)" if self.cache_mib == 0 else (
            f"up to {self.cache_mib:g} MiB/rank" if self.cache_mib is not None else "uncapped")
        parts = [f"K={c.refine_steps}", f"lambda in [{c.coef_min:g}, {c.coef_max:g}]" if c.range_map else "lambda = alpha*",
                 f"pooling={self.pooling}", f"proxy={self.proxy}", f"cache {cache}{' (CPU)' if self.offload_cache else ''}"]
        flags = [name for name, on in (("hard assignment", c.assignment == "hard"), ("within-side", c.contrast == "within_side"),
                                       ("no self-normalisation", not c.self_normalise), ("random lambda", c.random_coefficients),
                                       ("frozen gamma", c.freeze_temperature)) if on]
        return "DelTA on: " + ", ".join(parts + flags)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DeltaSettings:
        unknown = sorted(set(values) - set(DELTA_FIELDS) - set(ADAPTER_KEYS))
        if unknown:
            raise ValueError(
                f"unknown setting(s) delta.{', delta.'.join(unknown)}; the delta namespace takes "
                f"{', '.join(ADAPTER_KEYS)} and {', '.join(DELTA_FIELDS)}"
            )
        enable = values.get("enable", False)
        if not isinstance(enable, bool):
            raise ValueError(f"delta.enable must be true or false, got {enable!r}")
        config = delta_config_from_prefixed(dict(values), "", "delta.")
        return cls(enable=enable, pooling=str(values.get("pooling", "local")), config=config,
                   proxy=str(values.get("proxy", "row")), cache_mib=values.get("cache_mib", 8192.0),
                   offload_cache=values.get("offload_cache", False))


def delta_settings(config: Any) -> DeltaSettings:
    """Read ``config.delta`` (an OmegaConf node or a mapping); absent = disabled."""
    node = config.get("delta", None) if hasattr(config, "get") else None
    if node is None:
        return DeltaSettings()
    try:
        from omegaconf import OmegaConf

        values = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    except ImportError:  # pragma: no cover - omegaconf ships with verl
        values = dict(node)
    return DeltaSettings.from_dict(values)
