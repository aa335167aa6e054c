"""The parts of the verl adapter that run without GPUs or Ray (verl 0.9.1, CPU).

The engine forward is verl's own: ``FSDPEngineWithLMHead.prepare_model_inputs`` and
``prepare_model_outputs`` run unbound on a stand-in object that holds a tiny Qwen3 (FSDP and
CUDA are what the stand-in replaces). Rewards are the arithmetic task's real scores.
"""

from __future__ import annotations

import pytest
import torch

verl = pytest.importorskip("verl")
pytest.importorskip("uvicorn")

from omegaconf import OmegaConf  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo.core_algos import get_policy_loss_fn  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead  # noqa: E402
from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding  # noqa: E402

from delta_rlvr.adapters.verl.actor_pass import ADVANTAGE_KEY, COEF_KEY, check_engine_supported, delta_passes  # noqa: E402
from delta_rlvr.adapters.verl.settings import DeltaSettings, delta_settings  # noqa: E402
from delta_rlvr.adapters.verl.trainer import check_trainer_supported, outcome_advantages, rewrite_advantages  # noqa: E402
from delta_rlvr.core import (  # noqa: E402
    DeltaConfig,
    PolicyLossConfig,
    delta_coefficients,
    grad_proxy,
    group_advantages,
    per_token_policy_loss,
)
from delta_rlvr.data import arithmetic_dataset, score_arithmetic  # noqa: E402
from delta_rlvr.models import build_tiny_model, completion_logprobs  # noqa: E402


TEMPERATURE = 0.7
# Two prompts x three responses; written answers, scored by the real arithmetic scorer.
RESPONSES = [["{gold}", "answer {wrong}", "x+1"], ["answer {gold}", "{gold} is it", "no"]]


class CpuEngine:
    """verl's FSDP engine methods on a plain module: no FSDP, no CUDA, no sequence parallelism."""

    prepare_model_inputs = FSDPEngineWithLMHead.prepare_model_inputs
    prepare_model_outputs = FSDPEngineWithLMHead.prepare_model_outputs
    _gather_and_unpad_packed = FSDPEngineWithLMHead._gather_and_unpad_packed
    _get_packed_pad_size = FSDPEngineWithLMHead._get_packed_pad_size

    def __init__(self, module):
        self.module = module
        self.use_ulysses_sp = False
        self.pad_to_length = None
        self.engine_config = OmegaConf.create({"entropy_checkpointing": False, "entropy_from_logits_with_chunking": False})

    def infer(self, data: TensorDict, micro: int) -> TensorDict:
        """One forward over ``data`` in micro-batches of ``micro`` rows, outputs re-nested."""
        outputs: dict[str, list] = {}
        b = data.batch_size[0]
        with torch.no_grad():
            for start in range(0, b, micro):
                mb = tu.index_select_tensor_dict(data, torch.arange(start, min(start + micro, b)))
                inputs, args = self.prepare_model_inputs(micro_batch=mb)
                raw = self.module(**inputs, use_cache=False)
                out = self.prepare_model_outputs(output=raw, output_args=args, micro_batch=mb, logits_processor_func=None)
                for key, value in out.items():
                    outputs.setdefault(key, []).extend(value.unbind())
        return TensorDict(
            {k: torch.nested.as_nested_tensor(v, layout=torch.jagged) for k, v in outputs.items()}, batch_size=[b]
        )


def rollout_batch(tokenizer):
    """Left-padded prompts + right-padded responses, verl's padded layout, with real rewards."""
    problems = [arithmetic_dataset(3)[0], arithmetic_dataset(3)[2]]
    prompts, responses, golds, uids = [], [], [], []
    for g, problem in enumerate(problems):
        for template in RESPONSES[g]:
            text = template.format(gold=problem.gold, wrong=int(problem.gold) + 1)
            prompts.append(tokenizer(problem.question).input_ids)
            responses.append(tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id])
            golds.append(problem.gold)
            uids.append(str(g))
    p_len, r_len = max(map(len, prompts)), max(map(len, responses))
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])
    prompt_mask = torch.tensor([[0] * (p_len - len(p)) + [1] * len(p) for p in prompts])
    response_ids = torch.tensor([r + [pad] * (r_len - len(r)) for r in responses])
    response_mask = torch.tensor([[1] * len(r) + [0] * (r_len - len(r)) for r in responses])
    attention = torch.cat([prompt_mask, response_mask], 1)
    position = (attention.cumsum(1) - 1).clamp_min(0)
    texts = [tokenizer.decode(r, skip_special_tokens=True) for r in responses]
    rewards = torch.tensor(score_arithmetic(texts, golds))
    return dict(
        prompts=prompt_ids, responses=response_ids, input_ids=torch.cat([prompt_ids, response_ids], 1),
        attention_mask=attention, position_ids=position, response_mask=response_mask,
        prompt_mask=prompt_mask, rewards=rewards, uids=uids,
    )


@pytest.mark.parametrize("remove_padding", [False, True])
def test_coefficient_pass_through_verl_engine_forward_matches_the_one_shot_core(tiny_config, char_tokenizer, remove_padding):
    model = build_tiny_model(char_tokenizer, tiny_config)
    batch = rollout_batch(char_tokenizer)
    assert 0 < float(batch["rewards"].sum()) < len(batch["rewards"])  # real, varying rewards
    A = group_advantages(batch["rewards"], torch.tensor([int(u) for u in batch["uids"]]))
    fields = {k: batch[k] for k in ("prompts", "responses", "input_ids", "attention_mask", "position_ids", "response_mask")}
    td = TensorDict({**fields, ADVANTAGE_KEY: A}, batch_size=[len(A)])
    td = left_right_2_no_padding(td)
    tu.assign_non_tensor(td, temperature=TEMPERATURE, use_remove_padding=remove_padding, calculate_entropy=False)
    engine = CpuEngine(model)
    check_engine_supported(engine, td)
    # Packed sequences attend across samples on CPU (no varlen kernel): one row per micro-batch.
    micro = 1 if remove_padding else 4
    calls = []

    def infer():
        calls.append(1)
        return engine.infer(td.copy(), micro)

    output, coef_nested, stats = delta_passes(engine, infer, DeltaConfig())
    assert len(calls) == 3  # old-log-prob pass + K + 1 = 2 more for the paper's K = 1
    assert "prepare_model_outputs" not in vars(engine)  # the wrapper is gone afterwards
    coef = no_padding_2_padding(coef_nested, td)  # (B, R)
    logp = no_padding_2_padding(output["log_probs"], td)

    mask = batch["response_mask"].bool()
    ref_scored = completion_logprobs(
        model, batch["prompts"], batch["prompt_mask"].bool(), batch["responses"], mask,
        temperature=TEMPERATURE, return_hidden=True,
    )
    torch.testing.assert_close(logp[mask], ref_scored.logp[mask], atol=1e-5, rtol=0)
    ref = delta_coefficients(grad_proxy(ref_scored.hidden, ref_scored.logp, mask), A, mask, DeltaConfig())
    torch.testing.assert_close(coef * mask, ref.coef, atol=1e-5, rtol=0)
    assert float(stats.coef_mean) == pytest.approx(float(ref.stats.coef_mean), abs=1e-5)
    assert float(coef[mask].std()) > 1e-4  # the coefficients are not trivially 1


def test_fused_kernels_are_refused_naming_the_setting(tiny_config, char_tokenizer):
    td = TensorDict({}, batch_size=[0])
    tu.assign_non_tensor(td, use_fused_kernels=True)
    with pytest.raises(ValueError, match="use_fused_kernels=False"):
        check_engine_supported(CpuEngine(build_tiny_model(char_tokenizer, tiny_config)), td)


def verl_config(**algorithm):
    algo = {"adv_estimator": "grpo", "gamma": 1.0, "lam": 1.0, "norm_adv_by_std_in_grpo": True, "use_kl_in_reward": False}
    algo.update(algorithm)
    return OmegaConf.create({"algorithm": algo, "actor_rollout_ref": {"rollout": {"n": 3}},
                             "delta": {"enable": True, "pooling": "local", "coef_min": 0.8}})


def test_advantages_before_the_pass_then_a_times_coef_written_into_the_dataproto(char_tokenizer):
    batch = rollout_batch(char_tokenizer)
    mask = batch["response_mask"]
    b, r = mask.shape
    last = mask.sum(1) - 1
    rm_scores = torch.zeros(b, r).scatter(1, last.unsqueeze(1), batch["rewards"].unsqueeze(1))
    import numpy as np

    proto = DataProto.from_dict(tensors={"rm_scores": rm_scores, "response_mask": mask},
                                non_tensors={"uid": np.array(batch["uids"], dtype=object)})
    config = verl_config()
    A = outcome_advantages(proto, config)  # what fit() will compute, one value per response
    torch.testing.assert_close(A, group_advantages(batch["rewards"], torch.tensor([int(u) for u in batch["uids"]])),
                               atol=1e-5, rtol=0)
    coef = (0.8 + 0.4 * torch.rand(b, r, generator=torch.Generator().manual_seed(0))) * mask
    proto.batch["advantages"] = A.unsqueeze(1) * mask  # as verl's GRPO writes it
    proto.batch[COEF_KEY] = coef
    proto.batch[ADVANTAGE_KEY] = A
    rewrite_advantages(proto)
    assert torch.equal(proto.batch["advantages"], A.unsqueeze(1) * mask * coef)
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


def test_delta_namespace_is_validated_with_the_setting_named():
    assert delta_settings(OmegaConf.create({})) == DeltaSettings()
    s = delta_settings(verl_config())
    assert s.enable and s.pooling == "local" and s.config == DeltaConfig(coef_min=0.8)
    with pytest.raises(ValueError, match="delta.coef_min"):
        DeltaSettings.from_dict({"enable": True, "coef_min": 2.0})
    with pytest.raises(ValueError, match="delta.pooling"):
        DeltaSettings.from_dict({"enable": True, "pooling": "per_group"})
    with pytest.raises(ValueError, match="delta.gama"):
        DeltaSettings.from_dict({"gama": 1})
    assert DeltaSettings.from_dict({"enable": True, "proxy": "row"}).proxy == "row"
    with pytest.raises(ValueError, match="delta.proxy='lm_head' is not available in the verl adapter"):
        DeltaSettings.from_dict({"enable": True, "proxy": "lm_head"})
    with pytest.raises(ValueError, match="adv_estimator=grpo"):
        check_trainer_supported(verl_config(adv_estimator="gae"))
    with pytest.raises(ValueError, match="use_kl_in_reward=False"):
        check_trainer_supported(verl_config(use_kl_in_reward=True))
