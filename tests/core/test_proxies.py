"""Token-gradient proxies: row, top-K hidden gradient, exact LM-head gradients."""

from __future__ import annotations

import itertools

import pytest
import torch

from delta_rlvr.core import (
    PROXIES,
    DeltaConfig,
    LMHeadGradients,
    ProxyConfig,
    TokenVectors,
    delta_coefficients,
    row_proxy,
    topk_hidden_proxy,
)
from delta_rlvr.core.kernels import margins as dense_margins
from delta_rlvr.core.kernels import token_sides

V, H, B, T = 11, 5, 6, 4


def lm_batch(seed: int, dtype=torch.float32, b: int = B, t: int = T, bias: bool = True):
    """hidden (B, T, H), ids (B, T), W (V, H), b (V,), mask (B, T) with ragged padding, and
    garbage (NaN hidden, out-of-range ids) at the padded positions."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t, H, generator=g, dtype=dtype) + 0.5
    weight = torch.randn(V, H, generator=g, dtype=dtype)
    head_bias = torch.randn(V, generator=g, dtype=dtype) if bias else None
    ids = torch.randint(0, V, (b, t), generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t
    mask = torch.arange(t)[None, :] < lengths[:, None]
    hidden[~mask] = float("nan")
    ids[~mask] = -100
    return hidden, ids, weight, head_bias, mask


def explicit_lm_head_vectors(hidden, ids, weight, head_bias, mask, temperature=1.0):
    """(B, T, V, H) float64 (e_y - p) h^T token by token, 0 at invalid positions."""
    b, t, h = hidden.shape
    out = torch.zeros(b, t, weight.shape[0], h, dtype=torch.float64)
    for i in range(b):
        for j in range(t):
            if not mask[i, j]:
                continue
            x = hidden[i, j].double()
            z = weight.double() @ x + (0 if head_bias is None else head_bias.double())
            p = torch.softmax(z / temperature, dim=0)
            e = torch.zeros_like(p)
            e[ids[i, j]] = 1.0
            out[i, j] = torch.outer(e - p, x)
    return out


def signed_batch(seed: int, b: int = B):
    g = torch.Generator().manual_seed(seed + 1000)
    adv = torch.randn(b, generator=g)
    adv[1] = 0.0
    adv[2] = abs(float(adv[2])) + 0.1
    adv[3] = -abs(float(adv[3])) - 0.1
    return adv


# --------------------------------------------------------------------------------------------
# Config and the row proxy.


def test_row_proxy_is_one_minus_p_times_hidden_and_zero_on_padding():
    # p = 0.5, 0.25 and 1 at valid positions: v = (1 - p) h = 0.5 h, 0.75 h, 0; the padded
    # position holds NaN and must come out exactly 0.
    hidden = torch.tensor([[[2.0, -4.0], [1.0, 3.0]], [[-8.0, 0.5], [float("nan"), float("nan")]]])
    logp = torch.log(torch.tensor([[0.5, 0.25], [1.0, 0.3]]))
    mask = torch.tensor([[True, True], [True, False]])
    v = row_proxy(hidden, logp, mask)
    assert v.dtype == torch.float32 and v.shape == (2, 2, 2)
    expected = torch.tensor([[[1.0, -2.0], [0.75, 2.25]], [[0.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(v, expected, rtol=0, atol=1e-7)
    # the same, with the loop of the definition on the random batch of the other proxy tests
    hidden, _, _, _, mask = lm_batch(0)
    logp = -torch.rand(B, T)
    v = row_proxy(hidden, logp, mask)
    for i, j in itertools.product(range(B), range(T)):
        want = (1.0 - logp[i, j].double().exp()) * hidden[i, j].double() if mask[i, j] else torch.zeros(H, dtype=torch.float64)
        torch.testing.assert_close(v[i, j].double(), want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"row_proxy: hidden has shape"):
        row_proxy(hidden, logp[:, :-1], mask)


def test_proxy_config_defaults_are_the_paper_row_proxy():
    cfg = ProxyConfig()
    assert cfg.name == "row" and cfg.name in PROXIES
    assert PROXIES == ("row", "topk_hidden", "lm_head", "full_sketch")
    for name in PROXIES:
        assert ProxyConfig(name=name).name == name


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(name="rows"), "name"),
        (dict(topk=0), "topk"),
        (dict(topk=2.5), "topk"),
        (dict(topk=True), "topk"),
        (dict(sketch_dim=0), "sketch_dim"),
        (dict(sketch_seed=-1), "sketch_seed"),
        (dict(sketch_seed="0"), "sketch_seed"),
    ],
)
def test_invalid_proxy_config_names_the_field_the_value_and_what_to_use(kwargs, field):
    with pytest.raises(ValueError, match=f"ProxyConfig.{field}") as err:
        ProxyConfig(**kwargs)
    message = str(err.value)
    assert repr(next(iter(kwargs.values()))) in message
    assert "use" in message


# --------------------------------------------------------------------------------------------
# Top-K hidden-gradient proxy.


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_topk_over_the_whole_vocabulary_is_autograd_hidden_gradient_times_temperature(temperature):
    hidden, ids, weight, head_bias, mask = lm_batch(1, dtype=torch.float64)
    clean = torch.where(mask[..., None], hidden, torch.zeros(()))
    h = clean.clone().requires_grad_(True)
    logp = torch.log_softmax((h @ weight.T + head_bias) / temperature, dim=-1)
    picked = logp.gather(-1, ids.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    (grad,) = torch.autograd.grad(picked[mask].sum(), h)
    expected = (grad * temperature).float()
    for k in (V, V + 5):
        v = topk_hidden_proxy(hidden, ids, weight, mask, k=k, temperature=temperature, head_bias=head_bias)
        assert v.dtype == torch.float32 and v.shape == (B, T, H)
        assert torch.equal(v[~mask], torch.zeros_like(v[~mask]))
        torch.testing.assert_close(v, expected, rtol=1e-6, atol=1e-6)


def test_topk_with_small_k_is_the_literal_formula():
    hidden, ids, weight, head_bias, mask = lm_batch(2, dtype=torch.float64)
    k, temperature = 3, 0.7
    v = topk_hidden_proxy(hidden, ids, weight, mask, k=k, temperature=temperature, head_bias=head_bias)
    for i, j in itertools.product(range(B), range(T)):
        if not mask[i, j]:
            assert torch.equal(v[i, j], torch.zeros(H))
            continue
        z = (weight @ hidden[i, j] + head_bias) / temperature
        top = sorted(range(V), key=lambda c: -float(z[c]))[:k]
        p_tilde = torch.softmax(z[top], dim=0)
        expected = weight[ids[i, j]] - sum(p_tilde[n] * weight[c] for n, c in enumerate(top))
        torch.testing.assert_close(v[i, j], expected.float(), rtol=1e-6, atol=1e-6)


def test_topk_chunking_and_float32_inputs_do_not_change_the_proxy():
    hidden, ids, weight, head_bias, mask = lm_batch(3)
    whole = topk_hidden_proxy(hidden, ids, weight, mask, k=4, head_bias=head_bias)
    by_row = topk_hidden_proxy(hidden, ids, weight, mask, k=4, head_bias=head_bias, chunk_rows=1)
    torch.testing.assert_close(whole, by_row, rtol=1e-6, atol=1e-6)  # matmul rounding only
    exact = topk_hidden_proxy(
        hidden.double(), ids, weight.double(), mask, k=4, head_bias=head_bias.double()
    )
    torch.testing.assert_close(whole, exact, rtol=1e-5, atol=1e-5)


def test_topk_refuses_bad_arguments():
    hidden, ids, weight, _, mask = lm_batch(4)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        topk_hidden_proxy(hidden, ids, weight, mask, k=0)
    with pytest.raises(ValueError, match="temperature"):
        topk_hidden_proxy(hidden, ids, weight, mask, k=2, temperature=0.0)
    with pytest.raises(ValueError, match=r"head_weight must be the LM-head matrix \(V, H\)"):
        topk_hidden_proxy(hidden, ids, weight.T, mask, k=2)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, V\)"):
        topk_hidden_proxy(hidden, ids, weight, None, k=2)  # padding ids are -100


# --------------------------------------------------------------------------------------------
# Exact LM-head gradients.


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_lm_head_materialise_is_the_explicit_outer_products(temperature):
    hidden, ids, weight, head_bias, mask = lm_batch(5)
    g = LMHeadGradients(hidden, ids, weight, mask, temperature=temperature, head_bias=head_bias)
    assert isinstance(g, TokenVectors)
    assert g.token_shape == (B, T) and g.vector_shape == (V, H)
    explicit = explicit_lm_head_vectors(hidden, ids, weight, head_bias, mask, temperature)
    dense = g.materialise()
    assert dense.shape == (B, T, V * H) and dense.dtype == torch.float32
    torch.testing.assert_close(dense.double(), explicit.reshape(B, T, V * H), rtol=0, atol=1e-6)


def test_lm_head_side_weighted_sums_match_the_explicit_outer_products():
    hidden, ids, weight, head_bias, mask = lm_batch(6)
    explicit = explicit_lm_head_vectors(hidden, ids, weight, head_bias, mask).reshape(B * T, V, H)
    g = torch.Generator().manual_seed(60)
    side = torch.randint(-1, 2, (B * T,), generator=g).to(torch.int8)
    side[~mask.reshape(-1)] = 1  # invalid positions must contribute nothing whatever their side
    weight_t = torch.rand(B * T, generator=g)
    valid = mask.reshape(-1)
    expected = torch.stack(
        [
            (weight_t.double()[:, None, None] * explicit)[(side > 0) & valid].sum(0),
            (weight_t.double()[:, None, None] * explicit)[(side < 0) & valid].sum(0),
        ]
    )
    for chunk_rows in (None, 1, 5):
        lm = LMHeadGradients(hidden, ids, weight, mask, head_bias=head_bias, chunk_rows=chunk_rows)
        sums = lm.side_weighted_sums(side, weight_t)
        assert sums.shape == (2, V, H) and sums.dtype == torch.float64
        torch.testing.assert_close(sums, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("contrast", ["two_sided", "within_side"])
def test_lm_head_margins_match_dense_margins_of_the_materialised_vectors(contrast):
    hidden, ids, weight, head_bias, mask = lm_batch(7)
    lm = LMHeadGradients(hidden, ids, weight, mask, head_bias=head_bias, chunk_rows=3)
    explicit = explicit_lm_head_vectors(hidden, ids, weight, head_bias, mask).reshape(B * T, V, H)
    g = torch.Generator().manual_seed(70)
    side = token_sides(signed_batch(7), mask).reshape(-1)
    mu = 0.1 * torch.randn(2, V, H, generator=g, dtype=torch.float64)
    got = lm.margins(side, mu, contrast)
    assert got.shape == (B * T,) and got.dtype == torch.float32
    # The same contract as the dense kernel on the flattened vectors...
    reference = dense_margins(explicit.reshape(B * T, -1).float(), side, mu.reshape(2, -1), contrast)
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-6)
    # ... which is the definition, token by token.
    for n in range(B * T):
        v = explicit[n]
        if side[n] == 0:
            assert got[n] == 0
            continue
        own, other = (mu[0], mu[1]) if side[n] > 0 else (mu[1], mu[0])
        if contrast == "two_sided":
            want = (v - other).square().sum() - (v - own).square().sum()
        else:
            want = -(v - own).square().sum()
        torch.testing.assert_close(got[n].double(), want, rtol=1e-5, atol=1e-6)


def test_lm_head_invalid_positions_get_margin_zero_whatever_their_side():
    hidden, ids, weight, head_bias, mask = lm_batch(8)
    lm = LMHeadGradients(hidden, ids, weight, mask, head_bias=head_bias)
    side = torch.ones(B * T, dtype=torch.int8)
    mu = torch.randn(2, V, H, dtype=torch.float64)
    for contrast in ("two_sided", "within_side"):
        d = lm.margins(side, mu, contrast)
        assert torch.isfinite(d).all()
        assert torch.equal(d[~mask.reshape(-1)], torch.zeros(int((~mask).sum())))
        assert (d[mask.reshape(-1)] != 0).all()


@pytest.mark.parametrize(
    "refine_steps, assignment, contrast",
    list(itertools.product(range(4), ["soft", "hard"], ["two_sided", "within_side"])),
)
def test_delta_coefficients_on_lm_head_gradients_equal_those_on_the_materialised_vectors(
    refine_steps, assignment, contrast
):
    hidden, ids, weight, head_bias, mask = lm_batch(9, b=12, t=7)
    adv = signed_batch(9, b=12)
    lm = LMHeadGradients(hidden, ids, weight, mask, temperature=0.9, head_bias=head_bias, chunk_rows=16)
    config = DeltaConfig(refine_steps=refine_steps, assignment=assignment, contrast=contrast)
    got = delta_coefficients(lm, adv, mask, config)
    want = delta_coefficients(lm.materialise(), adv, mask, config)
    torch.testing.assert_close(got.coef, want.coef, rtol=0, atol=1e-5)
    assert torch.equal(got.coef[~mask], torch.zeros(int((~mask).sum())))
    for name in ("gamma", "margin_std", "centroid_norm", "centroid_cosine"):
        torch.testing.assert_close(getattr(got.stats, name), getattr(want.stats, name), rtol=1e-5, atol=1e-6)
    assert torch.equal(got.stats.side_tokens, want.stats.side_tokens)


def test_coefficients_ignore_the_dropped_one_over_temperature_factor():
    hidden, ids, weight, head_bias, mask = lm_batch(10, b=12, t=7)
    adv = signed_batch(10, b=12)
    temperature = 0.7
    lm = LMHeadGradients(hidden, ids, weight, mask, temperature=temperature, head_bias=head_bias)
    true_gradients = lm.materialise() / temperature
    got = delta_coefficients(lm, adv, mask).coef
    want = delta_coefficients(true_gradients, adv, mask).coef
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_concat_equals_one_object_built_on_the_concatenated_inputs():
    h1, y1, weight, head_bias, m1 = lm_batch(11, b=3, t=4)
    h2, y2, _, _, m2 = lm_batch(12, b=2, t=3)
    parts = [
        LMHeadGradients(h1, y1, weight, m1, temperature=0.8, head_bias=head_bias),
        LMHeadGradients(h2, y2, weight, m2, temperature=0.8, head_bias=head_bias),
    ]
    joined = LMHeadGradients.concat(parts)
    pad = lambda x, fill: torch.cat([x, torch.full((x.shape[0], 1) + x.shape[2:], fill, dtype=x.dtype)], 1)
    whole = LMHeadGradients(
        torch.cat([h1, pad(h2, 0.0)]),
        torch.cat([y1, pad(y2, 0)]),
        weight,
        torch.cat([m1, pad(m2, False)]),
        temperature=0.8,
        head_bias=head_bias,
    )
    assert joined.token_shape == whole.token_shape == (5, 4)
    assert torch.equal(joined.mask, whole.mask)
    assert torch.equal(joined.materialise(), whole.materialise())
    side = torch.tensor([1, -1, 0, 1, -1], dtype=torch.int8)[:, None].expand(5, 4).reshape(-1)
    w = torch.rand(20)
    assert torch.equal(joined.side_weighted_sums(side, w), whole.side_weighted_sums(side, w))
    mu = torch.randn(2, V, H, dtype=torch.float64)
    assert torch.equal(joined.margins(side, mu, "two_sided"), whole.margins(side, mu, "two_sided"))
    with pytest.raises(ValueError, match="different LM head"):
        LMHeadGradients.concat([parts[0], LMHeadGradients(h2, y2, weight + 1, m2, temperature=0.8, head_bias=head_bias)])


def test_lm_head_refuses_bad_inputs():
    hidden, ids, weight, _, mask = lm_batch(13)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        LMHeadGradients(hidden, ids, weight, mask.float())
    with pytest.raises(ValueError, match=r"ids must have shape \(B, T\)"):
        LMHeadGradients(hidden, ids[:, :2], weight, mask)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, V\)"):
        LMHeadGradients(hidden, ids.clamp_min(0) + V, weight, mask)
    lm = LMHeadGradients(hidden, ids, weight, mask)
    with pytest.raises(ValueError, match=r"advantages must have shape \(B,\)"):
        delta_coefficients(lm, torch.ones(B + 1), mask)
    with pytest.raises(ValueError, match=r"mu must have shape \(2, V, H\)"):
        lm.margins(torch.zeros(B * T, dtype=torch.int8), torch.zeros(2, H, dtype=torch.float64), "two_sided")
    with pytest.raises(TypeError, match="TokenVectors"):
        delta_coefficients(object(), torch.ones(B), mask)
