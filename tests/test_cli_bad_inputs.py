"""Every subcommand, given a bad input, exits 2 with a message that names the input and shows no
traceback (issue 23). The commands go through ``delta_rlvr.cli.main`` as typed, in-process (so a
raw exception would fail the test with its traceback); one case runs the installed
``delta-rlvr`` to check the exit status a shell sees.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from delta_rlvr.cli import main

SMALL = [f"--set={kv}" for kv in (
    "rollout.prompts_per_step=2", "rollout.samples_per_prompt=2", "rollout.max_new_tokens=8", "task.eval_size=4",
    "run.eval_samples=1", "run.eval_every=0", "run.tensorboard=false", "run.progress=false", "run.threads=1",
    "run.save_every=1",
)]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A folder of bad inputs: a plain file, invalid YAML / JSON, binary bytes, an empty data file."""
    (tmp_path / "a_file").write_text("not a folder\n")
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "bad.yaml").write_text("run:\n  max_steps: [1\n bad: : x\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81run: 1\n")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bad.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n{"question": "2+2?", "answer": \n')
    (tmp_path / "binary.jsonl").write_bytes(b"\x80\x81\x82\n")
    (tmp_path / "good.jsonl").write_text("".join(f'{{"question": "What is {i} + 1?", "answer": "{i + 1}"}}\n' for i in range(8)))
    return tmp_path


# (case id, argv with {d} for the inputs folder, text the message must contain)
CASES = [
    # train
    ("train-missing-config", ["train", "--config", "{d}/nosuch.yaml"], "nosuch.yaml"),
    ("train-config-is-a-folder", ["train", "--config", "{d}/a_folder"], "a_folder"),
    ("train-config-bad-yaml", ["train", "--config", "{d}/bad.yaml"], "bad.yaml line 3, column 5"),
    ("train-config-not-a-mapping", ["train", "--config", "{d}/list.yaml"], "list.yaml"),
    ("train-config-binary", ["train", "--config", "{d}/binary.yaml"], "binary.yaml"),
    ("train-output-dir-is-a-file", ["train", "--output-dir", "{d}/a_file"], "a_file"),
    ("train-output-dir-under-a-file", ["train", "--output-dir", "{d}/a_file/run"], "a_file"),
    ("train-set-output-dir-is-a-file", ["train", "--set", "run.output_dir={d}/a_file"], "run.output_dir"),
    ("train-bad-number", ["train", "--output-dir", "{d}/r", "--set", "optim.lr=fast"], "optim.lr"),
    ("train-negative-steps", ["train", "--output-dir", "{d}/r", "--max-steps", "-1"], "max_steps"),
    ("train-unknown-field", ["train", "--output-dir", "{d}/r", "--set", "optim.learning_rate=1e-3"], "learning_rate"),
    ("train-unknown-section", ["train", "--output-dir", "{d}/r", "--set", "optimiser.lr=1e-3"], "optimiser"),
    ("train-set-without-value", ["train", "--output-dir", "{d}/r", "--set", "optim.lr"], "optim.lr"),
    ("train-unknown-method", ["train", "--output-dir", "{d}/r", "--set", "algorithm.method=ppo"], "ppo"),
    ("train-missing-data-file", ["train", "--output-dir", "{d}/r", "--set", "task.kind=dataset",
                                 "--set", "task.dataset={d}/nosuch.jsonl"], "nosuch.jsonl"),
    ("train-empty-data-file", ["train", "--output-dir", "{d}/r", "--set", "task.kind=dataset",
                               "--set", "task.dataset={d}/empty.jsonl"], "empty.jsonl"),
    ("train-bad-json-line", ["train", "--output-dir", "{d}/r", "--set", "task.kind=dataset",
                             "--set", "task.dataset={d}/bad.jsonl"], "bad.jsonl:2"),
    ("train-binary-data-file", ["train", "--output-dir", "{d}/r", "--set", "task.kind=dataset",
                                "--set", "task.dataset={d}/binary.jsonl"], "binary.jsonl"),
    ("train-data-file-is-a-folder", ["train", "--output-dir", "{d}/r", "--set", "task.kind=dataset",
                                     "--set", "task.dataset={d}/a_folder"], "a_folder"),
    ("train-missing-model", ["train", "--output-dir", "{d}/r", "--set", "model.name={d}/nosuch_model"], "nosuch_model"),
    ("train-resume-a-file", ["train", "--output-dir", "{d}/a_file", "--resume"], "a_file"),
    ("train-resume-nothing", ["train", "--output-dir", "{d}/a_folder", "--resume"], "a_folder"),
    # eval
    ("eval-missing-model", ["eval", "{d}/nosuch_run"], "nosuch_run"),
    ("eval-model-is-a-file", ["eval", "{d}/a_file"], "a_file"),
    ("eval-unknown-benchmark", ["eval", "embedded:arith-tiny", "--benchmarks", "nosuch_bench"], "nosuch_bench"),
    ("eval-k-zero", ["eval", "embedded:arith-tiny", "--k", "0"], "k = 0"),
    ("eval-k-negative", ["eval", "embedded:arith-tiny", "--k", "-3"], "k = -3"),
    ("eval-bad-number", ["eval", "embedded:arith-tiny", "--temperature", "hot"], "--temperature"),
    ("eval-top-p-out-of-range", ["eval", "embedded:arith-tiny", "--top-p", "1.5"], "top"),
    ("eval-missing-data-file", ["eval", "embedded:arith-tiny", "--benchmarks", "mine={d}/nosuch.jsonl"], "nosuch.jsonl"),
    ("eval-empty-data-file", ["eval", "embedded:arith-tiny", "--benchmarks", "mine={d}/empty.jsonl"], "empty.jsonl"),
    ("eval-bad-json-line", ["eval", "embedded:arith-tiny", "--benchmarks", "mine={d}/bad.jsonl"], "bad.jsonl:2"),
    ("eval-unknown-field", ["eval", "embedded:arith-tiny", "--benchmarks", "mine={d}/good.jsonl",
                            "--question-field", "problem"], "problem"),
    ("eval-data-dir-is-a-file", ["eval", "embedded:arith-tiny", "--benchmarks", "gsm8k", "--data-dir", "{d}/a_file"], "a_file"),
    ("eval-output-dir-is-a-file", ["eval", "embedded:arith-tiny", "--output-dir", "{d}/a_file"], "a_file"),
    # compare
    ("compare-unknown-method", ["compare", "--method", "ppo", "--output-dir", "{d}/c"], "ppo"),
    ("compare-bad-method-spec", ["compare", "--method", "fast:optim.lr", "--output-dir", "{d}/c"], "optim.lr"),
    ("compare-missing-config", ["compare", "--method", "delta", "--config", "{d}/nosuch.yaml", "--output-dir", "{d}/c"],
     "nosuch.yaml"),
    ("compare-bad-yaml", ["compare", "--method", "delta", "--config", "{d}/bad.yaml", "--output-dir", "{d}/c"], "bad.yaml"),
    ("compare-unknown-field", ["compare", "--method", "delta", "--set", "optim.nosuch=1", "--output-dir", "{d}/c"], "nosuch"),
    ("compare-k-zero", ["compare", "--method", "delta", "--k", "0", "--output-dir", "{d}/c"], "k = 0"),
    ("compare-bad-seed", ["compare", "--method", "delta", "--seeds", "one", "--output-dir", "{d}/c"], "--seeds"),
    ("compare-output-dir-is-a-file", ["compare", "--method", "delta", "--output-dir", "{d}/a_file"], "a_file"),
    # inspect
    ("inspect-missing-model", ["inspect", "{d}/nosuch_run", "--output-dir", "{d}/i"], "nosuch_run"),
    ("inspect-model-is-a-file", ["inspect", "{d}/a_file", "--output-dir", "{d}/i"], "a_file"),
    ("inspect-zero-samples", ["inspect", "embedded:arith-tiny", "--samples", "0", "--output-dir", "{d}/i"], "samples"),
    ("inspect-zero-problems", ["inspect", "embedded:arith-tiny", "--problems", "0", "--output-dir", "{d}/i"], "problems"),
    ("inspect-bad-number", ["inspect", "embedded:arith-tiny", "--temperature", "warm", "--output-dir", "{d}/i"],
     "--temperature"),
    ("inspect-output-dir-is-a-file", ["inspect", "embedded:arith-tiny", "--output-dir", "{d}/a_file"], "a_file"),
    # audit-proxy
    ("audit-missing-model", ["audit-proxy", "{d}/nosuch_run", "--output-dir", "{d}/a"], "nosuch_run"),
    ("audit-missing-config", ["audit-proxy", "embedded:arith-tiny", "--config", "{d}/nosuch.yaml", "--output-dir", "{d}/a"],
     "nosuch.yaml"),
    ("audit-bad-yaml", ["audit-proxy", "embedded:arith-tiny", "--config", "{d}/bad.yaml", "--output-dir", "{d}/a"], "bad.yaml"),
    ("audit-unknown-field", ["audit-proxy", "embedded:arith-tiny", "--set", "rollout.nosuch=2", "--output-dir", "{d}/a"],
     "nosuch"),
    ("audit-zero-topk", ["audit-proxy", "embedded:arith-tiny", "--topk", "0", "--output-dir", "{d}/a"], "topk"),
    ("audit-zero-sketch-dim", ["audit-proxy", "embedded:arith-tiny", "--sketch-dim", "0", "--output-dir", "{d}/a"], "sketch"),
    ("audit-zero-prompts", ["audit-proxy", "embedded:arith-tiny", "--prompts", "0", "--output-dir", "{d}/a"], "prompts"),
    ("audit-output-dir-is-a-file", ["audit-proxy", "embedded:arith-tiny", "--output-dir", "{d}/a_file"], "a_file"),
]


def run(argv: list[str], capfd) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    out, err = capfd.readouterr()
    return code, out + err


@pytest.mark.parametrize("argv,named", [pytest.param(a, n, id=i) for i, a, n in CASES])
def test_a_bad_input_exits_2_naming_it_without_a_traceback(argv, named, inputs, capfd):
    code, output = run([part.replace("{d}", str(inputs)) for part in argv], capfd)
    assert code == 2, output
    assert named in output, output
    assert "Traceback" not in output and "<unicode string>" not in output, output


def test_an_output_dir_that_is_a_file_is_refused_by_the_installed_command(inputs):
    command = shutil.which("delta-rlvr") or str(Path(__import__("sys").executable).parent / "delta-rlvr")
    proc = subprocess.run([command, "train", "--output-dir", str(inputs / "a_file")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "'" + str(inputs / "a_file") + "' cannot be a folder" in proc.stderr
    assert "Traceback" not in proc.stderr and (inputs / "a_file").read_text() == "not a folder\n"


def test_invalid_yaml_names_the_file_line_and_problem(inputs, capfd):
    code, output = run(["train", "--config", str(inputs / "bad.yaml")], capfd)
    assert code == 2
    assert f"{inputs / 'bad.yaml'} line 3, column 5: not valid YAML: expected ',' or ']', but got ':'" in output
    assert "<unicode string>" not in output


def test_resume_with_max_steps_at_or_below_the_trained_step_says_nothing_is_left(tmp_path, capfd):
    folder = tmp_path / "R"
    assert main(["train", "--output-dir", str(folder), *SMALL, "--max-steps", "2"]) == 0
    metrics = (folder / "metrics.jsonl").read_text()
    for steps in ("2", "1"):
        code, output = run(["train", "--output-dir", str(folder), "--resume", "--max-steps", steps], capfd)
        assert code == 2
        assert f"has already trained 2 steps (step-00000002) and run.max_steps is {steps}: nothing to train" in output
        assert "--max-steps" in output and "Traceback" not in output
    assert (folder / "metrics.jsonl").read_text() == metrics  # nothing written
    code, output = run(["train", "--output-dir", str(folder), "--resume", "--max-steps", "3"], capfd)
    assert code == 0 and "resumed from" in output


def test_progress_false_silences_transformers_bars_too(tmp_path, capfd):
    assert main(["train", "--output-dir", str(tmp_path / "R"), *SMALL, "--max-steps", "1"]) == 0
    out, err = capfd.readouterr()
    for bar in ("Loading weights", "Writing model shards", "it/s]"):
        assert bar not in out + err
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # restored for the rest of the process
