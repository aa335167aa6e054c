"""Token selection masks: top / bottom / random fraction by coefficient, forking tokens."""

import pytest
import torch

from delta_rlvr.core import forking_token_mask, select_tokens
from delta_rlvr.core.masked import quantiles


def test_top_and_bottom_half_of_a_hand_worked_batch():
    scores = torch.tensor([[0.9, 1.2, 5.0], [1.1, 0.8, 7.0]])
    mask = torch.tensor([[True, True, False], [True, True, False]])  # 5.0 and 7.0 are padding
    assert select_tokens(scores, mask, 0.5, "top").tolist() == [[False, True, False], [True, False, False]]
    assert select_tokens(scores, mask, 0.5, "bottom").tolist() == [[True, False, False], [False, True, False]]


def test_selection_is_pooled_over_the_batch_and_keeps_the_rounded_count():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(16, 20, generator=g)
    mask = torch.rand(16, 20, generator=g) > 0.3
    n = int(mask.sum())
    for mode in ("top", "bottom", "random"):
        kept = select_tokens(scores, mask, 0.5, mode, generator=torch.Generator().manual_seed(1))
        assert int(kept.sum()) == int(0.5 * n + 0.5) and not (kept & ~mask).any()
    top = select_tokens(scores, mask, 0.5, "top")
    assert scores[top].min() >= scores[mask & ~top].max()


def test_ties_are_broken_by_position_so_the_mask_is_deterministic():
    scores = torch.ones(2, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    assert select_tokens(scores, mask, 0.5, "top").tolist() == [[True, True, True], [False, False, False]]


def test_forking_tokens_keep_the_top_fifth_by_entropy():
    entropy = torch.arange(10.0).reshape(2, 5)
    kept = forking_token_mask(entropy, torch.ones(2, 5, dtype=torch.bool))
    assert kept.tolist() == [[False] * 5, [False, False, False, True, True]]


def test_bad_fraction_is_refused():
    with pytest.raises(ValueError, match="fraction"):
        select_tokens(torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool), 1.5)


def test_quantiles_match_numpy_linear_interpolation():
    import numpy as np

    x = torch.randn(1001, generator=torch.Generator().manual_seed(0))
    qs = (0.05, 0.5, 0.95)
    torch.testing.assert_close(quantiles(x, qs), torch.tensor(np.quantile(x.double().numpy(), qs)).float())
