"""The token vectors DelTA compares, for the configured gradient proxy (one dispatcher).

The trainer, the adapters' reference path and `delta-rlvr audit-proxy` all call
`token_vectors`, so what the audit measures is exactly what training uses. This module runs the
model (and its LM head) for each proxy; the proxies' math is `delta_rlvr.core.proxies`.

| proxy        | vector per token                          | needs                          | returns            |
|--------------|-------------------------------------------|--------------------------------|--------------------|
| row          | (1 - p) h  (the paper's, default)         | the old-policy pass            | (B, T, H) tensor   |
| topk_hidden  | W_y - sum_topK p~_j W_j                   | + the LM-head matrix           | (B, T, H) tensor   |
| lm_head      | (e_y - p) outer h, never materialised     | + the LM-head matrix           | LMHeadGradients    |
| full_sketch  | count-sketch of the full-parameter grad   | one backward pass per token    | (B, T, D) tensor   |

Constant factors shared by every token (1 / temperature) are dropped: the coefficients do not
depend on them (margins and their std scale together).
"""

from __future__ import annotations

import torch
from torch import Tensor

from delta_rlvr.core.proxies import LMHeadGradients, ProxyConfig, row_proxy, topk_hidden_proxy
from delta_rlvr.models.logprobs import TokenLogProbs, backbone_and_head
from delta_rlvr.models.sketch import CountSketch, full_gradient_sketch

#: Proxies whose vectors come from the old-policy pass alone, so the trainer can also
#: recompute them micro-batch by micro-batch (hidden_states = "streamed").
STREAMABLE = ("row", "topk_hidden")


def make_sketch(proxy: ProxyConfig, model: torch.nn.Module) -> CountSketch | None:
    """The fixed count-sketch of `full_sketch` over the model's trainable parameters (else None).
    Build it once per model: its buckets and signs are the sketch's identity."""
    if proxy.name != "full_sketch":
        return None
    params = [p for p in model.parameters() if p.requires_grad]
    return CountSketch(params, proxy.sketch_dim, proxy.sketch_seed)


def token_vectors(
    proxy: ProxyConfig,
    model: torch.nn.Module,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    out: TokenLogProbs,
    *,
    temperature: float,
    sketch: CountSketch | None = None,
    advantages: Tensor | None = None,
) -> Tensor | LMHeadGradients:
    """DelTA's per-token vectors for one micro-batch under `proxy`.

    Args:
        out: the old-policy pass over the same rows, `completion_logprobs(..., return_hidden=True)`
            at the rollout `temperature`.
        sketch: `make_sketch(proxy, model)`, required for full_sketch.
        advantages: (B,) the rows' advantages, optional. With them, full_sketch skips the
            backward passes of rows with A = 0: their tokens are on neither side, so
            `delta_coefficients` never reads their vectors (left zero) - the same coefficients.

    Returns:
        A dense (B, T, D) float32 tensor (zeros at invalid tokens) or, for lm_head, an
        `LMHeadGradients`; either goes straight into `delta_coefficients`.
    """
    mask = completion_mask.bool()
    if proxy.name == "full_sketch":
        if sketch is None:
            raise ValueError("token_vectors: proxy full_sketch needs sketch=make_sketch(proxy, model)")
        needed = completion_mask.bool()
        if advantages is not None:
            needed = needed & (advantages != 0).unsqueeze(-1)
        return full_gradient_sketch(model, prompt_ids, prompt_mask, completion_ids, needed,
                                    sketch=sketch, temperature=temperature).vectors
    if out.hidden is None:
        raise ValueError("token_vectors: `out` has no hidden states; score with completion_logprobs(..., return_hidden=True)")
    _, head = backbone_and_head(model)
    return head_proxy_vectors(proxy, out.hidden, out.logp, completion_ids, mask, head, temperature=temperature)


def head_proxy_vectors(
    proxy: ProxyConfig, hidden: Tensor, logp: Tensor, ids: Tensor, mask: Tensor, head: torch.nn.Module, *, temperature: float
) -> Tensor | LMHeadGradients:
    """The proxies that need only the final hidden states and the LM head (row, topk_hidden,
    lm_head): what an adapter has after the engine's own old-log-prob pass.

    hidden (B, T, H) head inputs, logp (B, T) old log-probs at the rollout temperature, ids (B, T)
    sampled tokens, mask (B, T) bool, head the LM head (a Linear: weight (V, H), optional bias).
    """
    if proxy.name == "row":
        return row_proxy(hidden, logp, mask)
    if proxy.name == "full_sketch":
        raise ValueError(
            "the full_sketch proxy needs one backward pass per token through the whole model; it is "
            "available in `delta-rlvr train` and `delta-rlvr audit-proxy` (small models), not here"
        )
    weight, bias = head.weight, getattr(head, "bias", None)
    if proxy.name == "topk_hidden":
        return topk_hidden_proxy(hidden, ids, weight, mask, k=proxy.topk, temperature=temperature, head_bias=bias)
    return LMHeadGradients(hidden, ids, weight, mask, temperature=temperature, head_bias=bias)


def concat_vectors(parts: list[Tensor | LMHeadGradients]) -> Tensor | LMHeadGradients:
    """Join micro-batches' token vectors along the batch axis."""
    if isinstance(parts[0], LMHeadGradients):
        return LMHeadGradients.concat(parts)
    return torch.cat(parts)
