"""Batched sampling: layout, EOS stopping and masks, max_new_tokens, seeds, greedy and top-p."""

from __future__ import annotations

import pytest
import torch

from delta_rlvr.models import left_pad, sample_completions, valid_through_first_eos

EOS, PAD = 2, 0


def _prompts(tok):
    return [tok("37+48+19=").input_ids, tok("1+2=").input_ids, tok("5*6-7=").input_ids]


def _uniform_policy(model):
    """Zero the final norm: every logit is 0, so each step picks EOS with probability 1/100."""
    with torch.no_grad():
        model.model.norm.weight.zero_()
    return model


def test_left_pad_aligns_prompts_on_the_right():
    ids, mask = left_pad([[7, 8, 9], [5]], pad_token_id=0)
    assert ids.tolist() == [[7, 8, 9], [0, 0, 5]]
    assert mask.tolist() == [[True, True, True], [False, False, True]]


def test_valid_mask_runs_through_the_first_eos_only():
    ids = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 0, 0, 0]])
    assert valid_through_first_eos(ids, [2]).tolist() == [
        [True, True, False, False], [True, True, True, True], [True, False, False, False]]


def test_rows_are_prompt_major_with_g_samples_per_prompt(small_model, char_tokenizer):
    prompts = _prompts(char_tokenizer)
    batch = sample_completions(small_model, prompts, num_samples=4, max_new_tokens=5, seed=0)
    assert batch.group_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    expected_ids, expected_mask = left_pad(prompts, PAD)
    assert torch.equal(batch.prompt_ids, expected_ids.repeat_interleave(4, dim=0))
    assert torch.equal(batch.prompt_mask, expected_mask.repeat_interleave(4, dim=0))
    assert batch.completion_ids.dtype == torch.long and batch.completion_mask.dtype == torch.bool


def test_completions_stop_at_eos_and_never_exceed_max_new_tokens(char_tokenizer, small_model):
    model = _uniform_policy(small_model)
    max_new = 40
    batch = sample_completions(model, [char_tokenizer("1+2=").input_ids], num_samples=64,
                               max_new_tokens=max_new, seed=1)
    lengths = batch.completion_lengths
    ended = batch.ended_with_eos
    # With P(EOS) = 1/100 per step, 1 - 0.99^40 = 33% of 64 rows stop early (seeded: 20 do).
    assert 5 < int(ended.sum()) < 59
    assert batch.completion_ids.shape[1] == int(lengths.max()) <= max_new
    for row in range(64):
        n = int(lengths[row])
        assert batch.completion_mask[row].tolist() == [True] * n + [False] * (batch.completion_ids.shape[1] - n)
        valid = batch.completion_ids[row, :n].tolist()
        if ended[row]:
            assert valid[-1] == EOS and EOS not in valid[:-1]  # the EOS is kept and valid
        else:
            assert n == max_new and EOS not in valid  # only the length cap ends a row without EOS
        assert (batch.completion_ids[row, n:] == PAD).all()


def test_a_seed_reproduces_the_batch_and_leaves_the_global_rng_alone(small_model, char_tokenizer):
    prompts = _prompts(char_tokenizer)
    torch.manual_seed(123)
    expected_next = torch.rand(2)
    torch.manual_seed(123)
    first = sample_completions(small_model, prompts, num_samples=3, max_new_tokens=12, temperature=1.0, seed=7)
    assert torch.equal(torch.rand(2), expected_next)
    second = sample_completions(small_model, prompts, num_samples=3, max_new_tokens=12, temperature=1.0, seed=7)
    other = sample_completions(small_model, prompts, num_samples=3, max_new_tokens=12, temperature=1.0, seed=8)
    assert torch.equal(first.completion_ids, second.completion_ids)
    assert torch.equal(first.completion_mask, second.completion_mask)
    assert not torch.equal(first.completion_ids, other.completion_ids)


def test_greedy_completions_do_not_depend_on_left_padding(small_model, char_tokenizer):
    prompts = _prompts(char_tokenizer)
    together = sample_completions(small_model, prompts, num_samples=1, max_new_tokens=10, temperature=0)
    for index, prompt in enumerate(prompts):
        alone = sample_completions(small_model, [prompt], num_samples=1, max_new_tokens=10, temperature=0)
        n = int(alone.completion_lengths[0])
        assert together.completion_ids[index, :n].tolist() == alone.completion_ids[0, :n].tolist()


def test_tiny_top_p_keeps_only_the_most_likely_token(small_model, char_tokenizer):
    prompts = _prompts(char_tokenizer)
    greedy = sample_completions(small_model, prompts, num_samples=2, max_new_tokens=8, temperature=0)
    nucleus = sample_completions(small_model, prompts, num_samples=2, max_new_tokens=8, temperature=1.0,
                                 top_p=1e-6, seed=0)
    assert torch.equal(greedy.completion_ids, nucleus.completion_ids)


def test_model_generation_defaults_do_not_leak_into_sampling(small_model, char_tokenizer):
    prompts = _prompts(char_tokenizer)
    clean = sample_completions(small_model, prompts, num_samples=2, max_new_tokens=8, seed=4)
    small_model.generation_config.top_k = 1
    small_model.generation_config.repetition_penalty = 5.0
    small_model.generation_config.min_new_tokens = 8
    polluted = sample_completions(small_model, prompts, num_samples=2, max_new_tokens=8, seed=4)
    assert torch.equal(clean.completion_ids, polluted.completion_ids)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_samples": 0}, "num_samples=0"),
        ({"max_new_tokens": 0}, "max_new_tokens=0"),
        ({"top_p": 0.0}, r"top_p=0.0 must be in \(0, 1\]"),
        ({"temperature": -1.0}, "temperature=-1.0"),
    ],
)
def test_bad_sampling_arguments_are_refused_by_name(small_model, char_tokenizer, kwargs, message):
    arguments = {"num_samples": 2, "max_new_tokens": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        sample_completions(small_model, _prompts(char_tokenizer), **arguments)


def test_an_empty_prompt_is_refused(small_model):
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        sample_completions(small_model, [[1, 5], []], num_samples=1, max_new_tokens=2)
