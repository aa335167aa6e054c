"""True float32/float64 arithmetic for DelTA's statistics, whatever the caller's settings.

Engines call the coefficient pass from inside their forward, under ``torch.autocast(bf16)``
(verl's FSDP engine wraps ``prepare_model_outputs`` in it), and trainers often allow TF32
matmuls (``tf32=True``, ``torch.set_float32_matmul_precision("high")``). Either silently lowers
the precision of the centroid sums and margins: under bf16 autocast the coefficients moved by up
to 0.07 on a range of 0.4 (docs/implementation_details.md). Every public entry point of the
estimator runs inside `full_precision`, which switches both off and restores them on exit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)

#: device types whose autocast state is checked (and switched off where it is on)
AUTOCAST_DEVICES: tuple[str, ...] = ("cpu", "cuda", "xpu", "mps")


def _known_autocast_devices() -> tuple[str, ...]:
    known = []
    for device in AUTOCAST_DEVICES:
        try:
            torch.is_autocast_enabled(device)
        except (RuntimeError, ValueError):  # a device type this build does not know
            continue
        known.append(device)
    return tuple(known)


_AUTOCAST_KNOWN = _known_autocast_devices()
#: the float32-matmul precision settings of torch >= 2.9 ("ieee" = full float32)
_MATMUL_BACKENDS = ("cuda", "mkldnn")
_BACKENDS = tuple(getattr(torch.backends, name).matmul for name in _MATMUL_BACKENDS)
_PER_BACKEND = all(hasattr(b, "fp32_precision") for b in _BACKENDS)


def _already_full() -> bool:
    """Whether nothing is to switch: no autocast on, every float32 matmul in full precision
    (inside an outer `full_precision`, for instance; a few attribute reads instead of entering
    and leaving the contexts)."""
    if any(torch.is_autocast_enabled(device) for device in _AUTOCAST_KNOWN):
        return False
    if _PER_BACKEND:
        return all(b.fp32_precision == "ieee" for b in _BACKENDS)
    return torch.get_float32_matmul_precision() == "highest"  # pragma: no cover - torch < 2.9


@contextmanager
def full_precision() -> Iterator[None]:
    """Autocast off on every device where it is on; float32 matmuls in full precision (no TF32,
    no bf16 passes); both restored on exit, also on error."""
    if _already_full():
        yield
        return
    with _switched():
        yield


@contextmanager
def _switched() -> Iterator[None]:
    """Switch autocast off where it is on and float32 matmuls to full precision, restore both."""
    with ExitStack() as stack:
        for device in _AUTOCAST_KNOWN:
            if torch.is_autocast_enabled(device):
                stack.enter_context(torch.autocast(device_type=device, enabled=False))
        with _ieee_matmuls():
            yield


@contextmanager
def _ieee_matmuls() -> Iterator[None]:
    """float32 matmuls in full precision on every backend, restored on exit. Uses the per-backend
    ``fp32_precision`` API where torch has it (reading the legacy global after the new API has
    been used raises in torch >= 2.9), the legacy global otherwise."""
    if _PER_BACKEND:
        previous = [b.fp32_precision for b in _BACKENDS]
        for b in _BACKENDS:
            b.fp32_precision = "ieee"
        try:
            yield
        finally:
            for b, value in zip(_BACKENDS, previous):
                b.fp32_precision = value
        return
    legacy = torch.get_float32_matmul_precision()  # pragma: no cover - torch < 2.9
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(legacy)


def in_full_precision(fn: F) -> F:
    """Decorator: run ``fn`` inside `full_precision`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _already_full():  # the common case inside the estimator: nothing to switch
            return fn(*args, **kwargs)
        with _switched():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
