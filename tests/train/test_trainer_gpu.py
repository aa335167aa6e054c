"""The trainer on one CUDA GPU: device picked automatically, bf16 autocast, same metrics."""

import pytest

from delta_rlvr.train import Trainer, load_config
from delta_rlvr.train.metrics import read_metrics


@pytest.mark.gpu
def test_three_delta_steps_run_on_cuda_with_bf16_autocast(tmp_path):
    cfg = load_config(None, [f"run.output_dir={tmp_path}", "run.max_steps=3", "rollout.prompts_per_step=4",
                             "rollout.samples_per_prompt=4", "task.eval_size=8", "run.eval_samples=2", "run.progress=false"])
    trainer = Trainer(cfg)
    assert trainer.device.type == "cuda" and trainer.autocast
    trainer.train()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert all(r["skipped_updates"] == 0 for r in rows[1:])
    assert next(p for p in trainer.model.parameters()).dtype.is_floating_point
