"""Step time of DeltaGRPOTrainer against stock TRL GRPOTrainer on the same generation batches.

    python benchmarks/bench_trl_overhead.py [--hidden 128] [--layers 2] [--completion-length 32]
        [--batches 2] [--repeats 5] [--synthetic] [--full-step] [--device cpu|cuda] [--bf16] [--out results.json]

--full-step (the aligned mode as a user runs it: num_iterations = 1, accumulation aligned with
generation, transformers generation, so TRL runs no old-log-prob forward): each variant runs its
whole step, `_generate_and_score_completions` (generation with the same seed, so the same
tokens; the rewards; for DeltaGRPOTrainer the capture of the hidden states from generation and
the DelTA pass) then the learning below, alternately (stock, delta, then delta, stock, ...) from
the same starting weights. Reported: the median step per variant and their ratio, in wall time
and in this process's CPU time (less moved by other jobs on a shared machine), each with a 95%
bootstrap interval over the measurement pairs (single steps vary by +-20% on a shared 2-core
machine: use --repeats 40 or more to resolve a few percent), and the
``delta/forwards`` of the DelTA passes (0: no forward of DelTA's own).

Without --full-step:
Generation batches are made once (TRL's own `_generate_and_score_completions` on the stock
trainer, timed once: the shared rollout; or, with --synthetic, random token batches of exactly
--completion-length tokens with group advantages, as on a GPU check without generation).
Then for each repetition and each batch, the two variants run alternately (stock, delta, then
delta, stock, ...) from the same starting weights: stock = TRL's loss, backward and an AdamW
step on each of the `steps_per_generation` slices; delta = the DelTA pass
(`_delta_coefficients`: one no-grad forward plus the cached passes) then the same steps with
A x coef. The first repetition is warm-up. Reported: median learning time per variant, their
ratio, the whole-step ratio with the rollout time added to both, and on CUDA the peak memory
(max_memory_allocated) of each variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch


def build(cls, config_cls, model, tokenizer, args, out, device):
    import datasets

    from delta_rlvr.data import arithmetic_dataset, extract_arithmetic_answer

    def has_answer(completions, **_):
        return [0.0 if extract_arithmetic_answer(c) is None else 1.0 for c in completions]

    rows = arithmetic_dataset(64)
    data = datasets.Dataset.from_list([{"prompt": r.question} for r in rows])
    config = config_cls(output_dir=out, per_device_train_batch_size=args.micro_batch, num_generations=4,
                        max_completion_length=args.completion_length, steps_per_generation=args.steps_per_generation,
                        gradient_accumulation_steps=args.steps_per_generation, max_steps=1, learning_rate=1e-5,
                        loss_type="dapo", beta=0.0, use_cpu=device == "cpu", bf16=args.bf16, report_to=[],
                        save_strategy="no", disable_tqdm=True, seed=0)
    trainer = cls(model=model, reward_funcs=[has_answer], args=config, train_dataset=data, processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = args.steps_per_generation
    return trainer


def synthetic(trainer, n: int, t: int, vocab: int, seed: int, device):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 2, (n,), generator=g).float()
    grouped = rewards.view(-1, 4)
    adv = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).view(-1)
    p = 16
    batch = {
        "prompt_ids": torch.randint(3, vocab, (n, p), generator=g),
        "prompt_mask": torch.ones(n, p, dtype=torch.long),
        "completion_ids": torch.randint(3, vocab, (n, t), generator=g),
        "completion_mask": torch.ones(n, t, dtype=torch.long),
        "advantages": adv,
        "num_items_in_batch": torch.tensor(n * t),
    }
    return {k: v.to(device) for k, v in batch.items()}


def learn(trainer, batch, optimizer, delta: bool):
    from trl.trainer.utils import split_tensor_dict

    if delta:
        coef, _ = trainer._delta_coefficients(batch)
        batch = dict(batch, advantages=batch["advantages"].unsqueeze(1) * coef)
    trainer.model.train()
    for part in split_tensor_dict(batch, trainer.args.steps_per_generation):
        with trainer.accelerator.autocast():
            loss = trainer.compute_loss(trainer.model, part)
        loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def full_step(trainer, inputs, optimizer, seed: int):
    """One whole training step: rollout and scoring (with DelTA's pass for DeltaGRPOTrainer), then learning."""
    torch.manual_seed(seed)  # the same sampled tokens for both variants
    trainer.model.train()
    batch = trainer._generate_and_score_completions(inputs)
    learn(trainer, batch, optimizer, delta=False)  # DeltaGRPOTrainer's advantages are A x coef already
    return batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--completion-length", type=int, default=32)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--steps-per-generation", type=int, default=2)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="measured repetitions (+1 warm-up)")
    p.add_argument("--synthetic", action="store_true", help="random token batches instead of TRL generation")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--full-step", action="store_true", help="time generation + scoring + DelTA + learning per variant")
    p.add_argument("--forward-variant", action="store_true",
                   help="with --full-step, also time DelTA with its own scoring forward (the path before issue 27)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from trl import GRPOConfig, GRPOTrainer

    from delta_rlvr.adapters.trl import DeltaGRPOConfig, DeltaGRPOTrainer
    from delta_rlvr.models import TinyModelConfig, build_char_tokenizer, build_tiny_model

    tokenizer = build_char_tokenizer()
    heads = max(4, args.hidden // 128)
    cfg = TinyModelConfig(num_layers=args.layers, hidden_size=args.hidden, num_heads=heads, num_kv_heads=max(1, heads // 4),
                          intermediate_size=3 * args.hidden, seed=0)
    device = torch.device(args.device)
    model = build_tiny_model(tokenizer, cfg).to(device)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = tempfile.mkdtemp()
    stock = build(GRPOTrainer, GRPOConfig, model, tokenizer, args, out, args.device)
    delta = build(DeltaGRPOTrainer, DeltaGRPOConfig, model, tokenizer, args, out, args.device)  # same weights
    n = args.micro_batch * args.steps_per_generation
    if args.full_step:
        run_full_steps(args, stock, delta, model, start, device)
        return
    batches, rollout_s = [], []
    loader = iter(stock.get_train_dataloader())
    for i in range(args.batches):
        t0 = time.perf_counter()
        if args.synthetic:
            batches.append(synthetic(stock, n, args.completion_length, len(tokenizer), i, device))
        else:
            stock.model.train()  # TRL's training-mode generation and scoring
            batches.append(stock._generate_and_score_completions(next(loader)))
        rollout_s.append(time.perf_counter() - t0)
    times = {"stock": [], "delta": []}
    peaks = {"stock": 0, "delta": 0}
    for rep in range(args.repeats + 1):
        order = ("stock", "delta") if rep % 2 == 0 else ("delta", "stock")
        for batch in batches:
            for name in order:
                model.load_state_dict(start)
                trainer = stock if name == "stock" else delta
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                learn(trainer, batch, optimizer, name == "delta")
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated())
                if rep > 0:
                    times[name].append(time.perf_counter() - t0)
                del optimizer
    med = {k: statistics.median(v) for k, v in times.items()}
    rollout = statistics.median(rollout_s) if not args.synthetic else 0.0
    tokens = [int(b["completion_mask"].sum()) for b in batches]
    result = {
        "hidden": args.hidden, "layers": args.layers, "completion_length": args.completion_length,
        "responses_per_batch": n, "valid_tokens_per_batch": tokens, "device": args.device, "bf16": args.bf16,
        "synthetic": args.synthetic, "median_learning_s": med, "learning_ratio_delta_over_stock": med["delta"] / med["stock"],
        "rollout_s": rollout, "step_ratio_with_rollout": (med["delta"] + rollout) / (med["stock"] + rollout),
        "measurements_per_variant": len(times["stock"]),
        "peak_memory_bytes": peaks if device.type == "cuda" else None,
    }
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


def bootstrap_ratio_ci(delta: list[float], stock: list[float], draws: int = 2000) -> list[float]:
    """95% bootstrap interval (percentile, scipy) of median(delta) / median(stock), resampling the
    measurement pairs (each pair ran back to back, so slow spells of a shared machine stay paired)."""
    from scipy.stats import bootstrap

    ci = bootstrap((delta, stock), lambda d, s: statistics.median(d) / statistics.median(s), paired=True,
                   vectorized=False, n_resamples=draws, method="percentile", random_state=0).confidence_interval
    return [float(ci.low), float(ci.high)]


def run_full_steps(args, stock, delta, model, start, device) -> None:
    from delta_rlvr.adapters.trl import DeltaGRPOConfig, DeltaGRPOTrainer

    class ScoringForward(DeltaGRPOTrainer):
        """The path before issue 27: DelTA's own no-grad forward instead of generation's rows."""

        def _generation_capture_blocker(self):
            return "bench_trl_overhead: the scoring-forward variant"

    trainers = {"stock": stock, "delta": delta}
    if args.forward_variant:
        trainers["delta_forward"] = build(ScoringForward, DeltaGRPOConfig, model, delta.processing_class, args,
                                          tempfile.mkdtemp(), args.device)
    loader = iter(stock.get_train_dataloader())
    prompts = [next(loader) for _ in range(args.batches)]  # the same prompts for every variant
    times = {name: [] for name in trainers}
    cpu = {name: [] for name in trainers}  # this process's CPU time: less moved by other jobs on a shared machine
    forwards, tokens = [], []
    for rep in range(args.repeats + 1):
        order = list(trainers) if rep % 2 == 0 else list(reversed(trainers))
        for i, inputs in enumerate(prompts):
            for name in order:
                model.load_state_dict(start)
                trainer = trainers[name]
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0, c0 = time.perf_counter(), time.process_time()
                batch = full_step(trainer, inputs, optimizer, seed=1000 * rep + i)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if rep > 0:
                    times[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.process_time() - c0)
                if name == "delta":
                    info = delta.delta_pass_info
                    forwards.append(info["forwards"] / max(info["micro_batches"], 1))
                    tokens.append(int(batch["completion_mask"].sum()))
                del optimizer
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    result = {
        "mode": "full step, aligned (transformers generation, no old-log-prob forward in TRL)",
        "hidden": args.hidden, "layers": args.layers, "completion_length": args.completion_length,
        "responses_per_batch": args.micro_batch * args.steps_per_generation, "valid_tokens_per_batch": tokens,
        "device": args.device, "bf16": args.bf16, "threads": args.threads, "median_step_s": med,
        "step_ratio_delta_over_stock": med["delta"] / med["stock"],
        "step_ratio_delta_forward_over_stock": med["delta_forward"] / med["stock"] if "delta_forward" in med else None,
        "median_step_cpu_s": med_cpu, "cpu_ratio_delta_over_stock": med_cpu["delta"] / med_cpu["stock"],
        "step_ratio_95ci": bootstrap_ratio_ci(times["delta"], times["stock"]),
        "cpu_ratio_95ci": bootstrap_ratio_ci(cpu["delta"], cpu["stock"]),
        "per_measurement_ratios": [d / s for d, s in zip(times["delta"], times["stock"])],
        "delta_forwards_per_micro_batch": sorted(set(forwards)), "measurements_per_variant": len(times["stock"]),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
