"""`delta-rlvr audit-proxy`: how faithful are DelTA's cheap token-gradient proxies?

One rollout batch, built as a training step builds it (sample G responses per prompt, score
them with the task's verifier, group advantages with the run's estimator, one old-policy pass
with hidden states), then DelTA coefficients (the run's DeltaConfig) under every proxy -
row, topk_hidden, lm_head and the reference full_sketch (a count-sketch of each token's
full-parameter gradient) - always through `models.token_vectors.token_vectors`, the dispatcher the
trainer uses, so the audit measures exactly what training computes.

Reported per side (tokens of responses with A > 0, and with A < 0), for each cheap proxy
against the reference: the Spearman rank correlation of the coefficients and the overlap of
their top halves; the wall time and peak memory of each proxy (token vectors +
`delta_coefficients`); and the reference's own noise: sketched vs exact gradient dot products
on a few tokens, and the agreement of two sketches with different seeds.

Memory: on CUDA, `torch.cuda.max_memory_allocated` over the start of the measurement; on CPU
the process's resident set size, read from /proc/self/statm by a background thread every
2 ms, peak minus start (after `gc.collect()` and glibc `malloc_trim(0)`, so memory freed by an
earlier measurement is not counted as "already there"). RSS also counts allocator caching, so
CPU figures are approximate.

Outputs in the output folder: audit.md, audit.json, audit.png.
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from delta_rlvr.core import delta_coefficients, group_advantages
from delta_rlvr.core.proxies import ProxyConfig
from delta_rlvr.errors import ConfigError
from delta_rlvr.evaluation.models import resolve_model
from delta_rlvr.models.sketch import full_gradient_sketch, pairwise_sums
from delta_rlvr.models.token_vectors import concat_vectors, make_sketch, token_vectors
from delta_rlvr.train.config import TrainConfig, load_config
from delta_rlvr.train.rollout import PolicyRunner, collect_rollout
from delta_rlvr.train.tasks import PromptEncoder, build_task

#: The proxies audited, the reference last.
CHEAP = ("row", "topk_hidden", "lm_head")
REFERENCE = "full_sketch"
SIDES = {"pos": 1, "neg": -1}
SIDE_LABEL = {"pos": "A > 0", "neg": "A < 0"}
#: Interval of the CPU resident-memory sampler, in seconds.
RSS_INTERVAL = 0.002
CPU_MEMORY_METHOD = ("CPU: peak increase of the process's resident set size (/proc/self/statm, sampled every "
                     f"{RSS_INTERVAL * 1000:g} ms by a background thread) over its value at the start, after gc and "
                     "malloc_trim; includes allocator caching, so approximate")
CUDA_MEMORY_METHOD = "CUDA: torch.cuda.max_memory_allocated during the measurement minus memory_allocated at its start"


@dataclass(frozen=True)
class AuditConfig:
    model: str = "embedded:arith-tiny"
    """Preset, Hugging Face folder, trainer checkpoint, or run folder (newest checkpoint)."""
    config: str | None = None
    """Trainer YAML preset for the task, rollout and DelTA settings (not with a checkpoint)."""
    overrides: tuple[str, ...] = ()
    """`key=value` overrides of the trainer config (on top of a checkpoint's own config)."""
    prompts: int | None = None
    """Prompts in the batch (default: the config's rollout.prompts_per_step)."""
    samples: int | None = None
    """Responses per prompt (default: the config's rollout.samples_per_prompt)."""
    topk: int = 64
    """K of the topk_hidden proxy."""
    sketch_dim: int = 16384
    """D of the full-gradient count-sketch (the reference)."""
    sketch_seed: int = 0
    """Seed of the sketch's hashes and signs."""
    sketch_repeat: int = 1
    """1: also sketch with seed sketch_seed + 1 (sketch-vs-sketch agreement); 0: skip it."""
    exact_tokens: int = 16
    """Tokens whose exact full gradients are kept to measure the sketch's error (0: skip)."""
    seed: int = 0
    """Sampling seed of the batch."""
    output_dir: str = "runs/audit"
    """Where audit.json, audit.md and the figure go."""
    device: str = "auto"
    """"auto": cuda when available, else cpu."""

    def __post_init__(self) -> None:
        def check(ok: bool, option: str, value, fix: str) -> None:
            if not ok:
                raise ConfigError(f"{option} = {value!r} is invalid: {fix}")

        check(self.prompts is None or self.prompts >= 1, "--prompts", self.prompts, "use at least 1 prompt")
        check(self.samples is None or self.samples >= 2, "--samples", self.samples,
              "group advantages need at least 2 responses per prompt")
        check(self.topk >= 1, "--topk", self.topk, "use K >= 1 logits for the topk_hidden proxy")
        check(self.sketch_dim >= 1, "--sketch-dim", self.sketch_dim, "use a positive sketch width (default 16384)")
        check(self.sketch_seed >= 0, "--sketch-seed", self.sketch_seed, "use a seed >= 0")
        check(self.sketch_repeat in (0, 1), "--sketch-repeat", self.sketch_repeat, "use 1 (second sketch seed) or 0 (skip)")
        check(self.exact_tokens == 0 or self.exact_tokens >= 2, "--exact-tokens", self.exact_tokens,
              "use 0 (skip the sketch error) or at least 2 tokens (errors are measured on pairs)")


# --------------------------------------------------------------------------------------------
# Pure helpers


def _top_membership(x: np.ndarray, k: int) -> np.ndarray:
    """Probability that each entry is among the k largest when ties are broken at random:
    1 above the k-th largest value, 0 below it, and the remaining places shared evenly by the
    entries tied with it."""
    threshold = np.sort(x)[::-1][k - 1]
    above = x > threshold
    tied = x == threshold
    member = above.astype(np.float64)
    member[tied] = (k - above.sum()) / tied.sum()
    return member


def top_half_overlap(proxy, reference) -> float | None:
    """|top(proxy) ∩ top(reference)| / |top(reference)| for the top half (k = n // 2 tokens)
    by value. Ties at the boundary count as broken at random (the expected overlap), so an
    all-tied side scores the chance level k / n. None for fewer than 2 tokens."""
    a, b = np.asarray(proxy, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"top_half_overlap: expected two 1-D arrays of one length, got {a.shape} and {b.shape}")
    k = a.size // 2
    if k < 1:
        return None
    return float((_top_membership(a, k) * _top_membership(b, k)).sum() / k)


def spearman(a, b) -> float | None:
    """scipy's Spearman rank correlation; None when undefined (< 2 tokens or a constant side)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    return float(spearmanr(a, b).statistic)


def agreement(proxy: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per side: Spearman and top-half overlap of one proxy's coefficients with the reference's."""
    return {s: {"spearman": spearman(proxy[s], reference[s]), "top_half_overlap": top_half_overlap(proxy[s], reference[s]),
                "tokens": int(reference[s].size)} for s in SIDES}


def side_values(coef: Tensor, advantages: Tensor, mask: Tensor) -> dict[str, np.ndarray]:
    """The coefficients of each side's tokens, flattened in (row, position) order."""
    sign = torch.sign(advantages.float()).unsqueeze(-1).expand_as(mask).cpu()
    c, m = coef.detach().float().cpu(), mask.bool().cpu()
    return {s: c[m & (sign == v)].numpy() for s, v in SIDES.items()}


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def pick_exact_tokens(advantages: Tensor, mask: Tensor, n: int, seed: int) -> list[tuple[int, int]]:
    """n (row, position) tokens at random, split evenly between the sides (the other side fills
    in when one has too few), sorted."""
    sign = torch.sign(advantages.float().cpu()).unsqueeze(-1).expand_as(mask) * mask.bool().cpu()
    pos, neg = (sign > 0).nonzero().tolist(), (sign < 0).nonzero().tolist()
    n_pos = min(len(pos), max(n - len(neg), (n + 1) // 2))
    n_neg = min(len(neg), n - n_pos)
    gen = torch.Generator().manual_seed(seed)
    chosen = [pos[i] for i in torch.randperm(len(pos), generator=gen)[:n_pos]]
    chosen += [neg[i] for i in torch.randperm(len(neg), generator=gen)[:n_neg]]
    return sorted((int(r), int(t)) for r, t in chosen)


# --------------------------------------------------------------------------------------------
# Measurement


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _release_memory() -> None:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory increase during a `with` block, in bytes (`.peak`; None if unmeasurable)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.peak: int | None = None

    def __enter__(self) -> PeakMemory:
        _release_memory()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        self._start = self._max = _rss_bytes()
        self._stop = threading.Event()
        if self._start is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(RSS_INTERVAL):
            self._max = max(self._max, _rss_bytes() or 0)

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._start
        elif self._start is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, _rss_bytes() or 0) - self._start


def measured(fn, device: torch.device):
    """(fn(), wall seconds, peak memory increase in bytes or None)."""
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return result, seconds, mem.peak


def log(msg: str) -> None:
    print(f"audit-proxy: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The batch


@dataclass
class AuditBatch:
    """One rollout batch and its old-policy pass, split into the trainer's micro-batches."""

    model: torch.nn.Module
    samples: object  # SampleBatch
    rewards: Tensor
    advantages: Tensor
    outs: list  # TokenLogProbs per micro-batch
    slices: list[slice]
    temperature: float
    delta: object  # DeltaConfig

    @property
    def mask(self) -> Tensor:
        return self.samples.completion_mask


def audit_train_config(cfg: AuditConfig, source) -> TrainConfig:
    """The run's own config (plus --set) for a checkpoint; else --config / --set over the default."""

    if source.run_config is None:
        return load_config(cfg.config, list(cfg.overrides))
    if cfg.config:
        raise ConfigError(f"--config = {cfg.config!r} cannot be combined with the checkpoint {cfg.model!r}, which carries "
                          "its own config.yaml; change single fields with --set")
    return load_config(source.folder / "config.yaml", list(cfg.overrides))


@torch.no_grad()
def build_batch(cfg: AuditConfig, train: TrainConfig, model, tokenizer, device: torch.device) -> AuditBatch:
    """Sample, score, advantages and the old-policy forward with hidden states: the trainer's
    stages (train/rollout.py) with the run's settings, the first training prompts, no dynamic
    sampling. The forwards are kept so that every proxy is compared on the same hidden states."""
    from dataclasses import replace

    ro = replace(train.rollout, prompts_per_step=cfg.prompts or train.rollout.prompts_per_step,
                 samples_per_prompt=cfg.samples or train.rollout.samples_per_prompt, dynamic_sampling=False)
    autocast = device.type == "cuda" and train.model.dtype in ("auto", "bfloat16")
    runner = PolicyRunner(model, ro.temperature, train.optim.micro_batch_size, autocast)
    task = build_task(train.task)
    encode = PromptEncoder(tokenizer, train.task.template, getattr(task, "answer_hint", "boxed"))
    rollout = collect_rollout(runner, tokenizer, encode, lambda count: task.train_records(0, count)[0], task.score, ro,
                              lambda rounds: cfg.seed)
    batch = rollout.batch
    adv = group_advantages(rollout.rewards, batch.group_index.cpu(), train.algorithm.spec.estimator).to(device)
    slices = runner.slices(batch.completion_ids.shape[0])
    outs = [runner.forward(batch, s, hidden=True) for s in slices]
    return AuditBatch(model, batch, rollout.rewards, adv, outs, slices, ro.temperature, train.algorithm.coefficients)


@torch.no_grad()
def proxy_vectors(ab: AuditBatch, proxy, sketch=None):
    """The trainer's token vectors under `proxy`, micro-batch by micro-batch, joined."""

    b = ab.samples
    parts = [token_vectors(proxy, ab.model, b.prompt_ids[s], b.prompt_mask[s], b.completion_ids[s], b.completion_mask[s],
                           out, temperature=ab.temperature, sketch=sketch, advantages=ab.advantages[s])
             for s, out in zip(ab.slices, ab.outs)]
    return concat_vectors(parts)


def proxy_coefficients(ab: AuditBatch, proxy, sketch, seed: int, keep_rows: list[int] = ()) -> tuple[Tensor, Tensor | None]:
    """Coefficients (B, T) under `proxy`, and the dense vectors of `keep_rows` (or None)."""

    v = proxy_vectors(ab, proxy, sketch)
    coef = delta_coefficients(v, ab.advantages, ab.mask, ab.delta, generator=torch.Generator().manual_seed(seed)).coef
    kept = v[list(keep_rows)].clone() if len(keep_rows) and isinstance(v, Tensor) else None
    return coef, kept


# --------------------------------------------------------------------------------------------
# The sketch's own error


@torch.no_grad()
def sketch_error(ab: AuditBatch, sketch, chosen: list[tuple[int, int]], reference_rows: Tensor | None) -> dict:
    """Exact full gradients of the chosen tokens vs their sketches, over all pairs of them."""

    rows = sorted({r for r, _ in chosen})
    where = {r: i for i, r in enumerate(rows)}
    b = ab.samples
    keep = torch.zeros(len(rows), b.completion_ids.shape[1], dtype=torch.bool, device=b.completion_mask.device)
    for r, t in chosen:
        keep[where[r], t] = True
    # Each row only through its last chosen token: causal attention leaves earlier tokens'
    # gradients unchanged, and the tokens after it would cost a backward each for nothing.
    through = keep.long().flip(1).cumsum(1).flip(1) > 0
    res = full_gradient_sketch(ab.model, b.prompt_ids[rows], b.prompt_mask[rows], b.completion_ids[rows],
                               b.completion_mask[rows] & through, sketch=sketch, temperature=ab.temperature, keep_exact=keep)
    idx = res.exact_index.long().cpu()
    exact = res.exact.cpu()  # (n, P) float32; pair sums in float64 column chunks, never a float64 copy
    sketched = res.vectors[idx[:, 0], idx[:, 1]].cpu().double()
    dim = sketched.shape[1]
    i, j = torch.triu_indices(len(idx), len(idx), offset=1)
    sums = pairwise_sums(exact, exact)
    norms = sums.aa.sqrt()
    err = (sketched @ sketched.T - sums.ab)[i, j]
    scale = norms[i] * norms[j]
    std = sums.dot_std(dim)[i, j]
    sides = torch.sign(ab.advantages.float().cpu())[torch.tensor(rows)[idx[:, 0]]]
    out = {
        "tokens": len(idx), "tokens_pos": int((sides > 0).sum()), "tokens_neg": int((sides < 0).sum()),
        "pairs": int(err.numel()), "parameters": int(exact.shape[1]), "dim": dim,
        "rms_relative_error": rms((err / scale).numpy()),
        "predicted_rms_relative_error": rms((std / scale).numpy()),
        "inverse_sqrt_dim": 1.0 / math.sqrt(dim),
        "rms_standardised_error": rms((err / std).numpy()),
        "max_abs_standardised_error": float((err / std).abs().max()),
    }
    if reference_rows is not None:  # the reference pass's sketches of the same tokens
        ref = reference_rows.double().cpu()[[where[rows[k]] for k in idx[:, 0].tolist()], idx[:, 1]]
        out["max_diff_vs_reference_pass"] = float((ref - sketched).abs().max() / sketched.abs().max().clamp_min(1e-30))
    return out


# --------------------------------------------------------------------------------------------
# The audit


def run_audit(cfg: AuditConfig) -> dict:
    """Build the batch, compute every proxy's coefficients, compare, write audit.{md,json,png}."""

    start = time.perf_counter()
    source = resolve_model(cfg.model)
    train = audit_train_config(cfg, source)
    if train.algorithm.coefficients.random_coefficients:
        raise ConfigError("algorithm.coefficients.random_coefficients = True draws coefficients at random, without any "
                          "proxy: there is nothing to audit; set it to false")
    log(f"loading {cfg.model}")
    model, tokenizer, device = source.load(cfg.device)
    model.eval()
    log("sampling one rollout batch and running the old-policy pass")
    ab, old_seconds, _ = measured(lambda: build_batch(cfg, train, model, tokenizer, device), device)
    report = {"settings": settings(cfg, train, source, device), "batch": batch_summary(ab),
              "old_policy_and_rollout_seconds": old_seconds, "reference": REFERENCE, "proxies": {}}
    if report["batch"]["tokens_pos"] + report["batch"]["tokens_neg"] == 0:
        raise ConfigError(f"every group of the batch has equal rewards (mean reward {report['batch']['reward_mean']:.3f}), "
                          "so no token is on either side; use more --prompts or --samples, or another --seed")
    chosen = pick_exact_tokens(ab.advantages, ab.mask, cfg.exact_tokens, cfg.seed) if cfg.exact_tokens else []
    values = {}
    for name in (*CHEAP, REFERENCE):  # the reference last: its sketch and kept rows serve below
        log(f"proxy {name}")
        keep_rows = sorted({r for r, _ in chosen}) if name == REFERENCE else ()
        values[name], report["proxies"][name], sketch, kept = measure_proxy(ab, cfg, name, cfg.sketch_seed, keep_rows)
    for name in CHEAP:
        report["proxies"][name]["agreement"] = agreement(values[name], values[REFERENCE])
    report["sketch_repeat"] = None
    if cfg.sketch_repeat:
        log(f"proxy {REFERENCE} again with sketch seed {cfg.sketch_seed + 1}")
        again, entry, _, _ = measure_proxy(ab, cfg, REFERENCE, cfg.sketch_seed + 1)
        report["sketch_repeat"] = {**entry, "agreement": agreement(again, values[REFERENCE])}
    report["sketch_error"] = None
    if chosen:
        log(f"exact gradients of {len(chosen)} tokens")
        report["sketch_error"] = sketch_error(ab, sketch, chosen, kept)
    report["total_seconds"] = time.perf_counter() - start
    write_outputs(Path(cfg.output_dir), report, values)
    return report


def measure_proxy(ab: AuditBatch, cfg: AuditConfig, name: str, sketch_seed: int, keep_rows=()):
    """One proxy's coefficients, timed. Returns (side values, report entry, its sketch or None,
    the dense vectors of `keep_rows` or None). A sketch's hash table is built before the timing,
    as training builds it once."""

    proxy = ProxyConfig(name=name, topk=cfg.topk, sketch_dim=cfg.sketch_dim, sketch_seed=sketch_seed)
    device = ab.mask.device
    sketch, build_s, _ = measured(lambda: make_sketch(proxy, ab.model), device)
    (coef, kept), seconds, peak = measured(lambda: proxy_coefficients(ab, proxy, sketch, cfg.seed, keep_rows), device)
    entry = {"seconds": seconds, "peak_memory_mib": _mib(peak), "dim": vector_dim(name, cfg, ab.model)}
    if sketch is not None:
        entry.update(sketch_seed=sketch_seed, sketch_build_seconds=build_s)
    return side_values(coef, ab.advantages, ab.mask), entry, sketch, kept


def _mib(n: int | None) -> float | None:
    return None if n is None else n / 2**20


def vector_dim(name: str, cfg: AuditConfig, model) -> int:
    """Length of one token's vector (lm_head's is implicit, never materialised)."""
    if name == REFERENCE:
        return cfg.sketch_dim
    h = model.get_output_embeddings().weight.shape
    return int(h[0] * h[1]) if name == "lm_head" else int(h[1])


def settings(cfg: AuditConfig, train: TrainConfig, source, device: torch.device) -> dict:
    return {
        "model": cfg.model, "checkpoint_step": source.step, "task": build_task(train.task).name,
        "prompts": cfg.prompts or train.rollout.prompts_per_step, "samples": cfg.samples or train.rollout.samples_per_prompt,
        "max_new_tokens": train.rollout.max_new_tokens, "temperature": train.rollout.temperature,
        "top_p": train.rollout.top_p, "estimator": train.algorithm.estimator, "topk": cfg.topk,
        "sketch_dim": cfg.sketch_dim, "sketch_seed": cfg.sketch_seed, "sketch_repeat": cfg.sketch_repeat,
        "exact_tokens": cfg.exact_tokens, "seed": cfg.seed, "micro_batch_size": train.optim.micro_batch_size,
        "delta": asdict(train.algorithm.coefficients), "device": str(device), "torch_threads": torch.get_num_threads(),
        "memory_method": CUDA_MEMORY_METHOD if device.type == "cuda" else CPU_MEMORY_METHOD,
    }


def batch_summary(ab: AuditBatch) -> dict:
    sign = torch.sign(ab.advantages.float()).unsqueeze(-1).expand_as(ab.mask)
    m = ab.mask.bool()
    return {"responses": int(m.shape[0]), "tokens": int(m.sum()), "tokens_pos": int((m & (sign > 0)).sum()),
            "tokens_neg": int((m & (sign < 0)).sum()), "tokens_zero": int((m & (sign == 0)).sum()),
            "reward_mean": float(ab.rewards.mean())}


# --------------------------------------------------------------------------------------------
# Outputs


def fmt(x, digits: int = 3) -> str:
    """How audit.md writes a number (None: "-")."""
    if x is None:
        return "-"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def to_markdown(report: dict) -> str:
    s, b = report["settings"], report["batch"]
    lines = [
        "# Proxy audit", "",
        f"Model `{s['model']}` (step {s['checkpoint_step']}), task `{s['task']}`, device {s['device']}. One rollout batch: "
        f"{s['prompts']} prompts x {s['samples']} responses, seed {s['seed']}, temperature {s['temperature']}, top-p "
        f"{s['top_p']}, max {s['max_new_tokens']} new tokens, advantages `{s['estimator']}`; mean reward "
        f"{fmt(b['reward_mean'])}.", "",
        f"Tokens: {b['tokens']} valid, {b['tokens_pos']} with A > 0, {b['tokens_neg']} with A < 0, {b['tokens_zero']} with "
        f"A = 0. DelTA: K = {s['delta']['refine_steps']}, range [{s['delta']['coef_min']}, {s['delta']['coef_max']}], "
        f"{s['delta']['assignment']} assignment. topk_hidden K = {s['topk']}; reference `{REFERENCE}` with sketch "
        f"dimension {s['sketch_dim']}, sketch seed {s['sketch_seed']}.", "",
        "## Agreement with the reference", "",
        "Spearman: rank correlation of the coefficients within a side. Top half: |top 50% by the proxy ∩ top 50% by the "
        "reference| / |top 50%| (0.5 = chance, ties broken at random in expectation). Time and memory: token vectors + "
        "`delta_coefficients`, after the shared old-policy pass "
        f"({fmt(report['old_policy_and_rollout_seconds'], 2)} s with the rollout).", "",
        "| proxy | dim | Spearman A>0 | Spearman A<0 | top half A>0 | top half A<0 | time (s) | peak memory (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in report["proxies"].items():
        lines.append(_agreement_row(name, p.get("agreement"), p["dim"], p["seconds"], p["peak_memory_mib"]))
    rep = report["sketch_repeat"]
    if rep is not None:
        lines.append(_agreement_row(f"{REFERENCE} (seed {rep['sketch_seed']})", rep["agreement"], s["sketch_dim"],
                                    rep["seconds"], rep["peak_memory_mib"]))
    lines += ["", f"Memory method: {s['memory_method']}.", ""]
    lines += _sketch_error_lines(report["sketch_error"], rep)
    lines += ["", f"Total wall time: {fmt(report['total_seconds'], 1)} s ({s['torch_threads']} torch threads)."]
    return "\n".join(lines) + "\n"


def _agreement_row(name: str, agree: dict | None, dim: int, seconds: float, mib: float | None) -> str:
    a = agree or {"pos": {}, "neg": {}}
    cells = [fmt(a[side].get(key)) for key in ("spearman", "top_half_overlap") for side in SIDES]
    return f"| {name} | {dim} | " + " | ".join(cells) + f" | {fmt(seconds, 2)} | {fmt(mib, 1)} |"


def _sketch_error_lines(err: dict | None, rep: dict | None) -> list[str]:
    lines = ["## The reference's own noise", ""]
    if rep is not None:
        lines += [f"Two sketches (seeds differ) agree with Spearman {fmt(rep['agreement']['pos']['spearman'])} (A > 0) and "
                  f"{fmt(rep['agreement']['neg']['spearman'])} (A < 0): roughly the best agreement any proxy can show "
                  "with this noisy reference.", ""]
    if err is None:
        return lines + ["Sketch error: not measured (--exact-tokens 0)."]
    lines += [
        f"Exact full gradients of {err['tokens']} tokens ({err['tokens_pos']} with A > 0, {err['tokens_neg']} with A < 0; "
        f"{err['parameters']} parameters), sketched vs exact dot product over their {err['pairs']} pairs, error "
        "relative to ||g|| ||g'||:", "",
        "| RMS relative error | predicted RMS (dot_std) | 1/sqrt(D) | RMS error / dot_std | max abs error / dot_std |",
        "|---|---|---|---|---|",
        f"| {fmt(err['rms_relative_error'], 4)} | {fmt(err['predicted_rms_relative_error'], 4)} | "
        f"{fmt(err['inverse_sqrt_dim'], 4)} | {fmt(err['rms_standardised_error'])} | {fmt(err['max_abs_standardised_error'])} |",
    ]
    return lines


def plot(path: Path, report: dict, values: dict[str, dict[str, np.ndarray]]) -> None:
    """One scatter per cheap proxy (its coefficient vs the reference's, by side) and a time bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CHEAP) + 1, figsize=(4.2 * (len(CHEAP) + 1), 4))
    colours = {"pos": "tab:red", "neg": "tab:blue"}
    for ax, name in zip(axes, CHEAP):
        agree = report["proxies"][name]["agreement"]
        for side in SIDES:
            ax.scatter(values[REFERENCE][side], values[name][side], s=4, alpha=0.4, color=colours[side],
                       label=f"{SIDE_LABEL[side]} (ρ {fmt(agree[side]['spearman'], 2)})")
        ax.set_title(f"{name}: Spearman {fmt(agree['pos']['spearman'], 2)} (A>0), {fmt(agree['neg']['spearman'], 2)} (A<0)", fontsize=10)
        ax.set_xlabel(f"{REFERENCE} coefficient")
        ax.set_ylabel(f"{name} coefficient")
        ax.legend(fontsize=8, markerscale=3)
    names = list(report["proxies"])
    axes[-1].bar(names, [report["proxies"][n]["seconds"] for n in names], color="tab:gray")
    axes[-1].set_yscale("log")
    axes[-1].set_ylabel("seconds (vectors + coefficients)")
    axes[-1].set_title("time per proxy")
    axes[-1].tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out: Path, report: dict, values: dict[str, dict[str, np.ndarray]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(report, indent=1))
    (out / "audit.md").write_text(to_markdown(report))
    plot(out / "audit.png", report, values)
    log(f"wrote {out / 'audit.md'}, audit.json, audit.png")
