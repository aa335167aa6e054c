"""GPU memory of the verl adapter's old-log-prob call, DelTA minus stock, and its forwards.

    python benchmarks/bench_verl_gpu_memory.py --device cuda [--hidden 1024] [--layers 8] [--vocab 151936]
        [--length 8192] [--responses 6] [--out results.json]
    python benchmarks/bench_verl_gpu_memory.py --device cpu --hidden 64 --layers 1 --vocab 512 --length 64
        # the same code path on CPU, without memory numbers (a dry run of the GPU check)

A Qwen3 built from a config (bf16 weights; verl's engine runs the forward under
``torch.autocast(bf16)``), B responses of T random tokens after a 64-token prompt (advantages +1,
-1, 0 in thirds: N_signed = 2/3 of the response tokens), through verl's own code
(tests/adapters/verl_cpu.py `DeviceEngine`: ``ActorRolloutRefWorker.compute_log_prob`` ->
``TrainingWorker.infer_batch`` -> ``BaseEngine.infer_batch`` -> ``FSDPEngine.forward_backward_batch``
-> ``FSDPEngineWithLMHead.forward_step``, remove-padding, one sequence per micro-batch, a
one-process group; the module is not FSDP-wrapped). Variants:

- stock:         verl's ``ActorRolloutRefWorker.compute_log_prob``;
- cached_gpu:    DelTA, the packed cache on the GPU (the default tier);
- cached_host:   DelTA, ``delta.offload_cache=true`` (pinned host memory);
- spilled:       DelTA, ``delta.cache_mib=0`` with ``delta.spill_dir`` (the memory-mapped file tier);
- streamed:      DelTA, ``delta.cache_mib=0`` (K + 1 re-forwards).

For each: ``torch.cuda.max_memory_allocated()`` during the call minus ``memory_allocated()`` before
it, that minus stock's, the model forwards (a hook) and ``delta/forwards`` / ``delta/cache_gib_*``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "adapters"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_engine_memory import rollout  # noqa: E402  (the same verl rollout batch)


def build_model(hidden: int, layers: int, vocab: int, length: int, device: str):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    heads = max(1, hidden // 128)
    config = Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), head_dim=hidden // heads,
                         max_position_embeddings=length + 128, tie_word_embeddings=False)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return Qwen3ForCausalLM(config).to(device=device, dtype=torch.bfloat16).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--length", type=int, default=8192)
    p.add_argument("--responses", type=int, default=6)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device; use --device cpu for a dry run")

    from verl.utils import tensordict_utils as tu
    from verl.workers.engine_workers import ActorRolloutRefWorker
    from verl_cpu import DeviceEngine, cpu_actor_worker, one_process_group, verl_on_cpu

    from delta_rlvr.adapters.verl.actor_pass import ADVANTAGE_KEY, SETTINGS_KEY
    from delta_rlvr.adapters.verl.settings import DeltaSettings
    from delta_rlvr.adapters.verl.worker import METRICS_KEY, DeltaActorRolloutRefWorker

    if cuda:
        torch.cuda.set_device(0)
    model = build_model(args.hidden, args.layers, args.vocab, args.length, args.device)
    td = rollout(args.vocab, args.responses, args.length, prompt=64, calculate_entropy=False)
    signed = int((td[ADVANTAGE_KEY] != 0).sum()) * args.length
    out = {"device": torch.cuda.get_device_name() if cuda else "cpu", "hidden": args.hidden, "layers": args.layers,
           "vocab": args.vocab, "length": args.length, "responses": args.responses, "signed_tokens": signed,
           "cache_bytes_model": signed * (args.hidden * 2 + 8)}
    spill = tempfile.mkdtemp(prefix="delta-spill-")
    variants = {"stock": (ActorRolloutRefWorker, None),
                "cached_gpu": (DeltaActorRolloutRefWorker, {"enable": True, "cache_mib": None}),
                "cached_host": (DeltaActorRolloutRefWorker, {"enable": True, "cache_mib": None, "offload_cache": True}),
                "spilled": (DeltaActorRolloutRefWorker, {"enable": True, "cache_mib": 0, "spill_dir": spill, "spill_gib": 64}),
                "streamed": (DeltaActorRolloutRefWorker, {"enable": True, "cache_mib": 0})}
    init = tempfile.mktemp(prefix="delta-pg-")
    context = one_process_group(init, "nccl") if cuda else verl_on_cpu(init)
    with context:
        for name, (cls, settings) in variants.items():
            worker = cpu_actor_worker(cls, model, engine_cls=DeviceEngine, remove_padding=True, micro_batch_size=1,
                                      autocast_dtype=torch.bfloat16)
            data = td.copy()
            if settings is not None:
                tu.assign_non_tensor(data, **{SETTINGS_KEY: DeltaSettings.from_dict(settings).as_dict()})
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            result = cls.compute_log_prob(worker, data)  # verl's infer_batch runs under torch.no_grad
            if cuda:
                torch.cuda.synchronize()
                out[f"peak_bytes_{name}"] = torch.cuda.max_memory_allocated() - base
            out[f"model_forwards_{name}"] = worker.actor.engine.forwards
            if settings is not None:
                metrics = tu.get(result, METRICS_KEY)
                out[f"metrics_{name}"] = {k: v for k, v in metrics.items() if k in (
                    "delta/forwards", "delta/cache_mib", "delta/cache_gib_gpu", "delta/cache_gib_host", "delta/cache_gib_disk")}
            del result
            print(json.dumps({k: v for k, v in out.items() if name in k}), flush=True)
    if cuda:
        for name in variants:
            if name != "stock":
                extra = out[f"peak_bytes_{name}"] - out["peak_bytes_stock"]
                out[f"extra_bytes_{name}"] = extra
                out[f"extra_{name}_per_signed_token"] = extra / signed
        print(json.dumps({k: v for k, v in out.items() if k.startswith("extra")}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
