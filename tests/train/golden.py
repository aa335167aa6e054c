"""The golden runs: fixed-seed 3-step runs of every method (and the step's other paths) on the
embedded model, in float64 (`model.dtype=float64`). `tests/train/test_golden_runs.py` checks
that they still log these metrics; regenerate the file only for a change that is meant to
change the numbers:

    python tests/train/golden.py   # rewrites tests/train/data/golden_metrics.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GOLDEN_FILE = Path(__file__).parent / "data" / "golden_metrics.json"

BASE = [
    "rollout.prompts_per_step=4", "rollout.samples_per_prompt=4", "task.eval_size=8", "run.eval_samples=2",
    "run.progress=false", "run.threads=1", "optim.lr=1e-3", "run.max_steps=3", "run.eval_every=0",
    "run.save_every=100", "run.tensorboard=false",
    # float64 so the numbers hold on any CPU: in float32, vector width, BLAS kernels and even the
    # memory alignment of one process's tensors move the metrics by up to 1e-4 (relative) after
    # two updates; in float64 by at most 8e-7 (the core's per-row float32 quantities), see
    # test_golden_runs.py
    "model.dtype=float64",
]

RUNS: dict[str, list[str]] = {
    "delta": ["algorithm.method=delta"],
    "dapo": ["algorithm.method=dapo"],
    "grpo": ["algorithm.method=grpo"],
    "dr_grpo": ["algorithm.method=dr_grpo"],
    "forking_tokens": ["algorithm.method=forking_tokens"],
    "token_select": ["algorithm.method=token_select"],
    "token_select_random": ["algorithm.method=token_select", "algorithm.select_mode=random"],
    "delta_streamed_k2": ["algorithm.hidden_states=streamed", "algorithm.coefficients.refine_steps=2"],
    "delta_frozen_dynamic": ["algorithm.coefficients.freeze_temperature=true", "rollout.dynamic_sampling=true",
                             "rollout.overlong_buffer=8", "optim.mini_batches=2", "optim.micro_batch_size=5"],
    "delta_lm_head": ["algorithm.proxy.name=lm_head"],
    "delta_full_sketch": ["algorithm.proxy.name=full_sketch", "algorithm.proxy.sketch_dim=64"],
}


def run_metrics(name: str, out: Path, extra: list[str] = ()) -> list[dict]:
    """The metrics a golden run logs (with `extra` overrides), without wall times."""
    from delta_rlvr.train import Trainer, load_config
    from delta_rlvr.train.metrics import read_metrics

    Trainer(load_config(None, [*BASE, *RUNS[name], *extra, f"run.output_dir={out}"])).train()
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in read_metrics(out / "metrics.jsonl")]


if __name__ == "__main__":
    import tempfile

    golden = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            golden[name] = run_metrics(name, Path(tmp) / name)
            print(name, "done", file=sys.stderr)
    GOLDEN_FILE.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN_FILE}")
