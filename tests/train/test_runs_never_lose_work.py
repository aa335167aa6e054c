"""A user's mistake or a Ctrl-C never costs a run, and never shows a traceback (issue 17).

Every command goes through the CLI as typed (``delta_rlvr.cli.main`` in-process, or the
installed ``delta-rlvr`` in a subprocess where signals are involved), on the embedded model with
a small batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from delta_rlvr.analysis.plots import is_avg_at_k
from delta_rlvr.cli import main
from delta_rlvr.train import ConfigError, load_config
from delta_rlvr.train.checkpoint import latest_checkpoint
from delta_rlvr.train.metrics import read_metrics
from delta_rlvr.train.run_folder import run_lock

SMALL = [f"--set={kv}" for kv in (
    "rollout.prompts_per_step=2", "rollout.samples_per_prompt=2", "rollout.max_new_tokens=8", "task.eval_size=4",
    "run.eval_samples=1", "run.eval_every=0", "run.tensorboard=false", "run.progress=false", "run.threads=1",
    "run.save_every=1", "run.keep_last=3",
)]


def train(tmp_path: Path, *extra: str, folder: str = "R") -> int:
    return main(["train", "--output-dir", str(tmp_path / folder), *SMALL, *extra])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_training_into_a_folder_that_holds_a_run_is_refused_and_loses_nothing(tmp_path, capsys):
    assert train(tmp_path, "--max-steps", "2") == 0
    before = snapshot(tmp_path / "R")
    capsys.readouterr()
    assert train(tmp_path, "--max-steps", "2", "--set", "algorithm.method=dapo") == 2
    err = capsys.readouterr().err
    assert "already holds a run (method delta, seed 0, 2 checkpoint(s)" in err
    assert "--resume" in err and "--overwrite" in err and "Traceback" not in err
    assert snapshot(tmp_path / "R") == before  # nothing lost, nothing added
    # --overwrite starts over: the old run's metrics and checkpoints are gone.
    assert train(tmp_path, "--max-steps", "1", "--set", "algorithm.method=dapo", "--overwrite") == 0
    rows = read_metrics(tmp_path / "R" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1]
    assert sorted(p.name for p in (tmp_path / "R" / "checkpoints").iterdir()) == ["step-00000001"]
    assert load_config(tmp_path / "R" / "config.yaml").algorithm.method == "dapo"


def test_a_second_concurrent_run_in_the_folder_is_refused(tmp_path, capsys):
    with run_lock(tmp_path / "R"):  # a run training there now (another open file description)
        assert train(tmp_path, "--max-steps", "1") == 2
    assert "is in use by a run that is training now (pid" in capsys.readouterr().err
    assert not (tmp_path / "R" / "metrics.jsonl").exists()


def test_resume_continues_the_run_as_configured_and_refuses_identity_changes(tmp_path, capsys):
    assert train(tmp_path, "--max-steps", "2", "--seed", "1", "--set", "algorithm.method=dapo", "--set", "task.terms=2") == 0
    saved = (tmp_path / "R" / "config.yaml").read_text()
    capsys.readouterr()
    # The README's line: only the folder and --resume; the run's own config is kept.
    assert main(["train", "--output-dir", str(tmp_path / "R"), "--resume", "--max-steps", "3"]) == 0
    config = load_config(tmp_path / "R" / "config.yaml")
    assert (config.algorithm.method, config.run.seed, config.task.terms, config.run.max_steps) == ("dapo", 1, 2, 3)
    assert [r["step"] for r in read_metrics(tmp_path / "R" / "metrics.jsonl")] == [0, 1, 2, 3]
    history = [json.loads(line) for line in (tmp_path / "R" / "config_history.jsonl").read_text().splitlines()]
    assert history == [{"time": history[0]["time"], "resumed_at_step": 2,
                        "changes": {"run.max_steps": {"from": 2, "to": 3}}}]
    capsys.readouterr()
    assert main(["train", "--output-dir", str(tmp_path / "R"), "--resume", "--seed", "0", "--set", "algorithm.method=delta"]) == 2
    err = capsys.readouterr().err
    assert "algorithm.method: 'dapo' in the run, 'delta' asked" in err and "run.seed: 1 in the run, 0 asked" in err
    assert (tmp_path / "R" / "config.yaml").read_text() != saved  # max_steps 3 recorded, nothing else changed
    assert load_config(tmp_path / "R" / "config.yaml").algorithm.method == "dapo"


def test_resume_on_a_mistyped_folder_is_refused(tmp_path, capsys):
    assert main(["train", "--output-dir", str(tmp_path / "nosuch"), "--resume"]) == 2
    assert "holds no run" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate_state", "truncate_weights", "delete_tokenizer"])
def test_resume_falls_back_past_a_damaged_newest_checkpoint_and_says_why(tmp_path, capsys, damage):
    assert train(tmp_path, "--max-steps", "3") == 0
    newest = tmp_path / "R" / "checkpoints" / "step-00000003"
    if damage == "truncate_state":
        (newest / "trainer_state.pt").write_bytes((newest / "trainer_state.pt").read_bytes()[:100])
    elif damage == "truncate_weights":
        (newest / "model.safetensors").write_bytes((newest / "model.safetensors").read_bytes()[:1000])
    else:
        (newest / "tokenizer.json").unlink()
    capsys.readouterr()
    assert latest_checkpoint(tmp_path / "R" / "checkpoints").name == "step-00000002"
    assert main(["train", "--output-dir", str(tmp_path / "R"), "--resume", "--max-steps", "4"]) == 0
    captured = capsys.readouterr()
    assert f"skipping checkpoint {newest}" in captured.err
    assert "resumed from" in captured.out and "step-00000002 at step 2" in captured.out
    assert [r["step"] for r in read_metrics(tmp_path / "R" / "metrics.jsonl")] == [0, 1, 2, 3, 4]


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, capsys):
    assert train(tmp_path, "--max-steps", "2") == 0
    path = tmp_path / "R" / "metrics.jsonl"
    path.write_text(path.read_text() + '{"step": 3, "reward_me')
    capsys.readouterr()
    assert main(["train", "--output-dir", str(tmp_path / "R"), "--resume", "--max-steps", "3"]) == 0
    assert "line 4 is not a complete JSON record" in capsys.readouterr().err
    assert [r["step"] for r in read_metrics(path)] == [0, 1, 2, 3]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_the_step_writes_a_checkpoint_and_resume_continues(tmp_path, sig, code):
    exe = Path(sys.executable).with_name("delta-rlvr")
    args = [str(exe), "train", "--output-dir", str(tmp_path / "R"), *SMALL, "--max-steps", "500",
            "--set=run.save_every=1000"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "R" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(read_metrics(metrics)) >= 3):
        time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and "checkpoint written; continue with" in err
    step = read_metrics(metrics)[-1]["step"]
    assert latest_checkpoint(tmp_path / "R" / "checkpoints").name == f"step-{step:08d}"  # save_every did not reach it
    assert (tmp_path / "R" / "curves.png").exists() and (tmp_path / "R" / "tokens.html").exists()
    assert main(["train", "--output-dir", str(tmp_path / "R"), "--resume", "--max-steps", str(step + 1)]) == 0
    assert [r["step"] for r in read_metrics(metrics)][-2:] == [step, step + 1]


def test_numbers_in_yaml_are_numbers_and_non_finite_values_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-4\n  weight_decay: .5\n  grad_clip: 1E-1\n")
    config = load_config(path)
    assert (config.optim.lr, config.optim.weight_decay, config.optim.grad_clip) == (1e-4, 0.5, 0.1)
    for value in (".inf", "-.inf", ".nan", "inf"):
        path.write_text(f"optim:\n  lr: {value}\n")
        with pytest.raises(ConfigError, match="optim.lr .* finite number"):
            load_config(path)


@pytest.mark.parametrize("override, named", [
    ("optim.betas=[0.9]", "optim.betas"),
    ("run.threads=-3", "run.threads"),
    ("task.operators=+/", "task.operators"),
    ("rollout.temperature=.inf", "rollout.temperature"),
])
def test_bad_values_exit_2_naming_the_field(tmp_path, capsys, override, named):
    assert main(["train", "--output-dir", str(tmp_path / "R"), "--set", override]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not (tmp_path / "R").exists()


def test_a_bad_task_source_exits_2_naming_the_setting_and_the_line(tmp_path, capsys):
    pytest.importorskip("reasoning_gym")
    assert main(["train", "--output-dir", str(tmp_path / "G"), "--set", "task.kind=reasoning_gym",
                 "--set", "task.gym_kwargs={nosuch: 1}"]) == 2
    assert "task.gym_name / task.gym_kwargs" in capsys.readouterr().err
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"question": "1+1?", "answer": "2"}\n{"question": "caf\xe9", "answer": "3"}\n')
    assert main(["train", "--output-dir", str(tmp_path / "D"), "--set", "task.kind=dataset",
                 "--set", f"task.dataset_path={data}"]) == 2
    err = capsys.readouterr().err
    assert f"{data}:2: byte 0xe9" in err and "UTF-8" in err


def test_a_full_disk_while_checkpointing_leaves_no_partial_folder_and_names_the_intact_one(tmp_path, capsys, monkeypatch):
    assert train(tmp_path, "--max-steps", "1") == 0
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        if str(f).endswith("trainer_state.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 64")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    assert main(["train", "--output-dir", str(tmp_path / "R"), "--resume", "--max-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "could not write checkpoint step 2" in err and "step-00000001 is intact" in err and "Traceback" not in err
    assert [p.name for p in (tmp_path / "R" / "checkpoints").iterdir()] == ["step-00000001"]


def test_the_held_out_curve_is_avg_at_k_not_its_standard_error():
    assert is_avg_at_k("eval/avg@4") and is_avg_at_k("eval/avg@16")
    assert not is_avg_at_k("eval/avg@4_se") and not is_avg_at_k("eval/pass@4")


def test_max_steps_0_reports_only_what_it_wrote(tmp_path, capsys):
    assert train(tmp_path, "--max-steps", "0") == 0
    out = capsys.readouterr().out
    assert "checkpoints/" not in out and "tokens.html" not in out and "metrics.jsonl" in out


def test_compare_rejects_a_mistyped_method_before_training_anything(tmp_path, capsys):
    assert main(["compare", "--method", "dapo", "--method", "nosuch", "--seeds", "0",
                 "--output-dir", str(tmp_path / "C")]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert not (tmp_path / "C" / "dapo").exists()


def test_every_option_has_help_text():
    from delta_rlvr.cli import build_parser

    parser = build_parser()
    missing = []
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            if action.option_strings and action.help in (None, "") and "-h" not in action.option_strings:
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing


def test_a_second_ctrl_c_stops_at_once_without_a_traceback_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    from delta_rlvr.train.trainer import Trainer

    assert train(tmp_path, "--max-steps", "1") == 0
    before = snapshot(tmp_path / "R" / "checkpoints")
    handler = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run in a background job
    real_step = Trainer.train_step

    def step_interrupted_twice(self):
        os.kill(os.getpid(), signal.SIGINT)  # the first: finish this step and checkpoint...
        os.kill(os.getpid(), signal.SIGINT)  # ...the second, before the step is done: stop now
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_interrupted_twice)
    capsys.readouterr()
    assert main(["train", "--output-dir", str(tmp_path / "R"), "--resume", "--max-steps", "3"]) == 130
    err = capsys.readouterr().err
    assert "stopped; the newest checkpoint in the run folder is intact" in err and "Traceback" not in err
    assert snapshot(tmp_path / "R" / "checkpoints") == before  # step 1's checkpoint, untouched
    assert signal.getsignal(signal.SIGINT) is handler  # the trainer's handler is gone, the caller's is back


def test_ctrl_c_in_compare_checkpoints_the_run_and_evaluates_nothing(tmp_path, capsys, monkeypatch):
    from delta_rlvr.train.trainer import Trainer

    real_step = Trainer.train_step

    def step_then_ctrl_c(self):
        out = real_step(self)
        os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_ctrl_c)
    sets = [a for kv in SMALL for a in ("--set", kv.split("=", 1)[1])]
    assert main(["compare", "--method", "dapo", "--seeds", "0", "--output-dir", str(tmp_path / "C"), "--k", "1",
                 "--max-new-tokens", "8", *sets, "--set", "run.max_steps=3"]) == 130
    err = capsys.readouterr().err
    assert "rerun the same command to continue the study" in err and "Traceback" not in err
    run = tmp_path / "C" / "dapo" / "seed-0"
    assert latest_checkpoint(run / "checkpoints").name == "step-00000001"
    assert not list(tmp_path.glob("C/*.md")) and not (run / "eval").exists()
