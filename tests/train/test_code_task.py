"""task.kind = code: code problems from a data file, rewarded by their tests in the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from code_sandbox import needs_sandbox

from delta_rlvr.train import Trainer, load_config
from delta_rlvr.train.config import ConfigError
from delta_rlvr.train.metrics import read_metrics
from delta_rlvr.train.tasks import build_task

OPS = [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b), ("big", max)]
ARGS = [[1, 2], [3, 4], [10, -2]]


def write_problems(path: Path, count: int = 12) -> Path:
    """Function-style problems in the project's spec form; the prompt is the header to complete."""
    with open(path, "w") as handle:
        for i in range(count):
            name, op = OPS[i % len(OPS)]
            function = f"{name}{i}"
            calls = [[args, op(*args)] for args in ARGS]
            row = {"id": f"p{i}", "prompt": f"def {function}(a, b):\n",
                   "tests": {"style": "function", "function": function, "calls": calls}}
            handle.write(json.dumps(row) + "\n")
    return path


def code_settings(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "task.kind=code", f"task.dataset={data}", "task.code.complete_prompt=true", "task.eval_size=4",
        "rollout.prompts_per_step=4", "rollout.samples_per_prompt=4", "run.eval_samples=2", "run.progress=false",
        "run.threads=1", f"run.output_dir={out}", *extra,
    ]


@needs_sandbox
def test_a_code_task_rewards_programs_by_their_tests(tmp_path):
    task = build_task(load_config(None, code_settings(write_problems(tmp_path / "code.jsonl"), tmp_path / "run")).task)
    record = next(r for r in task.eval_records() if '"add0"' in r.gold)  # held out
    responses = ["    return a + b\n", "    return a - b\n", "```python\ndef add0(a, b):\n    return b + a\n```", "    while True: pass\n"]
    assert task.score(responses, [record] * 4) == [1.0, 0.0, 1.0, 0.0]
    assert len(task.eval_records()) == 4 and task.answer_hint == "code"


@needs_sandbox
def test_partial_credit_rewards_the_fraction_of_cases_passed(tmp_path):
    settings = code_settings(write_problems(tmp_path / "code.jsonl"), tmp_path / "run", "task.code.partial_credit=true")
    task = build_task(load_config(None, settings).task)
    record = next(r for r in task.eval_records() if '"big3"' in r.gold)  # big3 = max: (1,2)->2, (3,4)->4, (10,-2)->10
    assert task.score(["    return b\n"], [record]) == pytest.approx([2 / 3])


@needs_sandbox
def test_two_training_steps_on_code_problems_log_their_rewards(tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(load_config(None, code_settings(write_problems(tmp_path / "code.jsonl"), out, "run.max_steps=2")))
    trainer.train()
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2]
    for row in rows[1:]:
        assert 0.0 <= row["reward_mean"] <= 1.0 and row["time/scoring"] > 0
    assert "eval/pass@2" in rows[0] and "eval/pass@2" in rows[-1]
    assert (out / "checkpoints" / "step-00000002" / "manifest.json").is_file()


@needs_sandbox
def test_the_cli_trains_on_a_code_file_as_typed(tmp_path):
    data = write_problems(tmp_path / "code.jsonl")
    settings = code_settings(data, tmp_path / "run", "run.max_steps=1", "run.eval_every=0")
    command = [sys.executable, "-m", "delta_rlvr.cli", "train"] + [part for s in settings for part in ("--set", s)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]["step"] == 1


def test_without_the_sandbox_a_code_task_refuses_naming_the_opt_out(tmp_path, monkeypatch):
    from delta_rlvr.verifiers import code_runner

    monkeypatch.setattr(code_runner, "sandbox_plan", lambda: "bubblewrap (bwrap) is not installed")
    cfg = load_config(None, code_settings(write_problems(tmp_path / "code.jsonl"), tmp_path / "run")).task
    with pytest.raises(ConfigError, match="task.code.isolation=none"):
        build_task(cfg)


def test_a_bad_code_file_is_named_with_its_line_and_field(tmp_path):
    data = write_problems(tmp_path / "code.jsonl")
    lines = data.read_text().splitlines()
    lines[2] = json.dumps({"id": "bad", "prompt": "def f():\n", "tests": "not json"})
    data.write_text("\n".join(lines) + "\n")
    cfg = load_config(None, code_settings(data, tmp_path / "run", "task.code.isolation=none")).task
    with pytest.raises(ConfigError, match=r"code.jsonl:3 field 'tests'"):
        build_task(cfg)
    settings = code_settings(data, tmp_path / "run", "task.code.isolation=none", "task.skip_bad_rows=true")
    task = build_task(load_config(None, settings).task)
    assert len(task.eval_records()) + len(task._train) == 11


@needs_sandbox
def test_task_code_max_file_bytes_reaches_the_sandbox_in_training_and_eval_scoring(tmp_path):
    data = tmp_path / "write.jsonl"
    spec = {"style": "function", "function": "write", "calls": [[[2 << 20], 2 << 20]]}  # a 2 MiB scratch file
    data.write_text("".join(json.dumps({"id": f"w{i}", "prompt": "def write(n):\n", "tests": spec}) + "\n" for i in range(6)))
    program = "    import os\n    open('/tmp/scratch', 'wb').write(b'x' * n)\n    return os.path.getsize('/tmp/scratch')\n"
    scores = {}
    for limit in (4 << 20, 1 << 20):
        task = build_task(load_config(None, code_settings(data, tmp_path / "run", f"task.code.max_file_bytes={limit}")).task)
        record = task.eval_records()[0]
        scores[limit] = (task.score([program], [record]), task.verdicts([program], [record])[0].correct)
    assert scores == {4 << 20: ([1.0], True), 1 << 20: ([0.0], False)}  # past the limit the write fails (EFBIG)


def test_task_code_max_file_bytes_defaults_to_the_sandboxs_default_and_is_validated():
    from delta_rlvr.train.config import CodeTaskConfig
    from delta_rlvr.verifiers.code_runner import DEFAULT_MAX_FILE_BYTES

    assert CodeTaskConfig().max_file_bytes == DEFAULT_MAX_FILE_BYTES == 64 << 20
    with pytest.raises(ConfigError, match="task.code.max_file_bytes"):
        load_config(None, ["task.kind=code", "task.code.max_file_bytes=0"])


def test_code_settings_are_validated_by_name(tmp_path):
    with pytest.raises(ConfigError, match="task.code.timeout_s"):
        load_config(None, ["task.kind=code", "task.code.timeout_s=0"])
    with pytest.raises(ConfigError, match="task.code.tests_format"):
        load_config(None, ["task.kind=code", "task.code.tests_format=xml"])
