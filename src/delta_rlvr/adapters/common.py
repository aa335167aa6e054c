"""Framework-free pieces shared by the adapters: config mapping and the one-batch coefficient call.

Shapes: B responses, T response tokens, H hidden size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, Literal

import torch
from torch import Tensor

from delta_rlvr.core import DeltaConfig, DeltaStats, DeltaStream, delta_coefficients

Pooling = Literal["local", "global"]
POOLING_CHOICES: tuple[str, ...] = ("local", "global")

#: The DeltaConfig fields every adapter exposes, in declaration order.
DELTA_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(DeltaConfig))


def delta_config_from_prefixed(values: Mapping[str, Any], prefix: str, where: str) -> DeltaConfig:
    """Build a DeltaConfig from ``{prefix + field: value}`` (missing fields keep their defaults).

    Errors name the setting as the user wrote it (``where`` + prefixed name), not DeltaConfig's.
    """
    kwargs = {name: values[prefix + name] for name in DELTA_FIELDS if prefix + name in values}
    try:
        return DeltaConfig(**kwargs)
    except ValueError as err:
        message = str(err).replace("DeltaConfig.", f"{where}{prefix}")
        raise ValueError(message) from None


def check_pooling(pooling: str, setting: str) -> None:
    if pooling not in POOLING_CHOICES:
        raise ValueError(
            f"{setting}={pooling!r} is not a pooling mode; use 'local' (statistics of each process's "
            "own rollout batch, as the paper's released code) or 'global' (all-reduced over processes)"
        )


def batch_coefficients(
    vectors: Tensor,
    advantages: Tensor,
    mask: Tensor,
    config: DeltaConfig,
    *,
    reduce: Callable[[Tensor], Tensor] | None = None,
    gamma: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, DeltaStats]:
    """Coefficients for one process's rollout batch, optionally pooled across processes.

    Args:
        vectors: (B, T, H) float32 token-gradient proxy (zero at invalid tokens), e.g.
            `delta_rlvr.core.row_proxy`.
        advantages: (B,) one advantage per response.
        mask: (B, T) bool, True = valid token.
        reduce: None pools over this batch only (one-shot form); a sum all-reduce pools the
            centroids, gammas and N/Z over every process (streaming form, whose
            accumulators are the mergeable sums the hook reduces).
        gamma: (2,) frozen assignment temperatures with ``config.freeze_temperature``
            (`FrozenGamma.current()`); None measures them on this batch.

    Returns:
        coef (B, T) float32, 0 at invalid tokens; and the statistics.
    """
    if reduce is None:
        out = delta_coefficients(vectors, advantages, mask, config, gamma=gamma, generator=generator)
        return out.coef, out.stats
    stream = DeltaStream(config, reduce=reduce, gamma=gamma, generator=generator)
    out = stream.run(lambda: [(vectors, advantages, mask)])
    return out.coef[0], out.stats


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum over every process of the default torch.distributed group (a copy; input untouched)."""
    out = tensor.clone()
    torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
    return out


def mean_over_ranks(values: Mapping[str, float], reduce: Callable[[Tensor], Tensor]) -> dict[str, float]:
    """NaN-aware mean of each value over the processes ``reduce`` (a sum all-reduce of a float64
    CPU tensor) spans; every process passes the same keys. NaN where no process had a value."""
    names = sorted(values)
    x = torch.tensor([values[n] for n in names], dtype=torch.float64)
    finite = torch.isfinite(x)
    summed = reduce(torch.cat([torch.where(finite, x, torch.zeros_like(x)), finite.double()]))
    total, count = summed[: len(names)], summed[len(names) :]
    return {n: (float(t / c) if c > 0 else float("nan")) for n, t, c in zip(names, total.tolist(), count.tolist())}
