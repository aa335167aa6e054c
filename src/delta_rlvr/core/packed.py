"""A packed cache of one rollout batch's proxy inputs: the coefficient passes without re-forwards.

Shapes: n tokens of a chunk (no padding), H hidden size.

Engines see the batch one micro-batch at a time, in their old-log-prob forward. The streaming
estimator (`DeltaStream`) needs K + 2 passes over the proxy v = (1 - p) h. Rather than
recomputing h with K + 1 more forwards, the first forward stores, for each signed token
(valid, A != 0), its hidden state h in the dtype the model produced it (bf16 under mixed
precision: no rounding, since that is the value the LM head saw), 1 - p in float32 and its
advantage. Zero-advantage tokens are only counted: their vectors never enter the estimator.
Every pass then runs from the cache, a chunk of at most `CHUNK_ELEMENTS` floats at a time
(filled across the added chunks' boundaries, so the numbers do not depend on the micro-batch
sizes; gathered once for every pass when the whole cache fits one chunk), and gives the
coefficients of the padded one-shot form (tests/core/test_packed.py).

Memory: N_signed x (H x itemsize(h) + 8) bytes, kept in tiers tried in order (`CacheTier`): the
tokens' own device (the GPU), host memory (pinned where CUDA is available; chunks travel back
one at a time) and a memory-mapped file on local disk (written by a background thread while the
forward goes on), read back in every pass. Each tier has a byte cap; a chunk goes to the first
tier with room for the whole of it. When every tier is full, `add` refuses the chunk and the
caller falls back to the streaming form (`spill` feeds what was cached to the stream's first
pass and frees it). Every tier gives the same numbers:
the rows are stored bit for bit. Passes over the cache cost no forward, so `run` measures
gamma^(0) with a pass of its own rather than from the stream's (2, H, H) float64 second
moments: the estimator's own memory stays O(H) plus one chunk of at most `CHUNK_ELEMENTS` floats.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from delta_rlvr.core.kernels import CHUNK_ELEMENTS
from delta_rlvr.core.precision import in_full_precision
from delta_rlvr.core.streaming import DeltaStream, StreamedDeltaCoefficients

MIB = 1 << 20
GIB = 1 << 30
#: where a tier keeps its rows: the tokens' device, host memory, a file on local disk
TIER_KINDS = ("device", "host", "disk")
#: byte alignment of each tensor in the spill file
_ALIGN = 64


@dataclass(frozen=True)
class CacheTier:
    """One level of a `PackedProxyCache`.

    kind: "device" (where the tokens are computed: the GPU), "host" (CPU memory, pinned where
    CUDA is available) or "disk" (a memory-mapped file in ``directory``, removed when the cache
    is freed or the process ends). cap_bytes: the most it may hold (None: no cap; a disk tier
    needs one).
    """

    kind: str
    cap_bytes: int | None = None
    directory: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in TIER_KINDS:
            raise ValueError(f"CacheTier: kind must be one of {', '.join(TIER_KINDS)}, got {self.kind!r}")
        if self.cap_bytes is not None and (isinstance(self.cap_bytes, bool) or not isinstance(self.cap_bytes, int)
                                           or self.cap_bytes < 0):
            raise ValueError(f"CacheTier({self.kind}): cap_bytes must be an integer >= 0 or None, got {self.cap_bytes!r}")
        if self.kind == "disk":
            if self.directory is None or self.cap_bytes is None:
                raise ValueError("CacheTier(disk): needs a directory and a cap_bytes")
            if not os.path.isdir(self.directory):
                raise ValueError(f"CacheTier(disk): spill directory {self.directory!r} does not exist; create it or "
                                 "point the spill directory at local disk")
        elif self.directory is not None:
            raise ValueError(f"CacheTier({self.kind}): only a disk tier takes a directory")


class _SpillFile:
    """An append-only file of tensors, unlinked at once (it lives as long as its descriptor),
    read back through one private memory map of the whole file.

    Each `write` copies its tensors to host memory at once and leaves the bytes to a background
    thread, so the caller's forward goes on while the disk writes; a `write` first waits for the
    previous one, so at most one chunk is in flight (host memory: that chunk's copy beside the
    new one). A failed write is raised, with the directory and what to do, by the next `write`,
    `read` or `flush`."""

    def __init__(self, directory: str) -> None:
        fd, path = tempfile.mkstemp(prefix="delta-spill-", suffix=".bin", dir=directory)
        os.unlink(path)  # nothing is left behind, whatever happens to the process
        self._fd = fd
        self.directory = directory
        self.size = 0
        self._map: mmap.mmap | None = None
        self._mapped = 0
        self._job: threading.Thread | None = None
        self._errors: list[OSError] = []

    def write(self, tensors: Sequence[Tensor]) -> list[tuple[int, torch.Size, torch.dtype]]:
        """Append each tensor (copied to CPU now, contiguous); returns where each one is."""
        parts, where = [], []
        for t in tensors:
            cpu = t.detach().to("cpu").contiguous()
            raw = cpu.reshape(-1).view(torch.uint8) if cpu.numel() else torch.zeros(0, dtype=torch.uint8)
            parts.append((self.size, raw))
            where.append((self.size, cpu.shape, cpu.dtype))
            self.size += raw.numel() + (-raw.numel() % _ALIGN)
        self.flush()
        self._job = threading.Thread(target=self._write_parts, args=(parts,), name="delta-spill", daemon=True)
        self._job.start()
        return where

    def _write_parts(self, parts: list[tuple[int, Tensor]]) -> None:
        try:
            for offset, raw in parts:
                view = memoryview(raw.numpy())
                done = 0
                while done < len(view):
                    done += os.pwrite(self._fd, view[done:], offset + done)
        except OSError as error:  # raised in the caller's thread by the next write, read or flush
            self._errors.append(error)

    def flush(self) -> None:
        """Wait until every byte written so far is in the file (the page cache)."""
        if self._job is not None:
            self._job.join()
            self._job = None
        if self._errors:
            error = self._errors[0]
            raise OSError(error.errno, f"DelTA's spill file in {self.directory}: writing the cache failed "
                          f"({error.strerror or error}); free space there, lower the spill cap (delta.spill_gib) "
                          "or point the spill directory (delta.spill_dir) at a larger local disk") from error

    def read(self, offset: int, shape: torch.Size, dtype: torch.dtype) -> Tensor:
        """A CPU tensor backed by the file's pages (no copy until it is moved or converted)."""
        count = shape.numel()
        if count == 0:
            return torch.zeros(shape, dtype=dtype)
        if self._map is None or self._mapped != self.size:
            self.flush()
            os.ftruncate(self._fd, self.size)  # the file covers the last tensor's alignment padding
            self._map = mmap.mmap(self._fd, self.size, access=mmap.ACCESS_COPY)
            self._mapped = self.size
        return torch.frombuffer(self._map, dtype=dtype, count=count, offset=offset).view(shape)

    def close(self) -> None:
        if self._job is not None:
            self._job.join()  # its error, if any, no longer matters
            self._job = None
        self._map = None  # views still alive keep their own reference to the map
        os.close(self._fd)


@dataclass
class _Chunk:
    hidden: Tensor | tuple  # (n, H) signed tokens' hidden states, the model's dtype; on disk: where
    scale: Tensor | tuple  # (n,) float32, 1 - p
    advantages: Tensor | tuple  # (n,) float32
    zero_advantage_tokens: int  # valid tokens with A = 0 that came with this chunk
    device: torch.device  # where the rows are computed on
    tier: int  # index into the cache's tiers
    nbytes: int


class PackedProxyCache:
    """Signed tokens' (h, 1 - p, A) for one rollout batch, in feeding order.

    Args:
        cap_mib: with no ``tiers``, one tier capped at this many MiB (None: no cap).
        offload: with no ``tiers``, that tier is host memory (pinned where CUDA is available)
            instead of the tokens' device.
        tiers: the tiers to fill, in order (`CacheTier`); replaces ``cap_mib`` and ``offload``.
        record_only: place and count every chunk exactly as a storing cache would (so
            `overflowed` and the byte counts say what it would hold) but keep no rows: for a
            process that must take the same path (cache or stream) as another holding the same
            rows, such as the other sequence-parallel ranks of a group. `run` is refused.
    """

    def __init__(self, cap_mib: float | None = None, *, offload: bool = False,
                 tiers: Sequence[CacheTier] | None = None, record_only: bool = False) -> None:
        if cap_mib is not None and not (cap_mib >= 0):
            raise ValueError(f"PackedProxyCache: cap_mib must be >= 0 or None, got {cap_mib!r}")
        if tiers is None:
            tiers = [CacheTier("host" if offload else "device", None if cap_mib is None else int(cap_mib * MIB))]
        elif not tiers:
            raise ValueError("PackedProxyCache: tiers is empty; give at least one CacheTier")
        self.tiers = tuple(tiers)
        self.cap_bytes = None if any(t.cap_bytes is None for t in self.tiers) else sum(t.cap_bytes for t in self.tiers)
        self.offload = offload
        self.record_only = record_only
        self._chunks: list[_Chunk] = []
        self._spill: _SpillFile | None = None
        self.tier_nbytes = [0] * len(self.tiers)
        self.tier_peak_nbytes = [0] * len(self.tiers)
        self.nbytes = 0
        self.peak_nbytes = 0
        self.overflowed = False
        self.signed_tokens = 0
        self.zero_advantage_tokens = 0

    def peak_bytes_by_kind(self) -> dict[str, int]:
        """Peak bytes held per tier kind ("device", "host", "disk"; 0 for kinds not configured)."""
        out = dict.fromkeys(TIER_KINDS, 0)
        for tier, peak in zip(self.tiers, self.tier_peak_nbytes):
            out[tier.kind] += peak
        return out

    @staticmethod
    def token_bytes(hidden_size: int, itemsize: int) -> int:
        """Bytes the cache holds per signed token: h in the model's dtype, 1 - p and A."""
        return hidden_size * itemsize + 8

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
        size = n_signed * self.token_bytes(values.shape[1], values.element_size())
        tier = next((i for i, t in enumerate(self.tiers) if t.cap_bytes is None or self.tier_nbytes[i] + size <= t.cap_bytes),
                    None)
        if tier is None:
            self.overflowed = True
            return False
        if self.record_only:
            self._count(tier, size, n_signed, zero)
            return True
        index = signed.nonzero().squeeze(1)
        rows = values.detach().index_select(0, index)  # a copy: nothing of the micro-batch is kept alive
        scale = scale_of(index) if scale_of is not None else torch.ones(n_signed, dtype=torch.float32, device=rows.device)
        adv = advantages.detach().float().index_select(0, index)
        device = rows.device
        kind = self.tiers[tier].kind
        if kind == "host":
            pin = torch.cuda.is_available()
            rows, scale, adv = (t.to("cpu").pin_memory() if pin else t.to("cpu") for t in (rows, scale, adv))
        elif kind == "disk":
            if self._spill is None:
                self._spill = _SpillFile(self.tiers[tier].directory)
            rows, scale, adv = self._spill.write((rows, scale, adv))
        self._chunks.append(_Chunk(rows, scale, adv, zero, device, tier, size))
        self._count(tier, size, n_signed, zero)
        return True

    def _count(self, tier: int, size: int, n_signed: int, zero: int) -> None:
        self.tier_nbytes[tier] += size
        self.tier_peak_nbytes[tier] = max(self.tier_peak_nbytes[tier], self.tier_nbytes[tier])
        self.nbytes += size
        self.peak_nbytes = max(self.peak_nbytes, self.nbytes)
        self.signed_tokens += n_signed
        self.zero_advantage_tokens += zero

    def _load(self, stored: Tensor | tuple) -> Tensor:
        return self._spill.read(*stored) if isinstance(stored, tuple) else stored

    @staticmethod
    def _shape(stored: Tensor | tuple) -> torch.Size:
        """A stored tensor's shape, without reading it back from disk."""
        return stored[1] if isinstance(stored, tuple) else stored.shape

    def _feed_rows(self) -> int:
        """Rows per feed chunk: CHUNK_ELEMENTS floats of the cached rows' width (0: no rows)."""
        return max(1, CHUNK_ELEMENTS // max(self._shape(self._chunks[0].hidden)[1], 1)) if self._chunks else 0

    def _feed_chunks(self) -> Iterator[tuple[Tensor, Tensor, int]]:
        """The cached rows as the stream's chunks, in order: (v (m, H) float32 = (1 - p) h on
        the device the rows were computed on, advantages (m,), zero-advantage tokens). Each is
        filled across the added chunks' boundaries up to CHUNK_ELEMENTS floats, so a pass costs
        as few stream updates as the rows allow and its sums do not depend on how the rows were
        added (micro-batch sizes, tiers)."""
        if not self._chunks:
            return
        h, step = self._shape(self._chunks[0].hidden)[1], self._feed_rows()
        zero = sum(c.zero_advantage_tokens for c in self._chunks)  # only counted: they go with the first chunk
        group: list[tuple[_Chunk, int, int]] = []  # (chunk, start, stop) slices of one feed chunk
        rows = 0
        for chunk in self._chunks:
            n, start = self._shape(chunk.scale)[0], 0
            while start < n:
                if group and (rows == step or group[0][0].device != chunk.device):
                    yield self._gather(group, rows, h, zero)
                    group, rows, zero = [], 0, 0
                stop = min(n, start + step - rows)
                group.append((chunk, start, stop))
                rows += stop - start
                start = stop
        if group:
            yield self._gather(group, rows, h, zero)
        else:  # no signed row at all: the pass still counts the zero-advantage tokens
            device = self._chunks[0].device
            yield torch.zeros(0, h, dtype=torch.float32, device=device), torch.zeros(0, device=device), zero

    def _gather(self, group: list[tuple[_Chunk, int, int]], rows: int, h: int, zero: int) -> tuple[Tensor, Tensor, int]:
        """One feed chunk from its slices: the rows converted to float32 in place of one buffer,
        then scaled by 1 - p (the same products as converting and scaling each slice)."""
        device = group[0][0].device
        v = torch.empty(rows, h, dtype=torch.float32, device=device)
        scales, advs, pos = [], [], 0
        for chunk, start, stop in group:
            hidden, scale, adv = (self._load(t) for t in (chunk.hidden, chunk.scale, chunk.advantages))
            v[pos : pos + stop - start].copy_(hidden[start:stop], non_blocking=True)
            scales.append(scale[start:stop])
            advs.append(adv[start:stop])
            pos += stop - start
        scale = (scales[0] if len(scales) == 1 else torch.cat(scales)).to(device, non_blocking=True)
        adv = (advs[0] if len(advs) == 1 else torch.cat(advs)).to(device, non_blocking=True)
        return v.mul_(scale.unsqueeze(1)), adv, zero

    def _feed(self, stream: DeltaStream, ready: list[tuple[Tensor, Tensor, int]] | None = None) -> None:
        """One pass: every cached row into the stream, in order (``ready``: the feed chunks,
        already gathered)."""
        for v, adv, zero in ready if ready is not None else self._feed_chunks():
            stream.update_tokens(v, adv, zero_advantage_tokens=zero)

    @in_full_precision  # once for every pass (the stream's own entries then find nothing to switch)
    def run(self, stream: DeltaStream) -> StreamedDeltaCoefficients:
        """Every remaining pass of ``stream`` from the cache; the result's coef, concatenated,
        is the signed tokens' coefficients in the order they were added (`coefficients`)."""
        if self.overflowed:
            raise RuntimeError("PackedProxyCache.run: the cache overflowed its cap; stream the passes instead")
        if self.record_only:
            raise RuntimeError("PackedProxyCache.run: a record_only cache holds no rows")
        if not stream.started:  # a fresh stream: passes are free, H x H memory is not
            stream.measure_gamma_directly()
        ready = None  # rows that fill one feed chunk are gathered once, not once per pass
        if self._chunks and self.signed_tokens <= self._feed_rows() and len({c.device for c in self._chunks}) == 1:
            ready = list(self._feed_chunks())
        while not stream.done:
            self._feed(stream, ready)
            stream.end_pass()
        return stream.result()

    def spill(self, stream: DeltaStream) -> None:
        """Feed what is cached to the stream's current pass and free it (the switch to the
        streaming form once the cap is reached)."""
        self._feed(stream)
        self.free()

    def free(self) -> None:
        """Drop every cached row (and the spill file)."""
        self._chunks.clear()
        self.nbytes = 0
        self.tier_nbytes = [0] * len(self.tiers)
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    @staticmethod
    def coefficients(result: StreamedDeltaCoefficients) -> Tensor:
        """(N_signed,) float32: the signed tokens' coefficients, in the order they were added."""
        if not result.coef:
            return torch.zeros(0)
        return torch.cat([c.reshape(-1) for c in result.coef])
