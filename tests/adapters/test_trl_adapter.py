"""DeltaGRPOTrainer against TRL's stock GRPOTrainer on a tiny Qwen3, on CPU.

The rewards are real: the arithmetic task's exact-answer score, plus a format term (the answer
extractor finds an integer) so that a random tiny model's groups are not all ties.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from delta_rlvr.adapters.common import DELTA_FIELDS  # noqa: E402
from delta_rlvr.adapters.trl import (  # noqa: E402
    LINEAR_LOSS_TYPES,
    DeltaGRPOConfig,
    DeltaGRPOTrainer,
    check_supported,
)
from delta_rlvr.core import DeltaConfig, delta_coefficients, row_proxy  # noqa: E402
from delta_rlvr.data import arithmetic_dataset, extract_arithmetic_answer, score_arithmetic  # noqa: E402
from delta_rlvr.models import build_tiny_model, completion_logprobs  # noqa: E402


def correct(completions, gold, **_):
    return score_arithmetic(completions, gold)


def has_answer(completions, **_):
    return [0.0 if extract_arithmetic_answer(c) is None else 1.0 for c in completions]


def train_dataset():
    rows = arithmetic_dataset(16)
    return datasets.Dataset.from_list([{"prompt": r.question, "gold": r.gold} for r in rows])


def common_args(tmp_path, **overrides):
    args = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        beta=0.0,
        temperature=1.0,
        reward_weights=[1.0, 0.5],
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        seed=11,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    args.update(overrides)
    return args


def build(trainer_cls, config_cls, model, tokenizer, tmp_path, **overrides):
    return trainer_cls(
        model=model,
        reward_funcs=[correct, has_answer],
        args=config_cls(**common_args(tmp_path, **overrides)),
        train_dataset=train_dataset(),
        processing_class=tokenizer,
    )


class Recording(DeltaGRPOTrainer):
    """Records, per generation batch, TRL's A (B,), DelTA's coef (B, T) and the final advantages."""

    def __init__(self, *args, **kwargs):
        self.records = []
        super().__init__(*args, **kwargs)

    def _delta_coefficients(self, batch):
        coef, stats = super()._delta_coefficients(batch)
        self.records.append({"A": batch["advantages"].clone(), "coef": coef.clone(), "batch": dict(batch)})
        return coef, stats

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        self.records[-1]["advantages"] = out["advantages"].clone()
        return out


def test_every_delta_setting_has_a_prefixed_trl_field_with_the_same_default(tmp_path):
    config = DeltaGRPOConfig(**common_args(tmp_path))
    for name in DELTA_FIELDS:
        assert getattr(config, "delta_" + name) == getattr(DeltaConfig(), name), name
    assert config.delta_config() == DeltaConfig()
    assert config.delta is None  # TRL's own two-sided clip field is untouched


def test_invalid_delta_settings_are_refused_naming_the_trl_field(tmp_path):
    with pytest.raises(ValueError, match="DeltaGRPOConfig.delta_coef_min"):
        DeltaGRPOConfig(**common_args(tmp_path, delta_coef_min=1.5))
    with pytest.raises(ValueError, match="delta_pooling"):
        DeltaGRPOConfig(**common_args(tmp_path, delta_pooling="per_group"))


def test_liger_and_unknown_losses_are_refused_with_the_setting_to_change():
    with pytest.raises(ValueError, match="use_liger_kernel=False"):
        check_supported(SimpleNamespace(use_liger_kernel=True, loss_type="dapo"))
    with pytest.raises(ValueError, match="Set loss_type"):
        check_supported(SimpleNamespace(use_liger_kernel=False, loss_type="some_future_nonlinear_loss"))
    for loss in LINEAR_LOSS_TYPES:
        check_supported(SimpleNamespace(use_liger_kernel=False, loss_type=loss))


def test_unit_coefficient_bounds_reproduce_stock_grpo_parameters_bit_for_bit(tiny_config, char_tokenizer, tiny_model, tmp_path):
    stock = build(trl.GRPOTrainer, trl.GRPOConfig, tiny_model, char_tokenizer, tmp_path / "stock")
    stock.train()
    delta = build(
        Recording,
        DeltaGRPOConfig,
        build_tiny_model(char_tokenizer, tiny_config),
        char_tokenizer,
        tmp_path / "delta",
        delta_coef_min=1.0,
        delta_coef_max=1.0,
    )
    delta.train()
    initial = dict(build_tiny_model(char_tokenizer, tiny_config).named_parameters())
    # The test means something only if the stock run had a learning signal.
    assert any(bool((r["A"] != 0).any()) for r in delta.records)
    changed = 0
    for (name, p_stock), (_, p_delta) in zip(stock.model.named_parameters(), delta.model.named_parameters()):
        assert torch.equal(p_stock, p_delta), name  # bit-for-bit
        changed += int(not torch.equal(p_stock, initial[name]))
    assert changed > 0


def test_delta_steps_train_with_advantages_a_times_coef_and_log_statistics(tiny_config, char_tokenizer, tiny_model, tmp_path):
    trainer = build(Recording, DeltaGRPOConfig, tiny_model, char_tokenizer, tmp_path, temperature=0.7, max_steps=3)
    trainer.train()
    assert len(trainer.records) == 3
    signed = 0
    for rec in trainer.records:
        batch, coef, A = rec["batch"], rec["coef"], rec["A"]
        mask = batch["completion_mask"].bool()
        # 1. The advantages handed to TRL's loss are exactly A x coef.
        assert torch.equal(rec["advantages"], A.unsqueeze(1) * coef)
        assert coef.shape == batch["completion_ids"].shape
        assert bool((coef[~mask] == 0).all()) and bool((coef[mask] > 0).all())
        # 2. coef is DelTA of the old policy's hidden states and probabilities at the trainer's
        #    temperature: recompute them independently with the project's own scorer. The
        #    weights are the sampling policy's only for the first batch, so check that one.
        if rec is trainer.records[0]:
            model = build_tiny_model(char_tokenizer, tiny_config)  # the weights that sampled batch 1
            scored = completion_logprobs(
                model, batch["prompt_ids"], batch["prompt_mask"].bool(), batch["completion_ids"], mask,
                temperature=0.7, return_hidden=True,
            )
            ref = delta_coefficients(row_proxy(scored.hidden, scored.logp, mask), A.float(), mask, DeltaConfig())
            torch.testing.assert_close(coef, ref.coef, atol=2e-5, rtol=0)
        signed += int(bool((A != 0).any()))
        if bool((A != 0).any()):
            assert float(coef[mask].mean()) == pytest.approx(1.0, abs=1e-5)  # self-normalised
            assert float(coef[mask].min()) >= 0.8 / 1.2 - 1e-6 and float(coef[mask].max()) <= 1.2 / 0.8 + 1e-6
    assert signed > 0
    # 3. Parameters moved.
    initial = dict(build_tiny_model(char_tokenizer, tiny_config).named_parameters())
    assert any(not torch.equal(p, initial[n]) for n, p in trainer.model.named_parameters())
    # 4. delta/* statistics reached TRL's logs, once per step.
    logged = [entry for entry in trainer.state.log_history if "delta/coef_mean" in entry]
    assert len(logged) == 3
    for key in ("delta/coef_std", "delta/temperature_pos", "delta/side_tokens_neg", "delta/normaliser"):
        assert key in logged[0]


@pytest.mark.parametrize("proxy", ["topk_hidden", "lm_head"])
def test_other_proxies_give_the_coefficients_of_the_trainers_own_proxy_function(proxy, tiny_config, char_tokenizer, tiny_model, tmp_path):
    from delta_rlvr.core.proxies import ProxyConfig
    from delta_rlvr.models.token_vectors import token_vectors

    trainer = build(Recording, DeltaGRPOConfig, tiny_model, char_tokenizer, tmp_path, temperature=0.7, max_steps=1,
                    delta_proxy=proxy, delta_proxy_topk=5)
    trainer.train()
    rec = trainer.records[0]
    batch, A = rec["batch"], rec["A"]
    mask = batch["completion_mask"].bool()
    model = build_tiny_model(char_tokenizer, tiny_config)  # the weights that sampled the batch
    args = (batch["prompt_ids"], batch["prompt_mask"].bool(), batch["completion_ids"], mask)
    scored = completion_logprobs(model, *args, temperature=0.7, return_hidden=True)
    vectors = token_vectors(ProxyConfig(name=proxy, topk=5), model, *args, scored, temperature=0.7)
    ref = delta_coefficients(vectors, A.float(), mask, DeltaConfig())
    torch.testing.assert_close(rec["coef"], ref.coef, atol=2e-5, rtol=0)


def test_proxies_trl_cannot_compute_are_refused_naming_the_setting(tmp_path):
    with pytest.raises(ValueError, match="delta_proxy='full_sketch'.*not available"):
        DeltaGRPOConfig(**common_args(tmp_path, delta_proxy="full_sketch"))
    with pytest.raises(ValueError, match="delta_pooling='local'"):
        DeltaGRPOConfig(**common_args(tmp_path, delta_proxy="lm_head", delta_pooling="global"))
