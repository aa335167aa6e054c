"""The verl entry point as a user launches it: ``python -m delta_rlvr.adapters.verl.main`` with
Hydra overrides, Ray started locally on CPU, verl's TaskRunner actor, its datasets and trainer.

A probe (verl_probe.py), loaded into every verl process by verl's external-module mechanism,
reports from inside the TaskRunner actor which trainer was built and drives the trainer's own
old-log-prob and update calls with the worker class the TaskRunner registered (on CPU: verl's
``init_workers`` cannot place workers without GPUs; docs/adapters.md says where it stops).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("verl")
pytest.importorskip("ray")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from reference_delta import reference_coefficients  # noqa: E402

from delta_rlvr.core import group_advantages, row_proxy  # noqa: E402
from delta_rlvr.data import arithmetic_dataset  # noqa: E402
from delta_rlvr.models import completion_logprobs  # noqa: E402

HERE = Path(__file__).resolve().parent
ASSET = Path(__file__).resolve().parents[2] / "src" / "delta_rlvr" / "assets" / "arith-tiny"
LAUNCH_TIMEOUT_S = 300


def tiny_run_inputs(root: Path) -> tuple[Path, Path]:
    """The embedded model with a chat template (verl applies one to prompts), and 4 rows of
    verl's RL parquet format from the arithmetic task."""
    model = root / "model"
    shutil.copytree(ASSET, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    rows = [{"prompt": [{"role": "user", "content": p.question}], "data_source": "arithmetic",
             "reward_model": {"style": "rule", "ground_truth": p.gold}, "extra_info": {"index": i}}
            for i, p in enumerate(arithmetic_dataset(4))]
    data = root / "train.parquet"
    pd.DataFrame(rows).to_parquet(data)
    return model, data


def launch(root: Path, model: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["VERL_USE_EXTERNAL_MODULES"] = "verl_probe"
    env["DELTA_VERL_PROBE"] = str(root)
    env["RAY_DEDUP_LOGS"] = "0"
    overrides = [
        "trainer.use_v1=false", "algorithm.adv_estimator=grpo",
        f"data.train_files={data}", f"data.val_files={data}", "data.train_batch_size=2",
        "data.max_prompt_length=32", "data.max_response_length=16", "data.dataloader_num_workers=0",
        f"actor_rollout_ref.model.path={model}", "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.rollout.n=3",
        "actor_rollout_ref.rollout.temperature=0.7",
        "actor_rollout_ref.actor.use_dynamic_bsz=false", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
        "trainer.n_gpus_per_node=1", "trainer.nnodes=1", "trainer.logger=[console]", "trainer.val_before_train=false",
        f"trainer.default_local_dir={root / 'ckpt'}", "ray_kwargs.ray_init.num_cpus=2",
        *extra,
    ]
    return subprocess.run([sys.executable, "-m", "delta_rlvr.adapters.verl.main", *overrides], cwd=root, env=env,
                          capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)


@pytest.mark.slow
def test_the_launched_entry_point_builds_the_delta_trainer_whose_workers_get_its_settings(tmp_path):
    model_dir, data = tiny_run_inputs(tmp_path)
    run = launch(tmp_path, model_dir, data, "+delta.enable=true", "+delta.coef_min=0.7", "+delta.refine_steps=2")
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert "DelTA on: K=2, lambda in [0.7, 1.2], pooling=local, proxy=row" in log  # the driver log's line
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["trainer"] == "DeltaRayPPOTrainer"  # fails if TaskRunner.run builds stock RayPPOTrainer
    assert report["roles"]["actor_rollout"] == "DeltaActorRolloutRefWorker" == report["worker"]
    assert "Total available GPUs 0" in report["init_workers"]  # where verl stops without GPUs
    settings = report["settings_received"]
    assert settings["enable"] and settings["coef_min"] == 0.7 and settings["refine_steps"] == 2
    assert report["steps"] == 2 and report["compute_log_prob_calls"] == 2 and report["update_calls"] == 2
    assert report["metrics"]["delta/forwards"] == 1 and "delta/coef_std" in report["metrics"]

    # The coefficients are DelTA's (float64 reference on the saved model), and the update got A x coef.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    for step in torch.load(tmp_path / "tensors.pt"):
        b = step["inputs"]
        p = b["prompts"].shape[1]
        mask = b["response_mask"].bool()
        scored = completion_logprobs(model, b["prompts"], b["attention_mask"][:, :p].bool(), b["responses"],
                                     b["attention_mask"][:, p:].bool(), temperature=0.7, return_hidden=True)
        uid = torch.arange(mask.shape[0]) // 3
        A = group_advantages(b["rm_scores"].sum(1), uid)
        want = reference_coefficients(row_proxy(scored.hidden, scored.logp, mask), A, mask, k_steps=2, lo=0.7).float()
        torch.testing.assert_close(step["coef"], want, atol=1e-5, rtol=0)
        torch.testing.assert_close(step["update_advantages"] * mask, step["advantages"] * want, atol=1e-5, rtol=0)


def test_a_setting_delta_cannot_honour_stops_the_launch_before_ray_with_the_setting_named(tmp_path):
    model_dir, data = tiny_run_inputs(tmp_path)
    run = launch(tmp_path, model_dir, data, "+delta.enable=true", "actor_rollout_ref.actor.policy_loss.loss_mode=clip_cov")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "error: DelTA (delta.enable=true) does not support actor_rollout_ref.actor.policy_loss.loss_mode='clip_cov'" in run.stderr
    assert "Traceback" not in run.stderr and "ray init" not in run.stdout


@pytest.mark.parametrize("script", ["run_delta_8gpu.sh", "run_delta_multinode.sh"])
def test_the_example_launch_scripts_compose_into_a_config_the_adapter_accepts(tmp_path, script):
    # The scripts' `python -m ...` lines, captured by a stand-in `python`: the cache plan, run for
    # real here, and the launch, composed with verl's own Hydra config and checked by the entry
    # point's launch checks.
    from hydra import compose, initialize_config_dir
    from verl.trainer import main_ppo_v0

    from delta_rlvr.adapters.verl.main import check_launch
    from delta_rlvr.adapters.verl.settings import delta_settings

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text(f'#!/bin/sh\nn=$(ls {tmp_path}/argv.* 2>/dev/null | wc -l)\n'
                                 f'printf "%s\\n" "$@" > {tmp_path}/argv.$n\n')
    (fake / "python").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", MODEL="m", TRAIN="t.parquet",
               VAL="v.parquet", HIDDEN="4096", TMPDIR=str(tmp_path))
    env.pop("NNODES", None)
    if "multinode" in script:
        env["NNODES"] = "2"
    root = Path(__file__).resolve().parents[2]
    subprocess.run(["bash", str(root / "examples" / "verl" / script)], env=env, check=True, timeout=60)
    plan_argv, argv = ((tmp_path / f"argv.{i}").read_text().splitlines() for i in (0, 1))
    assert plan_argv[:2] == ["-m", "delta_rlvr.adapters.verl.plan"] and argv[:2] == ["-m", "delta_rlvr.adapters.verl.main"]
    plan = subprocess.run([sys.executable, *plan_argv], capture_output=True, text=True, timeout=60, check=True).stdout
    per_rank = 1024 if "multinode" not in script else 512  # 128 x 16 responses over 8 (16) GPUs / SP 4
    assert f"{per_rank} responses x 20480 tokens x H = 4096" in plan and "delta/forwards = 1" in plan, plan
    config_dir = os.path.join(os.path.dirname(main_ppo_v0.__file__), "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(config_name="ppo_trainer", overrides=argv[2:])
    check_launch(config)
    settings = delta_settings(config)
    assert settings.enable and settings.offload_cache and settings.config.refine_steps == 1
    assert settings.spill_dir == str(tmp_path / "delta-spill") and os.path.isdir(settings.spill_dir)
    assert config.trainer.nnodes == (2 if "multinode" in script else 1)
