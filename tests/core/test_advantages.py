"""Group advantages: GRPO/DAPO (unbiased std, eps 1e-6) and Dr.GRPO (no std)."""

import pytest
import torch

from delta_rlvr.core import group_advantages


def test_grpo_advantages_of_a_hand_worked_group():
    # rewards 1, 0, 0, 1: mean 0.5; unbiased std = sqrt(4 * 0.25 / 3) = 0.5773502692;
    # A = +-0.5 / (0.5773502692 + 1e-6) = +-0.8660239.
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.zeros(4, dtype=torch.long))
    a = 0.5 / (0.5773502692 + 1e-6)
    torch.testing.assert_close(adv, torch.tensor([a, -a, -a, a]), rtol=0, atol=1e-7)


def test_dr_grpo_only_centres_the_rewards():
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.zeros(4, dtype=torch.long), "dr_grpo")
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_groups_are_found_by_id_in_any_order_and_match_a_per_group_loop():
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([7, 3, 7, 3, 9, 7, 3, 9, 9, 7])
    rewards = torch.rand(10, generator=g)
    adv = group_advantages(rewards, ids)
    for gid in ids.unique():
        sel = ids == gid
        r = rewards[sel].double()
        torch.testing.assert_close(adv[sel], ((r - r.mean()) / (r.std() + 1e-6)).float())


def test_groups_with_equal_rewards_or_a_single_response_get_zero():
    adv = group_advantages(torch.tensor([1.0, 1.0, 1.0, 0.0, 5.0]), torch.tensor([0, 0, 0, 1, 2]))
    assert torch.equal(adv, torch.zeros(5))


def test_bad_shapes_and_estimators_are_refused():
    with pytest.raises(ValueError, match="shape"):
        group_advantages(torch.zeros(4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="estimator"):
        group_advantages(torch.zeros(4), torch.zeros(4, dtype=torch.long), "ppo")
