"""The trainer with each token-gradient proxy: one step trains, cached = streamed where both
exist, and the coefficients are the core's on the dispatcher's vectors."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_trainer import small_config  # tests/train is on sys.path (rootdir-relative import mode)

from delta_rlvr.core import delta_coefficients, group_advantages
from delta_rlvr.train import ConfigError, Trainer
from delta_rlvr.train.old_policy import old_policy_pass, proxy_vectors
from delta_rlvr.train.trainer import StageTimer


def old_pass(trainer, batch, adv, timer):
    """The trainer's old-policy stage on a batch, under the trainer's current config."""
    return old_policy_pass(trainer.runner, batch, adv, trainer.config.algorithm, gamma=trainer.gamma, seed=0,
                           sketch=trainer.sketch, timer=timer)


PROXY_SETS = {
    "row": [],
    "topk_hidden": ["algorithm.proxy.name=topk_hidden", "algorithm.proxy.topk=8"],
    "lm_head": ["algorithm.proxy.name=lm_head"],
    "full_sketch": ["algorithm.proxy.name=full_sketch", "algorithm.proxy.sketch_dim=512"],
}


def _batch(trainer):
    timer = StageTimer(trainer.device)
    rollout = trainer.rollout(timer)
    batch = rollout.batch
    adv = group_advantages(rollout.rewards, batch.group_index)
    if not adv.any():  # make both sides non-empty whatever the sample
        adv = torch.linspace(-1, 1, adv.numel())
    return batch, adv, timer


@pytest.mark.parametrize("proxy", list(PROXY_SETS))
def test_each_proxy_trains_a_step_and_logs_its_coefficients(tmp_path, proxy):
    cfg = small_config(tmp_path / proxy, *PROXY_SETS[proxy], "run.max_steps=1", "run.tensorboard=false",
                       "rollout.prompts_per_step=2", "rollout.max_new_tokens=16")
    m = Trainer(cfg).train_step()
    assert m["skipped_updates"] == 0 and m["grad_norm"] == m["grad_norm"]
    if m["delta/side_tokens_pos"] and m["delta/side_tokens_neg"]:
        assert m["delta/coef_std"] > 0 and m["delta/coef_mean"] == pytest.approx(1.0, abs=0.05)


def test_full_sketch_skips_zero_advantage_rows_without_changing_the_coefficients(tmp_path):
    from delta_rlvr.models.token_vectors import make_sketch, token_vectors

    trainer = Trainer(small_config(tmp_path / "z", *PROXY_SETS["full_sketch"], "run.max_steps=1", "run.tensorboard=false",
                                   "rollout.max_new_tokens=12"))
    batch, adv, _ = _batch(trainer)
    adv = adv.clone()
    adv[: adv.numel() // 2] = 0.0  # half the rows on neither side
    rows = slice(0, adv.numel())
    out = trainer.runner.forward(batch, rows, hidden=True)
    args = (trainer.config.algorithm.proxy, trainer.model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
            batch.completion_mask, out)
    sketch = make_sketch(trainer.config.algorithm.proxy, trainer.model)
    full = token_vectors(*args, temperature=1.0, sketch=sketch)
    skipped = token_vectors(*args, temperature=1.0, sketch=sketch, advantages=adv)
    assert bool((skipped[adv == 0] == 0).all()) and torch.equal(skipped[adv != 0], full[adv != 0])
    cfg = trainer.config.algorithm.coefficients
    torch.testing.assert_close(delta_coefficients(skipped, adv, batch.completion_mask, cfg).coef,
                               delta_coefficients(full, adv, batch.completion_mask, cfg).coef, rtol=0, atol=0)


@pytest.mark.parametrize("proxy", ["topk_hidden", "lm_head", "full_sketch"])
def test_trainer_coefficients_are_the_core_estimator_on_the_dispatched_vectors(tmp_path, proxy):
    trainer = Trainer(small_config(tmp_path / proxy, *PROXY_SETS[proxy], "run.max_steps=1", "run.tensorboard=false",
                                   "optim.micro_batch_size=5", "rollout.max_new_tokens=16"))
    batch, adv, timer = _batch(trainer)
    old = old_pass(trainer, batch, adv, timer)
    assert not old.streamed
    rows = slice(0, adv.numel())  # the whole batch at once, not micro-batch by micro-batch
    vectors = proxy_vectors(trainer.runner, batch, rows, adv, trainer.config.algorithm, trainer.sketch)
    ref = delta_coefficients(vectors, adv, batch.completion_mask, trainer.config.algorithm.coefficients)
    torch.testing.assert_close(old.coef, ref.coef, rtol=0, atol=2e-6)


def test_topk_hidden_cached_and_streamed_give_the_same_coefficients(tmp_path):
    trainer = Trainer(small_config(tmp_path / "k", *PROXY_SETS["topk_hidden"], "run.max_steps=1", "run.tensorboard=false",
                                   "optim.micro_batch_size=5"))
    batch, adv, timer = _batch(trainer)
    cached = old_pass(trainer, batch, adv, timer)
    trainer.config = replace(trainer.config, algorithm=replace(trainer.config.algorithm, hidden_states="streamed"))
    streamed = old_pass(trainer, batch, adv, timer)
    assert (cached.streamed, streamed.streamed) == (False, True)
    torch.testing.assert_close(streamed.coef, cached.coef, rtol=0, atol=2e-6)


def test_whole_batch_proxies_refuse_streamed_hidden_states_naming_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="algorithm.hidden_states.*use 'cached'"):
        small_config(tmp_path, "algorithm.proxy.name=lm_head", "algorithm.hidden_states=streamed")
    with pytest.raises(ConfigError, match="proxy"):
        small_config(tmp_path, "algorithm.proxy.name=rows")
