"""The full_sketch reference proxy: count-sketched full-parameter token gradients.

Tolerances: exact gradients against an independent full-batch autograd computation, atol 1e-6
plus rtol 1e-5 (float32; the per-row forward on unpadded columns differs from the padded batch
forward by rounding only: observed <= 1.2e-6 on entries of size ~1). Sketch statistics use fixed seeds; the bounds
(RMS of normalised errors in
[0.5, 1.6], none beyond 6) hold with wide margins for them.
"""

from __future__ import annotations

import pytest
import torch

from delta_rlvr.models import (
    CountSketch,
    SketchedGradients,
    TinyModelConfig,
    build_tiny_model,
    full_gradient_sketch,
    left_pad,
)

ATOL = 1e-6


def _batch(tok, lengths=(5, 2, 0, 4, 1, 5)):
    """Left-padded prompts of three lengths (each twice) and right-padded random completions;
    row 2 has no valid token."""
    prompts = [tok("37+48=").input_ids, tok("1+2=").input_ids, tok("(5*6)-7=").input_ids]
    prompt_ids, prompt_mask = left_pad(prompts, pad_token_id=0)
    width = max(lengths) + 1  # one all-padding column at the end
    generator = torch.Generator().manual_seed(0)
    completion_ids = torch.randint(4, 40, (len(lengths), width), generator=generator)
    completion_mask = torch.arange(width) < torch.tensor(lengths).unsqueeze(-1)
    return (prompt_ids.repeat_interleave(2, dim=0), prompt_mask.repeat_interleave(2, dim=0),
            completion_ids.masked_fill(~completion_mask, 0), completion_mask)


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def _reference_gradients(model, batch, temperature):
    """{(row, col): flat grad of log_softmax(model(...).logits / T)[y]} from one padded batch forward."""
    prompt_ids, prompt_mask, completion_ids, completion_mask = batch
    params = _trainable(model)
    with torch.enable_grad():
        ids = torch.cat([prompt_ids, completion_ids], dim=1)
        mask = torch.cat([prompt_mask, completion_mask], dim=1).long()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
        p = prompt_ids.shape[1]
        log_probs = torch.log_softmax(logits[:, p - 1:-1].float() / temperature, dim=-1)
        logp = log_probs.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)  # (B, T)
        grads = {}
        for r, t in completion_mask.nonzero().tolist():
            g = torch.autograd.grad(logp[r, t], params, retain_graph=True, allow_unused=True)
            grads[(r, t)] = torch.cat([torch.zeros(q.numel()) if x is None else x.reshape(-1) for x, q in zip(g, params)])
    return grads


def _run(model, batch, sketch, **kwargs) -> SketchedGradients:
    return full_gradient_sketch(model, *batch, sketch=sketch, **kwargs)


def _sketch_flat(sketch: CountSketch, flat: torch.Tensor) -> torch.Tensor:
    """Sketch (n, P) flat gradients with `sketch` (split into its parameter tensors)."""
    parts = torch.split(flat, list(sketch.numels), dim=1)
    return sketch.sketch_batch([x.reshape(flat.shape[0], *s) for x, s in zip(parts, sketch.shapes)], flat.shape[0])


@pytest.mark.parametrize("model_fixture", ["small_model", "small_untied_model"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_exact_gradients_equal_direct_autograd_of_each_token_logprob(request, model_fixture, temperature, char_tokenizer):
    model = request.getfixturevalue(model_fixture)
    batch = _batch(char_tokenizer)
    completion_mask = batch[3]
    sketch = CountSketch(_trainable(model), dim=64, seed=1)
    assert sketch.num_params == sum(p.numel() for p in model.parameters())  # tied head counted once
    out = _run(model, batch, sketch, temperature=temperature, keep_exact=completion_mask.clone())
    reference = _reference_gradients(model, batch, temperature)

    assert out.exact.shape == (len(reference), sketch.num_params) and out.exact.dtype == torch.float32
    assert [tuple(x) for x in out.exact_index.tolist()] == sorted(reference)  # row-major order
    for (r, t), g in zip(out.exact_index.tolist(), out.exact):
        torch.testing.assert_close(g, reference[(r, t)], atol=ATOL, rtol=1e-5)
        assert g.abs().max() > 1e-3
    # The vectors are the sketches of those exact gradients.
    torch.testing.assert_close(out.vectors[completion_mask], _sketch_flat(sketch, out.exact), atol=1e-6, rtol=1e-5)


def test_temperature_changes_the_gradients(small_model, char_tokenizer):
    batch = _batch(char_tokenizer)
    sketch = CountSketch(_trainable(small_model), dim=64)
    cold = _run(small_model, batch, sketch, temperature=0.7).vectors
    hot = _run(small_model, batch, sketch, temperature=1.0).vectors
    assert (cold - hot)[batch[3]].abs().max() > 1e-3


def test_batched_backward_equals_one_backward_per_token(small_model, char_tokenizer):
    batch = _batch(char_tokenizer)
    sketch = CountSketch(_trainable(small_model), dim=128, seed=5)
    one = _run(small_model, batch, sketch, tokens_per_backward=1).vectors
    for k in (2, 4, 5, None):  # 1-3: one forward per row; from 4: one truncated forward per chunk
        torch.testing.assert_close(_run(small_model, batch, sketch, tokens_per_backward=k).vectors, one,
                                   atol=1e-6, rtol=1e-6)


def _small_params():
    generator = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in [(3, 4), (5,), (2, 2, 2)]]


def _dense(sketch: CountSketch) -> torch.Tensor:
    """The (D, P) matrix S with S[b(i), i] = s(i)."""
    buckets = torch.cat(sketch.buckets)
    signs = torch.cat(sketch.signs)
    matrix = torch.zeros(sketch.dim, sketch.num_params)
    matrix[buckets, torch.arange(sketch.num_params)] = signs
    return matrix


def test_sketch_is_linear_and_equals_the_dense_count_sketch_matrix():
    params = _small_params()
    sketch = CountSketch(params, dim=7, seed=2)
    assert sketch.num_params == 25 and sketch.dim == 7
    buckets, signs = torch.cat(sketch.buckets), torch.cat(sketch.signs)
    assert buckets.min() >= 0 and buckets.max() < 7 and set(signs.tolist()) == {-1.0, 1.0}
    matrix = _dense(sketch)
    generator = torch.Generator().manual_seed(1)
    g = [torch.randn(p.shape, generator=generator) for p in params]
    h = [torch.randn(p.shape, generator=generator) for p in params]
    flat = lambda grads: torch.cat([x.reshape(-1) for x in grads])
    sg = sketch.sketch(g)
    assert sg.shape == (7,) and sg.dtype == torch.float32
    torch.testing.assert_close(sg, matrix @ flat(g))
    torch.testing.assert_close(sketch.sketch([2.0 * a - 3.0 * b for a, b in zip(g, h)]), 2.0 * sg - 3.0 * sketch.sketch(h))
    # None counts as a zero gradient; float64 gradients are accepted.
    torch.testing.assert_close(sketch.sketch([g[0], None, g[2]]), matrix @ flat([g[0], torch.zeros(5), g[2]]))
    torch.testing.assert_close(sketch.sketch([x.double() for x in g]), sg)
    # A batch of gradients gives the same rows as one at a time.
    batched = sketch.sketch_batch([torch.stack([a, b]) for a, b in zip(g, h)], 2)
    torch.testing.assert_close(batched, torch.stack([sg, sketch.sketch(h)]))


def test_dot_std_matches_the_variance_formula_and_the_empirical_spread():
    params = _small_params()
    generator = torch.Generator().manual_seed(3)
    a = torch.randn(25, generator=generator)
    b = a + 0.5 * torch.randn(25, generator=generator)
    dim = 5
    expected = ((a @ a) * (b @ b) + (a @ b) ** 2 - 2 * ((a * b) ** 2).sum()) / dim
    torch.testing.assert_close(CountSketch.dot_std(a, b, dim).float(), expected.sqrt())
    pairwise = CountSketch.dot_std_pairwise(torch.stack([a, b]), torch.stack([b, a, a]), dim)
    torch.testing.assert_close(pairwise[0, 0], CountSketch.dot_std(a, b, dim))
    torch.testing.assert_close(pairwise[1, 2], CountSketch.dot_std(b, a, dim))
    split = lambda v: [x.reshape(p.shape) for x, p in zip(torch.split(v, [12, 5, 8]), params)]
    errors = torch.stack([
        sketch.sketch(split(a)) @ sketch.sketch(split(b)) - a @ b
        for sketch in (CountSketch(params, dim, seed=s) for s in range(4000))
    ]).double()
    assert abs(errors.std() / CountSketch.dot_std(a, b, dim) - 1) < 0.1
    assert abs(errors.mean()) < 4 * CountSketch.dot_std(a, b, dim) / 4000**0.5


def test_sketched_dot_products_of_token_gradients_have_the_predicted_error_and_no_bias(small_model, char_tokenizer):
    batch = _batch(char_tokenizer)
    completion_mask = batch[3]
    dim = 256
    params = _trainable(small_model)
    out = _run(small_model, batch, CountSketch(params, dim, seed=0), keep_exact=completion_mask.clone())
    exact = out.exact  # (n, P)
    n = exact.shape[0]
    pairs = torch.triu_indices(n, n)  # all token pairs, norms (diagonal) included
    exact_dots = (exact.double() @ exact.double().T)[pairs[0], pairs[1]]
    std = CountSketch.dot_std_pairwise(exact, exact, dim)[pairs[0], pairs[1]]
    assert (std > 0).all()

    def normalised_errors(vectors):
        dots = (vectors.double() @ vectors.double().T)[pairs[0], pairs[1]]
        return (dots - exact_dots) / std

    single = normalised_errors(out.vectors[completion_mask])
    seeds = 64
    per_seed = torch.stack([single] + [
        normalised_errors(_sketch_flat(CountSketch(params, dim, seed=s), exact)) for s in range(1, seeds)
    ])  # (seeds, pairs)
    rms = per_seed.pow(2).mean(dim=1).sqrt()  # per seed
    assert ((rms > 0.5) & (rms < 1.6)).all(), rms
    assert per_seed.abs().max() < 6
    assert 0.8 < per_seed.pow(2).mean().sqrt() < 1.2
    # Unbiased: averaging over independent sketches shrinks the error like 1 / sqrt(seeds).
    mean_error_rms = per_seed.mean(dim=0).pow(2).mean().sqrt()
    assert mean_error_rms < 2.5 / seeds**0.5
    assert mean_error_rms < 0.35 * rms.mean()


def test_same_seed_gives_the_identical_sketch_and_another_seed_a_different_one(char_tokenizer):
    config = TinyModelConfig(num_layers=1, hidden_size=32, num_heads=2, num_kv_heads=1, intermediate_size=64, seed=4)
    first, second = build_tiny_model(char_tokenizer, config), build_tiny_model(char_tokenizer, config)
    batch = _batch(char_tokenizer)
    a = CountSketch(_trainable(first), dim=32, seed=11)
    b = CountSketch(_trainable(second), dim=32, seed=11)
    c = CountSketch(_trainable(first), dim=32, seed=12)
    assert all(torch.equal(x, y) for x, y in zip(a.buckets, b.buckets))
    assert all(torch.equal(x, y) for x, y in zip(a.signs, b.signs))
    assert not all(torch.equal(x, y) for x, y in zip(a.buckets, c.buckets))
    va = _run(first, batch, a).vectors
    assert torch.equal(va, _run(second, batch, b).vectors)
    assert torch.equal(va, _run(first, batch, a).vectors)
    assert (va - _run(first, batch, c).vectors).abs().max() > 1e-3


def test_invalid_tokens_give_zero_rows_and_the_model_is_left_untouched(small_model, char_tokenizer):
    batch = _batch(char_tokenizer)
    completion_mask = batch[3]
    sketch = CountSketch(_trainable(small_model), dim=48)
    small_model.train()
    with torch.no_grad():
        out = _run(small_model, batch, sketch)
    assert out.vectors.shape == (*completion_mask.shape, 48) and out.vectors.dtype == torch.float32
    assert out.exact is None and out.exact_index is None
    assert (out.vectors[~completion_mask] == 0).all()
    assert (out.vectors[completion_mask].abs().amax(dim=-1) > 0).all()
    assert small_model.training
    assert all(p.grad is None for p in small_model.parameters())
    small_model.eval()
    with torch.inference_mode():
        again = _run(small_model, batch, sketch)
    assert not small_model.training
    torch.testing.assert_close(again.vectors, out.vectors)
    # No valid token at all: zeros, and an empty exact block.
    empty_mask = torch.zeros_like(completion_mask)
    none = full_gradient_sketch(small_model, batch[0], batch[1], batch[2], empty_mask, sketch=sketch,
                                keep_exact=empty_mask.clone())
    assert (none.vectors == 0).all() and none.exact.shape == (0, sketch.num_params) and none.exact_index.shape == (0, 2)


def test_bad_inputs_raise_clear_errors(small_model, char_tokenizer):
    batch = _batch(char_tokenizer)
    prompt_ids, prompt_mask, completion_ids, completion_mask = batch
    params = _trainable(small_model)
    sketch = CountSketch(params, dim=16)
    with pytest.raises(ValueError, match="dim=0"):
        CountSketch(params, dim=0)
    with pytest.raises(ValueError, match="params is empty"):
        CountSketch([], dim=8)
    with pytest.raises(ValueError, match="appears twice"):
        CountSketch([params[0], params[0]], dim=8)
    with pytest.raises(ValueError, match="gradients for"):
        sketch.sketch([None])
    with pytest.raises(ValueError, match="expected"):
        sketch.sketch([torch.zeros(3)] + [None] * (len(params) - 1))
    with pytest.raises(ValueError, match="completion_mask"):
        full_gradient_sketch(small_model, prompt_ids, prompt_mask, completion_ids, completion_mask[:, :-1], sketch=sketch)
    with pytest.raises(ValueError, match="prompt batch"):
        full_gradient_sketch(small_model, prompt_ids[:-1], prompt_mask[:-1], completion_ids, completion_mask, sketch=sketch)
    with pytest.raises(ValueError, match="left-padded"):
        full_gradient_sketch(small_model, prompt_ids, prompt_mask.flip(1), completion_ids, completion_mask, sketch=sketch)
    with pytest.raises(ValueError, match="temperature"):
        _run(small_model, batch, sketch, temperature=0.0)
    with pytest.raises(ValueError, match="keep_exact must be"):
        _run(small_model, batch, sketch, keep_exact=completion_mask[:, :-1])
    with pytest.raises(ValueError, match="outside completion_mask"):
        _run(small_model, batch, sketch, keep_exact=torch.ones_like(completion_mask))
    with pytest.raises(TypeError, match="must be a CountSketch"):
        _run(small_model, batch, None)
    with pytest.raises(ValueError, match="tokens_per_backward"):
        _run(small_model, batch, sketch, tokens_per_backward=0)
    with pytest.raises(ValueError, match="not a parameter of this model"):
        _run(small_model, batch, CountSketch(_small_params(), dim=8))
    params[0].requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad=False"):
        _run(small_model, batch, sketch)
    small_model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        _run(small_model, batch, sketch)
