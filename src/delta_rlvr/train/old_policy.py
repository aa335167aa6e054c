"""Stage 2 of the RL step: the old-policy pass, and DelTA's coefficients (`old_policy_pass`).

One pass over the rollout batch, micro-batch by micro-batch, gives the old log-probs (at the
rollout temperature) and entropies and, when the method needs coefficients, DelTA's token
vectors under the configured proxy (models/token_vectors.py). The vectors are either kept (cached)
and handed to the one-shot estimator, or fed to the streaming estimator, whose remaining K + 1
passes recompute hidden states micro-batch by micro-batch: the same coefficients either way.
Cached is the default; a batch whose proxy would exceed `algorithm.hidden_cache_mib` streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from delta_rlvr.core import DeltaStats, DeltaStream, delta_coefficients
from delta_rlvr.core.frozen import FrozenGamma
from delta_rlvr.errors import ConfigError
from delta_rlvr.models import SampleBatch
from delta_rlvr.models.token_vectors import STREAMABLE, concat_vectors, make_sketch, token_vectors
from delta_rlvr.train.config import AlgorithmConfig
from delta_rlvr.train.rollout import PolicyRunner, StageTimer


@dataclass(frozen=True)
class OldPolicy:
    """What the update needs from the policy that sampled the batch."""

    logp: Tensor
    """(B, T) token log-probs at the rollout temperature."""
    entropy: Tensor
    """(B, T) token entropies."""
    coef: Tensor | None
    """(B, T) DelTA coefficients (1 on zero-advantage rows); None when the method needs none."""
    stats: DeltaStats | None
    """The estimator's diagnostics (`delta/*` metrics); None with coef."""
    streamed: bool
    """The coefficients came from the streaming estimator (recomputed hidden states)."""


class ProxySketch:
    """The count-sketch of the full_sketch proxy, built once per model on first use."""

    def __init__(self) -> None:
        self.sketch = None

    def get(self, proxy, model):
        if proxy.name == "full_sketch" and self.sketch is None:
            self.sketch = make_sketch(proxy, model)
        return self.sketch


def proxy_vectors(runner: PolicyRunner, batch: SampleBatch, rows: slice, adv: Tensor, algo: AlgorithmConfig,
                  sketch: ProxySketch, out=None):
    """DelTA's token vectors of some rows (advantages `adv`) under `algo.proxy`; `out` is the
    old-policy forward of those rows, recomputed when not given."""
    out = out if out is not None else runner.forward(batch, rows, hidden=True)
    return token_vectors(
        algo.proxy, runner.model, batch.prompt_ids[rows], batch.prompt_mask[rows], batch.completion_ids[rows],
        batch.completion_mask[rows], out, temperature=runner.temperature, sketch=sketch.get(algo.proxy, runner.model),
        advantages=adv,
    )  # fmt: skip


def cache_mode(algo: AlgorithmConfig, batch: SampleBatch, hidden_size: int) -> str:
    """"cached" or "streamed": the configured mode, streamed when the cached proxy would
    exceed algorithm.hidden_cache_mib (refused for proxies that cannot stream)."""
    b, t = batch.completion_mask.shape
    width = algo.proxy.sketch_dim if algo.proxy.name == "full_sketch" else hidden_size
    if algo.hidden_states == "cached" and b * t * width * 4 > algo.hidden_cache_mib * 2**20:
        if algo.proxy.name not in STREAMABLE:
            raise ConfigError(
                f"the {algo.proxy.name} proxy of {b} x {t} tokens needs {b * t * width * 4 / 2**20:.0f} MiB, over "
                f"algorithm.hidden_cache_mib = {algo.hidden_cache_mib}; raise the cap or use fewer/shorter responses"
            )
        return "streamed"  # the proxy would not fit under the cap: same coefficients, more passes
    return algo.hidden_states


@torch.no_grad()
def old_policy_pass(
    runner: PolicyRunner,
    batch: SampleBatch,
    adv: Tensor,
    algo: AlgorithmConfig,
    *,
    gamma: FrozenGamma,
    seed: int,
    sketch: ProxySketch | None = None,
    timer: StageTimer | None = None,
) -> OldPolicy:
    """Old log-probs and entropies of the rollout batch, and DelTA's coefficients when
    `algo.method` needs them (see the module docstring). `gamma` owns the frozen assignment
    temperature; `seed` seeds the estimator's random coefficients (ablation)."""
    timer = timer or StageTimer(batch.completion_mask.device)
    sketch = sketch or ProxySketch()
    need = algo.spec.needs_coefficients
    mask = batch.completion_mask
    streamed = need and cache_mode(algo, batch, runner.model.config.hidden_size) == "streamed"
    cfg = algo.coefficients
    generator = torch.Generator().manual_seed(seed)
    stream = DeltaStream(cfg, gamma=gamma.current(), generator=generator) if streamed else None
    slices = runner.slices(mask.shape[0])
    logps, entropies, vectors = [], [], []
    with timer("old_policy"):
        for rows in slices:
            out = runner.forward(batch, rows, hidden=need)
            logps.append(out.logp)
            entropies.append(out.entropy)
            if need:
                v = proxy_vectors(runner, batch, rows, adv[rows], algo, sketch, out)
                if stream is not None:
                    stream.update(v, adv[rows], mask[rows])  # pass 0 of the streaming estimator
                else:
                    vectors.append(v)
    logp, entropy = torch.cat(logps), torch.cat(entropies)
    if not need:
        return OldPolicy(logp, entropy, None, None, False)
    with timer("coefficients"):
        if stream is not None:
            stream.end_pass()
            # passes 1 .. K + 1 recompute each micro-batch's vectors from a fresh forward
            result = stream.run(lambda: ((proxy_vectors(runner, batch, s, adv[s], algo, sketch), adv[s], mask[s])
                                         for s in slices))
            coef, stats = torch.cat(result.coef), result.stats
        else:
            result = delta_coefficients(concat_vectors(vectors), adv, mask, cfg, gamma=gamma.current(),
                                        generator=generator)
            coef, stats = result.coef, result.stats
    gamma.observe(stats.gamma[0])
    return OldPolicy(logp, entropy, coef, stats, streamed)
