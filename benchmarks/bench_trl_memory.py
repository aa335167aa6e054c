"""Peak extra memory of DeltaGRPOTrainer's DelTA pass, per token, as H and T grow (CPU).

    python benchmarks/bench_trl_memory.py [--hidden 64 128 256] [--lengths 64 128 256]
                                          [--responses 16] [--out results.json] [--old OLD_TRL_PY]

For each hidden size H a one-layer Qwen3 is built from a config in bfloat16 (the dtype a GPU
run trains in), and a synthetic generation batch of B responses of T completion tokens (every
token valid, advantages +1 / -1 / 0 in thirds, so N_signed = 2/3 of the tokens) is scored:

- stock:   TRL's own old-log-prob pass over the batch (`_get_per_token_logps_and_entropies`),
- forward: the adapter's own pass (aligned gradient accumulation: TRL runs none),
- capture: TRL's pass with the adapter capturing the hidden states, then the DelTA pass on them
           (vLLM IS correction or misaligned accumulation: no extra forward),
- capped:  the same with ``delta_cache_mib`` set to the least cap the capture fits (capture plus
           one chunk to spare), to check the peak against the cap.

Memory is the peak of the bytes of live CPU tensors allocated inside the measured block
(tests/adapters/trl_memory.py: a dispatch mode that tracks every new storage until it is
freed; allocator caching is not included). "extra" = peak(DelTA variant) - peak(stock). The
constants are fitted as extra = a x N_signed x H + b x H^2 (least squares over the grid) and
printed with the cache's own bytes (N_signed x (H x 2 + 8)), the capture's (N_valid x (H x 2 + 8),
as the capture counts them) and its largest chunk (one micro-batch). Issue 27's check: extra of
the capture <= capture + one chunk (+ the passes' own transient), and <= the cap when set.

``--old`` takes a copy of the previous adapter (e.g. ``git show af53f73:src/delta_rlvr/adapters/trl.py``)
and measures its pass the same way, for the comparison in docs/adapters.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "adapters"))

from trl_memory import LiveTensorBytes  # noqa: E402


def build_trainer(cls, config_cls, hidden: int, tokenizer, out: str):
    import datasets

    from delta_rlvr.models import TinyModelConfig, build_tiny_model

    cfg = TinyModelConfig(num_layers=1, hidden_size=hidden, num_heads=4, num_kv_heads=2, intermediate_size=2 * hidden, seed=0)
    model = build_tiny_model(tokenizer, cfg).to(torch.bfloat16)
    data = datasets.Dataset.from_list([{"prompt": "1+1="}] * 8)
    args = config_cls(output_dir=out, per_device_train_batch_size=8, num_generations=4, max_completion_length=8,
                      max_steps=1, use_cpu=True, bf16=False, report_to=[], save_strategy="no", loss_type="dapo",
                      beta=0.0, disable_tqdm=True, logging_steps=1)
    return cls(model=model, reward_funcs=[lambda completions, **_: [0.0] * len(completions)], args=args,
               train_dataset=data, processing_class=tokenizer)


def synthetic_batch(b: int, t: int, vocab: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    p = 8
    adv = torch.tensor([1.0, -1.0, 0.0]).repeat(b // 3 + 1)[:b]
    return {
        "prompt_ids": torch.randint(3, vocab, (b, p), generator=g),
        "prompt_mask": torch.ones(b, p, dtype=torch.long),
        "completion_ids": torch.randint(3, vocab, (b, t), generator=g),
        "completion_mask": torch.ones(b, t, dtype=torch.long),
        "advantages": adv,
    }


def stock_pass(trainer, batch):
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        return trainer._get_per_token_logps_and_entropies(trainer.model, ids, att, batch["completion_ids"].shape[1],
                                                          batch_size=trainer.args.per_device_train_batch_size)[0]


def measure(trainer, batch, variant: str, base_cls, cap_bytes=None) -> int:
    from delta_rlvr.adapters.trl import _Capture

    with LiveTensorBytes() as m:
        if variant == "stock":
            base_cls._get_per_token_logps_and_entropies.__get__(trainer)  # same method for both
            ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
            att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
            with torch.no_grad():
                base_cls._get_per_token_logps_and_entropies(trainer, trainer.model, ids, att,
                                                            batch["completion_ids"].shape[1],
                                                            batch_size=trainer.args.per_device_train_batch_size)
        elif variant == "forward":
            trainer._delta_capture = None
            trainer._delta_coefficients(batch)
        elif variant in ("capture", "capped"):
            capture = _Capture(cap_bytes, "scoring")
            trainer._delta_capture = capture
            logps = stock_pass(trainer, batch)
            trainer._delta_coefficients(dict(batch, old_per_token_logps=logps))
            trainer._delta_capture = None
            trainer.last_capture = capture
        else:  # old adapter
            trainer._delta_coefficients(batch)
    return m.peak


def passes_transient(h: int, n: int) -> dict:
    """Peak bytes beyond the cache while every DelTA pass runs from a filled packed cache of n
    bf16 rows (the part of the pass that is not the cache: one float32 chunk of v and the
    estimator's per-side float64 statistics, sum v v^T among them: O(H^2))."""
    from delta_rlvr.core import DeltaConfig, DeltaStream
    from delta_rlvr.core.packed import PackedProxyCache

    g = torch.Generator().manual_seed(h)
    hidden = (torch.randn(n, h, generator=g) + 1).to(torch.bfloat16)
    logp = -torch.rand(n, generator=g)
    adv = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)
    cache = PackedProxyCache()
    cache.add(hidden, logp, adv)
    with LiveTensorBytes() as m:
        cache.run(DeltaStream(DeltaConfig()))
    return {"H": h, "n": n, "cache_bytes": cache.nbytes, "passes_peak_beyond_cache": m.peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--responses", type=int, default=16)
    p.add_argument("--old", help="path of a copy of the previous adapter module, to measure it too")
    p.add_argument("--pass-hidden", type=int, nargs="+", default=[256, 512, 1024, 2048],
                   help="H of the cached-pass transient measurement (core objects only, cheap)")
    p.add_argument("--cap-mib", type=float, nargs="*", default=[],
                   help="also measure the capture path with these delta_cache_mib values")
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(1)
    from trl import GRPOTrainer

    from delta_rlvr.adapters.trl import DeltaGRPOConfig, DeltaGRPOTrainer
    from delta_rlvr.models import build_char_tokenizer

    old = None
    if args.old:
        spec = importlib.util.spec_from_file_location("old_trl_adapter", args.old)
        old = importlib.util.module_from_spec(spec)
        sys.modules["old_trl_adapter"] = old
        spec.loader.exec_module(old)
    tokenizer = build_char_tokenizer()
    rows = []
    tmp = tempfile.mkdtemp()
    for h in args.hidden:
        trainer = build_trainer(DeltaGRPOTrainer, DeltaGRPOConfig, h, tokenizer, tmp)
        old_trainer = None if old is None else build_trainer(old.DeltaGRPOTrainer, old.DeltaGRPOConfig, h, tokenizer, tmp)
        for t in args.lengths:
            batch = synthetic_batch(args.responses, t, len(tokenizer))
            n_signed = int((batch["advantages"] != 0).sum()) * t
            row = {"H": h, "T": t, "B": args.responses, "N_signed": n_signed, "cache_bytes": n_signed * (h * 2 + 8)}
            stock = measure(trainer, batch, "stock", GRPOTrainer)
            for variant in ("forward", "capture"):
                row[f"extra_{variant}"] = measure(trainer, batch, variant, GRPOTrainer) - stock
            capture = trainer.last_capture
            assert trainer.delta_pass_info["captured"], "the capture was not used"
            row["capture_bytes"], row["chunk_bytes"] = capture.needed_bytes, capture.largest
            row["capture_peak_bytes"] = trainer.delta_pass_info["capture_peak_bytes"]
            cap = capture.needed_bytes + capture.largest  # the least cap the capture fits
            row["cap_bytes"] = cap
            row["extra_capped"] = measure(trainer, batch, "capped", GRPOTrainer, cap) - stock
            assert trainer.delta_pass_info["captured"] and not trainer.delta_pass_info["streamed"]
            row["capture_within_capture_plus_chunk"] = row["extra_capture"] <= cap
            row["capped_within_cap"] = row["extra_capped"] <= cap
            for mib in args.cap_mib:  # a user's cap: the capture fits it or DelTA forwards (and maybe streams)
                extra = measure(trainer, batch, "capped", GRPOTrainer, int(mib * 2**20)) - stock
                info = trainer.delta_pass_info
                row[f"cap_{mib}MiB"] = {"extra": extra, "within_cap": extra <= mib * 2**20, "captured": info["captured"],
                                        "streamed": info["streamed"], "forwards": info["forwards"]}
            if old_trainer is not None:
                row["extra_old"] = measure(old_trainer, batch, "old", GRPOTrainer) - stock
            row["stock_peak"] = stock
            rows.append(row)
            print(json.dumps(row), flush=True)
    fits = {}
    for key in ["extra_forward", "extra_capture"] + (["extra_old"] if old is not None else []):
        x = torch.tensor([[r["N_signed"] * r["H"], r["H"] ** 2] for r in rows], dtype=torch.float64)
        y = torch.tensor([r[key] for r in rows], dtype=torch.float64)
        coef = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)
        fits[key] = {"bytes_per_signed_token_per_H": float(coef[0]), "bytes_per_H2": float(coef[1]),
                     "max_relative_residual": float(((x @ coef - y).abs() / y.clamp_min(1)).max())}
    print(json.dumps({"fit: extra = a N_signed H + b H^2": fits}, indent=1))
    transients = [passes_transient(h, 4096) for h in args.pass_hidden]
    for row in transients:
        print(json.dumps(row), flush=True)
    x = torch.tensor([[r["H"] ** 2, r["H"]] for r in transients], dtype=torch.float64)
    y = torch.tensor([r["passes_peak_beyond_cache"] for r in transients], dtype=torch.float64)
    coef = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)
    fits["passes"] = {"bytes_per_H2": float(coef[0]), "bytes_per_H": float(coef[1]),
                      "max_relative_residual": float(((x @ coef - y).abs() / y).max())}
    print(json.dumps({"fit: passes beyond cache = b H^2 + c H (n = 4096 rows)": fits["passes"]}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "fits": fits, "passes": transients}, indent=1))


if __name__ == "__main__":
    main()
