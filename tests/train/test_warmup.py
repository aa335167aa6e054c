"""Worked solutions of the two embedded models' styles, and the verbose model as shipped."""

import pytest

from delta_rlvr.data import score_arithmetic
from delta_rlvr.train.warmup import STYLE_MAX_NEW_TOKENS, worked_solution


def test_compact_and_verbose_worked_solutions_of_a_three_term_sum():
    assert worked_solution("37+48+19=") == "37+48=85. 85+19=104. answer 104"
    assert worked_solution("37+48+19=", "verbose") == (
        "Add left to right. Step 1: 37 + 48 = 85. Step 2: 85 + 19 = 104. The final answer is 104."
    )
    with pytest.raises(ValueError, match="style = 'terse'"):
        worked_solution("1+2=", "terse")


def test_verbose_solutions_score_by_their_final_answer_and_fit_the_rollout_length():
    right = worked_solution("99+99+99=", "verbose")
    assert len(right) + 1 <= STYLE_MAX_NEW_TOKENS["verbose"]  # + EOS, one character per token
    wrong = right.replace("= 297. The final answer is 297.", "= 296. The final answer is 296.")
    assert score_arithmetic([right, wrong], ["297", "297"]) == [1.0, 0.0]


def test_the_shipped_verbose_model_writes_the_template():
    from delta_rlvr.models import sample_completions
    from delta_rlvr.train.config import ModelConfig
    from delta_rlvr.train.policy import load_policy

    model, tok, _ = load_policy(ModelConfig(name="embedded:arith-verbose", device="cpu"))
    batch = sample_completions(model, [tok("37+48+19=")["input_ids"]], num_samples=4, max_new_tokens=112,
                               temperature=1.0, seed=1, pad_token_id=tok.pad_token_id)
    texts = tok.batch_decode(batch.completion_ids.masked_fill(~batch.completion_mask, tok.pad_token_id), skip_special_tokens=True)
    assert all(t.startswith("Add left to right. Step 1: 37 + 48 = ") and "The final answer is" in t for t in texts)
