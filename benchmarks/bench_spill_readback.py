"""Read-back of the packed cache's disk tier, per GB, and its break-even against a re-forward.

    python benchmarks/bench_spill_readback.py [--gib 4] [--hidden 4096] [--dir DIR]
                                              [--chunk-tokens 8192] [--repeats 3] [--forward-ms F]
                                              [--out results.json]

Fills a `PackedProxyCache` whose only tier is a memory-mapped file in DIR (default: the system
temporary directory) with bf16 hidden states of H values per signed token, in chunks of
``--chunk-tokens`` signed tokens (one micro-batch's worth), then times:

- write: the ``add`` calls (copy of the rows, write into the spill file by its background
  thread) until the last byte is in the file;
- cold read: after ``fsync`` and ``posix_fadvise(DONTNEED)`` have dropped the file's pages from
  the page cache, one pass over the cache the way ``PackedProxyCache._feed`` reads it (slices
  of at most ``CHUNK_ELEMENTS`` values out of the memory map, copied into a buffer, as the copy
  to the GPU does), i.e. what a refinement pass reads from the disk itself;
- warm read: the same pass again, the pages now in the page cache (what a node with enough RAM
  for the file sees).

Then the break-even of the spill tier against streaming at the 8-GPU example's settings
(Qwen3-8B: 8.2e9 parameters, 36 layers, H = 4096; 1024 responses x (2048 + 20480) tokens per
data-parallel rank, an SP group of 4 H100s at bf16 peak 989 TFLOP/s; K = 1): the spill tier is
written once during the old-log-prob forward, by a background thread, so only the part of the
write that outlasts that forward adds time, and read back K + 1 times (`plan.cached_passes`;
pass 0 runs in the forward); streaming re-forwards the whole batch K + 1 times
(`plan.reforward_seconds`, a FLOPs model at the stated MFU: not measured here, no GPU).

With --forward-ms F: the same chunks added after a stand-in forward of F ms each, with the
background write and with a write that blocks until its bytes are in the file (as before the
writer thread): how much of the write the forwards hide.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from delta_rlvr.adapters.verl.plan import cached_passes, forward_flops_per_token, reforward_seconds
from delta_rlvr.core.kernels import CHUNK_ELEMENTS
from delta_rlvr.core.packed import GIB, CacheTier, PackedProxyCache

#: the 8-GPU example (examples/verl/run_delta_8gpu.sh) with Qwen3-8B
EXAMPLE = dict(params=8.2e9, layers=36, hidden=4096, responses=1024, prompt=2048, response=20480, sp=4,
               ranks_per_node=2, peak_flops=989e12, refine_steps=1, host_gib=32.0)


def read_pass(cache: PackedProxyCache, buffer: torch.Tensor) -> int:
    """One pass over the cache as `_feed` reads it; returns the bytes read."""
    total = 0
    for chunk in cache._chunks:  # noqa: SLF001 - the benchmark reads what the passes read
        hidden = cache._load(chunk.hidden)  # noqa: SLF001
        n, h = hidden.shape
        step = max(1, CHUNK_ELEMENTS // h)
        for start in range(0, n, step):
            stop = min(start + step, n)
            buffer[: stop - start].copy_(hidden[start:stop])
            total += (stop - start) * h * hidden.element_size()
        for t in (chunk.scale, chunk.advantages):
            total += cache._load(t).clone().numel() * 4  # noqa: SLF001
    return total


def drop_page_cache(cache: PackedProxyCache) -> None:
    spill = cache._spill  # noqa: SLF001
    spill.flush()  # the background write has reached the file
    os.fsync(spill._fd)  # noqa: SLF001
    os.posix_fadvise(spill._fd, 0, 0, os.POSIX_FADV_DONTNEED)  # noqa: SLF001


def overlapped(hidden, logp, adv, chunks: int, directory: str, forward_s: float, cap: int) -> dict:
    """Chunks added after a stand-in forward of ``forward_s`` each (float32 matmuls, which let the
    writer thread run, as a GPU forward does): the background write against a write that blocks
    until its bytes are in the file (the behaviour before the writer thread), in seconds."""
    a = torch.randn(512, 512)

    def forward() -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < forward_s:
            a @ a

    out = {}
    for mode in ("blocking", "background"):
        cache = PackedProxyCache(tiers=[CacheTier("disk", cap, directory)])
        t0 = time.perf_counter()
        for _ in range(chunks):
            forward()
            assert cache.add(hidden, logp, adv)
            if mode == "blocking":
                cache._spill.flush()  # noqa: SLF001
        cache._spill.flush()  # noqa: SLF001
        out[mode] = time.perf_counter() - t0
        cache.free()
    out["forwards_s"] = chunks * forward_s
    return out


def break_even(write_gbps: float, read_gbps: float, mfu: float) -> dict:
    e = EXAMPLE
    seq = e["prompt"] + e["response"]
    token_bytes = PackedProxyCache.token_bytes(e["hidden"], 2)
    cache = e["responses"] * e["response"] * token_bytes  # every response at the cap, every token signed
    disk_per_rank = max(0.0, cache - e["host_gib"] * GIB)
    disk_per_node = disk_per_rank * e["ranks_per_node"]  # the node's ranks share its disk
    passes = cached_passes(e["refine_steps"], disk_tier=True)
    flops = forward_flops_per_token(e["params"], e["layers"], e["hidden"], seq)
    forward_s = reforward_seconds(e["responses"] * seq, flops, e["sp"], e["peak_flops"], mfu)
    stream_s = (e["refine_steps"] + 1) * forward_s

    def spill_s(write: float, read: float) -> tuple[float, float, float]:
        """(write, exposed write, read-back) seconds: the spill file is written by a background
        thread during the old-log-prob forward, so only what outlasts that forward adds time."""
        write_s = disk_per_node / (write * 1e9)
        return write_s, max(0.0, write_s - forward_s), passes * disk_per_node / (read * 1e9)

    lo, hi = 1e-3, 1e3  # GB/s (read = write) at which the spill and the stream tie, by bisection
    for _ in range(100):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if sum(spill_s(mid, mid)[1:]) > stream_s else (lo, mid)
    write_s, exposed_s, read_s = spill_s(write_gbps, read_gbps)
    return {"mfu": mfu, "write_gbps": write_gbps, "read_gbps": read_gbps, "disk_gb_per_node": disk_per_node / 1e9,
            "write_s": write_s, "exposed_write_s": exposed_s, "read_back_s": read_s, "spill_s": exposed_s + read_s,
            "reforward_s": forward_s, "stream_s": stream_s, "break_even_gbps_per_node": hi}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gib", type=float, default=4.0, help="size of the spilled cache")
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--dir", default=tempfile.gettempdir())
    p.add_argument("--chunk-tokens", type=int, default=8192)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mfu", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5])
    p.add_argument("--forward-ms", type=float, default=0.0,
                   help="also time the adds behind a stand-in forward of this many ms per chunk: background vs blocking write")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    h, n = args.hidden, args.chunk_tokens
    token_bytes = PackedProxyCache.token_bytes(h, 2)
    chunks = max(1, int(args.gib * GIB // (n * token_bytes)))
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=g).to(torch.bfloat16)
    logp = -torch.rand(n, generator=g)
    adv = torch.where(torch.rand(n, generator=g) > 0.5, 1.0, -1.0)
    buffer = torch.empty(CHUNK_ELEMENTS // h, h, dtype=torch.bfloat16)
    rows = []
    for repeat in range(args.repeats):
        cache = PackedProxyCache(tiers=[CacheTier("disk", int((args.gib + 1) * GIB), args.dir)])
        t0 = time.perf_counter()
        for _ in range(chunks):
            assert cache.add(hidden, logp, adv)
        drop_page_cache(cache)  # includes the fsync: the write has reached the disk
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        nbytes = read_pass(cache, buffer)
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        read_pass(cache, buffer)
        warm_s = time.perf_counter() - t0
        cache.free()
        row = {"repeat": repeat, "gb": nbytes / 1e9, "write_gbps": nbytes / write_s / 1e9,
               "cold_read_gbps": nbytes / cold_s / 1e9, "warm_read_gbps": nbytes / warm_s / 1e9,
               "cold_s_per_gb": cold_s / (nbytes / 1e9), "warm_s_per_gb": warm_s / (nbytes / 1e9)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    overlap = None
    if args.forward_ms > 0:
        overlap = overlapped(hidden, logp, adv, chunks, args.dir, args.forward_ms / 1000, int((args.gib + 1) * GIB))
        print(json.dumps({"overlap": overlap}), flush=True)
    cold = statistics.median(r["cold_read_gbps"] for r in rows)
    write = statistics.median(r["write_gbps"] for r in rows)
    table = [break_even(write, cold, m) for m in args.mfu]
    disk_gb = table[0]["disk_gb_per_node"]
    print(f"\nbreak-even at the 8-GPU example, K = 1: {disk_gb:.0f} GB spilled per node ({EXAMPLE['ranks_per_node']} ranks), "
          f"written once at {write:.2f} GB/s and read {cached_passes(1, disk_tier=True)} times at {cold:.2f} GB/s "
          f"(this disk, cold; medians of {len(rows)} repeats):")
    print("| MFU | one re-forward (s) | streamed: K + 1 re-forwards (s) | spilled: write past the forward + K + 1 reads (s) | "
          "break-even disk bandwidth (GB/s per node) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in table:
        print(f"| {r['mfu']:.0%} | {r['reforward_s']:.0f} | {r['stream_s']:.0f} | {r['spill_s']:.0f} "
              f"({r['write_s']:.0f} s written, {r['exposed_write_s']:.0f} past the forward) | "
              f"{r['break_even_gbps_per_node']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "break_even": table, "example": EXAMPLE, "overlap": overlap,
                                        "hidden": h, "chunk_tokens": n, "dir": args.dir}, indent=1))


if __name__ == "__main__":
    main()
