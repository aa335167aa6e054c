"""Token-gradient proxies for DelTA: which vector v_t stands for the gradient of log p(y_t).

Shapes: B responses, T tokens per response, H hidden size, V vocabulary size, N = B * T.
`hidden` is the final hidden state (the input of the LM head, after the final norm),
`head_weight` the LM-head matrix W (V, H), `ids` the sampled tokens y_t, p_t = softmax(z_t)
with logits z_t = (W h_t + b) / temperature at the rollout temperature.

Proxies (`ProxyConfig.name`):

- "row" (the paper's, default): v = (1 - p(y)) h, the gradient wrt the sampled token's own
  LM-head row (`row_proxy`). (B, T, H).
- "topk_hidden" (the paper's ablation): v = W_y - sum_{j in topK} p~_j W_j, p~ the softmax
  renormalised over the K largest logits; approximates grad_h log p(y) (`topk_hidden_proxy`).
  (B, T, H).
- "lm_head": the exact gradient wrt the whole LM-head matrix, (e_y - p) h^T, V x H per token,
  never materialised: `LMHeadGradients` is a `coefficients.TokenVectors` that computes the
  estimator's side sums and margins from (hidden, ids, W) with two LM-head-sized matrix
  products per pass over the batch.
- "full_sketch": a count-sketch of the full-parameter token gradient (built elsewhere, in the
  model code; only its settings live here).

The constant factor 1/temperature of the true gradients (d z / d W = h / temperature) is
dropped by every proxy here, as the row proxy drops it: scaling every vector by c scales the
margins by c^2 and so the assignment temperatures gamma = std(margins), so the coefficients do
not change (up to rounding, and unless a floor - mass 1e-8, variance 1e-8 - is reached).

Numerics: logits and probabilities in float32 (float64 when the hidden states or the head are
float64), computed in row chunks of at most `kernels.CHUNK_ELEMENTS` logits, so no (N, V)
tensor beyond a chunk exists. Side sums are accumulated in float64 over chunks of at most
`kernels.SUM_BLOCK` rows (the blocked summation of `kernels.side_weighted_sums`).
Only tokens that matter are computed: valid ones for the proxies, signed ones (side != 0) for
the passes of `LMHeadGradients`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from delta_rlvr.core.config import Contrast
from delta_rlvr.core.kernels import CHUNK_ELEMENTS, SUM_BLOCK
from delta_rlvr.core.precision import in_full_precision

PROXIES = ("row", "topk_hidden", "lm_head", "full_sketch")


@dataclass(frozen=True)
class ProxyConfig:
    """Which token-gradient proxy DelTA uses, and its settings. The default is the paper's."""

    name: str = "row"
    """One of PROXIES. "row" = the paper's (1 - p) h."""
    topk: int = 64
    """K of "topk_hidden" (the paper does not state its K)."""
    sketch_dim: int = 16384
    """D of "full_sketch", the count-sketch size."""
    sketch_seed: int = 0
    """Seed of the count-sketch hashes and signs of "full_sketch"."""

    def __post_init__(self) -> None:
        if self.name not in PROXIES:
            raise ValueError(
                f"ProxyConfig.name must be one of {PROXIES}, got {self.name!r}; use 'row' for "
                "the paper's (1 - p) h proxy"
            )
        for name, low, hint in (
            ("topk", 1, "use 64 (the default) or the vocabulary size for the exact hidden gradient"),
            ("sketch_dim", 1, "use a positive size such as 16384 (the default)"),
            ("sketch_seed", 0, "use 0 (the default) or another non-negative integer"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(
                    f"ProxyConfig.{name} must be an integer >= {low}, got {value!r}; {hint}"
                )


@in_full_precision
def row_proxy(hidden: Tensor, logp: Tensor, mask: Tensor | None = None) -> Tensor:
    """The paper's token-gradient proxy v = (1 - p) * h, in float32 (the DelTA paper, App. F).

    v is the gradient of log p(y_t) with respect to the sampled token's own LM-head row.

    Args:
        hidden: (B, T, H) final hidden states, the input of the LM head (after the final norm).
        logp: (B, T) log-probability of each sampled token under the old policy, at the
            rollout temperature.
        mask: optional (B, T) bool, True = valid. Invalid positions are set to exactly 0, so
            that garbage (even NaN) in padded hidden states cannot reach the estimator.

    Returns:
        (B, T, H) float32. `1 - p` is computed as `-expm1(logp)`, exact also when p is near 1.
    """
    if hidden.shape[:-1] != logp.shape:
        raise ValueError(
            f"row_proxy: hidden has shape {tuple(hidden.shape)} but logp has shape "
            f"{tuple(logp.shape)}; expected hidden (B, T, H) and logp (B, T)"
        )
    scale = -torch.expm1(logp.float())
    v = hidden.float() * scale.unsqueeze(-1)
    if mask is not None:
        v.masked_fill_(~mask.unsqueeze(-1), 0.0)
    return v


# --------------------------------------------------------------------------------------------
# Shared helpers.


def _compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any input is float64, else float32."""
    return torch.float64 if any(x is not None and x.dtype == torch.float64 for x in tensors) else torch.float32


def _check_lm_inputs(
    where: str,
    hidden: Tensor,
    ids: Tensor,
    head_weight: Tensor,
    mask: Tensor | None,
    temperature: float,
    head_bias: Tensor | None,
    chunk_rows: int | None,
) -> None:
    if hidden.dim() != 3:
        raise ValueError(f"{where}: hidden must have shape (B, T, H), got {tuple(hidden.shape)}")
    b, t, h = hidden.shape
    if tuple(ids.shape) != (b, t):
        raise ValueError(
            f"{where}: ids must have shape (B, T) = ({b}, {t}) like hidden, got {tuple(ids.shape)}"
        )
    if head_weight.dim() != 2 or head_weight.shape[1] != h:
        raise ValueError(
            f"{where}: head_weight must be the LM-head matrix (V, H) with H = {h}, got "
            f"{tuple(head_weight.shape)}"
        )
    if head_bias is not None and tuple(head_bias.shape) != (head_weight.shape[0],):
        raise ValueError(
            f"{where}: head_bias must have shape (V,) = ({head_weight.shape[0]},), got "
            f"{tuple(head_bias.shape)}"
        )
    if mask is not None and (tuple(mask.shape) != (b, t) or mask.dtype != torch.bool):
        raise ValueError(
            f"{where}: mask must be a bool tensor of shape (B, T) = ({b}, {t}) with True = valid "
            f"token, got {mask.dtype} {tuple(mask.shape)}"
        )
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
        0.0 < float(temperature) < float("inf")
    ):
        raise ValueError(
            f"{where}: temperature must be a finite number > 0 (the rollout temperature), got "
            f"{temperature!r}"
        )
    if chunk_rows is not None and (
        isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1
    ):
        raise ValueError(f"{where}: chunk_rows must be None or an integer >= 1, got {chunk_rows!r}")


def _check_ids(where: str, ids: Tensor, vocab: int) -> None:
    """Sampled ids in [0, V) where they are used (host sync; an out-of-range index on CUDA is a
    device-side assert that kills the process)."""
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise ValueError(
            f"{where}: sampled token ids must lie in [0, V) = [0, {vocab}) at valid positions, "
            f"got values in [{int(ids.min())}, {int(ids.max())}]; check the mask and the head"
        )


def _logits(rows: Tensor, weight: Tensor, bias: Tensor | None, temperature: float) -> Tensor:
    """(n, V) logits (h W^T + b) / temperature in the dtype of `weight`."""
    z = rows @ weight.T
    if bias is not None:
        z = z + bias
    if temperature != 1.0:
        z = z / temperature
    return z


# --------------------------------------------------------------------------------------------
# Top-K hidden-gradient proxy.


@torch.no_grad()
def topk_hidden_proxy(
    hidden: Tensor,
    ids: Tensor,
    head_weight: Tensor,
    mask: Tensor | None = None,
    *,
    k: int,
    temperature: float = 1.0,
    head_bias: Tensor | None = None,
    chunk_rows: int | None = None,
) -> Tensor:
    """Top-K hidden-gradient proxy v = W_y - sum_{j in topK} p~_j W_j (the paper's ablation).

    The gradient of log p(y) wrt the hidden state is (W_y - sum_j p_j W_j) / temperature, with
    p = softmax((h W^T + b) / temperature) over the whole vocabulary. This proxy keeps only the
    K largest logits, renormalises their softmax to p~, and drops the constant 1/temperature
    factor, as the row proxy does: margins scale by c^2 under v -> c v, and so does
    gamma = std(margins), so the coefficients are invariant. With k >= V, p~ = p and v is the
    exact gradient wrt h (times temperature).

    Args:
        hidden: (B, T, H) final hidden states (input of the LM head).
        ids: (B, T) sampled token ids.
        head_weight: (V, H) LM-head matrix.
        mask: optional (B, T) bool, True = valid; invalid positions are never read (garbage,
            NaN included, is fine there) and get exactly 0.
        k: K, the number of logits kept (>= 1; k >= V means the whole vocabulary).
        temperature: the rollout temperature the logits are divided by.
        head_bias: optional (V,) LM-head bias.
        chunk_rows: tokens per chunk; default keeps each chunk's (n, V) logits and (n, K, H)
            gathered rows within 2^24 elements.

    Returns:
        (B, T, H) float32 (computed in float32, or float64 for float64 inputs).
    """
    where = "topk_hidden_proxy"
    _check_lm_inputs(where, hidden, ids, head_weight, mask, temperature, head_bias, chunk_rows)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{where}: k must be an integer >= 1, got {k!r}")
    b, t, h = hidden.shape
    vocab = head_weight.shape[0]
    dt = _compute_dtype(hidden, head_weight)
    weight = head_weight.to(dt)
    bias = None if head_bias is None else head_bias.to(dt)
    kk = min(k, vocab)
    full = kk >= vocab
    out = torch.zeros(b * t, h, dtype=torch.float32, device=hidden.device)
    h2d = hidden.reshape(b * t, h)
    y2d = ids.reshape(-1)
    rows_idx = (
        torch.arange(b * t, device=hidden.device)
        if mask is None
        else mask.reshape(-1).nonzero().squeeze(1)
    )
    _check_ids(where, y2d[rows_idx], vocab)
    per_row = vocab if full else max(vocab, kk * h)
    step = chunk_rows or max(1, CHUNK_ELEMENTS // per_row)
    for start in range(0, rows_idx.numel(), step):
        idx = rows_idx[start : start + step]
        rows = h2d[idx].to(dt)
        y = y2d[idx].long()
        z = _logits(rows, weight, bias, temperature)
        if full:
            mixture = torch.softmax(z, dim=-1) @ weight  # (n, H)
        else:
            top, top_idx = torch.topk(z, kk, dim=-1)  # (n, K)
            p_top = torch.softmax(top, dim=-1)
            mixture = torch.bmm(p_top.unsqueeze(1), weight[top_idx]).squeeze(1)  # (n, H)
        out[idx] = (weight[y] - mixture).float()
    return out.reshape(b, t, h)


# --------------------------------------------------------------------------------------------
# Exact LM-head gradients, never materialised.


class LMHeadGradients:
    """The exact gradient of log p(y_t) wrt the whole LM-head matrix, (e_y - p_t) h_t^T
    (V x H per token), never materialised per token; the constant 1/temperature is dropped, as
    the row proxy drops it (the coefficients are invariant to a common scale, see the module).

    A `coefficients.TokenVectors`: `delta_coefficients(LMHeadGradients(...), adv, mask, config)`
    runs DelTA on these vectors. Each pass (`side_weighted_sums` or `margins`) costs two
    LM-head-sized matrix products over the signed tokens (the logits, then one product with the
    centroid matrices); centroids are (2, V, H) float64, so the estimator holds a few
    2 x V x H float64 tensors (16 V H bytes each).

    Holds references to its inputs (no copy; hidden states and head may be bf16 and are upcast
    chunk by chunk, the head once per pass). Positions where `mask` is False are invalid: they
    are never read (garbage, NaN included, is fine there), their vector is 0, they contribute
    nothing to sums and get margin 0 whatever side they are given.

    Args:
        hidden: (B, T, H) final hidden states (input of the LM head).
        ids: (B, T) sampled token ids.
        head_weight: (V, H) LM-head matrix.
        mask: (B, T) bool, True = valid.
        temperature: the rollout temperature the logits are divided by (sets p_t).
        head_bias: optional (V,) LM-head bias.
        chunk_rows: tokens per chunk; default min(SUM_BLOCK, 2^24 // V), so that the chunk's
            (n, V) logits stay within 2^24 elements and each float32 partial sum covers at most
            SUM_BLOCK tokens before it is added in float64.
    """

    def __init__(
        self,
        hidden: Tensor,
        ids: Tensor,
        head_weight: Tensor,
        mask: Tensor,
        *,
        temperature: float = 1.0,
        head_bias: Tensor | None = None,
        chunk_rows: int | None = None,
    ) -> None:
        where = "LMHeadGradients"
        if mask is None:
            raise ValueError(f"{where}: mask is required, a (B, T) bool tensor with True = valid")
        _check_lm_inputs(where, hidden, ids, head_weight, mask, temperature, head_bias, chunk_rows)
        vocab = head_weight.shape[0]
        _check_ids(where, ids[mask], vocab)
        self.hidden = hidden.detach()
        self.ids = ids
        self.head_weight = head_weight.detach()
        self.head_bias = None if head_bias is None else head_bias.detach()
        self.mask = mask
        self.temperature = float(temperature)
        self.chunk_rows = chunk_rows
        self._step = chunk_rows or max(1, min(SUM_BLOCK, CHUNK_ELEMENTS // vocab))

    @property
    def token_shape(self) -> tuple[int, int]:
        """(B, T)."""
        return (self.hidden.shape[0], self.hidden.shape[1])

    @property
    def vector_shape(self) -> tuple[int, int]:
        """(V, H), the shape of one token's vector."""
        return (self.head_weight.shape[0], self.hidden.shape[2])

    @property
    def device(self) -> torch.device:
        return self.hidden.device

    # ----------------------------------------------------------------------------------------

    def _head(self) -> tuple[torch.dtype, Tensor, Tensor | None]:
        dt = _compute_dtype(self.hidden, self.head_weight)
        bias = None if self.head_bias is None else self.head_bias.to(dt)
        return dt, self.head_weight.to(dt), bias

    def _chunks(
        self, idx: Tensor, dt: torch.dtype, weight: Tensor, bias: Tensor | None, residual: bool = True
    ):
        """Yield (positions, rows h (n, H), ids y (n,), q) over the flat positions idx, with
        q = e_y - p (n, V) (residual) or the probabilities p (n, V)."""
        h2d = self.hidden.reshape(-1, self.hidden.shape[-1])
        y2d = self.ids.reshape(-1)
        for start in range(0, idx.numel(), self._step):
            pos = idx[start : start + self._step]
            rows = h2d[pos].to(dt)
            y = y2d[pos].long()
            p = torch.softmax(_logits(rows, weight, bias, self.temperature), dim=-1)
            if residual:
                p.neg_()
                p[torch.arange(pos.numel(), device=p.device), y] += 1.0
            yield pos, rows, y, p

    def _side_positions(self, side: Tensor) -> list[Tensor]:
        """Flat positions of the valid tokens on side +1 and on side -1."""
        n = self.hidden.shape[0] * self.hidden.shape[1]
        if tuple(side.shape) != (n,):
            raise ValueError(
                f"LMHeadGradients: side must have shape (N,) = ({n},) (flattened B x T), got "
                f"{tuple(side.shape)}"
            )
        valid = self.mask.reshape(-1).to(side.device)
        return [((side > 0) & valid).nonzero().squeeze(1), ((side < 0) & valid).nonzero().squeeze(1)]

    @torch.no_grad()
    def side_weighted_sums(self, side: Tensor, weight: Tensor) -> Tensor:
        """(2, V, H) float64: per side (+1 at index 0, -1 at index 1) the sum of
        weight_t * (e_y - p_t) h_t^T over its valid tokens, for side (N,) int8 and weight (N,).

        Accumulated chunk by chunk in float64: the e_y part exactly (index_add of weight * h
        into the rows y), the p part as a float32 product (weight P)^T H over at most
        chunk_rows tokens, then added in float64.
        """
        dt, head, bias = self._head()
        vocab, h = self.vector_shape
        total = torch.zeros(2, vocab, h, dtype=torch.float64, device=self.device)
        w_all = weight.to(device=self.device, dtype=dt)
        for s, idx in enumerate(self._side_positions(side)):
            for pos, rows, y, p in self._chunks(idx, dt, head, bias, residual=False):
                wr = rows * w_all[pos].unsqueeze(-1)  # (n, H): w_t h_t
                total[s].index_add_(0, y, wr.double())  # sum_t w_t e_y h_t^T
                total[s] -= (p.T @ wr).double()  # sum_t w_t p_t h_t^T
        return total

    @torch.no_grad()
    def margins(self, side: Tensor, mu: Tensor, contrast: Contrast) -> Tensor:
        """(N,) float32 margin Delta of each token on its own side, against centroids mu
        (2, V, H) float64; 0 on side 0 and at invalid positions. The contract of
        `kernels.margins` for dense rows:

        two_sided: Delta = +-(2 <v, mu+ - mu-> + ||mu-||^2 - ||mu+||^2), sign by the side;
        within_side: Delta = -||v - mu_own||^2 with ||v||^2 = ||e_y - p||^2 ||h||^2.
        <v, M> = sum_j (e_y - p)_j (M h)_j, from U = h M^T (n, V), one product per chunk.
        """
        if tuple(mu.shape) != (2,) + self.vector_shape:
            raise ValueError(
                f"LMHeadGradients.margins: mu must have shape (2, V, H) = "
                f"{(2,) + self.vector_shape}, got {tuple(mu.shape)}"
            )
        if contrast not in ("two_sided", "within_side"):
            raise ValueError(f"LMHeadGradients.margins: unknown contrast {contrast!r}")
        dt, head, bias = self._head()
        n_tokens = self.hidden.shape[0] * self.hidden.shape[1]
        delta = torch.zeros(n_tokens, dtype=torch.float32, device=self.device)
        positions = self._side_positions(side)
        if contrast == "two_sided":
            # As `kernels.margins`: the offset ||mu-||^2 - ||mu+||^2 = -(mu+ - mu-).(mu+ + mu-)
            # as one float64 dot product.
            direction = 2.0 * (mu[0] - mu[1])
            offset = (-0.5 * (direction * (mu[0] + mu[1])).sum()).to(dt)
            d_mat = direction.to(dt)
            del direction
            for s, idx in enumerate(positions):
                sign = 1.0 if s == 0 else -1.0
                for pos, rows, _, q in self._chunks(idx, dt, head, bias):
                    d = (q * (rows @ d_mat.T)).sum(-1) + offset
                    delta[pos] = (sign * d).float()
            return delta
        for s, idx in enumerate(positions):
            own_mat = mu[s].to(dt)
            own_sq = mu[s].square().sum().to(dt)
            for pos, rows, _, q in self._chunks(idx, dt, head, bias):
                own = (q * (rows @ own_mat.T)).sum(-1)
                v_sq = q.square().sum(-1) * rows.square().sum(-1)
                delta[pos] = (-(v_sq - 2.0 * own + own_sq)).float()
        return delta

    # ----------------------------------------------------------------------------------------

    @staticmethod
    def concat(parts: list[LMHeadGradients]) -> LMHeadGradients:
        """One object over the responses of all parts, in order (concatenated along B): the
        trainer builds one per micro-batch. Parts of different T are padded to the largest T
        with invalid positions. All parts must share the head (same tensor, or equal), bias,
        temperature and device; the first part's chunk_rows is kept."""
        if not parts:
            raise ValueError("LMHeadGradients.concat: no parts given")
        first = parts[0]
        for i, part in enumerate(parts[1:], start=1):
            same_head = _same_tensor(part.head_weight, first.head_weight)
            same_bias = (part.head_bias is None and first.head_bias is None) or (
                part.head_bias is not None
                and first.head_bias is not None
                and _same_tensor(part.head_bias, first.head_bias)
            )
            if not (same_head and same_bias and part.temperature == first.temperature):
                raise ValueError(
                    f"LMHeadGradients.concat: part {i} has a different LM head, bias or "
                    "temperature than part 0; only gradients of the same head can be pooled"
                )
            if part.hidden.shape[2] != first.hidden.shape[2] or part.device != first.device:
                raise ValueError(
                    f"LMHeadGradients.concat: part {i} has hidden size {part.hidden.shape[2]} on "
                    f"{part.device}, part 0 {first.hidden.shape[2]} on {first.device}"
                )
        t_max = max(p.hidden.shape[1] for p in parts)

        def pad(x: Tensor, fill) -> Tensor:
            extra = t_max - x.shape[1]
            if extra == 0:
                return x
            shape = (x.shape[0], extra) + tuple(x.shape[2:])
            return torch.cat([x, torch.full(shape, fill, dtype=x.dtype, device=x.device)], dim=1)

        return LMHeadGradients(
            torch.cat([pad(p.hidden, 0) for p in parts]),
            torch.cat([pad(p.ids, 0) for p in parts]),
            first.head_weight,
            torch.cat([pad(p.mask, False) for p in parts]),
            temperature=first.temperature,
            head_bias=first.head_bias,
            chunk_rows=first.chunk_rows,
        )

    @torch.no_grad()
    def materialise(self) -> Tensor:
        """(B, T, V * H) float32 dense vectors (e_y - p) h^T flattened row-major (index y * H + i),
        0 at invalid positions. N V H floats: for tests and tiny models only."""
        dt, head, bias = self._head()
        b, t = self.token_shape
        vocab, h = self.vector_shape
        out = torch.zeros(b * t, vocab * h, dtype=torch.float32, device=self.device)
        idx = self.mask.reshape(-1).nonzero().squeeze(1)
        for pos, rows, _, q in self._chunks(idx, dt, head, bias):
            out[pos] = (q.unsqueeze(-1) * rows.unsqueeze(1)).reshape(pos.numel(), -1).float()
        return out.reshape(b, t, vocab * h)


def _same_tensor(a: Tensor, b: Tensor) -> bool:
    if a is b:
        return True
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True
    return bool(torch.equal(a, b))
