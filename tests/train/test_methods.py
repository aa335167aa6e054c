"""The method table, one hand-worked batch per method: token advantages, loss mask, the loss
aggregation and advantage estimator each method is defined with, and the normaliser."""

from __future__ import annotations

import pytest
import torch

from delta_rlvr.core import PolicyLossConfig, policy_loss
from delta_rlvr.core.losses import mini_batch_normaliser
from delta_rlvr.train.config import AlgorithmConfig
from delta_rlvr.train.methods import METHODS, CreditInputs

# Three responses: A = +1, -1, 0; lengths 3, 2, 1 (True = valid).
ADV = torch.tensor([1.0, -1.0, 0.0])
MASK = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
ENTROPY = torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.2, 5.0], [0.5, 9.0, 9.0]])  # padding entropies must not count
COEF = torch.tensor([[1.2, 0.8, 1.0], [0.9, 1.1, 1.0], [1.0, 1.0, 1.0]])


def credit(method: str, **settings):
    algo = AlgorithmConfig(method=method, **settings)
    inputs = CreditInputs(ADV, MASK, ENTROPY, COEF if METHODS[method].needs_coefficients else None,
                          torch.Generator().manual_seed(0))
    return METHODS[method].credit(inputs, algo)


BROADCAST = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]])


def test_delta_feeds_the_loss_advantage_times_coefficient_on_every_valid_token():
    c = credit("delta")
    assert torch.equal(c.token_advantages, torch.tensor([[1.2, 0.8, 1.0], [-0.9, -1.1, -1.0], [0.0, 0.0, 0.0]]))
    assert torch.equal(c.loss_mask, MASK)


@pytest.mark.parametrize("method", ["dapo", "grpo", "dr_grpo"])
def test_plain_methods_broadcast_the_response_advantage(method):
    c = credit(method)
    assert torch.equal(c.token_advantages, BROADCAST) and torch.equal(c.loss_mask, MASK)


def test_forking_tokens_keeps_the_top_fifth_of_valid_tokens_by_entropy():
    # 6 valid tokens, round(0.2 x 6) = 1: the highest valid entropy is 0.9 at (0, 1); padding's 9.0 is ignored.
    c = credit("forking_tokens")
    expected = torch.zeros_like(MASK)
    expected[0, 1] = True
    assert torch.equal(c.loss_mask, expected) and torch.equal(c.token_advantages, BROADCAST)
    # 50%: 3 tokens, entropies 0.9, 0.8, 0.5
    c = credit("forking_tokens", forking_fraction=0.5)
    assert sorted(map(tuple, c.loss_mask.nonzero().tolist())) == [(0, 1), (1, 0), (2, 0)]


def test_token_select_ranks_only_signed_tokens_by_coefficient():
    # signed tokens: the 5 of responses 0 and 1; round(0.5 x 5) = 3 (halves up) -> 1.2, 1.1, 1.0
    c = credit("token_select")
    assert sorted(map(tuple, c.loss_mask.nonzero().tolist())) == [(0, 0), (0, 2), (1, 1)]
    c = credit("token_select", select_mode="bottom")  # 0.8, 0.9, then the first 1.0 by position
    assert sorted(map(tuple, c.loss_mask.nonzero().tolist())) == [(0, 1), (0, 2), (1, 0)]
    assert torch.equal(c.token_advantages, BROADCAST)


def test_each_method_names_its_aggregation_estimator_and_need_for_coefficients():
    table = {name: (spec.aggregation, spec.estimator, spec.needs_coefficients) for name, spec in METHODS.items()}
    assert table == {
        "delta": (None, "grpo", True),
        "dapo": (None, "grpo", False),
        "grpo": ("seq_mean_token_mean", "grpo", False),
        "dr_grpo": ("constant", "dr_grpo", False),
        "forking_tokens": (None, "grpo", False),
        "token_select": (None, "grpo", True),
    }
    assert AlgorithmConfig(method="dr_grpo").estimator == "dr_grpo" and AlgorithmConfig().estimator == "grpo"


@pytest.mark.parametrize("aggregation, expected", [("token_mean", 6), ("seq_mean_token_mean", 3), ("constant", 3 * 40)])
def test_the_mini_batch_normaliser_counts_tokens_responses_or_the_fixed_budget(aggregation, expected):
    assert int(mini_batch_normaliser(aggregation, MASK, max_length=40)) == expected


def test_micro_batch_losses_normalised_by_the_mini_batch_add_up_to_its_loss():
    torch.manual_seed(0)
    logp, old = -torch.rand(3, 3), -torch.rand(3, 3)
    for aggregation in ("token_mean", "constant"):  # the sums over tokens split exactly by rows
        cfg = PolicyLossConfig(aggregation=aggregation)
        norm = mini_batch_normaliser(aggregation, MASK, max_length=3)
        whole = policy_loss(logp, old, BROADCAST, MASK, cfg, normaliser=norm).loss
        parts = sum(policy_loss(logp[r], old[r], BROADCAST[r], MASK[r], cfg, normaliser=norm).loss
                    for r in (slice(0, 1), slice(1, 3)))
        torch.testing.assert_close(parts, whole)
    cfg = PolicyLossConfig(aggregation="seq_mean_token_mean")
    norm = mini_batch_normaliser("seq_mean_token_mean", MASK, max_length=3)
    whole = policy_loss(logp, old, BROADCAST, MASK, cfg, normaliser=norm).loss
    parts = sum(policy_loss(logp[r], old[r], BROADCAST[r], MASK[r], cfg, normaliser=norm).loss
                for r in (slice(0, 1), slice(1, 3)))
    torch.testing.assert_close(parts, whole)
