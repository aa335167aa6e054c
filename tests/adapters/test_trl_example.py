"""The CPU TRL example as a user types it (two torchrun processes), and the launch a user may try
instead (`accelerate launch --cpu --num_processes 2`, which starts one process) warned about."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("datasets")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "trl" / "train_delta_grpo_cpu.py"


def test_the_cpu_example_trains_on_two_processes_as_typed(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else src
    out = tmp_path / "run"
    # the docstring's command, with a shorter run
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(EXAMPLE), "--output-dir", str(out),
                           "--max-steps", "2", "--save-steps", "2"], capture_output=True, text=True, timeout=300, env=env,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads([line for line in proc.stdout.splitlines() if line.startswith('{"step"')][-1])
    assert summary["processes"] == 2 and summary["step"] == 2
    assert summary["delta/forwards"] == 0  # the hidden states came from generation
    assert summary["delta/valid_tokens"] > 0 and summary["delta/coef_std"] > 0  # DelTA reweighted real tokens
    checkpoint = out / "checkpoint-2"
    for rank in range(2):  # each process wrote its own state
        state = torch.load(checkpoint / f"delta_state_rank{rank}.pt", weights_only=True)
        assert state["rank"] == rank and state["world_size"] == 2 and state["pooling"] == "local"


def test_a_single_process_accelerate_cpu_launch_of_two_is_recognised(monkeypatch):
    # The environment accelerate's own launcher builds for `accelerate launch --cpu --num_processes N`
    # (built, not launched): one process, MASTER_ADDR set, no WORLD_SIZE.
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_simple_launcher_cmd_env

    from delta_rlvr.adapters.trl import single_process_cpu_launch

    for name in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)

    def launched_env(*flags):
        args = launch_command_parser().parse_args([*flags, str(EXAMPLE)])
        args, _, _ = _validate_launch_command(args)
        cmd, env = prepare_simple_launcher_cmd_env(args)
        assert cmd.count(str(EXAMPLE)) == 1  # one process runs the script
        return env

    assert single_process_cpu_launch(launched_env("--cpu", "--num_processes", "2"))
    assert not single_process_cpu_launch(launched_env("--cpu", "--num_processes", "1"))
    assert not single_process_cpu_launch({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2"})
