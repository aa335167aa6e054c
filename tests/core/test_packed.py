"""The packed proxy cache and packed feeding: the padded one-shot numbers, without padding,
without re-forwards, in true float32 under autocast."""

from __future__ import annotations

import os

import pytest
import torch
from reference_delta import reference_coefficients

from delta_rlvr.core import DeltaConfig, DeltaStream, delta_coefficients, row_proxy
from delta_rlvr.core.packed import CacheTier, PackedProxyCache
from delta_rlvr.core.precision import full_precision, in_full_precision

TOL = 2e-6  # as tests/core/test_streaming.py: float64 accumulators, float32 rounding

CONFIGS = {
    "paper": DeltaConfig(),
    "k0": DeltaConfig(refine_steps=0),
    "k2": DeltaConfig(refine_steps=2),
    "hard": DeltaConfig(assignment="hard"),
    "within_side": DeltaConfig(contrast="within_side"),
    "no_norm_no_map": DeltaConfig(self_normalise=False, range_map=False),
    "wide": DeltaConfig(coef_min=0.5, coef_max=1.5),
}


def rollout(seed, b=16, t=13, h=8, dtype=torch.float32):
    """Hidden states in the model's dtype, log-probs, GRPO-like advantages with a zero group."""
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(b, t, h, generator=g) + 0.5).to(dtype)
    logp = -torch.rand(b, t, generator=g) * 3
    adv = torch.randn(b, generator=g)
    adv[4:8] = 0
    mask = torch.arange(t)[None] < torch.randint(1, t + 1, (b,), generator=g)[:, None]
    return hidden, logp, adv, mask


def fill(cache, hidden, logp, adv, mask, rows_per_chunk=5):
    """Micro-batches of responses, packed to their valid tokens, as an engine sees them."""
    for lo in range(0, hidden.shape[0], rows_per_chunk):
        m = mask[lo : lo + rows_per_chunk]
        token_adv = adv[lo : lo + rows_per_chunk, None].expand_as(m)[m]
        assert cache.add(hidden[lo : lo + rows_per_chunk][m], logp[lo : lo + rows_per_chunk][m], token_adv)


def scatter(values, zero_coef, adv, mask):
    """(N_signed,) coefficients back to (B, T): zero-advantage tokens get zero_coef."""
    signed = mask & (adv != 0)[:, None]
    out = torch.zeros(mask.shape)
    out[signed] = values
    out[mask & ~signed] = zero_coef
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cached_passes_give_the_padded_one_shot_coefficients(name, dtype):
    config = CONFIGS[name]
    hidden, logp, adv, mask = rollout(1, dtype=dtype)
    cache = PackedProxyCache()
    fill(cache, hidden, logp, adv, mask)
    result = cache.run(DeltaStream(config))
    got = scatter(PackedProxyCache.coefficients(result), result.zero_advantage_coef, adv, mask)
    want = delta_coefficients(row_proxy(hidden, logp, mask), adv, mask, config)
    torch.testing.assert_close(got, want.coef, atol=TOL, rtol=0)
    for field in ("coef_mean", "coef_std", "normaliser", "valid_tokens", "zero_adv_tokens", "side_tokens"):
        torch.testing.assert_close(getattr(result.stats, field).double(), getattr(want.stats, field).double(),
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk_rows", [None, 7], ids=["one_feed_chunk", "feed_chunks_of_7_rows"])
def test_the_cached_coefficients_do_not_depend_on_how_the_rows_were_added(chunk_rows, monkeypatch):
    # The passes feed the rows in chunks of up to CHUNK_ELEMENTS floats filled across the added
    # chunks' boundaries, so micro-batch sizes change nothing, bit for bit; with 7-row feed chunks
    # (H = 8) they span those boundaries and split added chunks.
    import delta_rlvr.core.packed as packed

    if chunk_rows is not None:
        monkeypatch.setattr(packed, "CHUNK_ELEMENTS", chunk_rows * 8)
    gathers = []
    gather = PackedProxyCache._gather
    monkeypatch.setattr(PackedProxyCache, "_gather", lambda self, *a: (gathers.append(a[1]), gather(self, *a))[1])
    hidden, logp, adv, mask = rollout(9)
    signed = int((mask & (adv != 0)[:, None]).sum())
    results = {}
    for rows_per_chunk in (1, 3, 5, 16):
        cache = PackedProxyCache()
        fill(cache, hidden, logp, adv, mask, rows_per_chunk=rows_per_chunk)
        gathers.clear()
        result = cache.run(DeltaStream(DeltaConfig()))
        results[rows_per_chunk] = scatter(PackedProxyCache.coefficients(result), result.zero_advantage_coef, adv, mask)
        if chunk_rows is None:  # gathered once for all 4 passes
            assert gathers == [signed]
        else:  # re-gathered in every pass, 7 rows at a time
            assert gathers == ([7] * (signed // 7) + [signed % 7] * (signed % 7 > 0)) * 4
    for got in results.values():
        assert torch.equal(got, results[16])
    want = reference_coefficients(row_proxy(hidden, logp, mask), adv, mask).float()
    assert float((results[16] - want)[mask].abs().max()) < 1e-5


def test_the_cache_holds_signed_tokens_only_in_the_models_dtype():
    hidden, logp, adv, mask = rollout(2, dtype=torch.bfloat16)
    cache = PackedProxyCache()
    fill(cache, hidden, logp, adv, mask)
    signed = int((mask & (adv != 0)[:, None]).sum())
    assert cache.signed_tokens == signed and cache.zero_advantage_tokens == int(mask.sum()) - signed
    assert cache.nbytes == signed * (8 * 2 + 8)  # H = 8 bf16 values, plus 1 - p and A in float32


def test_a_cache_over_its_cap_spills_into_the_stream_and_gives_the_same_coefficients():
    hidden, logp, adv, mask = rollout(3)
    config = DeltaConfig()
    signed_per_chunk = [int((mask[lo : lo + 5] & (adv[lo : lo + 5] != 0)[:, None]).sum()) for lo in range(0, 16, 5)]
    cap = (signed_per_chunk[0] + 1) * (8 * 4 + 8) / (1 << 20)  # room for the first chunk only
    cache, stream = PackedProxyCache(cap), DeltaStream(config)
    for pass_index in range(stream.num_passes):
        for lo in range(0, 16, 5):
            m = mask[lo : lo + 5]
            token_adv = adv[lo : lo + 5, None].expand_as(m)[m]
            h, lp = hidden[lo : lo + 5][m], logp[lo : lo + 5][m]
            if pass_index == 0 and cache.add(h, lp, token_adv):
                continue
            if pass_index == 0 and cache.nbytes:
                cache.spill(stream)  # the chunks cached so far go first, in their order
            signed = token_adv != 0
            stream.update_tokens(row_proxy(h[signed][None], lp[signed][None])[0], token_adv[signed],
                                 zero_advantage_tokens=int((~signed).sum()))
        stream.end_pass()
    assert cache.overflowed and cache.nbytes == 0
    result = stream.result()
    got = scatter(torch.cat(result.coef), result.zero_advantage_coef, adv, mask)
    want = delta_coefficients(row_proxy(hidden, logp, mask), adv, mask, config).coef
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)


def test_an_offloaded_cache_gives_the_same_coefficients():
    hidden, logp, adv, mask = rollout(4)
    results = []
    for offload in (False, True):
        cache = PackedProxyCache(offload=offload)
        fill(cache, hidden, logp, adv, mask)
        results.append(PackedProxyCache.coefficients(cache.run(DeltaStream(DeltaConfig()))))
    assert torch.equal(results[0], results[1])


def test_coefficients_under_bf16_autocast_match_the_float64_reference():
    # The engine calls the pass inside torch.autocast(bf16). Without full_precision the float32
    # matmuls of the stream ran in bf16 and moved coefficients by up to 0.07.
    g = torch.Generator().manual_seed(5)
    hidden = 4.0 + torch.randn(24, 40, 64, generator=g)  # a large shared mean, as real hidden states
    logp = -torch.rand(24, 40, generator=g) * 2
    adv = torch.randn(24, generator=g)
    mask = torch.arange(40)[None] < torch.randint(5, 41, (24,), generator=g)[:, None]
    want = reference_coefficients(row_proxy(hidden, logp, mask), adv, mask).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cache = PackedProxyCache()
        fill(cache, hidden, logp, adv, mask, rows_per_chunk=7)
        result = cache.run(DeltaStream(DeltaConfig()))
        one_shot = delta_coefficients(row_proxy(hidden, logp, mask), adv, mask).coef
    got = scatter(PackedProxyCache.coefficients(result), result.zero_advantage_coef, adv, mask)
    assert (got - want).abs().max() < 1e-5
    assert (one_shot - want).abs().max() < 1e-5


def test_full_precision_switches_autocast_and_reduced_matmul_precision_off_and_restores_them():
    matmul = torch.backends.mkldnn.matmul, torch.backends.cuda.matmul
    before = [m.fp32_precision for m in matmul]
    try:
        for m, value in zip(matmul, ("bf16", "tf32")):  # what tf32=True / precision "medium" set
            m.fp32_precision = value
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with full_precision():
                assert not torch.is_autocast_enabled("cpu")
                assert [m.fp32_precision for m in matmul] == ["ieee", "ieee"]
                a = torch.randn(4, 4)
                assert (a @ a).dtype == torch.float32
            assert torch.is_autocast_enabled("cpu")
        assert [m.fp32_precision for m in matmul] == ["bf16", "tf32"]
        # Inside full_precision an inner entry finds nothing to switch; an autocast opened in
        # between is still switched off, and stays on outside.
        calls = []
        inner = in_full_precision(lambda: calls.append((torch.is_autocast_enabled("cpu"), [m.fp32_precision for m in matmul])))
        with full_precision():
            inner()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                inner()
                assert torch.is_autocast_enabled("cpu")
        assert calls == [(False, ["ieee", "ieee"])] * 2
    finally:
        for m, value in zip(matmul, before):
            m.fp32_precision = value


def test_bad_chunks_are_refused_with_the_expected_shapes():
    cache = PackedProxyCache()
    with pytest.raises(ValueError, match=r"hidden \(n, H\)"):
        cache.add(torch.zeros(3, 4), torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="cap_mib"):
        PackedProxyCache(-1)
    with pytest.raises(ValueError, match="zero_advantage_tokens"):
        DeltaStream(DeltaConfig()).update_tokens(torch.zeros(2, 4), torch.ones(2), zero_advantage_tokens=-1)


def test_a_cached_run_measures_gamma_in_a_pass_of_its_own_instead_of_h_by_h_moments():
    # Passes over the cache cost no forward; the (2, H, H) float64 moments would cost 16 H^2 bytes.
    hidden, logp, adv, mask = rollout(6)
    cache, stream = PackedProxyCache(), DeltaStream(DeltaConfig())
    assert stream.num_passes == 3  # streamed from forwards: gamma^(0) from second moments
    fill(cache, hidden, logp, adv, mask)
    result = cache.run(stream)
    assert stream.num_passes == 4  # moments (first order), measure, refine, final
    want = delta_coefficients(row_proxy(hidden, logp, mask), adv, mask)
    torch.testing.assert_close(result.stats.gamma, want.stats.gamma, atol=1e-6, rtol=1e-6)
    with pytest.raises(RuntimeError, match="before the first update"):
        stream.measure_gamma_directly()


def chunk_sizes(hidden, adv, mask, rows_per_chunk=5):
    """Bytes `fill` offers the cache per chunk (signed tokens x (H x itemsize + 8))."""
    return [int((mask[lo : lo + rows_per_chunk] & (adv[lo : lo + rows_per_chunk] != 0)[:, None]).sum())
            * PackedProxyCache.token_bytes(hidden.shape[-1], hidden.element_size()) for lo in range(0, hidden.shape[0], rows_per_chunk)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tiers", ["gpu", "host", "disk", "gpu_host_disk", "host_disk"])
def test_every_tier_holds_the_rows_bit_for_bit(tiers, dtype, tmp_path):
    # GPU -> pinned host memory -> memory-mapped file: the same coefficients as the plain
    # in-memory cache, exactly, and the float64 reference's within TOL.
    if "gpu" in tiers and not torch.cuda.is_available():
        pytest.skip("the GPU tier needs CUDA")
    device = "cuda" if "gpu" in tiers else "cpu"
    hidden, logp, adv, mask = (t.to(device) for t in rollout(7, dtype=dtype))
    sizes = chunk_sizes(hidden, adv, mask)
    third = sum(sizes) // 3 + 1
    disk = CacheTier("disk", 1 << 30, str(tmp_path))
    chosen = {"gpu": [CacheTier("device")], "host": [CacheTier("host")], "disk": [disk],
              "gpu_host_disk": [CacheTier("device", third), CacheTier("host", third), disk],
              "host_disk": [CacheTier("host", max(sizes)), disk]}[tiers]
    plain, tiered = PackedProxyCache(), PackedProxyCache(tiers=chosen)
    fill(plain, hidden, logp, adv, mask)
    fill(tiered, hidden, logp, adv, mask)
    held = tiered.peak_bytes_by_kind()
    assert sum(held.values()) == sum(sizes) and all(held[t.kind] > 0 for t in chosen)
    want = PackedProxyCache.coefficients(plain.run(DeltaStream(DeltaConfig())))
    result = tiered.run(DeltaStream(DeltaConfig()))
    assert torch.equal(PackedProxyCache.coefficients(result), want)
    reference = reference_coefficients(row_proxy(hidden.cpu(), logp.cpu(), mask.cpu()), adv.cpu(), mask.cpu()).float()
    got = scatter(PackedProxyCache.coefficients(result).cpu(), result.zero_advantage_coef.cpu(), adv.cpu(), mask.cpu())
    err = float((got - reference)[mask.cpu()].abs().max())
    print(f"{tiers} {dtype}: worst |coef - float64 reference| = {err:.1e}")
    assert err < 1e-5
    tiered.free()
    assert not list(tmp_path.iterdir())  # the spill file was unlinked at once


def test_the_disk_tier_writes_in_the_background_with_one_chunk_in_flight(tmp_path, monkeypatch):
    # add() returns while the disk writes (the caller's forward goes on); the next add waits for
    # the write before it, so host memory holds at most one chunk beside the new one.
    import threading

    import delta_rlvr.core.packed as packed

    gate, started = threading.Event(), threading.Event()
    pwrite = os.pwrite

    def slow_pwrite(fd, data, offset):
        started.set()
        assert gate.wait(10), "the test never released the write"
        return pwrite(fd, data, offset)

    monkeypatch.setattr(packed.os, "pwrite", slow_pwrite)
    hidden, logp, adv, mask = rollout(10)
    cache, plain = PackedProxyCache(tiers=[CacheTier("disk", 1 << 30, str(tmp_path))]), PackedProxyCache()
    m = mask[:5]
    assert cache.add(hidden[:5][m], logp[:5][m], adv[:5, None].expand_as(m)[m])  # returns with its write blocked
    assert started.wait(10) and not gate.is_set()
    second = threading.Thread(target=fill, args=(cache, hidden[5:], logp[5:], adv[5:], mask[5:]))
    second.start()
    second.join(0.3)
    assert second.is_alive()  # waits for the first chunk's write
    gate.set()
    second.join(10)
    assert not second.is_alive()
    fill(plain, hidden, logp, adv, mask)
    want = PackedProxyCache.coefficients(plain.run(DeltaStream(DeltaConfig())))
    assert torch.equal(PackedProxyCache.coefficients(cache.run(DeltaStream(DeltaConfig()))), want)
    cache.free()


def test_a_failed_spill_write_is_raised_naming_the_directory_and_the_settings(tmp_path, monkeypatch):
    import errno

    import delta_rlvr.core.packed as packed

    def full_disk(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(packed.os, "pwrite", full_disk)
    hidden, logp, adv, mask = rollout(11)
    cache = PackedProxyCache(tiers=[CacheTier("disk", 1 << 30, str(tmp_path))])
    m = mask[:5]
    assert cache.add(hidden[:5][m], logp[:5][m], adv[:5, None].expand_as(m)[m])
    with pytest.raises(OSError, match=r"spill file in .*No space left on device.*delta\.spill_gib.*delta\.spill_dir") as raised:
        cache.run(DeltaStream(DeltaConfig()))
    assert raised.value.errno == errno.ENOSPC and str(tmp_path) in str(raised.value)
    cache.free()
    assert not list(tmp_path.iterdir())


def test_when_every_tier_is_full_the_cache_overflows_and_bad_tiers_are_refused(tmp_path):
    hidden, logp, adv, mask = rollout(8)
    sizes = chunk_sizes(hidden, adv, mask)
    cache = PackedProxyCache(tiers=[CacheTier("host", sizes[0]), CacheTier("disk", sizes[1], str(tmp_path))])
    m = mask[:5]
    assert cache.add(hidden[:5][m], logp[:5][m], adv[:5, None].expand_as(m)[m])  # host
    m = mask[5:10]
    assert cache.add(hidden[5:10][m], logp[5:10][m], adv[5:10, None].expand_as(m)[m])  # disk
    m = mask[10:15]
    assert not cache.add(hidden[10:15][m], logp[10:15][m], adv[10:15, None].expand_as(m)[m]) and cache.overflowed
    counted = PackedProxyCache(tiers=cache.tiers, record_only=True)  # another SP rank: same decision, no rows
    for lo in (0, 5, 10):
        m = mask[lo : lo + 5]
        counted.add(hidden[lo : lo + 5][m], logp[lo : lo + 5][m], adv[lo : lo + 5, None].expand_as(m)[m])
    assert counted.overflowed and counted.tier_peak_nbytes == cache.tier_peak_nbytes and not counted._chunks
    with pytest.raises(RuntimeError, match="record_only"):
        PackedProxyCache(record_only=True).run(DeltaStream(DeltaConfig()))
    with pytest.raises(ValueError, match="does not exist"):
        CacheTier("disk", 1, str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="needs a directory and a cap_bytes"):
        CacheTier("disk", None, str(tmp_path))
    with pytest.raises(ValueError, match="kind must be one of"):
        CacheTier("nvme")
