"""The ``delta`` namespace of a verl config (its own top-level key; verl has no ``delta``).

    delta:
      enable: true          # false = stock verl
      pooling: local        # local: per data-parallel rank (the paper's code); global: all-reduce
      proxy: row            # the token-gradient proxy; verl supports the paper's row proxy only
      refine_steps: 1       # ... every DeltaConfig field, same names and defaults

Passed to the workers with each old-log-prob call as a plain dict (``as_dict``), so the workers
need no config plumbing of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from delta_rlvr.adapters.common import DELTA_FIELDS, check_pooling, delta_config_from_prefixed
from delta_rlvr.core import DeltaConfig


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

    def __post_init__(self) -> None:
        check_pooling(self.pooling, "delta.pooling")
        if self.proxy != "row":
            raise ValueError(
                f"delta.proxy={self.proxy!r} is not available in the verl adapter (the LM-head matrix is sharded "
                "under FSDP); use delta.proxy=row, or the TRL adapter / delta-rlvr train for topk_hidden and lm_head"
            )

    def as_dict(self) -> dict[str, Any]:
        return {"enable": self.enable, "pooling": self.pooling, "proxy": self.proxy, **asdict(self.config)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DeltaSettings:
        unknown = sorted(set(values) - set(DELTA_FIELDS) - {"enable", "pooling", "proxy"})
        if unknown:
            raise ValueError(
                f"unknown setting(s) delta.{', delta.'.join(unknown)}; the delta namespace takes "
                f"enable, pooling, proxy and {', '.join(DELTA_FIELDS)}"
            )
        enable = values.get("enable", False)
        if not isinstance(enable, bool):
            raise ValueError(f"delta.enable must be true or false, got {enable!r}")
        config = delta_config_from_prefixed(dict(values), "", "delta.")
        return cls(enable=enable, pooling=str(values.get("pooling", "local")), config=config,
                   proxy=str(values.get("proxy", "row")))


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
