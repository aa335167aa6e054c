"""The frozen assignment temperature gamma of DelTA (`DeltaConfig.freeze_temperature`).

DelTA turns a token's score margin into its coefficient through a temperature gamma (the
paper's assignment temperature, one per side: gamma+ for A > 0, gamma- for A < 0; not the
sampling temperature). By default gamma is re-measured on every batch as gamma^(0), the spread of
the first pass's margins. With `freeze_temperature`, gamma^(0) of the first batch is kept and
used for every later batch. `FrozenGamma` is the one owner of that value: the trainer and both
adapters measure it through `observe` (with `DeltaStats.gamma[0]`), pass `current()` to the
estimator as ``gamma=`` (one-shot or streamed), and save and restore it with their checkpoints
(`state` / `load`).
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
        """What the next coefficient computation gets as `gamma=`: the frozen (2,) float64 gamma,
        or None (measure it on this batch; always None when not `enabled`)."""
        return self.value if self.enabled else None

    def observe(self, measured: Tensor) -> None:
        """Keep `measured` (the (2,) gamma^(0) of a batch, `DeltaStats.gamma[0]`; across ranks,
        their mean) if this is the first measurement of a frozen run; later calls change nothing.
        A NaN measurement is not one: with `random_coefficients` no margin is computed and gamma
        is never used, so nothing is kept (and a checkpoint holds None, which `load` accepts)."""
        if self.enabled and self.value is None:
            value = measured.detach().to("cpu", torch.float64).reshape(2).clone()
            if bool(torch.isfinite(value).all()):
                self.value = value

    def state(self) -> list[float] | None:
        """The value as plain floats, for a checkpoint (None before the first batch)."""
        return None if self.value is None else [float(x) for x in self.value]

    def load(self, value: Tensor | list[float] | None) -> None:
        """Restore a checkpoint's value (a (2,) tensor or two floats; None = not measured yet).
        Two NaNs, which earlier versions kept for `random_coefficients` runs (see `observe`),
        also mean not measured."""
        if value is None:
            self.value = None
            return
        tensor = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        if tensor.numel() == 2 and bool(torch.isnan(tensor).all()):
            self.value = None
            return
        if tensor.numel() != 2 or not torch.isfinite(tensor).all() or not (tensor > 0).all():
            raise ValueError(f"a frozen gamma is two positive numbers (gamma+, gamma-), got {value!r}")
        self.value = tensor.clone()
