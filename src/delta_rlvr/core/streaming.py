"""Streaming DelTA coefficients: the same numbers as `delta_coefficients`, from micro-batches.

For rollout batches whose hidden states do not fit in memory at once. The caller feeds the
batch micro-batch by micro-batch, once per pass, in the same order every pass, and recomputes
the proxy each time (for instance with a forward pass); only O(H^2) statistics persist.

Pass plan (K + 2 passes over the batch; pass 0 is the old-log-prob pass itself):

    pass 0 (the old-log-prob pass):   side masses and advantage-weighted sums -> mu^(0);
                                      per side count, sum v, sum v v^T        -> gamma^(0)
    pass 1..K (refinement k = 0..K-1): Delta^(k), alpha^(k) -> mu^(k+1); Var(Delta^(k)) -> gamma^(k+1)
    pass K+1 (final):                  Delta^(K), alpha*, lambda; N and Z

gamma^(0) comes from accumulated moments without a pass of its own: over a side,
Var(Delta) = c^T Cov(v) c with c = 2 (mu+ - mu-), because the two-sided margin is affine in v.
So pass 0 doubles as the old-log-prob pass and K + 1 passes follow it, one fewer than a direct
measurement needs. The within-side margin is quadratic in v, so with `contrast="within_side"`
one extra pass measures Var(Delta^(0)) directly.

Every accumulator is a float64 sum, so micro-batch splits only change rounding, and a
`reduce` hook (for instance an all-reduce over data-parallel ranks) can pool them before each
pass closes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from delta_rlvr.core.config import DeltaConfig, DeltaStats
from delta_rlvr.core.kernels import (
    MASS_EPS,
    assign,
    batch_stats,
    centroid_geometry,
    centroids,
    check_finite,
    check_inputs,
    coefficient_map,
    margin_moments,
    margins,
    side_masses,
    side_weighted_sums,
    std_from_moments,
    token_sides,
)
from delta_rlvr.core.precision import in_full_precision

Reduce = Callable[[Tensor], Tensor]
MicroBatch = tuple[Tensor, Tensor, Tensor]  # (vectors (b, T, H), advantages (b,), mask (b, T))


@dataclass(frozen=True)
class StreamedDeltaCoefficients:
    """coef: one float32 tensor per fed chunk, in feeding order ((b_i, T_i) from `update`, (n_i,)
    from `update_tokens`); stats: pooled; zero_advantage_coef: () float32, the coefficient of
    every valid token with A = 0 (lambda_min x N / Z), for tokens counted but not fed."""

    coef: list[Tensor]
    stats: DeltaStats
    zero_advantage_coef: Tensor | None = None


class DeltaStream:
    """Stateful accumulator for the streaming form. Usage::

        stream = DeltaStream(config)
        while not stream.done:
            for v, adv, mask in micro_batches():      # same order every pass
                stream.update(v, adv, mask)
            stream.end_pass()
        result = stream.result()

    `run(micro_batches)` does exactly that loop. The trainer can instead feed pass 0 from its
    old-log-prob forward and then call `run` for the remaining passes.
    """

    def __init__(
        self,
        config: DeltaConfig = DeltaConfig(),
        *,
        reduce: Reduce | None = None,
        gamma: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """`gamma`: (2,) fixed assignment temperatures (gamma+, gamma-), not the sampling
        temperature; only with `config.freeze_temperature` (see `delta_coefficients`)."""
        if gamma is not None and not config.freeze_temperature:
            raise ValueError(
                "DeltaStream: a fixed gamma (assignment temperature) was passed but "
                "config.freeze_temperature is False; set freeze_temperature=True or pass gamma=None"
            )
        self.config = config
        self._reduce = reduce
        self._fixed_gamma = gamma
        self._generator = generator
        # gamma^(0) from sum v v^T (no pass of its own) only where the margin is affine in v
        self._second_moments = config.contrast == "two_sided" and not config.random_coefficients
        self._phases = self._plan(config, measure=not self._second_moments)
        self._pass = 0
        self._acc: Tensor | None = None  # this pass's flat float64 accumulator
        self._h: int | None = None
        self._device: torch.device | None = None
        k1 = config.refine_steps + 1
        self._gammas = torch.full((k1, 2), float("nan"), dtype=torch.float64)
        self._stds = torch.full((k1, 2), float("nan"), dtype=torch.float64)
        self._norms = torch.full((k1, 2), float("nan"), dtype=torch.float32)
        self._coss = torch.full((k1,), float("nan"), dtype=torch.float32)
        self._lams: list[Tensor] = []
        self._alphas: list[Tensor] = []
        self._sides: list[Tensor] = []

    @staticmethod
    def _plan(config: DeltaConfig, *, measure: bool) -> list[tuple[str, int]]:
        if config.random_coefficients:
            return [("moments", 0), ("final", 0)]
        phases = [("moments", 0)]
        if measure:
            phases.append(("measure", 0))
        phases += [("refine", k) for k in range(config.refine_steps)]
        return phases + [("final", config.refine_steps)]

    def measure_gamma_directly(self) -> None:
        """Measure Var(Delta^(0)) with a pass of its own instead of from the (2, H, H) float64
        second moments of the first pass: one more pass, and memory O(H) instead of O(H^2).
        Worth it when a pass costs no forward (a cache of the proxy). Only before any update."""
        if self.started:
            raise RuntimeError("DeltaStream.measure_gamma_directly: call it before the first update")
        if self._second_moments:
            self._second_moments = False
            self._phases = self._plan(self.config, measure=True)

    @property
    def started(self) -> bool:
        """Whether anything has been fed yet."""
        return bool(self._pass) or self._acc is not None

    @property
    def num_passes(self) -> int:
        """Passes over the data, the first included (K + 2 for the paper's method)."""
        return len(self._phases)

    @property
    def done(self) -> bool:
        return self._pass >= len(self._phases)

    @property
    def phase(self) -> str:
        return self._phases[self._pass][0] if not self.done else "done"

    # ----------------------------------------------------------------------------------------

    @in_full_precision
    def update(self, vectors: Tensor, advantages: Tensor, mask: Tensor) -> None:
        """Feed one micro-batch of the current pass: a padded (b, T, H) proxy, one advantage per
        response, the (b, T) validity mask."""
        self._check_open("update")
        check_inputs(vectors, advantages, mask)
        b, t, h = vectors.shape
        v = vectors.reshape(b * t, h)
        side = token_sides(advantages, mask).reshape(-1)
        weight = advantages.abs().float().unsqueeze(-1).expand(b, t).reshape(-1)
        self._feed(v, side, weight, mask.reshape(-1), (b, t), zero_advantage_tokens=0)

    @in_full_precision
    def update_tokens(self, vectors: Tensor, advantages: Tensor, *, zero_advantage_tokens: int = 0) -> None:
        """Feed one chunk of the current pass in packed form: no padding, one row per token.

        Args:
            vectors: (n, H) proxy of n valid tokens (any float dtype; used in float32).
            advantages: (n,) the advantage of each token's response. Rows with A = 0 are on
                neither side, as in `update`.
            zero_advantage_tokens: further valid tokens with A = 0 that are not in
                ``vectors`` (their vectors are never read): they count in N and, at
                lambda_min, in Z, exactly as if they had been fed. Their coefficient is
                `StreamedDeltaCoefficients.zero_advantage_coef`.

        The coefficients of the fed rows come back as one (n,) tensor per chunk.
        """
        self._check_open("update_tokens")
        if vectors.dim() != 2 or tuple(advantages.shape) != (vectors.shape[0],):
            raise ValueError(
                f"DeltaStream.update_tokens: expected vectors (n, H) and advantages (n,), got "
                f"{tuple(vectors.shape)} and {tuple(advantages.shape)}"
            )
        if isinstance(zero_advantage_tokens, bool) or int(zero_advantage_tokens) != zero_advantage_tokens or zero_advantage_tokens < 0:
            raise ValueError(f"DeltaStream.update_tokens: zero_advantage_tokens must be an integer >= 0, got {zero_advantage_tokens!r}")
        n = vectors.shape[0]
        valid = torch.ones(n, dtype=torch.bool, device=vectors.device)
        side = torch.sign(advantages).to(torch.int8)
        self._feed(vectors, side, advantages.abs().float(), valid, (n,), zero_advantage_tokens=int(zero_advantage_tokens))

    def _check_open(self, where: str) -> None:
        if self.done:
            raise RuntimeError(f"DeltaStream.{where}: all passes are finished; call result()")

    def _feed(self, v: Tensor, side: Tensor, weight: Tensor, valid: Tensor, shape: tuple[int, ...],
              *, zero_advantage_tokens: int) -> None:
        h = v.shape[1]
        if self._h is None:
            self._h, self._device = h, v.device
        elif h != self._h:
            raise ValueError(f"DeltaStream.update: hidden size changed from {self._h} to {h}")
        v = v.float()
        phase, k = self._phases[self._pass]
        if phase == "moments":
            part = self._moments(v, side, weight, valid)
            part[:2] += zero_advantage_tokens  # counts: valid tokens, zero-advantage tokens
        elif phase == "measure":
            part = margin_moments(margins(v, side, self._mu, self.config.contrast), side).reshape(-1)
        elif phase == "refine":
            delta = margins(v, side, self._mu, self.config.contrast)
            w = weight * assign(delta, side, self._gamma, self.config.assignment)
            part = torch.cat(
                [
                    side_masses(side, w),
                    side_weighted_sums(v, side, w).reshape(-1),
                    margin_moments(delta, side).reshape(-1),
                ]
            )
        else:  # final
            part = self._final(v, side, valid, shape)
            part[0] += zero_advantage_tokens * self.config.map_range[0]  # their lambda: the map at alpha = 0
        self._acc = part if self._acc is None else self._acc + part

    def _moments(self, v: Tensor, side: Tensor, weight: Tensor, valid: Tensor) -> Tensor:
        h = v.shape[1]
        counts = torch.stack([valid.sum(), (valid & (side == 0)).sum()]).double()
        if self.config.random_coefficients:
            return torch.cat([counts, side_masses(side, weight)])
        if not self._second_moments:
            n_side = torch.stack([(side > 0).sum(), (side < 0).sum()]).double()
            return torch.cat([counts, side_masses(side, weight), side_weighted_sums(v, side, weight).reshape(-1), n_side])
        second = torch.zeros(2, h, h, dtype=torch.float64, device=v.device)
        first = torch.zeros(2, h, dtype=torch.float64, device=v.device)
        n_side = torch.zeros(2, dtype=torch.float64, device=v.device)
        for i, s in enumerate((1, -1)):
            rows = v[side == s]
            n = rows.shape[0]
            n_side[i] = n
            first[i] = rows.sum(0, dtype=torch.float64)
            if n == 0:
                continue
            # sum v v^T through rows centred on their float32 mean m: the float32 product then
            # carries the spread, not the (possibly much larger) shared mean, and
            # sum v v^T = sum rc rc^T + m r^T + r m^T + n m m^T exactly, with r = sum rc.
            m = (first[i] / n).to(v.dtype)
            centred = rows - m
            m64 = m.double()
            r = first[i] - n * m64
            second[i] = (
                (centred.T @ centred).double()
                + torch.outer(m64, r)
                + torch.outer(r, m64)
                + n * torch.outer(m64, m64)
            )
        return torch.cat(
            [
                counts,
                side_masses(side, weight),
                side_weighted_sums(v, side, weight).reshape(-1),
                n_side,
                first.reshape(-1),
                second.reshape(-1),
            ]
        )

    def _final(self, v: Tensor, side: Tensor, valid: Tensor, shape: tuple[int, ...]) -> Tensor:
        if self.config.random_coefficients:
            gen = self._generator
            u = torch.rand(side.numel(), generator=gen, device="cpu" if gen is None else gen.device)
            alpha = torch.where(side != 0, u.to(side.device), torch.zeros((), device=side.device))
            moments = torch.zeros(2, 3, dtype=torch.float64, device=side.device)
        else:
            delta = margins(v, side, self._mu, self.config.contrast)
            alpha = assign(delta, side, self._gamma, self.config.assignment)
            moments = margin_moments(delta, side)
        lam = coefficient_map(alpha, side, valid, self.config)
        self._lams.append(lam.reshape(shape))
        self._alphas.append(alpha)
        self._sides.append(side)
        return torch.cat([lam.double().sum().reshape(1), moments.reshape(-1)])

    # ----------------------------------------------------------------------------------------

    @in_full_precision
    def end_pass(self) -> None:
        """Close the current pass: pool the sums (reduce hook) and derive what the next needs."""
        if self.done:
            raise RuntimeError("DeltaStream.end_pass: all passes are finished")
        if self._acc is None:
            raise RuntimeError("DeltaStream.end_pass: no micro-batch was fed in this pass")
        acc = self._acc if self._reduce is None else self._reduce(self._acc)
        self._acc = None
        phase, k = self._phases[self._pass]
        h = self._h
        if phase == "moments":
            self._valid_tokens, self._zero_adv_tokens = acc[0], acc[1]
            self._masses0 = acc[2:4]
            if not self.config.random_coefficients:
                sums = acc[4 : 4 + 2 * h].reshape(2, h)
                check_finite(sums, "moments pass")
                o = 4 + 2 * h
                n_side = acc[o : o + 2]
                self._side_tokens = n_side
                self._mu = centroids(sums, self._masses0)
                if self._second_moments:
                    first = acc[o + 2 : o + 2 + 2 * h].reshape(2, h)
                    second = acc[o + 2 + 2 * h :].reshape(2, h, h)
                    self._set_initial_gamma(self._gamma_from_moments(n_side, first, second))
            else:
                self._side_tokens = None
        elif phase == "measure":
            self._set_initial_gamma(std_from_moments(acc.reshape(2, 3)))
        elif phase == "refine":
            masses, sums = acc[:2], acc[2 : 2 + 2 * h].reshape(2, h)
            check_finite(sums, "refinement pass")
            self._record(k)
            measured = std_from_moments(acc[2 + 2 * h :].reshape(2, 3))
            self._stds[k] = measured.cpu()
            self._mu = centroids(sums, masses)
            if self._fixed_gamma is None:
                self._gamma = measured  # lag: Var(Delta^(k)) sets gamma^(k+1)
        else:  # final
            self._z = acc[0]
            if not self.config.random_coefficients:
                self._record(k)
                self._stds[k] = std_from_moments(acc[1:].reshape(2, 3)).cpu()
        self._pass += 1

    def _gamma_from_moments(self, n_side: Tensor, first: Tensor, second: Tensor) -> Tensor:
        """Per-side std of the two-sided margin from count, sum v and sum v v^T."""
        c = 2.0 * (self._mu[0] - self._mu[1])
        n = n_side.clamp_min(1)
        mean_proj = (first @ c) / n  # (2,)
        second_proj = torch.einsum("i,sij,j->s", c, second, c) / n
        var = (second_proj - mean_proj.square()).clamp_min(0)
        return var.clamp_min(1e-8).sqrt()

    def _set_initial_gamma(self, measured: Tensor) -> None:
        self._stds[0] = measured.cpu()
        if self._fixed_gamma is not None:
            self._gamma = self._fixed_gamma.to(device=measured.device, dtype=torch.float64)
        else:
            self._gamma = measured

    def _record(self, k: int) -> None:
        self._gammas[k] = self._gamma.cpu()
        norms, cos = centroid_geometry(self._mu)
        self._norms[k], self._coss[k] = norms.cpu(), cos.cpu()

    # ----------------------------------------------------------------------------------------

    @in_full_precision
    def result(self) -> StreamedDeltaCoefficients:
        """Normalised coefficients per micro-batch (in the final pass's order) and statistics."""
        if not self.done:
            raise RuntimeError(
                f"DeltaStream.result: {self.num_passes - self._pass} pass(es) still to run "
                f"(next: {self.phase})"
            )
        device = self._device
        if self.config.self_normalise:
            normaliser = self._valid_tokens / self._z.clamp_min(MASS_EPS)
        else:
            normaliser = torch.ones((), dtype=torch.float64, device=device)
        coefs = [(lam.double() * normaliser).float() for lam in self._lams]
        flat = torch.cat([c.reshape(-1) for c in coefs])
        sides = torch.cat(self._sides)
        side_tokens = self._side_tokens
        if side_tokens is None:  # random coefficients: count from what was kept
            side_tokens = torch.stack([(sides > 0).sum(), (sides < 0).sum()])
        stats = batch_stats(
            flat,
            torch.cat(self._alphas),
            sides,
            side_mass=self._masses0.float(),
            side_tokens=side_tokens.long(),
            zero_adv_tokens=self._zero_adv_tokens.long(),
            valid_tokens=self._valid_tokens.long(),
            centroid_norm=self._norms.to(device),
            centroid_cosine=self._coss.to(device),
            gamma=self._gammas.float().to(device),
            margin_std=self._stds.float().to(device),
            normaliser=normaliser.float(),
        )
        zero_coef = (self.config.map_range[0] * normaliser).float()
        return StreamedDeltaCoefficients(coef=coefs, stats=stats, zero_advantage_coef=zero_coef)

    def run(self, micro_batches: Callable[[], Iterable[MicroBatch]]) -> StreamedDeltaCoefficients:
        """Run every remaining pass, calling `micro_batches()` once per pass."""
        while not self.done:
            for v, adv, mask in micro_batches():
                self.update(v, adv, mask)
            self.end_pass()
        return self.result()


def delta_coefficients_streamed(
    micro_batches: Callable[[], Iterable[MicroBatch]],
    config: DeltaConfig = DeltaConfig(),
    *,
    reduce: Reduce | None = None,
    gamma: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> StreamedDeltaCoefficients:
    """Streaming form of `delta_coefficients`: `micro_batches()` is called once per pass
    (`DeltaStream(config).num_passes` times) and must yield the same micro-batches in the
    same order each time."""
    stream = DeltaStream(config, reduce=reduce, gamma=gamma, generator=generator)
    return stream.run(micro_batches)
