"""A packed cache of one rollout batch's proxy inputs: the coefficient passes without re-forwards.

Shapes: n tokens of a chunk (no padding), H hidden size.

Engines see the batch one micro-batch at a time, in their old-log-prob forward. The streaming
estimator (`DeltaStream`) needs K + 2 passes over the proxy v = (1 - p) h. Rather than
recomputing h with K + 1 more forwards, the first forward stores, for each signed token
(valid, A != 0), its hidden state h in the dtype the model produced it (bf16 under mixed
precision: no rounding, since that is the value the LM head saw), 1 - p in float32 and its
advantage. Zero-advantage tokens are only counted: their vectors never enter the estimator.
Every pass then runs from the cache, a chunk of at most `CHUNK_ELEMENTS` floats at a time, and
gives exactly the coefficients of the padded one-shot form (tests/core/test_packed.py).

Memory: N_signed x (H x itemsize(h) + 8) bytes, on the tokens' device or, with
``offload=True``, in CPU memory (chunks travel back one at a time). When a cap is set and the
batch would exceed it, `add` refuses the chunk and the caller falls back to the streaming form
(`spill` feeds what was cached to the stream's first pass and frees it). Passes over the cache
cost no forward, so `run` measures gamma^(0) with a pass of its own rather than from the
stream's (2, H, H) float64 second moments: the estimator's own memory stays O(H) plus one
chunk of at most `CHUNK_ELEMENTS` floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from delta_rlvr.core.kernels import CHUNK_ELEMENTS
from delta_rlvr.core.streaming import DeltaStream, StreamedDeltaCoefficients

MIB = 1 << 20


@dataclass
class _Chunk:
    hidden: Tensor  # (n, H) signed tokens' hidden states, the model's dtype
    scale: Tensor  # (n,) float32, 1 - p
    advantages: Tensor  # (n,) float32
    zero_advantage_tokens: int  # valid tokens with A = 0 that came with this chunk
    device: torch.device  # where the rows are computed on


class PackedProxyCache:
    """Signed tokens' (h, 1 - p, A) for one rollout batch, in feeding order.

    Args:
        cap_mib: refuse chunks once the cache would hold more than this many MiB (None: no cap).
        offload: keep the cached rows in CPU memory (pinned where CUDA is available).
    """

    def __init__(self, cap_mib: float | None = None, *, offload: bool = False) -> None:
        if cap_mib is not None and not (cap_mib >= 0):
            raise ValueError(f"PackedProxyCache: cap_mib must be >= 0 or None, got {cap_mib!r}")
        self.cap_bytes = None if cap_mib is None else int(cap_mib * MIB)
        self.offload = offload
        self._chunks: list[_Chunk] = []
        self.nbytes = 0
        self.peak_nbytes = 0
        self.overflowed = False
        self.signed_tokens = 0
        self.zero_advantage_tokens = 0

    def add(self, hidden: Tensor, logp: Tensor, advantages: Tensor) -> bool:
        """Offer one chunk of valid tokens: hidden (n, H), logp (n,) at the rollout
        temperature, advantages (n,) per token. Only the signed rows are copied.

        Returns False (storing nothing) when the cap would be exceeded; the cache is then
        `overflowed` and refuses every later chunk too.
        """
        if hidden.dim() != 2 or logp.shape != hidden.shape[:1] or advantages.shape != hidden.shape[:1]:
            raise ValueError(
                f"PackedProxyCache.add: expected hidden (n, H), logp (n,), advantages (n,), got "
                f"{tuple(hidden.shape)}, {tuple(logp.shape)}, {tuple(advantages.shape)}"
            )
        return self._keep(hidden, advantages, lambda index: -torch.expm1(logp.detach().float().index_select(0, index)))

    def add_vectors(self, vectors: Tensor, advantages: Tensor, *, zero_advantage_tokens: int = 0) -> bool:
        """Offer one chunk of ready-made proxy vectors (proxies other than (1 - p) h, such as
        topk_hidden): vectors (n, H) (kept in their dtype; float32 for the computed proxies),
        advantages (n,) per token. Rows with A = 0 are only counted, as in `add`, and so are
        ``zero_advantage_tokens`` further valid tokens with A = 0 that were not passed.

        Returns False (storing nothing) when the cap would be exceeded, as `add`.
        """
        if vectors.dim() != 2 or advantages.shape != vectors.shape[:1]:
            raise ValueError(
                f"PackedProxyCache.add_vectors: expected vectors (n, H) and advantages (n,), got "
                f"{tuple(vectors.shape)} and {tuple(advantages.shape)}"
            )
        if isinstance(zero_advantage_tokens, bool) or int(zero_advantage_tokens) != zero_advantage_tokens or zero_advantage_tokens < 0:
            raise ValueError(
                f"PackedProxyCache.add_vectors: zero_advantage_tokens must be an integer >= 0, got {zero_advantage_tokens!r}"
            )
        return self._keep(vectors, advantages, None, extra_zero=int(zero_advantage_tokens))  # v is stored as is: v x 1

    def _keep(self, values: Tensor, advantages: Tensor, scale_of, *, extra_zero: int = 0) -> bool:
        """Copy the signed rows of ``values`` (n, H) with their scale (``scale_of(index)``, or 1)
        and advantage; count the rest, plus ``extra_zero``, as zero-advantage tokens."""
        if self.overflowed:
            return False
        signed = advantages != 0
        n_signed = int(signed.sum())
        zero = values.shape[0] - n_signed + extra_zero
        size = n_signed * (values.shape[1] * values.element_size() + 8)
        if self.cap_bytes is not None and self.nbytes + size > self.cap_bytes:
            self.overflowed = True
            return False
        index = signed.nonzero().squeeze(1)
        rows = values.detach().index_select(0, index)  # a copy: nothing of the micro-batch is kept alive
        scale = scale_of(index) if scale_of is not None else torch.ones(n_signed, dtype=torch.float32, device=rows.device)
        adv = advantages.detach().float().index_select(0, index)
        device = rows.device
        if self.offload:
            pin = torch.cuda.is_available()
            rows, scale, adv = (t.to("cpu").pin_memory() if pin else t.to("cpu") for t in (rows, scale, adv))
        self._chunks.append(_Chunk(rows, scale, adv, zero, device))
        self.nbytes += size
        self.peak_nbytes = max(self.peak_nbytes, self.nbytes)
        self.signed_tokens += n_signed
        self.zero_advantage_tokens += zero
        return True

    def _feed(self, stream: DeltaStream) -> None:
        """One pass: every cached chunk into the stream, in order, CHUNK_ELEMENTS at a time."""
        for chunk in self._chunks:
            n, h = chunk.hidden.shape
            step = max(1, CHUNK_ELEMENTS // max(h, 1))
            if n == 0:
                stream.update_tokens(chunk.hidden.new_zeros(0, h, dtype=torch.float32, device=chunk.device),
                                     chunk.advantages.to(chunk.device),
                                     zero_advantage_tokens=chunk.zero_advantage_tokens)
                continue
            for start in range(0, n, step):
                stop = min(start + step, n)
                rows = chunk.hidden[start:stop].to(chunk.device, non_blocking=True).float()
                scale = chunk.scale[start:stop].to(chunk.device, non_blocking=True)
                adv = chunk.advantages[start:stop].to(chunk.device, non_blocking=True)
                zero = chunk.zero_advantage_tokens if start == 0 else 0
                stream.update_tokens(rows * scale.unsqueeze(1), adv, zero_advantage_tokens=zero)

    def run(self, stream: DeltaStream) -> StreamedDeltaCoefficients:
        """Every remaining pass of ``stream`` from the cache; the result's coef, concatenated,
        is the signed tokens' coefficients in the order they were added (`coefficients`)."""
        if self.overflowed:
            raise RuntimeError("PackedProxyCache.run: the cache overflowed its cap; stream the passes instead")
        if not stream.started:  # a fresh stream: passes are free, H x H memory is not
            stream.measure_gamma_directly()
        while not stream.done:
            self._feed(stream)
            stream.end_pass()
        return stream.result()

    def spill(self, stream: DeltaStream) -> None:
        """Feed what is cached to the stream's current pass and free it (the switch to the
        streaming form once the cap is reached)."""
        self._feed(stream)
        self._chunks.clear()
        self.nbytes = 0

    @staticmethod
    def coefficients(result: StreamedDeltaCoefficients) -> Tensor:
        """(N_signed,) float32: the signed tokens' coefficients, in the order they were added."""
        if not result.coef:
            return torch.zeros(0)
        return torch.cat([c.reshape(-1) for c in result.coef])
