"""``full_sketch``: count-sketched full-parameter token gradients (the reference proxy).

DelTA compares tokens through a cheap proxy of their gradients (the DelTA paper's method: the LM-head row
proxy (1 - p) h). Spec section 8 names the open question: how well does that stand in for the
*full-parameter* gradient? This module computes the full-parameter gradient of every valid
completion token and compresses it to D numbers, so that proxies can be audited against it.

What is computed. For valid completion token t of row b,

    g_t = grad_theta log pi(y_t | prompt, y_<t)          in R^P

with log pi = log_softmax(logits / temperature)[y_t] exactly as
``delta_rlvr.models.completion_logprobs`` scores it (logits upcast to at least float32, then
multiplied by 1 / temperature; position ids from the attention mask). theta is the list of
parameters the ``CountSketch`` was built over - normally every trainable parameter of the model,
``[p for p in model.parameters() if p.requires_grad]``; ``parameters()`` lists a tied
embedding / LM-head matrix once, so it is one parameter and its gradient is the sum of both uses.

The sketch. A count-sketch S: R^P -> R^D gives every coordinate i a bucket b(i) in [0, D) and a
sign s(i) in {-1, +1}, both uniform and independent, drawn once from ``seed``:
S g = sum_i s(i) g_i e_{b(i)}. It is linear, and for fixed g, g' and a random draw of S:

    E[<S g, S g'>] = <g, g'>                                       (unbiased)
    Var[<S g, S g'>] = (||g||^2 ||g'||^2 + <g, g'>^2 - 2 sum_i g_i^2 g'_i^2) / D

so the error of a sketched dot product is about ||g|| ||g'|| / sqrt(D) (``CountSketch.dot_std``);
squared norms and distances are sketched dot products too. Relative errors are small only for
pairs whose cosine is large compared with 1 / sqrt(D): choose D accordingly, and measure it
with ``keep_exact`` (exact gradients of chosen tokens) when in doubt.

Cost. One backward per valid token: the backward of token t cannot be shared with other
tokens, since every token has its own full-parameter gradient, and each costs about twice a
forward of the row (activation gradients plus per-token weight gradients). The backwards of up
to ``tokens_per_backward`` tokens run as one batched (vmapped) backward,
``torch.autograd.grad(..., is_grads_batched=True)``: the same numbers as one ``autograd.grad``
per token on the same graph (bit-identical on the test model; truncated forwards, below,
change float32 rounding only) but 1.5x (10M parameters) to 3x (the 0.75M embedded model)
faster on CPU. With ``tokens_per_backward >= FORWARD_PER_CHUNK_FROM`` each
chunk of tokens gets its own forward, truncated at the chunk's last token, so the backwards
skip the columns after it; otherwise one forward per row is shared by its chunks. Measured on
one contended CPU thread: ~60-90 tokens/s for the 0.75M embedded model, ~9 tokens/s for a
9.5M Qwen3, i.e. about (number of tokens) x (a backward of a row): use it for small models and
audit batches, not inside the training loop of a real LM. On CPU ~60% of the time is the
per-token weight-gradient matmuls and ~25% (at 10M) the sketch's scatter_add.

Memory. The sketch stores one int64 per parameter coordinate (bucket and sign packed into one
index into a (2D,)-sized accumulator: positives in [0, D), negatives in [D, 2D)), i.e. 8 P bytes
on the parameters' device (twice a float32 copy of the model). During ``full_gradient_sketch``
one batched backward holds ``tokens_per_backward`` full gradients (4 P bytes each at float32)
plus the truncated row's activations and their batched gradients; by default the batch is the
largest (at most ``MAX_TOKENS_PER_BACKWARD``) whose gradients fit in ``GRADIENT_BUDGET_BYTES``
(256 MiB). Sketching is ``scatter_add`` into a float32 (n, 2D) buffer: no P-sized temporaries
beyond the gradients themselves (a non-float32 gradient is cast one tensor at a time).
``keep_exact`` keeps 4 P bytes per requested token.

Determinism. Buckets and signs are drawn parameter by parameter, in list order, from a CPU
``torch.Generator`` seeded with ``seed`` and then moved to the parameters' device, so the same
(parameter shapes, dim, seed) give the same sketch on any device. ``scatter_add`` on CUDA adds
in a nondeterministic order (float32 rounding differences only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from delta_rlvr.models.logprobs import _check_plain_logits, backbone_and_head, check_completion_layout

#: Upper bound on the float32 bytes of the token gradients held by one batched backward when
#: ``tokens_per_backward`` is left to its default.
GRADIENT_BUDGET_BYTES = 256 * 2**20
#: Most tokens per batched backward by default (beyond it the vmapped backward gains nothing).
MAX_TOKENS_PER_BACKWARD = 16
#: From this many tokens per backward on, each chunk gets its own forward truncated at its last
#: token (the backwards then skip the later columns); below it one forward per row is shared by
#: all its chunks (a forward per token would cost more than truncation saves).
FORWARD_PER_CHUNK_FROM = 4
#: Elements per chunk when ``dot_std`` accumulates in float64.
_DOT_CHUNK = 2**20


class CountSketch:
    """A fixed count-sketch S: R^P -> R^D over a list of parameter tensors.

    Args:
        params: the tensors whose gradients will be sketched, in a fixed order (P = total
            number of elements). Each tensor may appear once (pass ``model.parameters()``,
            which lists tied weights once).
        dim: D >= 1, the sketch dimension.
        seed: buckets and signs are drawn from ``torch.Generator().manual_seed(seed)``.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], dim: int, seed: int = 0) -> None:
        params = tuple(params)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"CountSketch: dim={dim!r} must be an int >= 1 (the sketch dimension D, e.g. 1024)")
        if not params:
            raise ValueError(
                "CountSketch: params is empty; pass the trainable parameters, e.g. "
                "[p for p in model.parameters() if p.requires_grad]"
            )
        seen: set[int] = set()
        for k, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"CountSketch: params[{k}] is a {type(p).__name__}, not a tensor")
            if id(p) in seen:
                raise ValueError(
                    f"CountSketch: params[{k}] (shape {tuple(p.shape)}) appears twice; pass each "
                    f"parameter once (model.parameters() already lists tied weights once)"
                )
            seen.add(id(p))
        devices = {p.device for p in params}
        if len(devices) > 1:
            raise ValueError(f"CountSketch: params live on several devices {sorted(map(str, devices))}; move the model to one device")
        self.params: tuple[Tensor, ...] = params
        self.dim: int = dim
        self.seed: int = int(seed)
        self.device: torch.device = params[0].device
        self.shapes: tuple[torch.Size, ...] = tuple(p.shape for p in params)
        self.numels: tuple[int, ...] = tuple(p.numel() for p in params)
        self.num_params: int = sum(self.numels)
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        index = []
        for n in self.numels:
            buckets = torch.randint(0, dim, (n,), generator=generator, dtype=torch.int64)
            negative = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64)
            # Positive coordinates accumulate in [0, D), negative ones in [D, 2D).
            index.append(buckets.add_(negative.mul_(dim)).to(self.device))
        self._index: tuple[Tensor, ...] = tuple(index)

    def __repr__(self) -> str:
        return f"CountSketch(num_params={self.num_params}, dim={self.dim}, seed={self.seed}, tensors={len(self.params)})"

    @property
    def buckets(self) -> list[Tensor]:
        """b(i) per tensor: int64, flat, values in [0, dim) (computed on access)."""
        return [ix.remainder(self.dim) for ix in self._index]

    @property
    def signs(self) -> list[Tensor]:
        """s(i) per tensor: float32 +-1, flat (computed on access)."""
        return [1.0 - 2.0 * (ix >= self.dim).float() for ix in self._index]

    def sketch(self, grads: Sequence[Tensor | None]) -> Tensor:
        """S g for one gradient given per tensor (None = zeros) -> (dim,) float32."""
        return self.sketch_batch([None if g is None else g.unsqueeze(0) for g in grads], 1)[0]

    def sketch_batch(self, grads: Sequence[Tensor | None], n: int) -> Tensor:
        """S g for n gradients at once: grads[k] of shape (n, *params[k].shape) or None -> (n, dim)."""
        if len(grads) != len(self.params):
            raise ValueError(f"CountSketch.sketch: got {len(grads)} gradients for {len(self.params)} parameter tensors; "
                             f"pass one per parameter, in the order the sketch was built with (None for no gradient)")
        acc = torch.zeros((n, 2 * self.dim), dtype=torch.float32, device=self.device)
        for k, (g, ix) in enumerate(zip(grads, self._index)):
            if g is None:
                continue
            if g.numel() != n * self.numels[k] or g.shape[0] != n:
                raise ValueError(
                    f"CountSketch.sketch: gradient {k} has shape {tuple(g.shape)}, expected "
                    f"{(n, *self.shapes[k]) if n > 1 else tuple(self.shapes[k])} (the shape of params[{k}])"
                )
            src = g.reshape(n, -1)
            if src.dtype != torch.float32:
                src = src.float()
            acc.scatter_add_(1, ix.expand(n, -1), src)
        return acc[:, :self.dim] - acc[:, self.dim:]

    def flatten(self, grads: Sequence[Tensor | None]) -> Tensor:
        """The exact flat gradient (P,) float32 in this sketch's parameter order (None = zeros)."""
        return torch.cat([
            torch.zeros(n, dtype=torch.float32, device=self.device) if g is None else g.reshape(-1).float()
            for g, n in zip(grads, self.numels)
        ])

    @staticmethod
    def dot_std(a: Tensor, b: Tensor, dim: int) -> Tensor:
        """Predicted std of <S a, S b> - <a, b> over random count-sketches of dimension ``dim``.

        a, b: exact vectors (..., P), broadcast over leading dims; accumulated in float64 by
        chunks of the last dim. Returns (...) float64:
        sqrt((||a||^2 ||b||^2 + <a,b>^2 - 2 sum_i a_i^2 b_i^2) / dim).
        """
        if a.shape[-1] != b.shape[-1]:
            raise ValueError(f"CountSketch.dot_std: a has {a.shape[-1]} coordinates, b has {b.shape[-1]}; pass exact vectors of the same P")
        if dim < 1:
            raise ValueError(f"CountSketch.dot_std: dim={dim} must be >= 1")
        aa = bb = ab = a2b2 = 0.0
        for start in range(0, a.shape[-1], _DOT_CHUNK):
            x = a[..., start:start + _DOT_CHUNK].double()
            y = b[..., start:start + _DOT_CHUNK].double()
            aa = aa + (x * x).sum(-1)
            bb = bb + (y * y).sum(-1)
            xy = x * y
            ab = ab + xy.sum(-1)
            a2b2 = a2b2 + (xy * xy).sum(-1)
        var = (aa * bb + ab * ab - 2.0 * a2b2) / dim
        return torch.as_tensor(var).clamp(min=0.0).sqrt()

    @staticmethod
    def dot_std_pairwise(a: Tensor, b: Tensor, dim: int) -> Tensor:
        """``dot_std`` for every pair: a (n, P), b (m, P) -> (n, m) float64 (chunked float64 matmuls)."""
        if dim < 1:
            raise ValueError(f"CountSketch.dot_std_pairwise: dim={dim} must be >= 1")
        return pairwise_sums(a, b).dot_std(dim)


@dataclass(frozen=True)
class PairwiseSums:
    """float64 pair statistics of rows a (n, P) and b (m, P)."""

    ab: Tensor  # (n, m) <a_i, b_j>
    a2b2: Tensor  # (n, m) sum_p a_ip^2 b_jp^2
    aa: Tensor  # (n,) ||a_i||^2
    bb: Tensor  # (m,) ||b_j||^2

    def dot_std(self, dim: int) -> Tensor:
        """(n, m) predicted std of each pair's sketched dot-product error (see `CountSketch.dot_std`)."""
        var = (self.aa[:, None] * self.bb[None, :] + self.ab * self.ab - 2.0 * self.a2b2) / dim
        return var.clamp(min=0.0).sqrt()


def pairwise_sums(a: Tensor, b: Tensor, chunk: int = 1 << 22) -> PairwiseSums:
    """Dot products, squared norms and sum a^2 b^2 of every row pair, accumulated in float64 over
    column chunks: no (n, P) float64 copy is made (a model's full gradients are P-sized each)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"pairwise_sums: need a (n, P) and b (m, P), got {tuple(a.shape)} and {tuple(b.shape)}")
    kw = {"dtype": torch.float64, "device": a.device}
    n, m = a.shape[0], b.shape[0]
    out = PairwiseSums(torch.zeros(n, m, **kw), torch.zeros(n, m, **kw), torch.zeros(n, **kw), torch.zeros(m, **kw))
    for start in range(0, a.shape[1], chunk):
        x, y = a[:, start:start + chunk].double(), b[:, start:start + chunk].double()
        x2, y2 = x * x, y * y
        out.ab.add_(x @ y.T)
        out.a2b2.add_(x2 @ y2.T)
        out.aa.add_(x2.sum(-1))
        out.bb.add_(y2.sum(-1))
    return out


@dataclass(frozen=True)
class SketchedGradients:
    """Count-sketched token gradients of B completions of T tokens."""

    vectors: Tensor
    """(B, T, D) float32 S g_t, zeros at invalid tokens."""
    exact: Tensor | None
    """(n_exact, P) float32 exact flat g_t of the tokens marked in keep_exact (CountSketch order), or None."""
    exact_index: Tensor | None
    """(n_exact, 2) int64 (row, column) of those tokens, row-major order, or None."""


def _check_inputs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, sketch, temperature,
                  keep_exact, tokens_per_backward) -> None:
    if not isinstance(sketch, CountSketch):
        raise TypeError(f"full_gradient_sketch: sketch must be a CountSketch, got {type(sketch).__name__}; "
                        f"build one with CountSketch([p for p in model.parameters() if p.requires_grad], dim, seed)")
    check_completion_layout(prompt_ids, prompt_mask, completion_ids, completion_mask, "full_gradient_sketch")
    if not temperature > 0:
        raise ValueError(f"full_gradient_sketch: temperature={temperature} must be > 0 (the rollout temperature)")
    if keep_exact is not None:
        if keep_exact.shape != completion_ids.shape or keep_exact.dtype != torch.bool:
            raise ValueError(f"full_gradient_sketch: keep_exact must be a (B, T) = {tuple(completion_ids.shape)} bool "
                             f"tensor, got {tuple(keep_exact.shape)} {keep_exact.dtype}")
        if bool((keep_exact.cpu() & ~completion_mask.bool().cpu()).any()):
            raise ValueError("full_gradient_sketch: keep_exact marks tokens outside completion_mask; "
                             "pass keep_exact & completion_mask")
    if tokens_per_backward is not None and (isinstance(tokens_per_backward, bool) or not isinstance(tokens_per_backward, int)
                                            or tokens_per_backward < 1):
        raise ValueError(f"full_gradient_sketch: tokens_per_backward={tokens_per_backward!r} must be an int >= 1 or None (auto)")
    model_params = list(model.parameters())
    if not any(p.requires_grad for p in model_params):
        raise ValueError(f"full_gradient_sketch: {type(model).__name__} has no trainable parameters "
                         f"(requires_grad=False everywhere); unfreeze the parameters whose gradients you want")
    owned = {id(p) for p in model_params}
    foreign = [k for k, p in enumerate(sketch.params) if id(p) not in owned]
    if foreign:
        raise ValueError(f"full_gradient_sketch: sketch.params[{foreign[0]}] (shape {tuple(sketch.shapes[foreign[0]])}) "
                         f"is not a parameter of this model; build the sketch from this model's parameters")
    frozen = [k for k, p in enumerate(sketch.params) if not p.requires_grad]
    if frozen:
        raise ValueError(f"full_gradient_sketch: sketch.params[{frozen[0]}] has requires_grad=False; build the sketch "
                         f"over trainable parameters only: [p for p in model.parameters() if p.requires_grad]")


def full_gradient_sketch(
    model: torch.nn.Module,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    *,
    sketch: CountSketch,
    temperature: float = 1.0,
    keep_exact: Tensor | None = None,
    progress: bool = False,
    tokens_per_backward: int | None = None,
) -> SketchedGradients:
    """Count-sketch of the full-parameter gradient of log pi(y_t | prefix) of every valid token.

    Same input layout as ``completion_logprobs``. Grad is enabled inside (works under
    ``torch.no_grad`` and ``torch.inference_mode``); parameters' ``.grad`` and the model's
    train/eval mode are left untouched (gradients come from ``torch.autograd.grad``).

    Args:
        model: an HF causal LM with a plain linear head (the one ``sketch`` was built over).
        prompt_ids: (B, P) int64, left-padded; prompt_mask: (B, P) bool.
        completion_ids: (B, T) int64, right-padded; completion_mask: (B, T) bool.
        sketch: the fixed ``CountSketch`` over (a subset of) the model's trainable parameters.
        temperature: the rollout temperature (logits are multiplied by 1 / temperature).
        keep_exact: optional (B, T) bool, a subset of completion_mask: tokens whose exact flat
            gradient is returned too (for measuring the sketch's error).
        progress: show a tqdm bar over rows.
        tokens_per_backward: tokens per batched backward (None: as many as fit in
            ``GRADIENT_BUDGET_BYTES`` of float32 gradients, at most ``MAX_TOKENS_PER_BACKWARD``).

    Returns:
        ``SketchedGradients``: (B, T, D) vectors, plus exact gradients if keep_exact was given.
    """
    _check_inputs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, sketch, temperature,
                  keep_exact, tokens_per_backward)
    _check_plain_logits(model)
    backbone, head = backbone_and_head(model)
    if tokens_per_backward is None:
        tokens_per_backward = max(1, min(MAX_TOKENS_PER_BACKWARD, GRADIENT_BUDGET_BYTES // (4 * sketch.num_params)))
    inv_temperature = 1.0 / float(temperature)
    params = list(sketch.params)
    batch, width = completion_ids.shape
    prompt_len = prompt_ids.shape[1]
    device = sketch.device
    exact_rows: list[Tensor] = []
    exact_index: list[tuple[int, int]] = []

    with torch.inference_mode(False), torch.enable_grad():
        vectors = torch.zeros((batch, width, sketch.dim), dtype=torch.float32, device=device)
        # Clones are ordinary tensors even if the caller built the inputs in inference mode.
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1).to(device).clone()  # (B, P + T)
        attention_mask = torch.cat([prompt_mask.bool(), completion_mask.bool()], dim=1).long().to(device)  # (B, P + T)
        position_ids = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)  # (B, P + T)
        valid_cpu = completion_mask.bool().cpu()
        keep_cpu = keep_exact.cpu() if keep_exact is not None else None
        first_real = prompt_mask.bool().long().argmax(dim=1).cpu()  # (B,) first real prompt column

        rows = range(batch)
        if progress:
            from tqdm.auto import tqdm

            rows = tqdm(rows, desc="full_sketch", unit="row", dynamic_ncols=True)

        def token_logps(r: int, cols: Tensor) -> Tensor:
            """log pi of completion tokens ``cols`` (ascending) of row r, with grad: (len(cols),)."""
            # Columns before the first real prompt token are masked keys for every query, and
            # columns after the last needed head input are never attended to: drop both.
            start, stop = int(first_real[r]), prompt_len + int(cols[-1])
            outputs = backbone(
                input_ids=input_ids[r:r + 1, start:stop],
                attention_mask=attention_mask[r:r + 1, start:stop],
                position_ids=position_ids[r:r + 1, start:stop],
                use_cache=False,
            )
            # Column P - 1 + t (of the full layout) holds the head input predicting token t.
            take = (cols + (prompt_len - 1 - start)).to(device)  # (n,)
            hidden = outputs.last_hidden_state[0].index_select(0, take)  # (n, H)
            targets = input_ids[r, prompt_len:].index_select(0, cols.to(device))  # (n,)
            logits = head(hidden)
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) * inv_temperature  # (n, V)
            return F.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (n,)

        per_chunk = tokens_per_backward >= FORWARD_PER_CHUNK_FROM
        for r in rows:
            cols = valid_cpu[r].nonzero().squeeze(-1)  # (n,) valid completion columns
            n = cols.numel()
            if n == 0:
                continue
            logp = None if per_chunk else token_logps(r, cols)
            for s in range(0, n, tokens_per_backward):
                e = min(n, s + tokens_per_backward)
                if per_chunk:
                    # A forward truncated at the chunk's last token: the backward of token t
                    # then runs over the prefix columns only, not the whole row.
                    chunk_logp, outputs_index = token_logps(r, cols[s:e]), slice(None)
                else:
                    chunk_logp, outputs_index = logp, slice(s, e)
                eye = torch.eye(chunk_logp.shape[0], dtype=chunk_logp.dtype, device=device)[outputs_index]
                grads = torch.autograd.grad(
                    chunk_logp, params, grad_outputs=eye, is_grads_batched=True,
                    retain_graph=not per_chunk and e < n, allow_unused=True,
                )  # each (e - s, *param.shape) or None
                vectors[r, cols[s:e].to(device)] = sketch.sketch_batch(grads, e - s)
                if keep_cpu is not None:
                    for j in range(s, e):
                        t = int(cols[j])
                        if keep_cpu[r, t]:
                            exact_rows.append(sketch.flatten([None if g is None else g[j - s] for g in grads]))
                            exact_index.append((r, t))
                del grads

    if keep_exact is None:
        return SketchedGradients(vectors=vectors, exact=None, exact_index=None)
    exact = (torch.stack(exact_rows) if exact_rows
             else torch.zeros((0, sketch.num_params), dtype=torch.float32, device=device))
    index = torch.tensor(exact_index, dtype=torch.int64, device=device).reshape(-1, 2)
    return SketchedGradients(vectors=vectors, exact=exact, exact_index=index)
