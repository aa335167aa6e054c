"""The loss verl back-propagates, on DelTA's advantages (verl 0.9.1, CPU).

``fit``'s DelTA path as the trainer runs it: ``_compute_old_log_prob`` (the DelTA worker's pass),
verl's ``compute_advantage``, then ``_update_actor``, which hands A x coef to the actor worker
group. The worker group here is one worker built without ``__init__``, Ray or FSDP, in this
process (tests/adapters/verl_cpu.py); its ``update_actor`` is verl's
(``ActorRolloutRefWorker.update_actor`` -> ``TrainingWorker.train_mini_batch`` / ``train_batch``
-> ``BaseEngine.train_batch`` -> ``FSDPEngine.forward_backward_batch`` ->
``FSDPEngineWithLMHead.forward_step`` with ``partial(ppo_loss, config=ActorConfig)``, the loss
function ``init_model`` sets, and ``loss.backward()``), with verl's device lookups pointed at the
CPU and a one-process gloo group. Only the optimizer step is a stand-in: it records the gradient.

The gradient is compared with an independent computation: the project's scorer and its own
clipped surrogate (``per_token_policy_loss``), weighted by the float64 reference coefficients
(tests/reference_delta.py), token mean, ``autograd``.
"""

from __future__ import annotations

import copy
import functools
import os

import pytest
import torch

pytest.importorskip("verl")
pytest.importorskip("uvicorn")

from hydra import compose, initialize_config_dir  # noqa: E402
from reference_delta import reference_coefficients  # noqa: E402
from verl.trainer import main_ppo_v0  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402
from verl.utils.config import omega_conf_to_dataclass  # noqa: E402
from verl.workers.utils.losses import ppo_loss  # noqa: E402
from verl_cpu import LocalWorkerGroup, cpu_actor_worker, cpu_trainer, rollout_proto, trainer_config, verl_on_cpu  # noqa: E402

from delta_rlvr.adapters.verl.worker import DeltaActorRolloutRefWorker  # noqa: E402
from delta_rlvr.core import PolicyLossConfig, group_advantages, per_token_policy_loss, row_proxy  # noqa: E402
from delta_rlvr.data import arithmetic_dataset  # noqa: E402
from delta_rlvr.models import build_tiny_model, completion_logprobs  # noqa: E402

TEMPERATURE = 0.7
#: added to the old log-probs by token position (mod 4), so every branch of the clipped loss is
#: taken: ratio 1, e^-0.5 (clipped low for A < 0), e^0.5 (clipped high for A > 0), e^2.5 > c = 10
#: (dual clip for A < 0)
OLD_SHIFT = torch.tensor([0.0, 0.5, -0.5, -2.5])


@functools.lru_cache(maxsize=1)
def actor_config():
    """verl's ActorConfig as ``init_model`` builds it, from verl's own Hydra config with the
    8-GPU example's loss settings (clip 0.2 / 0.28, dual clip 10, token mean)."""
    overrides = ["actor_rollout_ref.model.path=unused", "actor_rollout_ref.actor.strategy=fsdp2",
                 "actor_rollout_ref.actor.clip_ratio_low=0.2", "actor_rollout_ref.actor.clip_ratio_high=0.28",
                 "actor_rollout_ref.actor.clip_ratio_c=10.0", "actor_rollout_ref.actor.loss_agg_mode=token-mean",
                 "actor_rollout_ref.actor.ppo_mini_batch_size=3", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=3"]
    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(main_ppo_v0.__file__), "config"), version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides)
    return omega_conf_to_dataclass(config.actor_rollout_ref.actor)


def rollout(tokenizer):
    data = arithmetic_dataset(6)
    rows = (0, 2, 4)
    proto = rollout_proto(tokenizer, [data[i].question for i in rows], [data[i].gold for i in rows], n=3,
                          temperature=TEMPERATURE, response_mask_holes=True)
    proto.batch["token_level_rewards"] = proto.batch["rm_scores"]
    return proto


def verl_gradient(model, proto, *, delta: bool, init_file: str):
    """One ``fit`` step's DelTA path through verl's update; the gradient the engine accumulated,
    the coefficients the trainer used (None for stock) and the old log-probs the loss saw."""
    worker = cpu_actor_worker(DeltaActorRolloutRefWorker, model, remove_padding=False, micro_batch_size=3,
                              loss_fn=functools.partial(ppo_loss, config=actor_config()))
    config = trainer_config(delta={"enable": delta})
    config.actor_rollout_ref.actor.ppo_mini_batch_size = 3  # prompts: the whole batch is one mini-batch
    trainer = cpu_trainer(config, LocalWorkerGroup(worker))
    proto = copy.deepcopy(proto)  # fit's batch: the trainer writes into it
    with verl_on_cpu(init_file):
        old, _ = trainer._compute_old_log_prob(proto)
        coef = old.batch["delta_coef"].clone() if delta else None
        batch = proto.union(old)
        old_logp = batch.batch["old_log_probs"] + OLD_SHIFT[torch.arange(old.batch["old_log_probs"].shape[1]) % 4]
        batch.batch["old_log_probs"] = old_logp
        batch = compute_advantage(batch, adv_estimator="grpo", num_repeat=3, norm_adv_by_std_in_grpo=True)
        out = trainer._update_actor(batch)
    assert len(worker.actor.engine.grads) == 1  # one mini-batch, one optimizer step
    assert out.meta_info["metrics"]["actor/pg_loss"] is not None
    return worker.actor.engine.grads[0], coef, old_logp


def independent_gradient(model, proto, old_logp, coef):
    """The DAPO token-mean loss weighted by ``coef`` (None: 1), by the project's own code."""
    model = copy.deepcopy(model)
    b = proto.batch
    p = b["prompts"].shape[1]
    mask = b["response_mask"].bool()
    scored = completion_logprobs(model, b["prompts"], b["attention_mask"][:, :p].bool(), b["responses"],
                                 b["attention_mask"][:, p:].bool(), temperature=TEMPERATURE, return_hidden=True)
    uid = torch.tensor([int(u[1:]) for u in proto.non_tensor_batch["uid"]])
    A = group_advantages(b["rm_scores"].sum(1), uid)
    per_token, _, dual = per_token_policy_loss(scored.logp, old_logp, A, PolicyLossConfig(0.2, 0.28, 10.0))
    assert bool(dual[mask].any())  # the dual-clip branch is taken
    weight = torch.ones_like(per_token) if coef is None else coef
    loss = (weight * per_token)[mask].sum() / mask.sum()
    loss.backward()
    v = row_proxy(scored.hidden.detach(), scored.logp.detach(), mask)
    return {n: q.grad for n, q in model.named_parameters() if q.grad is not None}, reference_coefficients(v, A, mask).float()


def relative_error(got: dict, want: dict) -> float:
    assert got.keys() == want.keys()
    num = sum(float((got[k] - want[k]).double().square().sum()) for k in want)
    den = sum(float(want[k].double().square().sum()) for k in want)
    return (num / den) ** 0.5


def test_verls_update_back_propagates_the_delta_weighted_loss_and_not_the_stock_one(char_tokenizer, tiny_config, tmp_path):
    model = build_tiny_model(char_tokenizer, tiny_config)
    proto = rollout(char_tokenizer)
    got, coef, old_logp = verl_gradient(model, proto, delta=True, init_file=str(tmp_path / "pg-delta"))
    stock, _, _ = verl_gradient(model, proto, delta=False, init_file=str(tmp_path / "pg-stock"))

    mask = proto.batch["response_mask"].bool()
    _, ref_coef = independent_gradient(model, proto, old_logp, None)
    torch.testing.assert_close(coef * mask, ref_coef * mask, atol=1e-5, rtol=0)  # the trainer's coef is DelTA's
    want_delta, _ = independent_gradient(model, proto, old_logp, ref_coef)
    want_stock, _ = independent_gradient(model, proto, old_logp, None)
    err_delta = relative_error(got, want_delta)
    err_stock = relative_error(stock, want_stock)
    gap = relative_error(want_stock, want_delta)  # how far the stock gradient is from DelTA's
    print(f"verl update gradient vs independent: DelTA {err_delta:.2e}, stock {err_stock:.2e}; stock vs DelTA {gap:.2e}")
    assert err_delta < 1e-4 and err_stock < 1e-4
    assert gap > 1e-2  # the coefficients change the gradient: dropping them fails the first assert
    assert relative_error(got, want_stock) > 100 * err_delta
