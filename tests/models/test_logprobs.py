"""The chunked old-policy / training forward against the full-logits computation.

Tolerances: 1e-5 absolute on log-probs and entropies (float32; observed differences are 0 to
~1e-6), exact equality for hidden states, rtol 1e-5 for gradients.
"""

from __future__ import annotations

import pytest
import torch

from delta_rlvr.models import SampleBatch, TokenLogProbs, completion_logprobs, left_pad

TOL = 1e-5


def _batch(tok, lengths=(12, 3, 7, 1, 12, 5)):
    """Left-padded prompts of three lengths (each twice) and random right-padded completions."""
    prompts = [tok("37+48+19=").input_ids, tok("1+2=").input_ids, tok("(5*6)-7=").input_ids]
    prompt_ids, prompt_mask = left_pad(prompts, pad_token_id=0)
    width = max(lengths)
    generator = torch.Generator().manual_seed(0)
    completion_ids = torch.randint(4, 100, (len(lengths), width), generator=generator)
    completion_mask = torch.arange(width) < torch.tensor(lengths).unsqueeze(-1)
    return SampleBatch(
        prompt_ids=prompt_ids.repeat_interleave(2, dim=0),
        prompt_mask=prompt_mask.repeat_interleave(2, dim=0),
        completion_ids=completion_ids.masked_fill(~completion_mask, 0),
        completion_mask=completion_mask,
        group_index=torch.arange(3).repeat_interleave(2),
        eos_token_ids=(2,),
    )


def _full_reference(model, batch, temperature):
    """log_softmax(logits / T) of the sampled tokens and entropies from the model's own logits."""
    ids = torch.cat([batch.prompt_ids, batch.completion_ids], dim=1)
    mask = torch.cat([batch.prompt_mask, batch.completion_mask], dim=1).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
    p = batch.prompt_ids.shape[1]
    logits = logits[:, p - 1:-1]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # (B, T, V)
    log_probs = torch.log_softmax(logits, dim=-1)
    logp = log_probs.gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    valid = batch.completion_mask
    return logp * valid, entropy * valid


def _score(model, batch, **kwargs) -> TokenLogProbs:
    return completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                               batch.completion_mask, **kwargs)


@pytest.mark.parametrize("temperature", [0.6, 1.0, 1.7])
def test_chunked_logp_and_entropy_equal_full_log_softmax(small_model, char_tokenizer, temperature):
    batch = _batch(char_tokenizer)
    with torch.no_grad():
        ref_logp, ref_entropy = _full_reference(small_model, batch, temperature)
        for chunk_size in (1, 5, 64, 100_000):
            out = _score(small_model, batch, temperature=temperature, chunk_size=chunk_size)
            assert out.logp.dtype == out.entropy.dtype == torch.float32
            torch.testing.assert_close(out.logp, ref_logp, atol=TOL, rtol=0)
            torch.testing.assert_close(out.entropy, ref_entropy, atol=TOL, rtol=0)
            assert out.hidden is None
    assert (ref_entropy[batch.completion_mask] > 0).all()


def test_hidden_is_exactly_what_the_lm_head_receives(small_model, char_tokenizer):
    batch = _batch(char_tokenizer)
    captured = []
    head = small_model.get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach().clone()))
    try:
        with torch.no_grad():
            _full_reference(small_model, batch, 1.0)
    finally:
        handle.remove()
    p = batch.prompt_ids.shape[1]
    head_input = captured[0][:, p - 1:-1]  # (B, T, H): the input that predicts completion token t
    with torch.no_grad():
        out = _score(small_model, batch, return_hidden=True, chunk_size=4)
    valid = batch.completion_mask
    assert out.hidden.shape == (*batch.completion_ids.shape, small_model.config.hidden_size)
    assert torch.equal(out.hidden[valid], head_input[valid])
    assert (out.hidden[~valid] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("tied", [True, False])
def test_gradients_of_chunked_logp_equal_the_full_path(small_model, small_untied_model, char_tokenizer, tied, dtype):
    """float64 checks the identity itself (to 1e-10 of each gradient's largest entry); float32
    checks it survives float32 summation order (to 1e-5). The loss coefficients (float32 weights,
    0.125) are exact in both dtypes, so only the order of summation can differ."""
    model = (small_model if tied else small_untied_model).to(dtype)
    batch = _batch(char_tokenizer)
    weights = torch.randn(batch.completion_ids.shape, generator=torch.Generator().manual_seed(0))

    def grads(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    ref_logp, ref_entropy = _full_reference(model, batch, 0.8)
    expected = grads((weights * ref_logp).sum() + 0.125 * ref_entropy.sum())
    out = _score(model, batch, temperature=0.8, chunk_size=3)
    actual = grads((weights * out.logp).sum() + 0.125 * out.entropy.sum())
    assert expected.keys() == actual.keys()
    relative = 1e-10 if dtype == torch.float64 else 1e-5
    for name in expected:
        scale = expected[name].abs().max().item()
        assert scale > 0, name
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=relative * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_old_policy_pass_under_no_grad_matches_the_training_forward(small_model, char_tokenizer):
    batch = _batch(char_tokenizer)
    train = _score(small_model, batch, return_hidden=True, chunk_size=7)
    with torch.no_grad():
        old = _score(small_model, batch, return_hidden=True, chunk_size=7)
    assert train.logp.requires_grad and not old.logp.requires_grad and not old.hidden.requires_grad
    assert torch.equal(train.logp.detach(), old.logp)
    assert torch.equal(train.entropy.detach(), old.entropy)
    assert torch.equal(train.hidden.detach(), old.hidden)


def test_lm_head_never_sees_more_than_chunk_size_tokens(small_model, char_tokenizer):
    batch = _batch(char_tokenizer)
    rows = []
    handle = small_model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: rows.append(output.shape[:-1].numel()))
    try:
        out = _score(small_model, batch, chunk_size=4)
        n_valid = int(batch.completion_mask.sum())
        assert max(rows) <= 4 and sum(rows) == n_valid  # only valid tokens are scored
        rows.clear()
        out.logp.sum().backward()  # backward recomputes each chunk, again at most 4 rows
        assert max(rows) <= 4 and sum(rows) == n_valid
    finally:
        handle.remove()


def test_scores_match_the_samplers_own_logits(small_model, char_tokenizer):
    """The old-policy log-probs are those of the distribution generate sampled from (KV cache)."""
    batch = _batch(char_tokenizer)
    with torch.no_grad():
        generated = small_model.generate(
            input_ids=batch.prompt_ids, attention_mask=batch.prompt_mask.long(), do_sample=False,
            top_k=None, max_new_tokens=6, min_new_tokens=6, output_logits=True,
            return_dict_in_generate=True, eos_token_id=None, pad_token_id=0)
        completion = generated.sequences[:, batch.prompt_ids.shape[1]:]
        sampler_logits = torch.stack(generated.logits, dim=1).float()  # (B, 6, V)
        expected = torch.log_softmax(sampler_logits / 1.3, -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
        mask = torch.ones_like(completion, dtype=torch.bool)
        out = completion_logprobs(small_model, batch.prompt_ids, batch.prompt_mask, completion, mask,
                                  temperature=1.3, chunk_size=5)
    torch.testing.assert_close(out.logp, expected, atol=TOL, rtol=0)


def test_left_padding_does_not_change_scores(small_model, char_tokenizer):
    batch = _batch(char_tokenizer)
    with torch.no_grad():
        together = _score(small_model, batch)
        for row in range(batch.prompt_ids.shape[0]):
            prompt = batch.prompt_ids[row, batch.prompt_mask[row]].unsqueeze(0)
            n = int(batch.completion_lengths[row])
            completion = batch.completion_ids[row, :n].unsqueeze(0)
            alone = completion_logprobs(small_model, prompt, torch.ones_like(prompt, dtype=torch.bool),
                                        completion, torch.ones_like(completion, dtype=torch.bool))
            torch.testing.assert_close(together.logp[row, :n], alone.logp[0], atol=TOL, rtol=0)


def test_right_padded_prompts_and_zero_temperature_are_refused(small_model, char_tokenizer):
    batch = _batch(char_tokenizer)
    with pytest.raises(ValueError, match="temperature=0"):
        _score(small_model, batch, temperature=0)
    flipped = batch.prompt_mask.flip(-1)
    with pytest.raises(ValueError, match="must be left-padded"):
        completion_logprobs(small_model, batch.prompt_ids, flipped, batch.completion_ids, batch.completion_mask)


def test_models_that_rescale_logits_after_the_head_are_refused(small_model, char_tokenizer):
    batch = _batch(char_tokenizer)
    small_model.config.final_logit_softcapping = 30.0
    with pytest.raises(NotImplementedError, match="final_logit_softcapping=30.0"):
        _score(small_model, batch)
