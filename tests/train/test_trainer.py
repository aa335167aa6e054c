"""The trainer end to end on the shipped tiny model: metrics, resume, kills, streaming, skips."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from delta_rlvr.train import Trainer, load_config
from delta_rlvr.train.checkpoint import list_checkpoints
from delta_rlvr.train.metrics import read_metrics

SMALL = [
    "rollout.prompts_per_step=4",
    "rollout.samples_per_prompt=4",
    "task.eval_size=8",
    "run.eval_samples=2",
    "run.progress=false",
    "run.threads=1",
    "optim.lr=1e-3",
]


def small_config(out: Path, *extra: str):
    return load_config(None, [*SMALL, f"run.output_dir={out}", *extra])


def _comparable(rows):
    """Metrics that must be identical between runs (wall times are not)."""
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_three_steps_write_metrics_checkpoint_and_report(tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(small_config(out, "run.max_steps=3"))
    trainer.train()
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    for key in ("reward_mean", "accuracy", "entropy", "grad_norm", "clip_frac_high", "delta/coef_std", "delta/gamma_pos",
                "delta/temperature_pos", "time/coefficients"):
        assert key in rows[1], key
    assert "eval/avg@2" in rows[0] and "eval/avg@2" in rows[3]
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-00000003"]
    assert any((out / "tensorboard").iterdir())
    signed = [r for r in rows[1:] if r["delta/side_tokens_pos"] and r["delta/side_tokens_neg"]]
    assert signed, "the shipped model should get some but not all answers right"
    assert all(0.0 < r["delta/coef_std"] for r in signed)


def test_a_resumed_run_logs_the_same_metrics_as_an_uninterrupted_one(tmp_path):
    full = tmp_path / "full"
    Trainer(small_config(full, "run.max_steps=4", "run.save_every=2")).train()
    part = tmp_path / "part"
    Trainer(small_config(part, "run.max_steps=2", "run.save_every=2")).train()
    Trainer(small_config(part, "run.max_steps=4", "run.save_every=2"), resume=True).train()
    a, b = read_metrics(full / "metrics.jsonl"), read_metrics(part / "metrics.jsonl")
    # The interrupted run also evaluated at its (then) last step 2; drop those keys to compare.
    b = [{k: v for k, v in r.items() if not (r["step"] == 2 and k.startswith("eval/"))} for r in b]
    a = [{k: v for k, v in r.items() if not (r["step"] == 2 and k.startswith("eval/"))} for r in a]
    assert _comparable(a) == _comparable(b)


KILL_SCRIPT = """
import os, signal, sys
import delta_rlvr.train.checkpoint as ck
from delta_rlvr.train import Trainer, load_config
real_save = ck.torch.save
def save(obj, path, *a, **k):
    if isinstance(obj, dict) and obj.get("step") == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # die in the middle of writing checkpoint 3
    return real_save(obj, path, *a, **k)
ck.torch.save = save
Trainer(load_config(None, sys.argv[1:])).train()
"""


def test_a_run_killed_while_writing_a_checkpoint_resumes_from_the_last_complete_one(tmp_path):
    out = tmp_path / "run"
    args = [*SMALL, f"run.output_dir={out}", "run.max_steps=4", "run.save_every=1", "run.tensorboard=false"]
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    ckpts = out / "checkpoints"
    assert [p.name for p in list_checkpoints(ckpts)] == ["step-00000001", "step-00000002"]
    assert any(p.name.startswith(".tmp-step-00000003") for p in ckpts.iterdir())
    trainer = Trainer(load_config(None, args), resume=True)
    assert trainer.step == 2
    trainer.train()
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    assert not any(p.name.startswith(".tmp") for p in ckpts.iterdir())


def test_cached_and_streamed_hidden_states_give_the_same_coefficients(tmp_path):
    trainer = Trainer(small_config(tmp_path / "a", "run.max_steps=1", "run.tensorboard=false", "optim.micro_batch_size=5"))
    from delta_rlvr.core import group_advantages
    from delta_rlvr.train.old_policy import old_policy_pass
    from delta_rlvr.train.trainer import StageTimer

    timer = StageTimer(trainer.device)
    rollout = trainer.rollout(timer)
    batch = rollout.batch
    adv = group_advantages(rollout.rewards, batch.group_index)
    if not adv.any():  # make both sides non-empty whatever the sample
        adv = torch.linspace(-1, 1, adv.numel())

    def old_pass(algorithm):
        return old_policy_pass(trainer.runner, batch, adv, algorithm, gamma=trainer.gamma, seed=0, timer=timer)

    cached = old_pass(trainer.config.algorithm)
    streamed = old_pass(replace(trainer.config.algorithm, hidden_states="streamed"))
    assert streamed.streamed and not cached.streamed
    assert torch.equal(cached.logp, streamed.logp)  # old log-probs
    # Same estimator, different accumulation order (micro-batch sums, moments for gamma^(0)).
    torch.testing.assert_close(streamed.coef, cached.coef, rtol=0, atol=2e-6)


def test_a_step_with_a_non_finite_loss_is_skipped_and_logged(tmp_path, monkeypatch):
    import delta_rlvr.train.methods as tr

    trainer = Trainer(small_config(tmp_path / "nan", "run.max_steps=1", "run.tensorboard=false"))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    real = tr.METHODS["delta"]

    def poisoned(x, cfg):
        c = real.credit(x, cfg)
        return replace(c, token_advantages=torch.full_like(c.token_advantages, float("nan")))

    monkeypatch.setitem(tr.METHODS, "delta", replace(real, credit=poisoned))
    metrics = trainer.train_step()
    assert metrics["skipped_updates"] == 1
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


@pytest.mark.parametrize("method", ["dapo", "grpo", "dr_grpo", "forking_tokens", "token_select"])
def test_every_method_trains_a_step(tmp_path, method):
    trainer = Trainer(small_config(tmp_path / method, f"algorithm.method={method}", "run.max_steps=1", "run.tensorboard=false"))
    m = trainer.train_step()
    assert m["skipped_updates"] == 0 and m["grad_norm"] == m["grad_norm"]
    expected = {"forking_tokens": 0.2, "token_select": None}.get(method, 1.0)
    if expected is not None:
        assert m["loss_tokens_frac"] == pytest.approx(expected, abs=0.05)


def test_the_cli_refuses_a_bad_config_with_exit_code_2(tmp_path, capsys):
    from delta_rlvr.cli import main

    assert main(["train", "--output-dir", str(tmp_path), "--set", "optim.lr=-1"]) == 2
    assert "optim.lr = -1" in capsys.readouterr().err


def test_dynamic_sampling_keeps_only_groups_whose_rewards_differ(tmp_path):
    trainer = Trainer(small_config(tmp_path / "dyn", "rollout.dynamic_sampling=true", "rollout.max_sampling_rounds=4",
                                   "run.max_steps=1", "run.tensorboard=false", "rollout.overlong_buffer=8"))
    from delta_rlvr.train.trainer import StageTimer

    rollout = trainer.rollout(StageTimer(trainer.device))
    batch, records, rewards, correct = rollout.batch, rollout.records, rollout.rewards, rollout.correct
    per_group = correct.reshape(-1, 4)
    assert len(records) == per_group.shape[0] <= 4
    assert (per_group.max(1).values > per_group.min(1).values).all()
    assert rollout.rounds >= 1 and batch.group_index.tolist() == [g for g in range(len(records)) for _ in range(4)]
    # the soft overlong penalty only ever lowers a reward, by at most the factor (1.0)
    assert ((correct - rewards) >= 0).all() and ((correct - rewards) <= 1).all()
