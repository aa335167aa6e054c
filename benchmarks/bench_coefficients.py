"""Speed and memory of `delta_coefficients` on a paper-sized rollout batch (CPU, float32).

    python benchmarks/bench_coefficients.py [--batch 512 --tokens 1024 --hidden 512 --refine-steps 1]

Reports the time of one call, tokens per second, the time as a multiple of one plain read
pass over the proxy tensor (a matrix-vector product over all B*T rows, the cheapest thing that
touches every element: the method's floor), and the peak extra resident memory of the call as
a fraction of the proxy's size. Each figure is measured in a fresh subprocess so that peaks do
not leak between measurements. Not a test: timings on a shared machine are noisy, so it
reports the median of several repeats and the ratio from the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def make_batch(b: int, t: int, h: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(b, t, h, generator=g)
    group = 16
    rewards = (torch.rand(b, generator=g) < 0.5).float()
    rewards[: b // 4] = 1.0  # a quarter of the groups all correct: zero advantage
    adv = rewards - rewards.reshape(-1, group).mean(1).repeat_interleave(group)
    lengths = torch.randint(t // 4, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None] < lengths[:, None]
    return v, adv, mask


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(args) -> dict:
    from delta_rlvr.core import DeltaConfig, delta_coefficients

    torch.set_num_threads(args.threads)
    v, adv, mask = make_batch(args.batch, args.tokens, args.hidden)
    cfg = DeltaConfig(refine_steps=args.refine_steps)
    if args.what == "memory":
        before = peak_rss_bytes()
        delta_coefficients(v, adv, mask, cfg)
        return {"peak_extra_bytes": peak_rss_bytes() - before, "proxy_bytes": v.numel() * 4}
    v2d = v.reshape(-1, args.hidden)
    u = torch.randn(args.hidden)
    read, call = [], []
    delta_coefficients(v, adv, mask, cfg)  # warm-up
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        v2d @ u
        read.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        delta_coefficients(v, adv, mask, cfg)
        call.append(time.perf_counter() - t0)
    return {"read_pass_s": statistics.median(read), "call_s": statistics.median(call)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--refine-steps", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--what", choices=["all", "time", "memory"], default="all")
    args = p.parse_args()
    if args.what != "all":
        print(json.dumps(measure(args)))
        return
    base = [sys.executable, __file__, *sys.argv[1:]]
    run = lambda what: json.loads(subprocess.run(base + ["--what", what], check=True, capture_output=True, text=True).stdout)
    timing, memory = run("time"), run("memory")
    n = args.batch * args.tokens
    k = args.refine_steps
    report = {
        "shape": [args.batch, args.tokens, args.hidden],
        "refine_steps": k,
        "threads": args.threads,
        "call_s": round(timing["call_s"], 4),
        "tokens_per_s": round(n / timing["call_s"]),
        "read_pass_s": round(timing["read_pass_s"], 4),
        "read_passes": round(timing["call_s"] / timing["read_pass_s"], 2),
        "target_read_passes": 2 * k + 3,
        "peak_extra_mib": round(memory["peak_extra_bytes"] / 2**20, 1),
        "proxy_mib": round(memory["proxy_bytes"] / 2**20, 1),
        "peak_extra_fraction_of_proxy": round(memory["peak_extra_bytes"] / memory["proxy_bytes"], 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
