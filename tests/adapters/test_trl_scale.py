"""DeltaGRPOTrainer at scale, on CPU: forwards per generation batch, packed and streamed memory,
sharded heads, tokens the loss drops, checkpointed gamma, precision (docs/adapters.md, issue 14).

Every coefficient is checked against the float64 reference (tests/reference_delta.py) on the
hidden states of the weights that sampled the batch, recomputed with the project's own scorer.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from reference_delta import reference_coefficients  # noqa: E402
from test_trl_adapter import build, common_args  # noqa: E402
from trl_memory import LiveTensorBytes  # noqa: E402

from delta_rlvr.adapters.trl import DeltaGRPOConfig, DeltaGRPOTrainer, check_supported, gathered_head  # noqa: E402
from delta_rlvr.core import row_proxy  # noqa: E402
from delta_rlvr.models import build_tiny_model, completion_logprobs  # noqa: E402

TOL = 1e-4  # against the float64 reference (the tolerance); observed about 1e-6

# Gradient accumulation not aligned with generation (1 % 2 != 0): TRL runs its own old-log-prob
# forward in `_generate_and_score_completions`, the branch the vLLM IS correction also takes.
TRL_SCORES = dict(steps_per_generation=2, gradient_accumulation_steps=1, max_steps=2)


class Counting:
    """Counts the rows forwarded through TRL's fused head during each generation batch."""

    def _install_counter(self):
        self.fused_rows, self.passes, self.records = 0, [], []

        def count(module, args, kwargs):
            if kwargs.get("fused_lm_head"):
                self.fused_rows += kwargs["input_ids"].shape[0]

        self.model.register_forward_pre_hook(count, with_kwargs=True)

    def _generate_and_score_completions(self, inputs):
        before = self.fused_rows
        out = super()._generate_and_score_completions(inputs)
        self.passes.append((self.fused_rows - before) / out["completion_ids"].shape[0])
        return out


class StockCounting(Counting, trl.GRPOTrainer):
    pass


class DeltaCounting(Counting, DeltaGRPOTrainer):
    def _delta_coefficients(self, batch):
        coef, stats = super()._delta_coefficients(batch)
        self.records.append({"A": batch["advantages"].clone(), "coef": coef.clone(), "batch": dict(batch),
                             "info": dict(self.delta_pass_info)})
        return coef, stats


def make(cls, config_cls, tokenizer, tiny_config, tmp_path, **overrides):
    trainer = build(cls, config_cls, build_tiny_model(tokenizer, tiny_config), tokenizer, tmp_path, **overrides)
    trainer._install_counter()
    return trainer


def reference(record, tokenizer, tiny_config, temperature=1.0, **kwargs):
    """float64 DelTA of the first batch, from the weights that sampled it."""
    batch, mask = record["batch"], record["batch"]["completion_mask"].bool()
    model = build_tiny_model(tokenizer, tiny_config)
    scored = completion_logprobs(model, batch["prompt_ids"], batch["prompt_mask"].bool(), batch["completion_ids"], mask,
                                 temperature=temperature, return_hidden=True)
    return reference_coefficients(row_proxy(scored.hidden, scored.logp, mask), record["A"].float(), mask, **kwargs).float()


def signed_tokens(record):
    mask = record["batch"]["completion_mask"].bool()
    return int((mask & (record["A"] != 0)[:, None]).sum())


# ------------------------------------------------------------------------------------------
# Audit item 2: no extra forward where TRL already runs one.


@pytest.mark.parametrize("path", ["trl_scores_old_policy", "aligned"])
def test_delta_runs_no_forward_of_its_own_in_either_mode(
        path, char_tokenizer, tiny_config, tmp_path):
    overrides = TRL_SCORES if path == "trl_scores_old_policy" else dict(max_steps=1)
    stock = make(StockCounting, trl.GRPOConfig, char_tokenizer, tiny_config, tmp_path / "stock", **overrides)
    stock.train()
    delta = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path / "delta", **overrides)
    delta.train()
    assert len(stock.passes) == len(delta.passes) == 1
    rec = delta.records[0]
    if path == "trl_scores_old_policy":
        assert stock.passes == [1.0] and delta.passes == [1.0]  # zero extra forwards
        assert rec["info"]["capture_source"] == "scoring" and rec["info"]["forwards"] == 0
        assert "old_per_token_logps" in rec["batch"]
    else:  # TRL runs no old-log-prob forward: the rows come from its transformers generation
        assert stock.passes == [0.0] and delta.passes == [0.0]
        assert rec["info"]["capture_source"] == "generation" and rec["info"]["forwards"] == 0
        assert "old_per_token_logps" not in rec["batch"]
    assert signed_tokens(rec) > 0
    want = reference(rec, char_tokenizer, tiny_config)  # float64, from a full scoring forward of the batch
    err = (rec["coef"] - want).abs().max()
    assert err < TOL, err


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.bfloat16, 5e-3)])
def test_generations_hidden_states_give_the_coefficients_of_the_scoring_forward(dtype, tol, char_tokenizer, tiny_config,
                                                                               tmp_path):
    # The aligned mode: the rows the transformers generation computed (KV cache, one token a
    # call) against DelTA's own no-grad scoring forward of the same batch with the same weights.
    trainer = build(DeltaCounting, DeltaGRPOConfig, build_tiny_model(char_tokenizer, tiny_config).to(dtype), char_tokenizer,
                    tmp_path, max_steps=1, learning_rate=0.0)
    trainer._install_counter()
    trainer.train()
    rec = trainer.records[0]
    assert rec["info"]["capture_source"] == "generation" and rec["info"]["forwards"] == 0
    trainer._delta_capture = None  # no capture: DelTA's own forward
    coef, _ = trainer._delta_coefficients(dict(rec["batch"], advantages=rec["A"]))
    assert trainer.delta_pass_info["forwards"] == trainer.delta_pass_info["micro_batches"] > 0
    err = (coef - rec["coef"]).abs().max()
    assert err <= tol, err  # measured: 3.6e-7 in float32, 9.8e-4 in bf16 (KV-cache kernels against one forward)
    signed = rec["batch"]["completion_mask"].bool() & (rec["A"] != 0)[:, None]
    assert (rec["coef"][signed] - 1).abs().max() > 4 * tol  # the coefficients are not all 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", ["plain", "bias", "softcap", "temperature", "autocast"])
def test_the_direct_head_gives_the_log_probs_of_trls_fused_kernel(case, dtype):
    # Micro-batches of at most HEAD_DIRECT_ELEMENTS logits skip TRL's tiled kernel: one product
    # and a log-softmax with TRL's transform, the same values to float32 rounding.
    from trl.kernels import ChunkedLogProbFunction

    from delta_rlvr.adapters.trl import direct_head_logps

    g = torch.Generator().manual_seed(3)
    n, h, v = 97, 48, 301
    hidden = (torch.randn(n, h, generator=g) * 2).to(dtype)
    weight = (torch.randn(v, h, generator=g) * 0.2).to(dtype)
    bias = (torch.randn(v, generator=g) * 0.5).to(dtype) if case == "bias" else None
    ids = torch.randint(0, v, (n,), generator=g)
    softcap = 3.0 if case == "softcap" else None
    temperature = 0.7 if case == "temperature" else 1.0
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast")
    with autocast:
        want = ChunkedLogProbFunction.apply(hidden, weight, bias, ids, temperature, 128, softcap, 1.0, ("log_probs",))[0]
        got = direct_head_logps(hidden, weight, bias, ids, temperature, softcap)
    assert got.dtype == torch.float32 and got.shape == (n,)
    assert (got - want.float()).abs().max() <= 2e-6 * max(1.0, float(want.abs().max()))


# ------------------------------------------------------------------------------------------
# Audit item 1: packed memory, the cap with streaming, offload.


def test_the_pass_keeps_one_packed_copy_of_the_signed_tokens_in_the_models_dtype(char_tokenizer, tiny_config, tmp_path):
    delta = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path, max_steps=1)
    delta.train()
    rec = delta.records[0]
    h = tiny_config.hidden_size
    assert rec["info"]["cache_peak_bytes"] == signed_tokens(rec) * (h * 4 + 8)  # float32 model: 4 bytes a value
    # Measured: every tensor the DelTA pass allocates and keeps alive at once (LiveTensorBytes
    # tracks storages), against TRL's own old-log-prob pass over the same batch.
    batch = rec["batch"]
    delta._delta_capture = None
    with LiveTensorBytes() as ours:
        delta._delta_coefficients(batch)
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with LiveTensorBytes() as stock, torch.no_grad():
        trl.GRPOTrainer._get_per_token_logps_and_entropies(delta, delta.model, ids, att, batch["completion_ids"].shape[1],
                                                           batch_size=delta.args.per_device_train_batch_size)
    extra = ours.peak - stock.peak
    cache = signed_tokens(rec) * (h * 4 + 8)
    statistics = 16 * (2 * h * h) * 2  # generous: a chunk of v and its temporaries, O(H) since the direct gamma pass
    assert extra <= cache + statistics, (extra, cache, statistics)
    # The old code held every micro-batch's (b, P + T, H) hidden state, their concatenation and a
    # float32 (B, T, H) proxy: more than twice the padded batch.
    padded = batch["completion_ids"].numel() * h * 4
    assert extra < 2 * padded + statistics


def test_no_micro_batchs_hidden_state_outlives_its_forward(char_tokenizer, tiny_config, tmp_path):
    # The old code kept a view of every micro-batch's (b, P + T, H) hidden state until torch.cat.
    import weakref

    trainer = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path, max_steps=1,
                   per_device_train_batch_size=4, steps_per_generation=2, gradient_accumulation_steps=2)
    trainer.train()
    batch = dict(trainer.records[0]["batch"], advantages=trainer.records[0]["A"])
    seen, alive_at_next_forward = [], []

    def watch(module, args, output):
        alive_at_next_forward.append(sum(ref() is not None for ref in seen))
        seen.append(weakref.ref(output.last_hidden_state.untyped_storage()))

    handle = trainer._delta_backbone().register_forward_hook(watch)
    try:
        trainer._delta_capture = None
        trainer._delta_coefficients(batch)
    finally:
        handle.remove()
    assert len(seen) == 2  # two micro-batches of 4
    assert alive_at_next_forward == [0, 0]


def test_the_capture_frees_each_chunk_as_it_is_packed(char_tokenizer, tiny_config, tmp_path, monkeypatch):
    # TRL's own forward (misaligned accumulation) in two micro-batches of 4: the capture holds
    # every valid token until the advantages exist; the pass moves it into the packed cache
    # chunk by chunk, so when chunk i is packed, chunks < i are freed.
    import weakref

    from delta_rlvr.adapters import trl as adapter
    from delta_rlvr.core.packed import PackedProxyCache

    trainer = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path, per_device_train_batch_size=4,
                   steps_per_generation=2, gradient_accumulation_steps=1, max_steps=1)
    captured, alive_at_pack, sizes = [], [], []
    add, pack = adapter._Capture.add, PackedProxyCache.add

    def watch_add(self, start, stop, rows, valid):
        captured.append(weakref.ref(rows.untyped_storage()))
        sizes.append(rows.numel() * rows.element_size())
        add(self, start, stop, rows, valid)

    def watch_pack(self, hidden, logp, advantages):
        alive_at_pack.append(sum(ref() is not None for ref in captured))
        return pack(self, hidden, logp, advantages)

    monkeypatch.setattr(adapter._Capture, "add", watch_add)
    monkeypatch.setattr(PackedProxyCache, "add", watch_pack)
    trainer.train()
    assert trainer.records[0]["info"]["capture_source"] == "scoring" and len(captured) == 2
    assert alive_at_pack == [2, 1]  # chunk 0 was freed before chunk 1 was packed
    assert all(ref() is None for ref in captured)  # and nothing outlives the pass
    # Measured: TRL's forward with the capture, then the pass, against TRL's forward alone.
    monkeypatch.setattr(adapter._Capture, "add", add)
    rec = trainer.records[0]
    batch = {k: v for k, v in rec["batch"].items() if k != "old_per_token_logps"}
    batch["advantages"] = rec["A"]
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)

    def scored(capture):
        trainer._delta_capture = capture
        with torch.no_grad():
            out = trainer._get_per_token_logps_and_entropies(trainer.model, ids, att, ids.shape[1] - batch["prompt_ids"].shape[1],
                                                             batch_size=4)[0]
        return out

    with LiveTensorBytes() as stock:
        scored(None)
    with LiveTensorBytes() as ours:
        capture = adapter._Capture(None, "scoring")
        logps = scored(capture)
        trainer._delta_coefficients(dict(batch, old_per_token_logps=logps))
    trainer._delta_capture = None
    h = tiny_config.hidden_size
    statistics = 16 * (2 * h * h) * 2  # the estimator's O(H^2) float64 statistics, as above
    extra = ours.peak - stock.peak
    assert extra <= sum(sizes) + max(sizes) + statistics, (extra, sizes)  # capture + one chunk (+ O(H^2))


def test_past_the_cache_cap_the_pass_streams_with_k_plus_one_more_forwards_and_the_same_coefficients(
        char_tokenizer, tiny_config, tmp_path):
    runs = {}
    for name, extra in (("cached", {}), ("streamed", dict(delta_cache_mib=1e-3)),
                        ("offloaded", dict(delta_offload_cache=True))):
        trainer = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path / name, max_steps=1, **extra)
        trainer.train()
        runs[name] = trainer
    cached, streamed = runs["cached"].records[0], runs["streamed"].records[0]
    assert torch.equal(cached["batch"]["completion_ids"], streamed["batch"]["completion_ids"])  # same rollout
    assert streamed["info"]["streamed"] and not cached["info"]["streamed"]
    k = runs["streamed"].delta_config.refine_steps
    # the capture from generation does not fit the cap: one warning, pass 0 forwarded by DelTA, then K + 1
    assert runs["streamed"].passes == [1.0 + k + 1] and runs["cached"].passes == [0.0]
    torch.testing.assert_close(streamed["coef"], cached["coef"], atol=2e-6, rtol=0)
    assert torch.equal(runs["offloaded"].records[0]["coef"], cached["coef"])
    assert (cached["coef"] - reference(cached, char_tokenizer, tiny_config)).abs().max() < TOL


def test_capture_from_trls_forward_streams_past_the_cap_with_k_plus_one_forwards(char_tokenizer, tiny_config, tmp_path,
                                                                                 caplog):
    # The capture holds every valid token until advantages exist; a cap below that falls back
    # to the adapter's own pass 0, then streams: stock + K + 2 passes, same coefficients.
    cached = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path / "a", **TRL_SCORES)
    cached.train()
    capped = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path / "b", delta_cache_mib=1e-3,
                  **TRL_SCORES)
    capped.train()
    warned = [r.getMessage() for r in caplog.records if "do not fit delta_cache_mib" in r.getMessage()]
    assert len(warned) == 1, warned  # one warning, with the numbers and the cap to set
    tokens = int(capped.records[0]["batch"]["completion_mask"].sum())
    assert f"the {tokens} valid completion tokens" in warned[0] and "delta_cache_mib=0.001 MiB" in warned[0]
    assert "Raise delta_cache_mib to at least" in warned[0]
    k = capped.delta_config.refine_steps
    assert cached.passes == [1.0] and capped.passes == [1.0 + k + 2]
    assert not capped.records[0]["info"]["captured"] and capped.records[0]["info"]["streamed"]
    torch.testing.assert_close(capped.records[0]["coef"], cached.records[0]["coef"], atol=2e-6, rtol=0)


def test_topk_hidden_packs_its_vectors_and_streams_to_the_same_coefficients(char_tokenizer, tiny_config, tmp_path):
    runs = []
    for name, extra in (("cached", {}), ("streamed", dict(delta_cache_mib=1e-3))):
        trainer = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path / name, max_steps=1,
                       delta_proxy="topk_hidden", delta_proxy_topk=5, **extra)
        trainer.train()
        runs.append(trainer.records[0])
    assert runs[0]["info"]["cache_peak_bytes"] == signed_tokens(runs[0]) * (tiny_config.hidden_size * 4 + 8)
    assert runs[1]["info"]["streamed"]
    torch.testing.assert_close(runs[1]["coef"], runs[0]["coef"], atol=2e-6, rtol=0)


def test_lm_head_refuses_a_cap_it_cannot_stream_naming_the_setting(char_tokenizer, tiny_config, tmp_path):
    trainer = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path, max_steps=1,
                   delta_proxy="lm_head", delta_cache_mib=1e-4)
    with pytest.raises(ValueError, match="delta_proxy='lm_head'.*delta_cache_mib"):
        trainer.train()


def test_bad_cache_settings_are_refused_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match="DeltaGRPOConfig.delta_cache_mib"):
        DeltaGRPOConfig(**common_args(tmp_path, delta_cache_mib=-1))
    with pytest.raises(ValueError, match="DeltaGRPOConfig.delta_offload_cache"):
        DeltaGRPOConfig(**common_args(tmp_path, delta_offload_cache="yes"))


# ------------------------------------------------------------------------------------------
# Audit item 3: sharded heads (single process; FSDP2 across processes in test_trl_multiprocess).


def test_a_dtensor_head_is_gathered_to_a_plain_tensor(tmp_path):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    if dist.is_initialized():
        pytest.skip("a process group already exists")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        head = torch.nn.Linear(8, 11, bias=False)
        full = head.weight.detach().clone()
        head.weight = torch.nn.Parameter(distribute_tensor(head.weight.detach(), mesh, [Shard(0)]))
        assert isinstance(head.weight, DTensor) and head.weight.numel() == full.numel()  # what fooled numel() == 0
        weight, bias = gathered_head(head)
        assert not isinstance(weight, DTensor) and bias is None
        assert torch.equal(weight, full)
        with pytest.raises(Exception):  # the old code's matmul: mixed Tensor and DTensor
            torch.randn(3, 8) @ head.weight.T
    finally:
        dist.destroy_process_group()


def test_a_head_that_stays_empty_is_refused_naming_the_setting(char_tokenizer, tiny_config, tmp_path):
    trainer = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path, max_steps=1,
                   delta_proxy="topk_hidden")
    head = trainer.accelerator.unwrap_model(trainer.model).get_output_embeddings()
    head.weight = torch.nn.Parameter(torch.empty(0))  # what a ZeRO-3 / FSDP1 shard looks like ungathered
    with pytest.raises(ValueError, match="delta_proxy='row'"):
        trainer._delta_full_head()


# ------------------------------------------------------------------------------------------
# Audit item 4: tokens the loss drops.


def test_losses_that_drop_tokens_by_the_updated_policy_are_refused_naming_the_setting():
    base = dict(use_liger_kernel=False, loss_type="dapo", top_entropy_quantile=1.0, off_policy_mask_threshold=None)
    with pytest.raises(ValueError, match="top_entropy_quantile=1.0"):
        check_supported(SimpleNamespace(**{**base, "top_entropy_quantile": 0.2}))
    with pytest.raises(ValueError, match="off_policy_mask_threshold=None"):
        check_supported(SimpleNamespace(**{**base, "off_policy_mask_threshold": 0.5}))
    check_supported(SimpleNamespace(**base))


class MaskedIS(trl.GRPOTrainer):
    """TRL's vLLM IS 'sequence_mask' output on CPU: an (B, 1) ratio, 0 for the dropped responses
    (here the odd ones), as `_generate_and_score_completions` returns it with vLLM."""

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        ratio = torch.ones(out["completion_ids"].shape[0], 1)
        ratio[1::2] = 0
        out["importance_sampling_ratio"] = ratio
        return out


class DeltaMaskedIS(Counting, DeltaGRPOTrainer, MaskedIS):
    def _delta_coefficients(self, batch):
        coef, stats = super()._delta_coefficients(batch)
        self.records.append({"A": batch["advantages"].clone(), "coef": coef.clone(), "batch": dict(batch),
                             "info": dict(self.delta_pass_info)})
        return coef, stats


def test_coefficients_are_normalised_over_the_tokens_the_importance_sampling_mask_keeps(char_tokenizer, tiny_config, tmp_path):
    trainer = make(DeltaMaskedIS, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path, max_steps=1)
    trainer.train()
    rec = trainer.records[0]
    kept = rec["batch"]["completion_mask"].bool().clone()
    kept[1::2] = False
    assert bool((rec["coef"][1::2] == 0).all())
    assert float(rec["coef"][kept].mean()) == pytest.approx(1.0, abs=1e-5)
    batch, A = rec["batch"], rec["A"].float()
    model = build_tiny_model(char_tokenizer, tiny_config)
    scored = completion_logprobs(model, batch["prompt_ids"], batch["prompt_mask"].bool(), batch["completion_ids"], kept,
                                 temperature=1.0, return_hidden=True)
    want = reference_coefficients(row_proxy(scored.hidden, scored.logp, kept), A, kept).float()
    assert (rec["coef"] - want).abs().max() < TOL


# ------------------------------------------------------------------------------------------
# Audit item 5: the frozen gamma survives a resume.


def test_the_frozen_temperature_is_checkpointed_and_restored_on_resume(char_tokenizer, tiny_config, tmp_path):
    from transformers import AutoModelForCausalLM

    args = dict(max_steps=2, delta_freeze_temperature=True, save_strategy="steps", save_steps=1)
    first = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path, **args)
    first.train()
    frozen = first._delta_gamma.value
    assert frozen is not None and bool(torch.isfinite(frozen).all())
    checkpoint = tmp_path / "checkpoint-1"
    assert torch.equal(torch.load(checkpoint / "delta_state_rank0.pt")["gamma"], frozen)
    # Resume from step 1 with a fresh trainer: its first batch is not the run's first batch,
    # so without the checkpointed value it would freeze a different gamma.
    resumed = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path, **args)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert len(resumed.records) == 1
    assert torch.equal(resumed._delta_gamma.value, frozen)
    # The resumed batch used batch 1's gamma: recompute it from the weights that sampled it.
    rec = resumed.records[0]
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint))
    batch, mask = rec["batch"], rec["batch"]["completion_mask"].bool()
    scored = completion_logprobs(model, batch["prompt_ids"], batch["prompt_mask"].bool(), batch["completion_ids"], mask,
                                 temperature=1.0, return_hidden=True)
    v = row_proxy(scored.hidden, scored.logp, mask)
    want = reference_coefficients(v, rec["A"].float(), mask, fixed_gamma=tuple(float(x) for x in frozen)).float()
    assert (rec["coef"] - want).abs().max() < TOL
    adaptive = reference_coefficients(v, rec["A"].float(), mask).float()
    assert (adaptive - want).abs().max() > 10 * TOL  # the test can tell the two apart


def test_a_checkpoint_of_an_older_version_restores_its_frozen_gamma(tmp_path, monkeypatch):
    # delta_state.pt used to hold the frozen gamma under "temperature"; now under "gamma".
    from delta_rlvr.core import DeltaConfig
    from delta_rlvr.core.frozen import FrozenGamma

    monkeypatch.setattr(trl.GRPOTrainer, "_load_optimizer_and_scheduler", lambda self, checkpoint: None)
    trainer = object.__new__(DeltaGRPOTrainer)  # only the adapter's own state is read
    trainer.delta_config = DeltaConfig(freeze_temperature=True)
    trainer._delta_gamma = FrozenGamma(True)
    trainer._delta_generator = None
    trainer.accelerator = SimpleNamespace(process_index=0, num_processes=1)
    trainer.args = SimpleNamespace(delta_pooling="local", seed=0, world_size=1, device=torch.device("cpu"))
    old = torch.tensor([0.5, 0.25], dtype=torch.float64)
    torch.save({"temperature": old, "generator": None}, tmp_path / "delta_state.pt")
    trainer._load_optimizer_and_scheduler(str(tmp_path))
    assert torch.equal(trainer._delta_gamma.current(), old)
    torch.save({"gamma": old * 2, "generator": None}, tmp_path / "delta_state.pt")
    trainer._load_optimizer_and_scheduler(str(tmp_path))
    assert torch.equal(trainer._delta_gamma.current(), old * 2)


# ------------------------------------------------------------------------------------------
# Audit item 6: precision under bf16 autocast and reduced fp32 matmul precision.


def test_the_delta_pass_matches_float64_under_bf16_autocast_and_bf16_matmul_precision(char_tokenizer, tiny_config, tmp_path):
    trainer = make(DeltaCounting, DeltaGRPOConfig, char_tokenizer, tiny_config, tmp_path, max_steps=1)
    trainer.train()
    rec = trainer.records[0]
    batch = dict(rec["batch"], advantages=rec["A"])
    mask = batch["completion_mask"].bool()
    step = trainer.args.per_device_train_batch_size
    # A large shared mean, as real hidden states have, makes reduced precision visible.
    shift = trainer._delta_backbone().register_forward_hook(
        lambda m, a, out: out.__class__(last_hidden_state=out.last_hidden_state + 4.0))
    matmul = torch.backends.mkldnn.matmul
    before = matmul.fp32_precision
    try:
        matmul.fp32_precision = "bf16"  # what a reduced float32 matmul precision sets on CPU
        with torch.autocast("cpu", dtype=torch.bfloat16):
            coef, _ = trainer._delta_coefficients(batch)
            # the same inputs, for the reference: the forward is deterministic
            hs, lps = zip(*[trainer._delta_forward(batch, s, s + step, mask[s:s + step])
                            for s in range(0, mask.shape[0], step)])
    finally:
        matmul.fp32_precision = before
        shift.remove()
    h = torch.zeros(*mask.shape, hs[0].shape[1], dtype=torch.float64)
    lp = torch.zeros(mask.shape, dtype=torch.float64)
    h[mask], lp[mask] = torch.cat(hs).double(), torch.cat(lps).double()
    want = reference_coefficients((1 - lp.exp()).unsqueeze(-1) * h, batch["advantages"].float(), mask).float()
    assert (coef - want).abs().max() < 1e-5
