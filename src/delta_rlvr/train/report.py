"""Run artefacts for people: a PNG of the training curves and an HTML page of sampled
responses with every token shaded by its DelTA coefficient."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from delta_rlvr.train.metrics import read_metrics


@dataclass(frozen=True)
class TokenView:
    """One rollout batch as the token pages show it (tokens.html, `delta-rlvr inspect`), on CPU."""

    completion_ids: Tensor
    """(B, T) sampled token ids."""
    mask: Tensor
    """(B, T) bool, valid completion tokens."""
    rewards: Tensor
    """(B,) rewards."""
    advantages: Tensor
    """(B,) group advantages."""
    coef: Tensor | None
    """(B, T) DelTA coefficients; None for a method without them."""
    prompts: tuple[str, ...]
    """(B,) the prompt of each row."""

    @classmethod
    def of_step(cls, rollout, advantages: Tensor, coef: Tensor | None) -> TokenView:
        """The view of a training step's rollout (train/rollout.py's Rollout) and its credit."""
        batch = rollout.batch
        return cls(batch.completion_ids.cpu(), batch.completion_mask.cpu(), rollout.rewards.cpu(), advantages.cpu(),
                   None if coef is None else coef.cpu(), tuple(rollout.prompts))

    @classmethod
    def concat(cls, views: list[TokenView], pad_id: int) -> TokenView:
        """Several views as one, right-padded to the widest."""
        width = max(v.completion_ids.shape[1] for v in views)

        def pad(x, value):
            return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

        coef = None if any(v.coef is None for v in views) else torch.cat([pad(v.coef, 0.0) for v in views])
        return cls(torch.cat([pad(v.completion_ids, pad_id) for v in views]), torch.cat([pad(v.mask, False) for v in views]),
                   torch.cat([v.rewards for v in views]), torch.cat([v.advantages for v in views]), coef,
                   tuple(p for v in views for p in v.prompts))


def is_avg_at_k(key: str) -> bool:
    """``eval/avg@<k>`` itself, not its standard error ``eval/avg@<k>_se``."""
    return key.startswith("eval/avg@") and key[len("eval/avg@"):].isdigit()


def plot_curves(output_dir: Path) -> Path:
    """curves.png: reward and accuracy per step, held-out avg@k where evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(output_dir / "metrics.jsonl")
    train = [r for r in rows if r.get("reward_mean") is not None]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in train]
    ax[0].plot(steps, [r["reward_mean"] for r in train], label="reward mean", lw=1)
    ax[0].plot(steps, [r.get("accuracy") for r in train], label="train accuracy", lw=1, alpha=0.7)
    ax[0].set_xlabel("step")
    ax[0].set_title("training batch")
    ax[0].legend()
    evals = [(r["step"], k, v) for r in rows for k, v in r.items() if is_avg_at_k(k) and v is not None]
    if evals:
        key = evals[0][1]
        ax[1].plot([s for s, _, _ in evals], [v for _, _, v in evals], "o-", label=key)
        passk = [(r["step"], r[key.replace("avg", "pass")]) for r in rows if r.get(key.replace("avg", "pass")) is not None]
        ax[1].plot([s for s, _ in passk], [v for _, v in passk], "s--", label=key.replace("avg", "pass"))
        ax[1].legend()
    ax[1].set_xlabel("step")
    ax[1].set_title("held-out evaluation")
    fig.tight_layout()
    path = output_dir / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def coef_shade(coef: float, lo: float = 0.8, hi: float = 1.2) -> str:
    """Red above 1 (the token gets more credit), blue below, white at 1."""
    x = max(-1.0, min(1.0, (coef - 1.0) / max(hi - 1.0, 1.0 - lo, 1e-6)))
    if x >= 0:
        return f"rgba(220,50,47,{0.85 * x:.3f})"
    return f"rgba(38,139,210,{-0.85 * x:.3f})"


def token_page(output_dir: Path, view: TokenView, tokenizer, *, step: int, max_responses: int = 24) -> Path:
    """tokens.html: responses of one rollout batch, each token shaded by its coefficient."""
    coef, ids, mask = view.coef, view.completion_ids, view.mask
    parts = [
        "<!doctype html><meta charset='utf-8'><title>DelTA coefficients</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        ".r{font-family:monospace;white-space:pre-wrap;margin:.4em 0;padding:.3em;border-left:4px solid #ccc}"
        ".pos{border-color:#2a2}.neg{border-color:#c22}.zero{border-color:#bbb}"
        "span.t{border-radius:2px}</style>",
        f"<h1>Token coefficients, step {step}</h1>",
        "<p>Each token is shaded by its DelTA coefficient: <span style='background:rgba(220,50,47,.85)'>red</span> "
        "above 1 (more credit), <span style='background:rgba(38,139,210,.85)'>blue</span> below 1. Left bar: "
        "green = positive advantage, red = negative, grey = zero (the group's rewards were all equal). "
        "Hover a token for its coefficient.</p>",
    ]
    if coef is None:
        parts.append("<p>This method computes no coefficients.</p>")
    order = sorted(range(ids.shape[0]), key=lambda i: (view.advantages[i] == 0, i))[:max_responses]
    for i in order:
        a = float(view.advantages[i])
        cls = "pos" if a > 0 else "neg" if a < 0 else "zero"
        toks = []
        for t in range(int(mask[i].sum())):
            text = html.escape(tokenizer.decode([int(ids[i, t])]))
            c = float(coef[i, t]) if coef is not None else 1.0
            toks.append(f"<span class='t' title='{c:.3f}' style='background:{coef_shade(c)}'>{text}</span>")
        prompt = html.escape(view.prompts[i])
        parts.append(f"<div class='r {cls}'><b>{prompt}</b> reward {float(view.rewards[i]):.2f}, A = {a:+.2f}<br>{''.join(toks)}</div>")
    path = output_dir / "tokens.html"
    path.write_text("\n".join(parts))
    return path
