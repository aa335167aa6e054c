"""`delta-rlvr inspect`: DelTA coefficients of freshly sampled responses, token by token.

The coefficients come from the trainer's own stages, with the run's settings: `collect_rollout`
(sample G responses per prompt, score them with the task's reward, overlong shaping included),
group advantages with the method's estimator, and `old_policy_pass` (micro-batches, autocast on
CUDA, the run's proxy, cached or streamed, the checkpoint's frozen gamma). A method without
coefficients (dapo, grpo, ...) is shown with the coefficients DelTA would give it. Coefficients
depend on the batch (the side centroids are batch means), so prompts are processed in batches
of the run's `prompts_per_step`, as in training; dynamic sampling is off (every prompt is shown).

Outputs: each response printed with ANSI background colours (or bracketed coefficients with
--no-color); `tokens.html` (analysis/plots.py's page, with the token cloud appended); the token
cloud - the mean coefficient per token type over signed tokens (A != 0) - as a table in the
terminal and in `token_cloud.json`.
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from delta_rlvr.analysis.plots import coef_shade, token_page
from delta_rlvr.core import group_advantages
from delta_rlvr.core.frozen import FrozenGamma
from delta_rlvr.data import PromptRecord
from delta_rlvr.errors import ConfigError
from delta_rlvr.evaluation.models import resolve_model
from delta_rlvr.train.checkpoint import load_state
from delta_rlvr.train.config import TaskConfig, TrainConfig
from delta_rlvr.train.old_policy import old_policy_pass
from delta_rlvr.train.rollout import PolicyRunner, TokenView, collect_rollout
from delta_rlvr.train.tasks import PromptEncoder, build_task
from delta_rlvr.verifiers import math_verdicts


@dataclass(frozen=True)
class InspectConfig:
    model: str = "embedded:arith-tiny"
    """Preset, Hugging Face folder, trainer checkpoint, or run folder (newest checkpoint)."""
    prompts: tuple[tuple[str, str], ...] = ()
    """(question, gold answer) pairs; empty: the task's held-out problems."""
    problems: int = 32
    """Held-out problems to use when no prompts are given."""
    samples: int | None = None
    """G responses per prompt (default: the run's rollout.samples_per_prompt)."""
    temperature: float | None = None
    """Sampling temperature (default: the run's rollout temperature)."""
    max_new_tokens: int | None = None
    """Longest response (default: the run's rollout.max_new_tokens)."""
    seed: int = 0
    """Sampling seed."""
    output_dir: str = "runs/inspect"
    """Where tokens.html and token_cloud.json go."""
    color: bool = True
    """ANSI colours in the terminal (else bracketed coefficients)."""
    show: int = 8
    """Responses printed to the terminal (the HTML page shows up to 24)."""
    min_count: int = 5
    """Token types seen fewer times are left out of the token cloud."""
    top: int = 10
    """Rows of the token cloud's highest and lowest lists."""
    device: str = "auto"
    """"auto": cuda when available, else cpu."""

    def __post_init__(self) -> None:
        if self.samples is not None and self.samples < 2:
            raise ConfigError(f"samples = {self.samples} is invalid: advantages need at least 2 responses per prompt")
        if self.problems < 1:
            raise ConfigError(f"problems = {self.problems} is invalid: use >= 1")


@dataclass(frozen=True)
class TokenStat:
    token: str
    count: int
    mean: float
    """Mean coefficient over the token type's signed occurrences."""
    mean_pos: float | None
    """Over occurrences in responses with A > 0 (None if none)."""
    mean_neg: float | None


def token_cloud(views: list, tokenizer, min_count: int) -> list[TokenStat]:
    """Mean coefficient per decoded token type over signed tokens, sorted high to low."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0.0, 0, 0.0, 0])
    for b in views:  # TokenView
        for i in range(b.completion_ids.shape[0]):
            a = float(b.advantages[i])
            if a == 0:
                continue
            for t in range(int(b.mask[i].sum())):
                s = sums[tokenizer.decode([int(b.completion_ids[i, t])])]
                c = float(b.coef[i, t])
                s[0] += c
                s[1] += 1
                s[2 if a > 0 else 4] += c
                s[3 if a > 0 else 5] += 1
    stats = [TokenStat(tok, s[1], s[0] / s[1], s[2] / s[3] if s[3] else None, s[4] / s[5] if s[5] else None)
             for tok, s in sums.items() if s[1] >= min_count]
    return sorted(stats, key=lambda x: (-x.mean, x.token))


def ansi_background(coef: float) -> str:
    """The token page's shade (analysis/plots.py; an rgba over white) as a 24-bit ANSI background."""

    r, g, b, a = (float(x) for x in re.findall(r"[\d.]+", coef_shade(coef)))
    mix = [round(a * c + (1 - a) * 255) for c in (r, g, b)]
    return f"\x1b[48;2;{mix[0]};{mix[1]};{mix[2]}m\x1b[38;2;0;0;0m"


def render_terminal(batch, row: int, tokenizer, color: bool) -> str:
    """One response: header line, then its tokens shaded (or annotated) by coefficient."""
    a, r = float(batch.advantages[row]), float(batch.rewards[row])
    head = f"{batch.prompts[row]}  reward {r:.2f}  A {a:+.2f}"
    parts = []
    for t in range(int(batch.mask[row].sum())):
        text = tokenizer.decode([int(batch.completion_ids[row, t])])
        c = float(batch.coef[row, t])
        parts.append(f"{ansi_background(c)}{text}\x1b[0m" if color else f"{text}[{c:.2f}]")
    return head + "\n  " + "".join(parts)


def cloud_table(stats: list[TokenStat], top: int) -> str:
    """Plain-text table of the `top` highest and lowest token types."""
    def rows(title: str, chosen: list[TokenStat]) -> list[str]:
        out = [title, f"  {'token':<12} {'count':>6} {'mean':>7} {'mean A>0':>9} {'mean A<0':>9}"]
        for s in chosen:
            fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
            out.append(f"  {s.token!r:<12} {s.count:>6} {s.mean:>7.4f} {fmt(s.mean_pos):>9} {fmt(s.mean_neg):>9}")
        return out

    top = min(top, (len(stats) + 1) // 2)  # the two lists never share a row
    low = list(reversed(stats[len(stats) - top:]))
    return "\n".join(rows("highest mean coefficient", stats[:top]) + rows("lowest mean coefficient", low))


def cloud_html(stats: list[TokenStat], top: int, min_count: int) -> str:
    def table(title: str, chosen: list[TokenStat]) -> str:
        body = "".join(
            f"<tr><td style='background:{coef_shade(s.mean)};font-family:monospace'>{html.escape(repr(s.token))}</td>"
            f"<td>{s.count}</td><td>{s.mean:.4f}</td><td>{'-' if s.mean_pos is None else f'{s.mean_pos:.4f}'}</td>"
            f"<td>{'-' if s.mean_neg is None else f'{s.mean_neg:.4f}'}</td></tr>" for s in chosen)
        return (f"<h3>{title}</h3><table border=1 cellpadding=3 style='border-collapse:collapse'>"
                f"<tr><th>token</th><th>count</th><th>mean</th><th>mean (A&gt;0)</th><th>mean (A&lt;0)</th></tr>{body}</table>")

    top = min(top, (len(stats) + 1) // 2)
    low = list(reversed(stats[len(stats) - top:]))
    return (f"<h2>Token cloud</h2><p>Mean coefficient per token type over signed tokens (responses with A != 0), "
            f"types seen at least {min_count} times.</p>" + table("Highest", stats[:top]) + table("Lowest", low))


def inspect_settings(train: TrainConfig, samples: int, temperature: float, max_new_tokens: int, prompts: int) -> TrainConfig:
    """The run's config as inspect uses it: its sampling overridden by the command line, a
    batch of `prompts` prompts, no dynamic sampling, and DelTA's coefficients for any method."""
    from dataclasses import replace

    rollout = replace(train.rollout, samples_per_prompt=samples, temperature=temperature, max_new_tokens=max_new_tokens,
                      prompts_per_step=prompts, dynamic_sampling=False)
    algorithm = train.algorithm if train.algorithm.spec.needs_coefficients else replace(train.algorithm, method="delta")
    return replace(train, rollout=rollout, algorithm=algorithm)


@torch.no_grad()
def coefficient_view(runner, tokenizer, records: list[PromptRecord], encode, score, train: TrainConfig, seed: int,
                     gamma=None):
    """One batch of `records` through the trainer's stages up to the update (see the module
    docstring): a TokenView of the responses, rewards, advantages and coefficients."""

    rollout = collect_rollout(runner, tokenizer, encode, lambda count: records, score, train.rollout, lambda rounds: seed)
    batch = rollout.batch
    adv = group_advantages(rollout.rewards, batch.group_index.cpu(), train.algorithm.spec.estimator).to(batch.completion_mask.device)
    gamma = gamma or FrozenGamma(False)
    old = old_policy_pass(runner, batch, adv, train.algorithm, gamma=gamma, seed=seed)
    return TokenView.of_step(rollout, adv, old.coef)


def _checkpoint_gamma(source, train: TrainConfig):
    """The frozen gamma a checkpoint carries (freeze_temperature runs), else an unfrozen one."""

    gamma = FrozenGamma(train.algorithm.coefficients.freeze_temperature)
    state_file = source.folder / "trainer_state.pt" if source.folder is not None else None
    if gamma.enabled and state_file is not None and state_file.is_file():
        state = load_state(source.folder)
        gamma.load(state.get("frozen_gamma", state.get("frozen_temperature")))
    return gamma


def run_inspect(cfg: InspectConfig) -> tuple[list[TokenStat], Path]:
    """Sample, compute coefficients, print, write tokens.html and token_cloud.json."""
    from dataclasses import replace

    source = resolve_model(cfg.model)
    train = source.run_config or TrainConfig()
    task_cfg: TaskConfig = train.task
    task = build_task(task_cfg)
    score = task.score
    if cfg.prompts:
        records = [PromptRecord(f"prompt-{i}", gold, "inspect", question=q) for i, (q, gold) in enumerate(cfg.prompts)]
        if task_cfg.kind == "reasoning_gym":  # a gym scorer needs its own metadata: check typed prompts as math
            verdicts = math_verdicts(task.answer_hint)
            score = lambda texts, rows: [float(v.correct) for v in verdicts(texts, rows)]  # noqa: E731
    else:
        records = list(task.eval_records()[: cfg.problems])
    model, tokenizer, device = source.load(cfg.device)
    encode = PromptEncoder(tokenizer, task_cfg.template, getattr(task, "answer_hint", "boxed"))
    per_batch = train.rollout.prompts_per_step
    settings = inspect_settings(train, cfg.samples or train.rollout.samples_per_prompt,
                                cfg.temperature or train.rollout.temperature,
                                cfg.max_new_tokens or train.rollout.max_new_tokens, per_batch)
    autocast = device.type == "cuda" and train.model.dtype in ("auto", "bfloat16")
    runner = PolicyRunner(model, settings.rollout.temperature, train.optim.micro_batch_size, autocast)
    gamma = _checkpoint_gamma(source, train)
    views = []
    for i in range(0, len(records), per_batch):
        chunk = records[i:i + per_batch]
        views.append(coefficient_view(runner, tokenizer, chunk, encode, score,
                                      replace(settings, rollout=replace(settings.rollout, prompts_per_step=len(chunk))),
                                      cfg.seed * 1_000_003 + i, gamma))
    merged = TokenView.concat(views, tokenizer.pad_token_id)
    order = sorted(range(len(merged.prompts)), key=lambda i: (merged.advantages[i] == 0, i))
    for i in order[: cfg.show]:
        print(render_terminal(merged, i, tokenizer, cfg.color))
    stats = token_cloud(views, tokenizer, cfg.min_count)
    print(cloud_table(stats, cfg.top))
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = token_page(out, merged, tokenizer, step=source.step)
    with open(page, "a") as fh:
        fh.write(cloud_html(stats, cfg.top, cfg.min_count))
    (out / "token_cloud.json").write_text(json.dumps([s.__dict__ for s in stats], indent=1))
    return stats, page
