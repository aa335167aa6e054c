"""Where the packed cache of a verl run lands, computed from the run's own settings.

    python -m delta_rlvr.adapters.verl.plan --responses-per-rank 1024 --max-response-length 20480 \
        --hidden 4096 --cache-mib 32768 --offload-cache --spill-dir /nvme/delta-spill --spill-gib 160

The example launch scripts (examples/verl/) call it before launching and print its line. One
cache per data-parallel rank, that is per Ulysses sequence-parallel group (its SP rank 0 holds
it). Bytes per signed token: ``PackedProxyCache.token_bytes`` (h in bf16, 1 - p and A), which
benchmarks/bench_engine_memory.py measured as the call's extra memory (2.000 x H + 24.1 bytes
per signed token: the cache plus 16 bytes of per-position outputs). The plan is the worst case
unless told otherwise: every response at the maximum length and every token signed (no group
with equal rewards). Tiers fill in order; a micro-batch goes whole into the first tier with
room, so each tier boundary can leave up to one micro-batch unused (``micro_batch_tokens``).

No verl import: the plan runs anywhere (the launch scripts call it before Ray starts).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass

from delta_rlvr.adapters.verl.settings import DeltaSettings
from delta_rlvr.core import DeltaConfig
from delta_rlvr.core.packed import GIB, PackedProxyCache

#: extra bytes per signed token the old-log-prob call holds besides the cache (measured:
#: benchmarks/bench_engine_memory.py, 2.000 x H + 24.1 bytes in all, the cache being 2 H + 8)
MEASURED_EXTRA_BYTES_PER_TOKEN = 16.1
TIER_NAMES = {"device": "gpu", "host": "host", "disk": "disk"}


@dataclass(frozen=True)
class CachePlan:
    responses_per_rank: int
    max_response_tokens: int
    hidden_size: int
    signed_fraction: float
    token_bytes: int
    cache_bytes: int
    placed: dict[str, int]  # bytes per tier name ("gpu", "host", "disk")
    capacity: dict[str, int | None]  # cap per tier name (None: no cap)
    streams: bool
    forwards: int  # delta/forwards of the old-log-prob call

    @property
    def lands_in(self) -> str:
        if self.streams:
            return "stream (every tier full)"
        return " + ".join(name for name, size in self.placed.items() if size) or "nothing (no signed token)"

    def describe(self) -> str:
        tiers = ", ".join(f"{name} {self.placed[name] / GIB:.1f} of "
                          + ("uncapped" if cap is None else f"{cap / GIB:.1f}") + " GiB"
                          for name, cap in self.capacity.items())
        return (f"DelTA cache plan per data-parallel rank (one SP group): {self.responses_per_rank} responses x "
                f"{self.max_response_tokens} tokens x H = {self.hidden_size}, {self.signed_fraction:.0%} signed: "
                f"{self.cache_bytes / 1e9:.1f} GB ({self.cache_bytes / GIB:.1f} GiB) at {self.token_bytes} B/token; "
                f"tiers: {tiers}; lands in {self.lands_in}: delta/forwards = {self.forwards}")


def plan_cache(settings: DeltaSettings, *, responses_per_rank: int, max_response_tokens: int, hidden_size: int,
               itemsize: int = 2, signed_fraction: float = 1.0, micro_batch_tokens: int = 0) -> CachePlan:
    """The cache of one data-parallel rank's old-log-prob call and the tier it lands in.

    Args:
        settings: the run's ``delta`` settings (its tiers: ``DeltaSettings.tiers``; the disk
            tier is planned whether or not ``spill_dir`` exists on this machine).
        responses_per_rank: responses per data-parallel rank in one old-log-prob call
            (train_batch_size x rollout.n / (nodes x GPUs per node / SP size)).
        max_response_tokens: data.max_response_length.
        itemsize: bytes per hidden value in the model's dtype (bf16: 2).
        signed_fraction: share of the response tokens that are signed (A != 0).
        micro_batch_tokens: tokens of one old-log-prob micro-batch (log_prob_max_token_len_per_gpu):
            the room a tier boundary may leave unused.
    """
    if not 0 <= signed_fraction <= 1:
        raise ValueError(f"signed_fraction must be in [0, 1], got {signed_fraction!r}")
    token_bytes = PackedProxyCache.token_bytes(hidden_size, itemsize)
    cache = int(responses_per_rank * max_response_tokens * signed_fraction) * token_bytes
    waste = micro_batch_tokens * token_bytes
    placed: dict[str, int] = {}
    capacity: dict[str, int | None] = {}
    left = cache
    tiers = _tiers(settings)
    for i, (kind, cap) in enumerate(tiers):
        name = TIER_NAMES[kind]
        room = left if cap is None else max(0, cap - (waste if i < len(tiers) - 1 and left > cap else 0))
        take = min(left, room)
        placed[name] = placed.get(name, 0) + take
        capacity[name] = None if cap is None else (capacity.get(name) or 0) + cap
        left -= take
    streams = left > 0
    forwards = settings.config.refine_steps + 2 if streams else 1
    return CachePlan(responses_per_rank, max_response_tokens, hidden_size, signed_fraction, token_bytes, cache, placed,
                     capacity, streams, forwards)


def _tiers(settings: DeltaSettings) -> list[tuple[str, int | None]]:
    """``settings.tiers()`` as (kind, cap) pairs, without requiring ``spill_dir`` to exist here."""
    if settings.spill_dir is not None and not os.path.isdir(settings.spill_dir):
        probe = DeltaSettings.from_dict({**settings.as_dict(), "spill_dir": None})
        tiers = [(t.kind, t.cap_bytes) for t in probe.tiers()]
        return tiers + ([("disk", int(settings.spill_gib * GIB))] if settings.cache_mib is not None else [])
    return [(t.kind, t.cap_bytes) for t in settings.tiers()]


# ------------------------------------------------------------------------------------------------
# Read-back against a re-forward (docs/adapters.md, "verl: passes and memory").


def forward_flops_per_token(params: float, layers: int, hidden_size: int, sequence_tokens: int) -> float:
    """Forward FLOPs per token of a dense decoder: 2 x params for the matmuls, plus causal
    attention, 4 x context x H per layer averaged over the sequence (context = L / 2)."""
    return 2 * params + layers * 4 * (sequence_tokens / 2) * hidden_size


def reforward_seconds(tokens: float, flops_per_token: float, gpus: int, peak_flops: float, mfu: float) -> float:
    """Seconds for ``gpus`` GPUs at ``mfu`` of ``peak_flops`` to forward ``tokens`` tokens once."""
    return tokens * flops_per_token / (gpus * peak_flops * mfu)


def cached_passes(refine_steps: int, *, disk_tier: bool) -> int:
    """Passes the estimator reads the cache back: K refinements and the final pass, plus, without a
    disk tier, the moments and gamma^(0) passes (with one, pass 0 runs in the forward)."""
    return refine_steps + (1 if disk_tier else 3)


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delta_rlvr.adapters.verl.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses-per-rank", type=int, required=True)
    parser.add_argument("--max-response-length", type=int, required=True)
    parser.add_argument("--hidden", type=int, help="hidden size H (default: read from --model's config)")
    parser.add_argument("--model", help="model path or name whose config gives hidden_size")
    parser.add_argument("--cache-mib", type=float, default=8192.0)
    parser.add_argument("--offload-cache", action="store_true")
    parser.add_argument("--gpu-cache-mib", type=float, default=0.0)
    parser.add_argument("--spill-dir")
    parser.add_argument("--spill-gib", type=float, default=64.0)
    parser.add_argument("--refine-steps", type=int, default=1)
    parser.add_argument("--signed-fraction", type=float, default=1.0)
    parser.add_argument("--micro-batch-tokens", type=int, default=0)
    parser.add_argument("--ranks-per-node", type=int, default=1, help="data-parallel ranks (SP groups) per node")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)
    hidden = args.hidden
    if hidden is None:
        hidden = _hidden_size(args.model)
        if hidden is None:
            print(f"DelTA cache plan: cannot read hidden_size from the config of {args.model!r}; set HIDDEN=<H> "
                  "(or pass --hidden) to see where the cache lands", file=sys.stderr)
            return 0  # informative only: never stops a launch
    try:
        settings = DeltaSettings(enable=True, cache_mib=args.cache_mib, offload_cache=args.offload_cache,
                                 gpu_cache_mib=args.gpu_cache_mib, spill_dir=args.spill_dir, spill_gib=args.spill_gib,
                                 config=DeltaConfig(refine_steps=args.refine_steps))
        plan = plan_cache(settings, responses_per_rank=args.responses_per_rank, max_response_tokens=args.max_response_length,
                          hidden_size=hidden, signed_fraction=args.signed_fraction, micro_batch_tokens=args.micro_batch_tokens)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(asdict(plan)))
        return 0
    print(plan.describe(), flush=True)
    disk = plan.placed.get("disk", 0)
    if disk and args.spill_dir:
        need = disk * args.ranks_per_node
        where = args.spill_dir if os.path.isdir(args.spill_dir) else os.path.dirname(os.path.abspath(args.spill_dir))
        free = shutil.disk_usage(where).free if os.path.isdir(where) else None
        note = "" if free is None else f"; {free / GIB:.0f} GiB free there on this node" + (
            " (NOT ENOUGH: the batch would stream)" if free < need else "")
        print(f"DelTA cache plan: the spill tier needs up to {need / GIB:.0f} GiB of local disk per node in "
              f"{args.spill_dir} ({args.ranks_per_node} data-parallel ranks per node){note}", flush=True)
    return 0


def _hidden_size(model: str | None) -> int | None:
    """hidden_size from a local model folder's config.json, or from the Hugging Face cache
    (``local_files_only``: the launch never waits on the network for this)."""
    if not model:
        return None
    try:
        if os.path.isdir(model):
            with open(os.path.join(model, "config.json")) as f:
                config = json.load(f)
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model, local_files_only=True).to_dict()
    except Exception:  # noqa: BLE001 - any failure to read the config just skips the plan
        return None
    config = config.get("text_config") or config
    return config.get("hidden_size")


if __name__ == "__main__":
    raise SystemExit(main())
