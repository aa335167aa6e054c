"""The verl adapter through verl's own code on CPU (verl 0.9.1): the trainer's old-log-prob
step, the DelTA worker's registered method, verl's training-worker entry and engine I/O, around a
tiny Qwen3 (tests/adapters/verl_cpu.py says exactly what stands in for FSDP, CUDA and Ray).

Rewards are the arithmetic task's real scores; coefficients are checked against the slow float64
reference (tests/reference_delta.py) on the hidden states and log-probs the engine produced.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

verl = pytest.importorskip("verl")
pytest.importorskip("uvicorn")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from reference_delta import reference_coefficients  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo.core_algos import get_policy_loss_fn  # noqa: E402
from verl.trainer.ppo.ray_trainer import RayPPOTrainer, compute_advantage  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl.workers.engine_workers import ActorRolloutRefWorker  # noqa: E402
from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding  # noqa: E402
from verl_cpu import LocalWorkerGroup, cpu_actor_worker, cpu_trainer, rollout_proto, trainer_config  # noqa: E402

from delta_rlvr.adapters.verl.actor_pass import (  # noqa: E402
    ADVANTAGE_KEY,
    COEF_KEY,
    GAMMA_KEY,
    SETTINGS_KEY,
    check_engine_supported,
)
from delta_rlvr.adapters.verl.settings import DeltaSettings, delta_settings  # noqa: E402
from delta_rlvr.adapters.verl.trainer import (  # noqa: E402
    STATE_FILE,
    check_trainer_supported,
    load_state,
    outcome_advantages,
    rewrite_advantages,
    save_state,
)
from delta_rlvr.adapters.verl.worker import DeltaActorRolloutRefWorker  # noqa: E402
from delta_rlvr.core import (  # noqa: E402
    DeltaConfig,
    PolicyLossConfig,
    delta_coefficients,
    group_advantages,
    per_token_policy_loss,
    row_proxy,
)
from delta_rlvr.data import arithmetic_dataset  # noqa: E402
from delta_rlvr.models import build_tiny_model, completion_logprobs  # noqa: E402

TEMPERATURE = 0.7
TOL = 1e-5  # against the float64 reference (tests/core/test_coefficients.py explains the scale)


def problems(seed_rows=(0, 2, 4)):
    data = arithmetic_dataset(6)
    return [data[i].question for i in seed_rows], [data[i].gold for i in seed_rows]


def batch(tokenizer, rows=(0, 2, 4), holes=False):
    questions, golds = problems(rows)
    proto = rollout_proto(tokenizer, questions, golds, n=3, temperature=TEMPERATURE, response_mask_holes=holes)
    rewards = proto.batch["rm_scores"].sum(1)
    assert 0 < float(rewards.sum()) < len(rewards)  # real, varying rewards
    return proto


def advantages_of(proto):
    uid = torch.tensor([int(u[1:]) for u in proto.non_tensor_batch["uid"]])
    return group_advantages(proto.batch["rm_scores"].sum(1), uid)


def reference_from_model(model, proto, config=DeltaConfig(), gamma=None):
    """Float64 DelTA on the project's own scorer's hidden states and log-probs (no verl code)."""
    b = proto.batch
    p = b["prompts"].shape[1]
    mask = b["response_mask"].bool()
    scored = completion_logprobs(model, b["prompts"], b["attention_mask"][:, :p].bool(), b["responses"],
                                 b["attention_mask"][:, p:].bool(), temperature=TEMPERATURE, return_hidden=True)
    v = row_proxy(scored.hidden, scored.logp, mask)
    kwargs = dict(k_steps=config.refine_steps, lo=config.coef_min, hi=config.coef_max)
    if gamma is not None:
        kwargs["fixed_gamma"] = tuple(float(x) for x in gamma)
    return reference_coefficients(v, advantages_of(proto), mask, **kwargs).float(), scored.logp, mask


def stock_forwards(model, proto, **worker_kwargs):
    """Model forwards of verl's own old-log-prob call on the same batch and micro-batching."""
    worker = cpu_actor_worker(ActorRolloutRefWorker, model, **worker_kwargs)
    trainer = cpu_trainer(trainer_config(delta={"enable": False}), LocalWorkerGroup(worker))
    trainer._compute_old_log_prob(proto)
    return worker.actor.engine.forwards


LAYOUTS = {
    # Packed sequences would attend across samples on CPU (no varlen kernel): one per micro-batch.
    "remove_padding": dict(remove_padding=True, micro_batch_size=1),
    # Padded micro-batches with dynamic sizes: verl regroups and reorders the samples.
    "dynamic_bsz": dict(remove_padding=False, max_token_len=40),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_old_log_prob_step_returns_delta_coefficients_with_zero_extra_forwards(char_tokenizer, tiny_config, layout):
    model = build_tiny_model(char_tokenizer, tiny_config)
    proto = batch(char_tokenizer, holes=True)
    worker = cpu_actor_worker(DeltaActorRolloutRefWorker, model, **LAYOUTS[layout])
    group = LocalWorkerGroup(worker)
    trainer = cpu_trainer(trainer_config(), group)
    old, _ = trainer._compute_old_log_prob(proto)

    want, ref_logp, mask = reference_from_model(model, proto)
    torch.testing.assert_close(old.batch["old_log_probs"][mask], ref_logp[mask], atol=1e-5, rtol=0)
    coef = old.batch[COEF_KEY]
    torch.testing.assert_close(coef, want, atol=TOL, rtol=0)
    assert float(coef[mask].std()) > 1e-3  # the coefficients are not trivially 1
    assert worker.actor.engine.forwards == stock_forwards(model, proto, **LAYOUTS[layout])  # no extra forward
    metrics = trainer._delta_metrics
    assert metrics["delta/forwards"] == 1 and metrics["delta/coef_mean"] == pytest.approx(float(coef[
        mask & (advantages_of(proto) != 0)[:, None]].mean()), abs=1e-5)
    # What the trainer sent: the advantages it is about to compute, and the settings.
    sent = group.sent[0]
    torch.testing.assert_close(sent[ADVANTAGE_KEY], advantages_of(proto), atol=1e-6, rtol=0)
    assert DeltaSettings.from_dict(tu.get_non_tensor_data(sent, SETTINGS_KEY, None)) == trainer.delta


def test_a_second_step_still_finds_the_worker_groups_method(char_tokenizer, tiny_config):
    # verl binds worker-group methods per instance (setattr); deleting the wrapper deleted them.
    model = build_tiny_model(char_tokenizer, tiny_config)
    group = LocalWorkerGroup(cpu_actor_worker(DeltaActorRolloutRefWorker, model, **LAYOUTS["dynamic_bsz"]))
    method = group.compute_log_prob
    trainer = cpu_trainer(trainer_config(), group)
    trainer.ref_in_actor = True  # LoRA: the reference log-probs come from the same method
    for rows in ((0, 2, 4), (1, 3, 5)):
        proto = batch(char_tokenizer, rows)
        old, _ = trainer._compute_old_log_prob(proto)
        assert group.compute_log_prob is method
        ref = trainer._compute_ref_log_prob(proto)  # verl's call, no DelTA settings: stock path
        torch.testing.assert_close(ref.batch["ref_log_prob"], old.batch["old_log_probs"], atol=1e-6, rtol=0)
    assert len(group.sent) == 4


def test_over_the_cache_cap_the_pass_streams_the_same_coefficients_in_k_plus_1_more_forwards(char_tokenizer, tiny_config):
    model = build_tiny_model(char_tokenizer, tiny_config)
    proto = batch(char_tokenizer)
    results = {}
    for cap in (None, 0):
        worker = cpu_actor_worker(DeltaActorRolloutRefWorker, model, **LAYOUTS["dynamic_bsz"])
        trainer = cpu_trainer(trainer_config(delta={"cache_mib": cap, "refine_steps": 2}), LocalWorkerGroup(worker))
        old, _ = trainer._compute_old_log_prob(proto)
        results[cap] = (old.batch[COEF_KEY], worker.actor.engine.forwards, trainer._delta_metrics["delta/forwards"])
    per_pass = stock_forwards(model, proto, **LAYOUTS["dynamic_bsz"])
    assert results[None][1] == per_pass and results[0][1] == 4 * per_pass  # K + 2 passes with K = 2
    assert results[0][2] == 4
    torch.testing.assert_close(results[0][0], results[None][0], atol=2e-6, rtol=0)


@pytest.mark.parametrize("cache_mib", [None, 0], ids=["cached", "streamed"])
def test_coefficients_under_the_engines_bf16_autocast_match_the_float64_reference(char_tokenizer, tiny_config, cache_mib):
    # The engine runs prepare_model_outputs (where the pass captures h) under torch.autocast(bf16);
    # streamed, the estimator's passes run in there too (without full_precision: 1.4e-3 off here).
    model = build_tiny_model(char_tokenizer, tiny_config)
    proto = batch(char_tokenizer)
    worker = cpu_actor_worker(DeltaActorRolloutRefWorker, model, autocast_dtype=torch.bfloat16, remove_padding=False,
                              micro_batch_size=3)
    heads: list[torch.Tensor] = []
    handle = model.get_output_embeddings().register_forward_pre_hook(lambda m, a: heads.append(a[0].detach()))
    trainer = cpu_trainer(trainer_config(delta={"cache_mib": cache_mib}), LocalWorkerGroup(worker))
    old, _ = trainer._compute_old_log_prob(proto)
    handle.remove()
    assert len(heads) == (3 if cache_mib is None else 9)  # streamed: K + 2 = 3 forwards of 3 micro-batches
    heads = heads[:3]  # the old-log-prob pass's
    # The hidden states and log-probs the engine produced, in verl's response layout.
    td = left_right_2_no_padding(proto.to_tensordict())
    lengths = td["input_ids"].offsets().diff().tolist()
    rows = torch.cat([h[i, : lengths[3 * k + i]] for k, h in enumerate(heads) for i in range(h.shape[0])])
    hidden = no_padding_2_padding(rows, td)
    mask = proto.batch["response_mask"].bool()
    v = row_proxy(hidden, old.batch["old_log_probs"], mask)
    want = reference_coefficients(v, advantages_of(proto), mask).float()
    err = float((old.batch[COEF_KEY] - want).abs().max())
    assert err < TOL, err


def test_the_frozen_gamma_is_measured_once_sent_every_step_and_kept_across_a_resume(char_tokenizer, tiny_config,
                                                                                     tmp_path, monkeypatch):
    model = build_tiny_model(char_tokenizer, tiny_config)
    group = LocalWorkerGroup(cpu_actor_worker(DeltaActorRolloutRefWorker, model, **LAYOUTS["dynamic_bsz"]))
    config = trainer_config(delta={"freeze_temperature": True})
    config.trainer.default_local_dir = str(tmp_path)
    trainer = cpu_trainer(config, group)
    first = batch(char_tokenizer, (0, 2, 4))
    trainer._compute_old_log_prob(first)
    gamma = trainer._delta_gamma.state()
    adaptive = delta_coefficients(
        row_proxy(*reference_hidden(model, first)), advantages_of(first), first.batch["response_mask"].bool()
    ).stats.gamma[0]
    torch.testing.assert_close(torch.tensor(gamma, dtype=torch.float64), adaptive.double(), atol=1e-5, rtol=1e-5)
    second = batch(char_tokenizer, (1, 3, 5))
    old, _ = trainer._compute_old_log_prob(second)
    assert tu.get_non_tensor_data(group.sent[1], GAMMA_KEY, None) == {"pos": gamma[0], "neg": gamma[1]}
    want, _, _ = reference_from_model(model, second, gamma=gamma)
    torch.testing.assert_close(old.batch[COEF_KEY], want, atol=TOL, rtol=0)
    # Saved with the checkpoint and restored on resume (verl's own save/load need the Ray workers).
    monkeypatch.setattr(RayPPOTrainer, "_save_checkpoint", lambda self: None)
    monkeypatch.setattr(RayPPOTrainer, "_load_checkpoint", lambda self: setattr(self, "global_steps", 7))
    trainer.global_steps = 7
    trainer._save_checkpoint()
    assert (tmp_path / "global_step_7" / STATE_FILE).exists()
    resumed = cpu_trainer(config, group)
    resumed._load_checkpoint()
    assert resumed._delta_gamma.state() == gamma


def test_a_checkpoint_of_an_older_version_restores_its_frozen_gamma(tmp_path, monkeypatch):
    # delta_state.json used to hold the frozen gamma under "frozen_temperature"; now "frozen_gamma".
    config = trainer_config(delta={"freeze_temperature": True})
    config.trainer.default_local_dir = str(tmp_path)
    save_state(str(tmp_path / "global_step_7"), {"frozen_temperature": [0.5, 0.25]})
    monkeypatch.setattr(RayPPOTrainer, "_load_checkpoint", lambda self: setattr(self, "global_steps", 7))
    monkeypatch.setattr(RayPPOTrainer, "_save_checkpoint", lambda self: None)
    resumed = cpu_trainer(config, None)
    resumed._load_checkpoint()
    assert resumed._delta_gamma.state() == [0.5, 0.25]
    torch.testing.assert_close(resumed._delta_gamma.current(), torch.tensor([0.5, 0.25], dtype=torch.float64))
    resumed.global_steps = 8
    resumed._save_checkpoint()
    assert load_state(str(tmp_path / "global_step_8")) == {"frozen_gamma": [0.5, 0.25]}


def reference_hidden(model, proto):
    b = proto.batch
    p = b["prompts"].shape[1]
    mask = b["response_mask"].bool()
    scored = completion_logprobs(model, b["prompts"], b["attention_mask"][:, :p].bool(), b["responses"],
                                 b["attention_mask"][:, p:].bool(), temperature=TEMPERATURE, return_hidden=True)
    return scored.hidden, scored.logp, mask


def test_a_torn_state_file_is_refused_naming_the_file(tmp_path):
    save_state(str(tmp_path), {"frozen_temperature": [1.0, 2.0]})
    assert load_state(str(tmp_path)) == {"frozen_temperature": [1.0, 2.0]}
    assert load_state(str(tmp_path / "none")) == {}
    (tmp_path / STATE_FILE).write_text('{"frozen_tem')
    with pytest.raises(RuntimeError, match=STATE_FILE):
        load_state(str(tmp_path))


def test_fused_kernels_set_in_the_engine_config_are_refused_before_the_pass(char_tokenizer, tiny_config):
    # TrainingWorker.infer_batch adds use_fused_kernels to the data only after the pass began.
    worker = cpu_actor_worker(DeltaActorRolloutRefWorker, build_tiny_model(char_tokenizer, tiny_config),
                              **LAYOUTS["dynamic_bsz"])
    worker.actor.engine_config.use_fused_kernels = True
    trainer = cpu_trainer(trainer_config(), LocalWorkerGroup(worker))
    with pytest.raises(ValueError, match="use_fused_kernels=False"):
        trainer._compute_old_log_prob(batch(char_tokenizer))
    td = tu.get_tensordict({"x": torch.zeros(1)})
    with pytest.raises(ValueError, match="use_fused_kernels=False"):
        check_engine_supported(worker.actor.engine, td, use_fused_kernels=True)


@pytest.mark.parametrize("loss_mode", ["clip_cov", "kl_cov", "geo_mean", "dro"])
def test_losses_not_homogeneous_in_the_advantage_are_refused(loss_mode):
    config = trainer_config()
    config.actor_rollout_ref.actor.policy_loss.loss_mode = loss_mode
    with pytest.raises(ValueError, match=f"loss_mode='{loss_mode}'.*vanilla"):
        check_trainer_supported(config)
    config.actor_rollout_ref.actor.policy_loss.loss_mode = "vanilla"
    check_trainer_supported(config)


def test_rollout_rejection_sampling_is_refused_and_importance_weights_are_not():
    config = trainer_config(rollout_correction={"bypass_mode": False, "rollout_rs": "token_k1", "rollout_is": "token"})
    with pytest.raises(ValueError, match="rollout_rs=null"):
        check_trainer_supported(config)
    config.algorithm.rollout_correction.rollout_rs = None
    check_trainer_supported(config)


def test_advantages_before_the_pass_then_a_times_coef_written_into_the_dataproto(char_tokenizer):
    proto = batch(char_tokenizer)
    mask = proto.batch["response_mask"]
    config = trainer_config()
    A = outcome_advantages(proto, config)  # what fit() will compute, one value per response
    torch.testing.assert_close(A, advantages_of(proto), atol=1e-5, rtol=0)
    b, r = mask.shape
    coef = (0.8 + 0.4 * torch.rand(b, r, generator=torch.Generator().manual_seed(0))) * mask
    fit = compute_advantage(DataProto.from_dict(
        tensors={"token_level_rewards": proto.batch["rm_scores"], "response_mask": mask},
        non_tensors={"uid": proto.non_tensor_batch["uid"]}), adv_estimator="grpo", num_repeat=3)
    proto.batch["advantages"] = fit.batch["advantages"]  # as fit() writes it
    proto.batch[COEF_KEY] = coef
    proto.batch[ADVANTAGE_KEY] = A
    rewrite_advantages(proto)
    torch.testing.assert_close(proto.batch["advantages"], A.unsqueeze(1) * mask * coef, atol=1e-6, rtol=0)
    assert COEF_KEY not in proto.batch.keys() and ADVANTAGE_KEY not in proto.batch.keys()
    # Advantages that changed between the pass and the update are caught.
    proto.batch["advantages"] = A.unsqueeze(1) * mask
    proto.batch[COEF_KEY], proto.batch[ADVANTAGE_KEY] = coef, A + 1.0
    with pytest.raises(RuntimeError, match="differ"):
        rewrite_advantages(proto)


def test_verl_registered_policy_loss_fed_a_times_coef_equals_the_coefficient_weighted_loss():
    g = torch.Generator().manual_seed(3)
    b, t = 6, 9
    mask = torch.rand(b, t, generator=g) > 0.2
    old = -torch.rand(b, t, generator=g) * 3
    log_ratio = 0.4 * torch.randn(b, t, generator=g)
    log_ratio[1, ::2] = 3.0  # ratio e^3 > c = 10 on a negative response: the dual-clip cap binds
    new = (old + log_ratio).requires_grad_()
    A = torch.tensor([1.2, -0.7, 0.0, -1.5, 0.4, 0.9])
    coef = (0.8 + 0.4 * torch.rand(b, t, generator=g)) * mask
    coef = coef * mask.sum() / coef.sum()
    actor = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 10.0,
                              "global_batch_info": {}})
    loss_fn = get_policy_loss_fn("vanilla")
    verl_loss, _ = loss_fn(old_log_prob=old, log_prob=new, advantages=A.unsqueeze(1) * coef,
                           response_mask=mask, loss_agg_mode="token-mean", config=actor)
    per_token, _, dual = per_token_policy_loss(new, old, A, PolicyLossConfig(0.2, 0.28, 10.0))
    assert bool(dual[mask].any())  # the dual-clip branch is exercised
    weighted = (coef * per_token)[mask].sum() / mask.sum()
    torch.testing.assert_close(verl_loss, weighted, atol=1e-6, rtol=1e-6)
    (g1,) = torch.autograd.grad(verl_loss, new)
    (g2,) = torch.autograd.grad(weighted, new)
    torch.testing.assert_close(g1, g2, atol=1e-7, rtol=1e-6)


def test_delta_namespace_is_validated_with_the_setting_named(tmp_path):
    assert delta_settings(OmegaConf.create({})) == DeltaSettings()
    s = delta_settings(trainer_config(delta={"coef_min": 0.8, "cache_mib": 64}))
    assert s.enable and s.pooling == "local" and s.config == DeltaConfig(coef_min=0.8) and s.cache_mib == 64
    assert s.describe() == "DelTA on: K=1, lambda in [0.8, 1.2], pooling=local, proxy=row, cache up to 64 MiB/rank"
    with pytest.raises(ValueError, match="delta.coef_min"):
        DeltaSettings.from_dict({"enable": True, "coef_min": 2.0})
    with pytest.raises(ValueError, match="delta.pooling"):
        DeltaSettings.from_dict({"enable": True, "pooling": "per_group"})
    with pytest.raises(ValueError, match="delta.gama"):
        DeltaSettings.from_dict({"gama": 1})
    with pytest.raises(ValueError, match="delta.cache_mib"):
        DeltaSettings.from_dict({"enable": True, "cache_mib": -1})
    with pytest.raises(ValueError, match="delta.offload_cache"):
        DeltaSettings.from_dict({"enable": True, "offload_cache": "yes"})
    with pytest.raises(ValueError, match="delta.spill_gib"):
        DeltaSettings.from_dict({"enable": True, "spill_gib": -1})
    with pytest.raises(ValueError, match="delta.gpu_cache_mib is the GPU tier"):
        DeltaSettings.from_dict({"enable": True, "gpu_cache_mib": 512})
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(ValueError, match="delta.spill_dir=.*a-file/spill' cannot be created"):
        DeltaSettings.from_dict({"enable": True, "spill_dir": str(blocked / "spill")}).tiers()
    tiered = DeltaSettings.from_dict({"enable": True, "offload_cache": True, "gpu_cache_mib": 512, "cache_mib": 1024,
                                      "spill_dir": os.getcwd(), "spill_gib": 2})
    assert [(t.kind, t.cap_bytes) for t in tiered.tiers()] == [("device", 512 << 20), ("host", 1 << 30), ("disk", 2 << 30)]
    assert tiered.describe().endswith(f"cache up to 1024 MiB/rank (CPU, after 512 MiB on the GPU), then up to 2 GiB/rank "
                                      f"on disk in {os.getcwd()}")
    assert DeltaSettings.from_dict(tiered.as_dict()) == tiered
    with pytest.raises(ValueError, match="delta.proxy='lm_head' is not available in the verl adapter"):
        DeltaSettings.from_dict({"enable": True, "proxy": "lm_head"})
    with pytest.raises(ValueError, match="adv_estimator=grpo"):
        check_trainer_supported(trainer_config(adv_estimator="gae"))
    with pytest.raises(ValueError, match="use_kl_in_reward=False"):
        check_trainer_supported(trainer_config(use_kl_in_reward=True))


# --------------------------------------------------------------------------------------------
# Two data-parallel processes (gloo): the statistics of every rank, and global pooling.


def _rank_main(rank, world, init_file, out_dir, pooling):
    import sys

    sys.path[:0] = [os.path.dirname(__file__), os.path.dirname(os.path.dirname(__file__))]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    from conftest import TINY

    from delta_rlvr.models import build_char_tokenizer

    tok = build_char_tokenizer()
    model = build_tiny_model(tok, TINY)
    proto = batch(tok, ((0, 2, 4), (1, 3, 5))[rank])
    group = LocalWorkerGroup(cpu_actor_worker(DeltaActorRolloutRefWorker, model, **LAYOUTS["dynamic_bsz"]))
    trainer = cpu_trainer(trainer_config(delta={"pooling": pooling}), group)
    old, _ = trainer._compute_old_log_prob(proto)
    torch.save({"coef": old.batch[COEF_KEY], "metrics": trainer._delta_metrics},
               os.path.join(out_dir, f"{pooling}-{rank}.pt"))
    dist.destroy_process_group()


def test_two_data_parallel_ranks_report_their_mean_statistics_and_pool_globally(char_tokenizer, tiny_config):
    model = build_tiny_model(char_tokenizer, tiny_config)
    halves = [batch(char_tokenizer, (0, 2, 4)), batch(char_tokenizer, (1, 3, 5))]
    with tempfile.TemporaryDirectory() as out:
        for pooling in ("local", "global"):
            init = os.path.join(out, f"init-{pooling}")
            mp.start_processes(_rank_main, args=(2, init, out, pooling), nprocs=2, join=True, start_method="spawn")
        got = {(p, r): torch.load(os.path.join(out, f"{p}-{r}.pt")) for p in ("local", "global") for r in (0, 1)}
    # Local pooling: each rank's own coefficients; the logged statistics are the mean over ranks.
    singles = []
    for rank, half in enumerate(halves):
        trainer = cpu_trainer(trainer_config(), LocalWorkerGroup(
            cpu_actor_worker(DeltaActorRolloutRefWorker, model, **LAYOUTS["dynamic_bsz"])))
        old, _ = trainer._compute_old_log_prob(half)
        torch.testing.assert_close(got["local", rank]["coef"], old.batch[COEF_KEY], atol=1e-6, rtol=0)
        singles.append(trainer._delta_metrics)
    for rank in (0, 1):
        m = got["local", rank]["metrics"]
        assert m["delta/coef_std"] == pytest.approx((singles[0]["delta/coef_std"] + singles[1]["delta/coef_std"]) / 2,
                                                    abs=1e-6)
    # Global pooling: the coefficients of one process holding both halves (float64 reference).
    parts = [reference_hidden(model, half) for half in halves]
    r = max(p[2].shape[1] for p in parts)
    pad = lambda x: torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, r - x.shape[1]))  # noqa: E731
    v = torch.cat([pad(row_proxy(h, lp, m)) for h, lp, m in parts])
    mask = torch.cat([pad(m) for _, _, m in parts])
    A = torch.cat([advantages_of(half) for half in halves])
    want = reference_coefficients(v, A, mask).float()
    got_global = torch.cat([pad(got["global", rank]["coef"]) for rank in (0, 1)])
    torch.testing.assert_close(got_global, want, atol=1e-4, rtol=0)
    assert got["global", 0]["metrics"]["delta/normaliser"] == pytest.approx(got["global", 1]["metrics"]["delta/normaliser"])


# --------------------------------------------------------------------------------------------
# The cache's tiers: pinned host memory, a memory-mapped file on disk, streaming only past both.

TIERS = {
    "host": dict(offload_cache=True, cache_mib=None),
    "disk": dict(offload_cache=True, cache_mib=0),
    "host_then_disk": dict(offload_cache=True, cache_mib="half"),
    "stream": dict(offload_cache=True, cache_mib=0, spill_gib=0),
    "host_disk_then_stream": dict(offload_cache=True, cache_mib="quarter", spill_gib="quarter"),  # full mid-batch
}


def test_every_tier_gives_the_float64_coefficients_and_only_full_tiers_stream(char_tokenizer, tiny_config, tmp_path,
                                                                               monkeypatch):
    from delta_rlvr.core.packed import PackedProxyCache

    reads = []
    feed = PackedProxyCache._feed
    monkeypatch.setattr(PackedProxyCache, "_feed", lambda self, stream, *ready: (reads.append(1), feed(self, stream, *ready))[1])
    model = build_tiny_model(char_tokenizer, tiny_config)
    proto = batch(char_tokenizer, holes=True)
    want, _, mask = reference_from_model(model, proto)
    per_pass = stock_forwards(model, proto, **LAYOUTS["dynamic_bsz"])
    full_mib = None
    worst = {}
    for name, delta in TIERS.items():
        delta = dict(delta, spill_dir=str(tmp_path), spill_gib=delta.get("spill_gib", 1))
        if delta["cache_mib"] == "half":
            delta["cache_mib"] = full_mib / 2
        if delta["cache_mib"] == "quarter":
            delta["cache_mib"], delta["spill_gib"] = full_mib / 4, full_mib / 4 / 1024
        reads.clear()
        worker = cpu_actor_worker(DeltaActorRolloutRefWorker, model, **LAYOUTS["dynamic_bsz"])
        trainer = cpu_trainer(trainer_config(delta=delta), LocalWorkerGroup(worker))
        old, _ = trainer._compute_old_log_prob(proto)
        m = trainer._delta_metrics
        worst[name] = float((old.batch[COEF_KEY] - want.detach())[mask].abs().max())
        assert worst[name] < TOL, (name, worst[name])
        host, disk = m["delta/cache_gib_host"] * 1024, m["delta/cache_gib_disk"] * 1024  # MiB
        if name == "host":
            full_mib = host
            assert host > 0 and disk == 0 and m["delta/cache_gib_gpu"] == 0
        elif name == "disk":
            assert host == 0 and disk == pytest.approx(full_mib)
        elif name == "host_then_disk":
            assert 0 < host <= full_mib / 2 and host + disk == pytest.approx(full_mib)
        streamed = "stream" in name
        assert worker.actor.engine.forwards == (3 if streamed else 1) * per_pass  # K + 2 = 3 passes streamed
        assert m["delta/forwards"] == (3 if streamed else 1)
        # Passes read back from the cache: K + 3 from memory; K + 1 with a disk tier (pass 0 in the forward).
        assert len(reads) == {"host": 4, "disk": 2, "host_then_disk": 2}.get(name, 0), (name, len(reads))
    print("worst |coef - float64 reference| per tier:", {k: f"{v:.1e}" for k, v in worst.items()})
    assert not list(tmp_path.iterdir())  # the spill file is gone


@pytest.mark.parametrize("cache_mib", [None, 0], ids=["cached", "streamed"])
def test_a_sequence_parallel_rank_without_outputs_keeps_no_cache_and_joins_the_same_forwards(char_tokenizer, tiny_config,
                                                                                              cache_mib):
    from delta_rlvr.adapters.verl.actor_pass import PassOptions, delta_passes
    from delta_rlvr.core.packed import CacheTier

    model = build_tiny_model(char_tokenizer, tiny_config)
    group = LocalWorkerGroup(cpu_actor_worker(DeltaActorRolloutRefWorker, model, **LAYOUTS["dynamic_bsz"]))
    cpu_trainer(trainer_config(delta={"cache_mib": cache_mib}), group)._compute_old_log_prob(batch(char_tokenizer))
    sent = group.sent[0]  # what the driver sends every rank of the group
    forwards = {True: group.worker.actor.engine.forwards}
    other = cpu_actor_worker(DeltaActorRolloutRefWorker, model, **LAYOUTS["dynamic_bsz"])
    other.actor.engine.is_mp_src_rank_with_outputs = lambda: False  # SP rank 1 of the same group
    assert DeltaActorRolloutRefWorker.compute_log_prob(other, sent.copy()) is None  # as verl's pass there
    forwards[False] = other.actor.engine.forwards
    assert forwards[True] == forwards[False]  # the same forwards: the group's collectives line up
    # The pass itself: nothing kept on the rank without outputs, no statistics computed.
    tiers = (CacheTier("device", None if cache_mib is None else 0),)
    for holds in (True, False):
        result = delta_passes(other.actor.engine, lambda: ActorRolloutRefWorker.compute_log_prob(other, sent.copy()),
                              DeltaConfig(), options=PassOptions(tiers=tiers, holds_cache=holds))
        assert (result.cache_peak_bytes > 0) == (holds and cache_mib is None)
        assert (result.stats is None and result.coef is None) == (not holds)


def test_the_plan_at_the_8_gpu_examples_settings_needs_the_spill_tier_for_one_forward(tmp_path):
    from delta_rlvr.adapters.verl.plan import plan_cache

    example = dict(responses_per_rank=1024, max_response_tokens=20480, hidden_size=4096, micro_batch_tokens=45056)
    memory_only = DeltaSettings(enable=True, cache_mib=32768, offload_cache=True)
    plan = plan_cache(memory_only, **example)
    assert plan.token_bytes == 2 * 4096 + 8 and plan.cache_bytes == 1024 * 20480 * 8200  # 172.0 GB
    assert plan.streams and plan.forwards == 3 and plan.lands_in.startswith("stream")
    spilled = plan_cache(DeltaSettings(enable=True, cache_mib=32768, offload_cache=True, spill_dir=str(tmp_path / "nvme"),
                                       spill_gib=160), **example)
    host = 32 * 2**30 - 45056 * 8200  # a tier boundary may leave one micro-batch unused
    assert not spilled.streams and spilled.forwards == 1 and spilled.lands_in == "host + disk"
    assert spilled.placed == {"host": host, "disk": plan.cache_bytes - host}
    assert spilled.placed["disk"] / 2**30 == pytest.approx(128.5, abs=0.05)
    # A third of the groups all-equal (no signed token): 2/3 of it, and all of it in memory with 128 GiB.
    two_thirds = plan_cache(DeltaSettings(enable=True, cache_mib=128 * 1024, offload_cache=True), **example,
                            signed_fraction=2 / 3)
    assert two_thirds.forwards == 1 and two_thirds.lands_in == "host"
