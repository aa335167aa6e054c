"""DAPO's soft overlong penalty and the format reward, against hand-worked values."""

import pytest

from delta_rlvr.verifiers import format_reward, soft_overlong_penalty


def test_overlong_penalty_is_zero_then_linear_then_full():
    # L_max = 20, buffer 4: free up to 16, -1/4 per token over 16, -1 beyond 20 (then x factor).
    lengths = [0, 16, 17, 18, 20, 21]
    assert soft_overlong_penalty(lengths, max_length=20, buffer_length=4) == [0.0, 0.0, -0.25, -0.5, -1.0, -1.0]
    assert soft_overlong_penalty([18], max_length=20, buffer_length=4, factor=0.5) == [-0.25]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"max_length": 0, "buffer_length": 1}, "max_length"), ({"max_length": 8, "buffer_length": 9}, "buffer_length"),
     ({"max_length": 8, "buffer_length": 4, "factor": -1}, "factor")],
)
def test_overlong_penalty_rejects_bad_settings_by_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        soft_overlong_penalty([1], **kwargs)


def test_format_reward_uses_the_verifier_extractors():
    responses = [r"so \boxed{3}", "no answer", "<think>hm</think> \\boxed{4}", r"\boxed{4} <think>x</think>"]
    assert format_reward(responses, required="boxed") == [1.0, 0.0, 1.0, 1.0]
    assert format_reward(responses, required="think_then_boxed") == [0.0, 0.0, 1.0, 0.0]
    assert format_reward(["x\n#### 5"], required="hashes") == [1.0]
