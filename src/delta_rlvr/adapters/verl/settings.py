"""The ``delta`` namespace of a verl config (its own top-level key; verl has no ``delta``).

    delta:
      enable: true          # false = stock verl
      pooling: local        # local: per data-parallel rank (the paper's code); global: all-reduce
      proxy: row            # the token-gradient proxy; verl supports the paper's row proxy only
      refine_steps: 1       # ... every DeltaConfig field, same names and defaults
      cache_mib: 8192       # cap of the packed proxy cache per rank (GPU, or pinned host memory)
      offload_cache: false  # the cache_mib tier in pinned host memory instead of on the GPU
      gpu_cache_mib: 0      # with offload_cache: a GPU tier in front of the host tier
      spill_dir: null       # a directory on local disk: a memory-mapped spill tier after them
      spill_gib: 64         # cap of the spill tier (GiB per rank); all tiers full: K + 1 re-forwards

Passed to the workers with each old-log-prob call as a plain dict (``as_dict``), so the workers
need no config plumbing of their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from delta_rlvr.adapters.common import DELTA_FIELDS, check_pooling, delta_config_from_prefixed
from delta_rlvr.core import DeltaConfig
from delta_rlvr.core.packed import GIB, MIB, CacheTier

#: the keys of the delta namespace that are the adapter's, not DeltaConfig's
ADAPTER_KEYS: tuple[str, ...] = ("enable", "pooling", "proxy", "cache_mib", "offload_cache", "gpu_cache_mib", "spill_dir",
                                 "spill_gib")


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
    """Cap (MiB per rank) of the in-memory tier of the packed cache of the signed tokens' hidden
    states that lets every estimator pass run without a model forward (on the GPU, or in pinned
    host memory with ``offload_cache``). Past it the cache goes on in ``spill_dir`` if set; a
    batch over every tier streams instead: the same coefficients from K + 1 more forwards.
    None: no cap; 0: nothing in memory (with no ``spill_dir``: always stream)."""
    offload_cache: bool = False
    """Keep the ``cache_mib`` tier in CPU memory (pinned) instead of on the GPU."""
    gpu_cache_mib: float = 0.0
    """With ``offload_cache``: MiB per rank kept on the GPU before the host tier (0: none)."""
    spill_dir: str | None = None
    """A directory on local disk (NVMe; created if missing): past the memory tiers, the cache
    goes on in a memory-mapped file there (unlinked at once; read back in every estimator pass), up to
    ``spill_gib``. None: no disk tier."""
    spill_gib: float = 64.0
    """Cap (GiB per rank) of the disk tier."""

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
        for name in ("gpu_cache_mib", "spill_gib"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < float("inf")):
                raise ValueError(f"delta.{name} must be a number >= 0, got {value!r}")
        if self.gpu_cache_mib and not self.offload_cache:
            raise ValueError("delta.gpu_cache_mib is the GPU tier in front of the host tier of delta.offload_cache=true; "
                             "without offload, delta.cache_mib already caps the cache on the GPU. Set one or the other.")
        if self.spill_dir is not None and (not isinstance(self.spill_dir, str) or not self.spill_dir):
            raise ValueError(f"delta.spill_dir must be a directory path or null, got {self.spill_dir!r}")

    def tiers(self) -> list[CacheTier]:
        """The cache's tiers, in the order they fill (see the class docstring)."""
        memory = None if self.cache_mib is None else int(self.cache_mib * MIB)
        tiers = []
        if self.offload_cache and self.gpu_cache_mib:
            tiers.append(CacheTier("device", int(self.gpu_cache_mib * MIB)))
        tiers.append(CacheTier("host" if self.offload_cache else "device", memory))
        if self.spill_dir is not None and memory is not None:
            try:
                os.makedirs(self.spill_dir, exist_ok=True)
            except OSError as err:
                raise ValueError(f"delta.spill_dir={self.spill_dir!r} cannot be created on this machine ({err}); point "
                                 "it at a writable directory on local disk (on every node) or set delta.spill_dir=null") from None
            tiers.append(CacheTier("disk", int(self.spill_gib * GIB), self.spill_dir))
        return tiers

    def as_dict(self) -> dict[str, Any]:
        return {"enable": self.enable, "pooling": self.pooling, "proxy": self.proxy, "cache_mib": self.cache_mib,
                "offload_cache": self.offload_cache, "gpu_cache_mib": self.gpu_cache_mib, "spill_dir": self.spill_dir,
                "spill_gib": self.spill_gib, **asdict(self.config)}

    def describe(self) -> str:
        """The one line the driver log shows when DelTA is on."""
        c = self.config
        cache = "off (streamed)" if self.cache_mib == 0 else (
            f"up to {self.cache_mib:g} MiB/rank" if self.cache_mib is not None else "uncapped")
        if self.offload_cache:
            cache += " (CPU)" if not self.gpu_cache_mib else f" (CPU, after {self.gpu_cache_mib:g} MiB on the GPU)"
        if self.spill_dir is not None and self.cache_mib is not None:
            cache += f", then up to {self.spill_gib:g} GiB/rank on disk in {self.spill_dir}"
        parts = [f"K={c.refine_steps}", f"lambda in [{c.coef_min:g}, {c.coef_max:g}]" if c.range_map else "lambda = alpha*",
                 f"pooling={self.pooling}", f"proxy={self.proxy}", f"cache {cache}"]
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
                   offload_cache=values.get("offload_cache", False), gpu_cache_mib=values.get("gpu_cache_mib", 0.0),
                   spill_dir=values.get("spill_dir", None), spill_gib=values.get("spill_gib", 64.0))


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
