"""Peak bytes of CPU tensors allocated inside a block and alive at the same time.

CPU PyTorch has no allocator statistics like ``torch.cuda.max_memory_allocated``. This counts
what matters for DelTA's extra memory directly: a ``TorchDispatchMode`` sees the output of every
aten op run inside the block; each new storage (not one of the op's inputs, so in-place ops
and views of older tensors are not counted) is added with its ``nbytes`` and removed by a
finaliser when the storage is freed (PyTorch keeps one Python object per storage, so the
finaliser fires when the last tensor or view of it dies). Tensors created before the block
(weights, the generation batch) are not counted. Allocator caching and fragmentation are not
seen: this is the bytes of live tensors, the lower bound an allocator must provide.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorBytes(TorchDispatchMode):
    """``with LiveTensorBytes() as m: ...`` then ``m.peak`` (bytes) and ``m.current``."""

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _storages(self, values) -> set[int]:
        return {id(t.untyped_storage()) for t in tree_flatten(values)[0] if isinstance(t, torch.Tensor)}

    def _track(self, tensor: torch.Tensor, inputs: set[int]) -> None:
        if tensor.device.type != "cpu":
            return
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._live or key in inputs:
            return
        size = storage.nbytes()
        self._live[key] = size
        self.current += size
        self.peak = max(self.peak, self.current)

        def freed(key: int = key, size: int = size) -> None:
            if self._live.pop(key, None) is not None:
                self.current -= size

        weakref.finalize(storage, freed)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = self._storages((args, kwargs))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t, inputs)
        return out
