"""Every figure and page the project draws, in one place.

- A run folder (written by `delta-rlvr train` when it stops): `plot_run_curves` (curves.png:
  reward, accuracy, held-out avg@k and pass@k per step) and `token_page` (tokens.html: the last
  rollout batch, each token shaded by its DelTA coefficient).
- A comparison (`delta-rlvr compare`): `plot_comparison_curves` (training curves, mean over
  seeds with a +-1 std band) and `plot_coefficients` (the coefficient quantiles logged each
  step, delta/coef_q05 ... q95); `dynamics` gives the same curves as numbers.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from delta_rlvr.train.metrics import read_metrics

CURVES = (("reward_mean", "reward"), ("accuracy", "training accuracy"), ("response_length", "response length (tokens)"),
          ("entropy", "entropy (nats/token)"))
COEF_COLUMNS = 4  # coefficient panels per row
QUANTILES = ("delta/coef_q05", "delta/coef_q25", "delta/coef_q50", "delta/coef_q75", "delta/coef_q95")


def _series(folders: list[Path], key: str) -> tuple[list[int], list[float], list[float]]:
    """Steps present in every seed, with the mean and (population) std over seeds at each."""
    per_seed = []
    for folder in folders:
        rows = read_metrics(folder / "metrics.jsonl") if (folder / "metrics.jsonl").is_file() else []
        per_seed.append({r["step"]: r[key] for r in rows if r.get(key) is not None})
    steps = sorted(set.intersection(*(set(s) for s in per_seed))) if per_seed else []
    means, stds = [], []
    for step in steps:
        xs = [s[step] for s in per_seed]
        m = sum(xs) / len(xs)
        means.append(m)
        stds.append(math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs)))
    return steps, means, stds


def dynamics(folders: dict[str, list[Path]], windows: int = 4) -> dict:
    """Training dynamics as numbers: each CURVES metric averaged over `windows` equal spans of
    the training steps, per seed, then mean and population std over seeds.
    {"spans": [[first, last], ...], "methods": {label: {key: [[mean, std], ...]}}}."""
    out: dict = {"spans": [], "methods": {}}
    for label, runs in folders.items():
        out["methods"][label] = {}
        for key, _ in CURVES:
            per_seed = []
            for folder in runs:
                rows = read_metrics(folder / "metrics.jsonl") if (folder / "metrics.jsonl").is_file() else []
                per_seed.append({r["step"]: r[key] for r in rows if r.get(key) is not None})
            steps = sorted(set.intersection(*(set(x) for x in per_seed))) if per_seed else []
            n = min(windows, len(steps))  # fewer spans for runs shorter than `windows` steps
            if n == 0:
                continue
            size = len(steps) / n
            spans = [steps[round(i * size): round((i + 1) * size)] for i in range(n)]
            out["spans"] = [[span[0], span[-1]] for span in spans]
            cells = []
            for span in spans:
                xs = [sum(seed[t] for t in span) / len(span) for seed in per_seed]
                m = sum(xs) / len(xs)
                cells.append([m, math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))])
            out["methods"][label][key] = cells
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def moving_average(xs: list[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (fewer at the start); window 1 is the identity."""
    out, total = [], 0.0
    for i, x in enumerate(xs):
        total += x
        if i >= window:
            total -= xs[i - window]
        out.append(total / min(i + 1, window))
    return out


def smoothing_window(n_steps: int) -> int:
    """About 4 % of the run (10 steps for 250): per-step RL metrics are too noisy to compare by eye."""
    return max(1, round(n_steps / 25))


def _colors(n: int) -> list:
    """Distinct colours for n lines: tab10 up to 10, tab20 up to 20, then a continuous map."""
    plt = _pyplot()
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("turbo")(i / (n - 1)) for i in range(n)]


def plot_comparison_curves(folders: dict[str, list[Path]], path: Path) -> Path:
    """One panel per CURVES metric: per method the mean over seeds with a +-1 std band, both as a
    trailing moving average (window in the titles) so that methods can be told apart."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.6))
    colors = dict(zip(folders, _colors(len(folders))))
    for ax, (key, title) in zip(axes, CURVES):
        window = 1
        for label, runs in folders.items():
            steps, m, s = _series(runs, key)
            if steps:
                window = smoothing_window(len(steps))
                m, s = moving_average(m, window), moving_average(s, window)
                ax.plot(steps, m, lw=1.2, label=label, color=colors[label])
                ax.fill_between(steps, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color=colors[label], alpha=0.15)
        ax.set_title(title if window == 1 else f"{title}, mean of {window} steps")
        ax.set_xlabel("step")
    handles, labels = axes[0].get_legend_handles_labels()
    if len(labels) > 4:  # a long list would cover the curves: put it beside the panels
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    else:
        axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_coefficients(folders: dict[str, list[Path]], path: Path) -> Path:
    """One panel per method that logs coefficients, COEF_COLUMNS to a row: median, 25-75 % and
    5-95 % bands per step (each quantile averaged over seeds)."""
    plt = _pyplot()
    with_coef = {label: runs for label, runs in folders.items() if _series(runs, QUANTILES[2])[0]}
    n = max(1, len(with_coef))
    cols = min(n, COEF_COLUMNS)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.6 * rows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[len(with_coef):]:
        ax.axis("off")
    if not with_coef:
        axes[0].text(0.5, 0.5, "no method logged DelTA coefficients", ha="center", va="center")
    for ax, (label, runs) in zip(axes, with_coef.items()):
        q = {key: _series(runs, key) for key in QUANTILES}
        steps = q[QUANTILES[2]][0]
        ax.fill_between(steps, q[QUANTILES[0]][1], q[QUANTILES[4]][1], alpha=0.2, label="5-95 %")
        ax.fill_between(steps, q[QUANTILES[1]][1], q[QUANTILES[3]][1], alpha=0.4, label="25-75 %")
        ax.plot(steps, q[QUANTILES[2]][1], lw=1.2, label="median")
        ax.axhline(1.0, color="grey", lw=0.6, ls="--")
        ax.set_title(f"{label}: coefficients (signed tokens)")
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# A run folder


def is_avg_at_k(key: str) -> bool:
    """``eval/avg@<k>`` itself, not its standard error ``eval/avg@<k>_se``."""
    return key.startswith("eval/avg@") and key[len("eval/avg@"):].isdigit()


def plot_run_curves(output_dir: Path) -> Path:
    """A run folder's curves.png: reward and accuracy per step, held-out avg@k where evaluated."""
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


def token_page(output_dir: Path, view, tokenizer, *, step: int, max_responses: int = 24) -> Path:
    """tokens.html: the responses of one rollout batch (a train.rollout.TokenView), each token
    shaded by its coefficient."""
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
