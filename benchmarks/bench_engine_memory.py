"""Peak extra memory of the verl adapter's DelTA pass, per token, as H and T grow (CPU).

    python benchmarks/bench_engine_memory.py [--hidden 64 256 1024] [--lengths 256 1024 2048]
                                             [--responses 6] [--out results.json]

For each hidden size H a one-layer Qwen3 is built from a config in bfloat16 (the dtype FSDP's
mixed precision computes in, so the captured hidden states are bf16), and a rollout of B
responses of T tokens (every token valid; advantages +1, -1, 0 in thirds, so N_signed = 2/3 of
the response tokens) goes through the worker's old-log-prob call, verl's own code on CPU
(tests/adapters/verl_cpu.py: ``TrainingWorker.infer_batch``, the engine's input/output
functions, remove-padding, one sequence per micro-batch):

- stock:    ``ActorRolloutRefWorker.compute_log_prob``,
- cached:   ``DeltaActorRolloutRefWorker.compute_log_prob`` (default: the packed cache),
- streamed: the same with ``delta.cache_mib=0`` (K + 1 re-forwards, no cache).

Memory is the peak of the bytes of live CPU tensors allocated inside the call
(tests/adapters/trl_memory.py, shared with the TRL benchmark; allocator caching is not seen).
"extra" = peak(variant) - peak(stock). Reported per signed token and per signed token x H,
next to the cache's own size N_signed x (H x 2 + 8) bytes, and fitted as
extra = a x N_signed x H + b x N + c x H^2 over the grid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "adapters"))

from trl_memory import LiveTensorBytes  # noqa: E402


def rollout(tokenizer_vocab: int, b: int, t: int, prompt: int = 8, calculate_entropy: bool = True):
    """A verl rollout batch of b random responses of t tokens after ``prompt`` random prompt
    tokens, advantages +1, -1, 0 in turn, in verl's no-padding layout (also used by
    bench_verl_gpu_memory.py)."""
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    from delta_rlvr.adapters.verl.actor_pass import ADVANTAGE_KEY

    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(4, tokenizer_vocab, (b, prompt), generator=g)
    responses = torch.randint(4, tokenizer_vocab, (b, t), generator=g)
    attention = torch.ones(b, prompt + t, dtype=torch.int64)
    td = TensorDict({
        "prompts": prompts, "responses": responses, "input_ids": torch.cat([prompts, responses], 1),
        "attention_mask": attention, "position_ids": torch.arange(prompt + t).expand(b, -1).clone(),
        "response_mask": torch.ones(b, t, dtype=torch.int64),
        ADVANTAGE_KEY: torch.tensor([1.0, -1.0, 0.0] * (b // 3) + [1.0] * (b % 3)),
    }, batch_size=[b])
    td = left_right_2_no_padding(td)
    tu.assign_non_tensor(td, temperature=1.0, calculate_entropy=calculate_entropy, compute_loss=False)
    return td


def measure(hidden: int, length: int, responses: int) -> dict:
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine_workers import ActorRolloutRefWorker
    from verl_cpu import cpu_actor_worker

    from delta_rlvr.adapters.verl.actor_pass import ADVANTAGE_KEY, SETTINGS_KEY
    from delta_rlvr.adapters.verl.settings import DeltaSettings
    from delta_rlvr.adapters.verl.worker import METRICS_KEY, DeltaActorRolloutRefWorker
    from delta_rlvr.models import TinyModelConfig, build_char_tokenizer, build_tiny_model

    tok = build_char_tokenizer()
    cfg = TinyModelConfig(num_layers=1, hidden_size=hidden, num_heads=4, num_kv_heads=2, intermediate_size=2 * hidden,
                          max_position_embeddings=length + 16, seed=0)
    model = build_tiny_model(tok, cfg).to(torch.bfloat16)
    td = rollout(len(tok), responses, length)
    signed = int((td[ADVANTAGE_KEY] != 0).sum()) * length
    out = {"hidden": hidden, "length": length, "responses": responses, "signed_tokens": signed,
           "cache_bytes_model": signed * (hidden * 2 + 8)}
    variants = {"stock": (ActorRolloutRefWorker, None), "cached": (DeltaActorRolloutRefWorker, {"enable": True}),
                "streamed": (DeltaActorRolloutRefWorker, {"enable": True, "cache_mib": 0})}
    for name, (cls, settings) in variants.items():
        worker = cpu_actor_worker(cls, model, remove_padding=True, micro_batch_size=1)
        data = td.copy()
        if settings is not None:
            tu.assign_non_tensor(data, **{SETTINGS_KEY: DeltaSettings.from_dict(settings).as_dict()})
        with torch.no_grad(), LiveTensorBytes() as live:
            result = cls.compute_log_prob(worker, data)
        out[f"peak_{name}"] = live.peak
        out[f"forwards_{name}"] = worker.actor.engine.forwards
        if settings is not None:
            out[f"cache_mib_{name}"] = tu.get(result, METRICS_KEY)["delta/cache_mib"]
        del result
    for name in ("cached", "streamed"):
        extra = out[f"peak_{name}"] - out["peak_stock"]
        out[f"extra_{name}"] = extra
        out[f"extra_{name}_per_signed_token_h"] = extra / (signed * hidden)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2048])
    p.add_argument("--responses", type=int, default=6)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(2)
    rows = []
    for h in args.hidden:
        for t in args.lengths:
            row = measure(h, t, args.responses)
            rows.append(row)
            print(f"H={h:5d} T={t:5d} N_signed={row['signed_tokens']:6d}  cache(model)={row['cache_bytes_model'] / 2**20:8.2f} MiB"
                  f"  extra cached={row['extra_cached'] / 2**20:8.2f} MiB ({row['extra_cached_per_signed_token_h']:.3f} B/(tok*H))"
                  f"  streamed={row['extra_streamed'] / 2**20:8.2f} MiB ({row['extra_streamed_per_signed_token_h']:.3f})"
                  f"  forwards {row['forwards_stock']}/{row['forwards_cached']}/{row['forwards_streamed']}", flush=True)
    # extra = a N_signed H + b N_signed + c H^2 (least squares), for each variant
    fit = {}
    for name in ("cached", "streamed"):
        x = torch.tensor([[r["signed_tokens"] * r["hidden"], r["signed_tokens"], r["hidden"] ** 2] for r in rows],
                         dtype=torch.float64)
        y = torch.tensor([r[f"extra_{name}"] for r in rows], dtype=torch.float64)
        coef = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1).tolist()
        fit[name] = {"bytes_per_signed_token_x_h": coef[0], "bytes_per_signed_token": coef[1], "bytes_per_h2": coef[2]}
        print(f"fit {name}: extra = {coef[0]:.3f} x N_signed x H + {coef[1]:.1f} x N_signed + {coef[2]:.2f} x H^2 bytes")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "fit": fit}, indent=1))


if __name__ == "__main__":
    main()
