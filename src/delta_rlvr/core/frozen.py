"""The frozen assignment temperature of DelTA (`DeltaConfig.freeze_temperature`).

DelTA turns a token's score margin into its coefficient through a temperature gamma (the
paper's assignment temperature, one per side: gamma+ for A > 0, gamma- for A < 0; not the
sampling temperature). By default gamma is re-measured on every batch as gamma^(0), the spread of
the first pass's margins. With `freeze_temperature`, gamma^(0) of the first batch is kept and
used for every later batch. `FrozenGamma` is the one owner of that value: the trainer and both
adapters measure it through `observe`, pass `current()` to the estimator (one-shot or
streamed), and save and restore it with their checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor


class FrozenGamma:
    """gamma^(0) of the first batch, kept when `enabled`; `current()` is None until measured."""

    def __init__(self, enabled: bool, value: Tensor | list[float] | None = None) -> None:
        self.enabled = enabled
        self.value: Tensor | None = None
        if value is not None:
            self.load(value)

    def current(self) -> Tensor | None:
        """What the next coefficient computation gets as `temperature=`: the frozen (2,) gamma,
        or None (measure it on this batch)."""
        return self.value if self.enabled else None

    def observe(self, measured: Tensor) -> None:
        """Keep `measured` (the (2,) gamma^(0) of a batch; across ranks, their mean) if this is
        the first measurement of a frozen run; later calls change nothing."""
        if self.enabled and self.value is None:
            self.value = measured.detach().to("cpu", torch.float64).reshape(2).clone()

    def state(self) -> list[float] | None:
        """The value as plain floats, for a checkpoint (None before the first batch)."""
        return None if self.value is None else [float(x) for x in self.value]

    def load(self, value: Tensor | list[float] | None) -> None:
        """Restore a checkpoint's value (a (2,) tensor or two floats; None = not measured yet)."""
        if value is None:
            self.value = None
            return
        tensor = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        if tensor.numel() != 2 or not torch.isfinite(tensor).all() or not (tensor > 0).all():
            raise ValueError(f"a frozen gamma is two positive numbers (gamma+, gamma-), got {value!r}")
        self.value = tensor.clone()
