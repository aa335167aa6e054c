"""Per-step cost of DelTA against DAPO on the same rollouts, and cached against streamed
hidden states.

    python benchmarks/bench_overhead.py [--config configs/default.yaml] [--set key=value ...]
                                        [--rollouts 3] [--repeats 6] [--out results.json]

Samples `--rollouts` rollout batches once, then times the learning part of a step (advantages,
old-policy pass, coefficients, updates) for each variant on those same batches, alternating
the variants in every repetition so that drifts of a shared machine hit all of them alike. The
first repetition is warm-up and is not counted. Reports the median learning time per variant,
the ratios to DAPO, and the ratio of whole steps (rollout time, measured once and shared,
added to both): the figure to compare with the authors' 10.2 % (their rollouts dominate).

Each variant trains a fresh copy of the starting weights on every batch, so all variants do
exactly the same work whatever the others did.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from dataclasses import replace

import torch

from delta_rlvr.train import Trainer, load_config
from delta_rlvr.train.trainer import StageTimer

VARIANTS = {
    "dapo": dict(method="dapo"),
    "delta_cached": dict(method="delta", hidden_states="cached"),
    "delta_streamed": dict(method="delta", hidden_states="streamed"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--rollouts", type=int, default=3)
    p.add_argument("--repeats", type=int, default=6, help="measured repetitions (+1 warm-up)")
    p.add_argument("--out")
    args = p.parse_args()
    fixed = ["run.output_dir=/tmp/delta-rlvr-bench-overhead", "run.tensorboard=false", "run.progress=false"]
    cfg = load_config(args.config, [*args.set, *fixed])
    trainer = Trainer(cfg)
    start_state = copy.deepcopy(trainer.model.state_dict())
    opt_state = copy.deepcopy(trainer.optimizer.state_dict())

    rollout_s, rollouts = [], []
    for i in range(args.rollouts):
        timer = StageTimer(trainer.device)
        t0 = time.perf_counter()
        rollouts.append(trainer.rollout(timer))
        rollout_s.append(time.perf_counter() - t0)
        trainer.step += 1

    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in VARIANTS}
    for rep in range(args.repeats + 1):
        order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            trainer.config = replace(cfg, algorithm=replace(cfg.algorithm, **VARIANTS[name]))
            for i, rollout in enumerate(rollouts):
                trainer.model.load_state_dict(start_state)
                trainer.optimizer.load_state_dict(opt_state)
                trainer.step = i
                timer = StageTimer(trainer.device)
                if trainer.device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                trainer.learn(rollout, timer)
                if trainer.device.type == "cuda":
                    torch.cuda.synchronize()
                if rep > 0:
                    times[name].append(time.perf_counter() - t0)
                    for k, v in timer.seconds.items():
                        stages[name].setdefault(k, []).append(v)

    roll = statistics.median(rollout_s)
    med = {name: statistics.median(v) for name, v in times.items()}
    report = {
        "device": str(trainer.device) + (f" ({torch.cuda.get_device_name()})" if trainer.device.type == "cuda" else ""),
        "model": cfg.model.name,
        "batch": (f"{cfg.rollout.prompts_per_step} prompts x {cfg.rollout.samples_per_prompt} samples, "
                  f"<= {cfg.rollout.max_new_tokens} new tokens"),
        "measured_steps_per_variant": len(times["dapo"]),
        "rollout_s": round(roll, 4),
        "learn_s": {k: round(v, 4) for k, v in med.items()},
        "stage_s": {n: {k: round(statistics.median(v), 4) for k, v in st.items()} for n, st in stages.items()},
        "learn_ratio_vs_dapo": {k: round(v / med["dapo"], 4) for k, v in med.items()},
        "step_ratio_vs_dapo": {k: round((roll + v) / (roll + med["dapo"]), 4) for k, v in med.items()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
