"""Streaming DelTA coefficients: same numbers as the one-shot form, K + 2 passes, pooled ranks."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from delta_rlvr.core import DeltaConfig, DeltaStream, delta_coefficients, delta_coefficients_streamed

# The streaming form differs from the one-shot form only in rounding: gamma^(0) comes from
# float64 moments instead of a direct variance, and sums are split at micro-batch boundaries.
# Both are float64 accumulations, so the coefficients agree to float32 rounding (~1e-7);
# 2e-6 allows for margins computed against centroids that differ in the last float32 bits.
TOL = 2e-6


def batch(seed, b=16, t=11, h=8, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(b, t, h, generator=g) + shift
    adv = torch.randn(b, generator=g)
    adv[4:8] = 0
    mask = torch.arange(t)[None] < torch.randint(1, t + 1, (b,), generator=g)[:, None]
    return v, adv, mask


def random_split(b, seed):
    g = torch.Generator().manual_seed(seed)
    cuts = sorted(torch.randperm(b - 1, generator=g)[: int(torch.randint(0, b - 1, (1,), generator=g))].add(1).tolist())
    edges = [0, *cuts, b]
    return [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def micro_batches(v, adv, mask, split, trim=True):
    """Micro-batches as a trainer would make them: each padded only to its own longest response."""
    out = []
    for lo, hi in split:
        t = int(mask[lo:hi].sum(-1).max()) if trim else v.shape[1]
        t = max(t, 1)
        out.append((v[lo:hi, :t], adv[lo:hi], mask[lo:hi, :t]))
    return out


def assemble(coefs, split, shape):
    full = torch.zeros(shape)
    for c, (lo, hi) in zip(coefs, split):
        full[lo:hi, : c.shape[1]] = c
    return full


CONFIGS = {
    "paper": DeltaConfig(),
    "k0": DeltaConfig(refine_steps=0),
    "k3": DeltaConfig(refine_steps=3),
    "hard": DeltaConfig(assignment="hard", refine_steps=2),
    "within_side": DeltaConfig(contrast="within_side", refine_steps=2),
    "no_norm_no_map": DeltaConfig(self_normalise=False, range_map=False),
    "wide": DeltaConfig(coef_min=0.5, coef_max=1.5, refine_steps=2),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_streaming_equals_one_shot_for_any_micro_batch_split(name):
    cfg = CONFIGS[name]
    for seed in range(8):
        v, adv, mask = batch(seed, shift=3.0 * (seed % 2))
        one_shot = delta_coefficients(v, adv, mask, cfg)
        split = random_split(v.shape[0], seed)
        mbs = micro_batches(v, adv, mask, split)
        streamed = delta_coefficients_streamed(lambda: iter(mbs), cfg)
        torch.testing.assert_close(assemble(streamed.coef, split, mask.shape), one_shot.coef, rtol=0, atol=TOL)
        s, o = streamed.stats, one_shot.stats
        torch.testing.assert_close(s.gamma, o.gamma, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s.centroid_norm, o.centroid_norm, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s.coef_quantiles, o.coef_quantiles, rtol=0, atol=TOL)
        assert s.valid_tokens == o.valid_tokens and torch.equal(s.side_tokens, o.side_tokens)


def test_the_paper_method_takes_k_plus_2_passes_the_first_one_included():
    v, adv, mask = batch(0)
    for k in range(4):
        calls = []

        def source():
            calls.append(1)
            return iter([(v, adv, mask)])

        stream = DeltaStream(DeltaConfig(refine_steps=k))
        assert stream.num_passes == k + 2
        stream.run(source)
        assert len(calls) == k + 2
    # The within-side margin is quadratic in v: its first gamma needs a measuring pass.
    assert DeltaStream(DeltaConfig(contrast="within_side")).num_passes == 4


def test_the_first_pass_can_be_fed_by_the_old_log_prob_pass_and_the_rest_run_after():
    v, adv, mask = batch(1)
    stream = DeltaStream(DeltaConfig())
    for lo, hi in [(0, 5), (5, 16)]:  # the trainer's old-log-prob forward, micro-batch by micro-batch
        stream.update(v[lo:hi], adv[lo:hi], mask[lo:hi])
    stream.end_pass()
    assert stream.phase == "refine"
    result = stream.run(lambda: iter([(v[:5], adv[:5], mask[:5]), (v[5:], adv[5:], mask[5:])]))
    torch.testing.assert_close(torch.cat(result.coef), delta_coefficients(v, adv, mask).coef, rtol=0, atol=TOL)


def test_moments_keep_their_accuracy_on_a_large_shared_mean():
    # The first gamma comes from sum v v^T: with a shared mean 50x the spread, a naive
    # float32 second moment would lose the variance in cancellation.
    v, adv, mask = batch(2, b=32, t=64, h=16, shift=50.0)
    one_shot = delta_coefficients(v, adv, mask, DeltaConfig(refine_steps=0))
    halves = [(v[:10], adv[:10], mask[:10]), (v[10:], adv[10:], mask[10:])]
    streamed = delta_coefficients_streamed(lambda: iter(halves), DeltaConfig(refine_steps=0))
    torch.testing.assert_close(streamed.stats.gamma, one_shot.stats.gamma, rtol=1e-4, atol=0)


def test_misuse_of_the_pass_protocol_is_refused():
    v, adv, mask = batch(3)
    stream = DeltaStream(DeltaConfig(refine_steps=0))
    with pytest.raises(RuntimeError, match="no micro-batch"):
        stream.end_pass()
    stream.update(v, adv, mask)
    with pytest.raises(RuntimeError, match="pass"):
        stream.result()
    stream.end_pass()
    stream.update(v, adv, mask)
    stream.end_pass()
    with pytest.raises(RuntimeError, match="finished"):
        stream.update(v, adv, mask)


def _rank_worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    v, adv, mask = batch(5, b=16)
    half = slice(rank * 8, rank * 8 + 8)

    def all_reduce(t):
        t = t.clone()
        dist.all_reduce(t)
        return t

    result = delta_coefficients_streamed(
        lambda: iter([(v[half][:3], adv[half][:3], mask[half][:3]), (v[half][3:], adv[half][3:], mask[half][3:])]),
        DeltaConfig(refine_steps=2),
        reduce=all_reduce,
    )
    torch.save(torch.cat(result.coef), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_a_reduce_hook_pools_the_statistics_of_data_parallel_ranks():
    # Two gloo processes each see half of the batch; with an all-reduce hook their
    # coefficients together equal the one-shot coefficients of the whole batch.
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        pooled = torch.cat([torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(2)])
    v, adv, mask = batch(5, b=16)
    torch.testing.assert_close(pooled, delta_coefficients(v, adv, mask, DeltaConfig(refine_steps=2)).coef, rtol=0, atol=TOL)
