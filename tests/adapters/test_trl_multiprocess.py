"""DeltaGRPOTrainer across two CPU processes (torchrun, gloo, DDP): global pooling equals the
single-process coefficients of the concatenated batch, local pooling each rank's own, both
against the float64 reference; FSDP2's sharded LM head on CPU; every rank's step after a
resume equals the uninterrupted run's (per-rank state), and a world-size change is refused
(local pooling) or handled (global); an FSDP2 training step updates the weights as DDP's.

One torchrun launch (tests/adapters/trl_multiprocess_worker.py) trains every variant, so the
two processes' start-up (about 8 s) is paid once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("datasets")

from reference_delta import reference_coefficients  # noqa: E402

from delta_rlvr.core import row_proxy  # noqa: E402
from delta_rlvr.models import TinyModelConfig, build_char_tokenizer, build_tiny_model, completion_logprobs  # noqa: E402

TOL = 1e-4
WORKER = Path(__file__).with_name("trl_multiprocess_worker.py")
TINY = TinyModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128, seed=7)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_processes")
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(WORKER), str(out)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def proxy_of(record):
    """v (B, T, H) float32 and the mask, from the weights that sampled this batch."""
    model = build_tiny_model(build_char_tokenizer(), TINY)
    model.load_state_dict(record["weights"])
    mask = record["completion_mask"].bool()
    scored = completion_logprobs(model, record["prompt_ids"], record["prompt_mask"].bool(), record["completion_ids"],
                                 mask, temperature=1.0, return_hidden=True)
    return row_proxy(scored.hidden, scored.logp, mask), mask


def pad_t(x, t):
    extra = t - x.shape[1]
    return x if extra == 0 else torch.cat([x, x.new_zeros((x.shape[0], extra) + tuple(x.shape[2:]))], dim=1)


def test_two_processes_ran(ranks):
    assert [r["world_size"] for r in ranks] == [2, 2]


@pytest.mark.parametrize("variant", ["global", "global_streamed"])
def test_global_pooling_gives_every_rank_the_coefficients_of_the_concatenated_batch(ranks, variant):
    steps = len(ranks[0]["results"][variant])
    assert steps >= 1 and all(len(r["results"][variant]) == steps for r in ranks)
    for step in range(steps):
        records = [r["results"][variant][step] for r in ranks]
        if variant == "global_streamed":
            assert all(rec["info"]["streamed"] for rec in records)  # the ranks agreed to stream
        # Both ranks sampled with the same weights (DDP keeps them equal).
        for key, value in records[0]["weights"].items():
            assert torch.equal(value, records[1]["weights"][key]), key
        parts = [proxy_of(rec) for rec in records]
        t = max(v.shape[1] for v, _ in parts)
        v = torch.cat([pad_t(v, t) for v, _ in parts])
        mask = torch.cat([pad_t(m, t) for _, m in parts])
        A = torch.cat([rec["A"] for rec in records]).float()
        want = reference_coefficients(v, A, mask).float()
        offset = 0
        for rec, (vr, _) in zip(records, parts):
            b, tr = vr.shape[:2]
            got = rec["A"].float()[:, None] * rec["coef"]
            ref = A[offset:offset + b, None] * want[offset:offset + b, :tr]
            assert (got - ref).abs().max() < TOL
            offset += b
        # ... and not each rank's own (the test can tell the two apart)
        own = reference_coefficients(parts[0][0], records[0]["A"].float(), parts[0][1]).float()
        assert (own - want[: own.shape[0], : own.shape[1]]).abs().max() > 10 * TOL


@pytest.mark.parametrize("variant", ["local", "local_streamed"])
def test_local_pooling_gives_each_rank_the_coefficients_of_its_own_batch(ranks, variant):
    for r in ranks:
        for rec in r["results"][variant]:
            v, mask = proxy_of(rec)
            want = reference_coefficients(v, rec["A"].float(), mask).float()
            got = rec["A"].float()[:, None] * rec["coef"]
            assert (got - rec["A"].float()[:, None] * want).abs().max() < TOL
            assert rec["info"]["streamed"] == (variant == "local_streamed")


def test_fsdp2_shards_the_head_on_cpu_and_the_adapter_gathers_it(ranks):
    for r in ranks:
        fsdp2 = r["fsdp2"]
        assert fsdp2["allowed"], fsdp2.get("error")
        assert fsdp2["is_dtensor"] and fsdp2["local_rows"] < 100  # a real shard of the (100, H) head
        assert fsdp2["gathered_equal"] and fsdp2["forward_ok"]


# ------------------------------------------------------------------------------------------
# Issue 27: per-rank DelTA state survives a two-process resume; FSDP2 trains a step like DDP.


@pytest.mark.parametrize("name", ["resume_local_frozen", "resume_global_frozen", "resume_local_random",
                                  "resume_global_random"])
def test_every_rank_resumes_to_the_step_of_the_uninterrupted_run(ranks, name):
    for r in ranks:
        run = r["resume"][name]
        assert len(run["full"]) == 2 and len(run["resumed"]) == 1
        assert torch.equal(run["resumed_A"][0], run["full_A"][1])  # the same rollout after the resume
        assert (run["resumed"][0] - run["full"][1]).abs().max() <= 1e-6
        assert (run["full"][1] - 1).abs().max() > 1e-3  # DelTA reweighted: the comparison can fail
        if "frozen" in name:
            assert torch.equal(run["resumed_gamma"], run["saved_gamma"])
    if name == "resume_local_frozen":  # each rank froze its own gamma: rank 0's would be wrong on rank 1
        assert not torch.allclose(ranks[0]["resume"][name]["saved_gamma"], ranks[1]["resume"][name]["saved_gamma"])
    if name == "resume_global_frozen":  # the pooled gamma is the same on every rank
        assert torch.equal(ranks[0]["resume"][name]["saved_gamma"], ranks[1]["resume"][name]["saved_gamma"])
    if "random" in name:  # each rank draws its own stream
        assert not torch.equal(ranks[0]["resume"][name]["full"][1], ranks[1]["resume"][name]["full"][1])


def one_process_trainer(monkeypatch, **settings):
    """A DeltaGRPOTrainer shell on one process that reads only the adapter's state on resume."""
    from types import SimpleNamespace

    import trl

    from delta_rlvr.adapters.trl import DeltaGRPOTrainer
    from delta_rlvr.core import DeltaConfig
    from delta_rlvr.core.frozen import FrozenGamma

    monkeypatch.setattr(trl.GRPOTrainer, "_load_optimizer_and_scheduler", lambda self, checkpoint: None)
    trainer = object.__new__(DeltaGRPOTrainer)
    trainer.delta_config = DeltaConfig(freeze_temperature=True)
    trainer._delta_gamma = FrozenGamma(True)
    trainer._delta_generator = None
    trainer.accelerator = SimpleNamespace(process_index=0, num_processes=1)
    trainer.args = SimpleNamespace(seed=0, world_size=1, device=torch.device("cpu"), **settings)
    trainer.state = SimpleNamespace(global_step=1)
    return trainer


def test_a_world_size_change_is_refused_with_local_pooling_and_handled_with_global(ranks, monkeypatch):
    local = ranks[0]["resume"]["resume_local_frozen"]["checkpoint"]
    trainer = one_process_trainer(monkeypatch, delta_pooling="local")
    with pytest.raises(ValueError, match=r"2 processes and this run has 1: with delta_pooling='local' each process froze"):
        trainer._load_optimizer_and_scheduler(local)
    pooled = ranks[0]["resume"]["resume_global_frozen"]
    trainer = one_process_trainer(monkeypatch, delta_pooling="global")
    trainer._load_optimizer_and_scheduler(pooled["checkpoint"])
    assert torch.equal(trainer._delta_gamma.current(), pooled["saved_gamma"])


def test_an_fsdp2_training_step_updates_the_weights_as_ddp_does(ranks):
    for r in ranks:
        ddp, fsdp2 = r["steps"]["ddp"], r["steps"]["fsdp2"]
        assert fsdp2["sharded"] and fsdp2["wrapper"].startswith("FSDP") and ddp["wrapper"] == "DistributedDataParallel"
        assert torch.equal(fsdp2["completion_ids"], ddp["completion_ids"])  # the same rollout from the same weights
        assert fsdp2["info"]["forwards"] == 0 and fsdp2["info"]["capture_source"] == "generation"
        assert (fsdp2["coef"] - ddp["coef"]).abs().max() < 1e-6
        biggest = max(float((ddp["after"][k] - ddp["before"][k]).abs().max()) for k in ddp["after"])
        assert biggest > 1e-5  # the step moved the weights
        for key in ddp["after"]:
            assert torch.equal(fsdp2["before"][key], ddp["before"][key]), key
            update_ddp = ddp["after"][key] - ddp["before"][key]
            update_fsdp2 = fsdp2["after"][key] - fsdp2["before"][key]
            assert (update_fsdp2 - update_ddp).abs().max() <= 1e-4 * biggest, key  # measured 3.7e-9 of 8.4e-4
