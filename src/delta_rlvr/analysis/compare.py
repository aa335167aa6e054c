"""`delta-rlvr compare`: methods x seeds on one config, trained, evaluated, tested, plotted.

Layout: `<output_dir>/<label>/seed-<s>/` is an ordinary trainer run folder (metrics.jsonl,
checkpoints/), with the final checkpoint's evaluation in its `eval/` subfolder; the summary
goes to `<output_dir>/compare.{json,md}`, `curves.png` and `coefficients.png`.
Resumable at every level: a run whose newest checkpoint is its last step is not trained again,
an interrupted one continues with the trainer's resume, and the evaluation skips problems its
dump already holds. A run folder trained with a different configuration is an error, never
silently mixed in.
Several `compare` processes may share one output folder (for example a long ablation study
that reuses a DAPO-vs-DelTA study's runs as its baselines): each run is trained and evaluated
under an exclusive lock on `<run>/.lock`, so a second process waits and then finds it done;
`--name` keeps their summaries apart.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from delta_rlvr.analysis.plots import CURVES, dynamics, plot_coefficients, plot_comparison_curves
from delta_rlvr.errors import ConfigError
from delta_rlvr.evaluation.backends import SamplingSettings
from delta_rlvr.evaluation.benchmarks import task_benchmark
from delta_rlvr.evaluation.models import resolve_model
from delta_rlvr.evaluation.report import EvalReport, read_report
from delta_rlvr.evaluation.runner import EvalConfig, evaluate
from delta_rlvr.stats.estimators import mean
from delta_rlvr.stats.mann_whitney import MannWhitneyResult, mann_whitney_greater
from delta_rlvr.train import Trainer
from delta_rlvr.train.checkpoint import STEP_DIR, latest_checkpoint
from delta_rlvr.train.config import TrainConfig, load_config
from delta_rlvr.train.run_folder import hold_lock as run_lock  # compare waits for a held run instead of refusing
from delta_rlvr.train.tasks import build_task


@dataclass(frozen=True)
class MethodSpec:
    """A labelled set of config overrides; "dapo" alone means algorithm.method=dapo."""

    label: str
    overrides: tuple[str, ...]


def parse_method(text: str) -> MethodSpec:
    """"NAME" (a trainer method) or "LABEL:key=value,key=value" (any --set variant)."""
    label, sep, rest = text.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", label):
        raise ConfigError(f"method label {label!r} must be letters, digits, '_', '-' or '.' (it names a folder)")
    if not sep:
        return MethodSpec(label, (f"algorithm.method={label}",))
    # Split on commas that start a new key=value (so list values like [0.9,0.99] survive).
    items = [s for s in re.split(r",(?=[A-Za-z_][\w.]*=)", rest) if s]
    if not items or not all("=" in s for s in items):
        raise ConfigError(f"method {text!r}: expected LABEL:key=value[,key=value...], e.g. top50:algorithm.method=token_select")
    return MethodSpec(label, tuple(items))


@dataclass(frozen=True)
class CompareConfig:
    methods: tuple[MethodSpec, ...]
    """The methods compared, each a label and its --set overrides (`parse_method`)."""
    seeds: tuple[int, ...] = (0, 1)
    """Run seeds; every method trains once per seed."""
    config: str | None = None
    """YAML preset shared by every run (default: the embedded default)."""
    overrides: tuple[str, ...] = ()
    """--set overrides shared by every run (applied before each method's own)."""
    baseline: str | None = None
    """Label of the method the others are tested against (default: the first)."""
    output_dir: str = "runs/compare"
    """Run folders (<label>/seed-<s>) and the summary files."""
    eval_problems: int | None = None
    """Held-out problems per evaluation: sets task.eval_size for training too, so the held-out
    problems stay out of training. None: the config's own eval_size."""
    sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(k=16, temperature=1.0, top_p=0.7, max_new_tokens=40))
    """Held-out sampling (k, temperature, top_p, max_new_tokens); the paper's avg@16, T 1.0, top-p 0.7."""
    progress: bool = True
    """Progress bars on stderr."""
    name: str = "compare"
    """Stem of the summary files (several studies can share one output folder)."""
    partial: bool = False
    """Summarise the runs already trained and evaluated, train nothing (a long study's progress)."""
    order: str = "method"
    """Training order: "method" (every seed of one method, then the next method) or "seed" (every
    method at one seed, then the next seed), so that a study stopped half-way has matched pairs."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            raise ConfigError(f"name {self.name!r} must be letters, digits, '_', '-' or '.' (it names the summary files)")
        labels = [m.label for m in self.methods]
        if len(self.methods) < 1:
            raise ConfigError("compare needs at least one --method")
        if self.order not in ("method", "seed"):
            raise ConfigError(f"order = {self.order!r}: use 'method' or 'seed'")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"method labels {labels} repeat; give each variant its own LABEL:...")
        if self.baseline is not None and self.baseline not in labels:
            raise ConfigError(f"baseline = {self.baseline!r} is not one of the methods {labels}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds = {list(self.seeds)} is invalid: give distinct seeds")
        if self.eval_problems is not None and self.eval_problems < 1:
            raise ConfigError(f"eval_problems = {self.eval_problems} is invalid: use >= 1")

    @property
    def baseline_label(self) -> str:
        return self.baseline or self.methods[0].label

    def summary_path(self, suffix: str) -> Path:
        """compare.md / curves.png for the default name, <name>.md / <name>-curves.png otherwise."""
        if suffix in (".md", ".json"):
            return Path(self.output_dir) / f"{self.name}{suffix}"
        return Path(self.output_dir) / (suffix if self.name == "compare" else f"{self.name}-{suffix}")


def run_config(cfg: CompareConfig, method: MethodSpec, seed: int) -> TrainConfig:
    extra = [f"task.eval_size={cfg.eval_problems}"] if cfg.eval_problems else []
    return load_config(cfg.config, [*cfg.overrides, *method.overrides, *extra,
                                    f"run.output_dir={run_dir(cfg, method, seed)}", f"run.seed={seed}"])


def run_dir(cfg: CompareConfig, method: MethodSpec, seed: int) -> Path:
    return Path(cfg.output_dir) / method.label / f"seed-{seed}"


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _check_same_config(folder: Path, config: TrainConfig) -> None:
    saved = folder / "config.yaml"
    if not saved.is_file():
        return
    old = _flat(load_config(saved).to_dict())
    new = _flat(config.to_dict())
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and k not in ("run.progress", "run.threads")]
    if diff:
        k = diff[0]
        raise ConfigError(
            f"{folder} was trained with {k} = {old.get(k)!r}, this comparison asks for {new.get(k)!r}; "
            "remove that folder or pick another --output-dir"
        )


def train_run(config: TrainConfig) -> Path:
    """Train one run to its last step (skip when done, resume when interrupted); its final checkpoint."""

    folder = Path(config.run.output_dir)
    _check_same_config(folder, config)
    newest = latest_checkpoint(folder / "checkpoints")
    step = int(STEP_DIR.match(newest.name).group(1)) if newest else -1
    if step == config.run.max_steps:
        print(f"{folder}: finished (step {step}), not trained again")
        return newest
    if newest is None and (folder / "metrics.jsonl").exists():
        (folder / "metrics.jsonl").unlink()  # a start that died before its first checkpoint
        shutil.rmtree(folder / "tensorboard", ignore_errors=True)
    print(f"{folder}: {'resuming at step ' + str(step) if newest else 'training'} to step {config.run.max_steps}")
    trainer = Trainer(config, resume=newest is not None)
    trainer.train()
    if trainer.interrupted is not None:  # Ctrl-C / SIGTERM: the run checkpointed; stop the study, evaluate nothing
        print(f"{folder}: stopped at step {trainer.step} (checkpoint written); rerun the same compare command to "
              "continue the study", flush=True)
        raise KeyboardInterrupt
    return latest_checkpoint(folder / "checkpoints")


@dataclass(frozen=True)
class MethodSummary:
    label: str
    seeds: tuple[int, ...]
    scores: tuple[float, ...]
    """avg@k of each seed's final checkpoint on the held-out set."""
    pass_at_k: tuple[float, ...]
    eval_se: tuple[float, ...]
    """Each evaluation's own standard error (sampling noise on the fixed problems)."""
    mean: float
    std: float
    """Across seeds, ddof = 1 (NaN with one seed)."""
    mean_eval_se: float
    """Evaluation noise in `mean`: sqrt(sum se_i^2) / n."""
    test: MannWhitneyResult | None
    """One-sided Mann-Whitney U of this method's scores > the baseline's (None for the baseline)."""


def summarise(label: str, seeds: list[int], reports: list[EvalReport], baseline_scores: list[float] | None) -> MethodSummary:
    scores = [r.average.avg for r in reports]
    k = str(reports[0].k)
    se = [r.average.se_sampling for r in reports]
    m = mean(scores)
    std = math.sqrt(math.fsum((x - m) ** 2 for x in scores) / (len(scores) - 1)) if len(scores) > 1 else float("nan")
    test = mann_whitney_greater(scores, baseline_scores) if baseline_scores is not None else None
    return MethodSummary(label, tuple(seeds), tuple(scores), tuple(r.average.pass_at[k] for r in reports), tuple(se),
                         m, std, math.sqrt(math.fsum(s * s for s in se)) / len(se), test)


def _train_and_evaluate(cfg: CompareConfig, method: MethodSpec, seed: int, build_task) -> EvalReport:
    config = run_config(cfg, method, seed)
    final = train_run(config)
    source = resolve_model(str(final))
    bench = task_benchmark(build_task(config.task))
    ev = EvalConfig(model=str(final), output_dir=str(run_dir(cfg, method, seed) / "eval"), sampling=cfg.sampling,
                    seed=seed, template=config.task.template, device=config.model.device, progress=cfg.progress)
    return evaluate(ev, [bench], source)


def _finished_results(cfg: CompareConfig) -> dict[tuple[str, int], EvalReport]:
    """Reports of the runs whose training reached max_steps and whose evaluation is complete."""

    out = {}
    for method, seed in run_order(cfg):
        folder = run_dir(cfg, method, seed)
        newest = latest_checkpoint(folder / "checkpoints")
        done = newest is not None and int(STEP_DIR.match(newest.name).group(1)) == run_config(cfg, method, seed).run.max_steps
        if done and (folder / "eval" / "report.json").is_file():
            report = read_report(folder / "eval")
            if report.k == cfg.sampling.k:
                out[method.label, seed] = report
    return out


def run_order(cfg: CompareConfig) -> list[tuple[MethodSpec, int]]:
    """The (method, seed) pairs in the order they are trained (see `CompareConfig.order`)."""
    if cfg.order == "seed":
        return [(method, seed) for seed in cfg.seeds for method in cfg.methods]
    return [(method, seed) for method in cfg.methods for seed in cfg.seeds]


def run_compare(cfg: CompareConfig) -> list[MethodSummary]:
    """Train and evaluate every (method, seed), then write the summary and plots."""

    for method in cfg.methods:  # every method's config is valid before anything trains
        for seed in cfg.seeds:
            run_config(cfg, method, seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, int], EvalReport] = {}
    if cfg.partial:
        results = _finished_results(cfg)
    else:
        # First every run no other process holds, then wait for the rest: two `compare`
        # processes on one study split its runs between them.
        pending = run_order(cfg)
        for wait in (False, True):
            deferred = []
            for method, seed in pending:
                with run_lock(run_dir(cfg, method, seed), wait=wait) as held:
                    if held:
                        results[method.label, seed] = _train_and_evaluate(cfg, method, seed, build_task)
                    else:
                        deferred.append((method, seed))
            pending = deferred
    seeds = {m.label: [s for s in cfg.seeds if (m.label, s) in results] for m in cfg.methods}
    if not seeds[cfg.baseline_label]:
        raise ConfigError(f"no finished and evaluated run of the baseline {cfg.baseline_label!r} in {cfg.output_dir} yet")
    methods = [m for m in cfg.methods if seeds[m.label]]
    reports = {m.label: [results[m.label, s] for s in seeds[m.label]] for m in methods}
    folders = {m.label: [run_dir(cfg, m, s) for s in seeds[m.label]] for m in methods}
    base = [r.average.avg for r in reports[cfg.baseline_label]]
    summaries = [summarise(m.label, seeds[m.label], reports[m.label], None if m.label == cfg.baseline_label else base)
                 for m in methods]
    plot_comparison_curves(folders, cfg.summary_path("curves.png"))
    plot_coefficients(folders, cfg.summary_path("coefficients.png"))
    write_summary(cfg, summaries, dynamics(folders))
    return summaries


def _dynamics_lines(dyn: dict | None) -> list[str]:
    """Markdown: each training metric averaged over spans of steps, mean +- std over seeds."""
    if not dyn or not dyn["spans"]:
        return []

    spans = [f"steps {a}-{b}" for a, b in dyn["spans"]]
    lines = ["", "Training dynamics: each metric averaged over a span of steps per seed, then mean +- std over seeds.", "",
             "| metric | method | " + " | ".join(spans) + " |", "|---|---|" + "---|" * len(spans)]
    for key, title in CURVES:
        for label, metrics in dyn["methods"].items():
            if key in metrics:
                cells = " | ".join(f"{m:.3f} +- {s:.3f}" for m, s in metrics[key])
                lines.append(f"| {title} | {label} | {cells} |")
    return lines


def _num(x: float, scale: float = 100.0, digits: int = 2) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{scale * x:.{digits}f}"


def write_summary(cfg: CompareConfig, summaries: list[MethodSummary], dyn: dict | None = None) -> None:
    k = cfg.sampling.k
    data = {
        "baseline": cfg.baseline_label, "partial": cfg.partial, "seeds": list(cfg.seeds), "config": cfg.config,
        "overrides": list(cfg.overrides),
        "methods": {m.label: list(m.overrides) for m in cfg.methods}, "sampling": asdict(cfg.sampling),
        "results": [{**{k2: v for k2, v in asdict(s).items() if k2 != "test"},
                     "test": None if s.test is None else asdict(s.test)} for s in summaries],
        "dynamics": dyn,
    }
    cfg.summary_path(".json").write_text(json.dumps(data, indent=2, default=lambda x: None))
    lines = [
        f"# Comparison: {', '.join(s.label for s in summaries)} "
        f"({'partial: the runs finished so far' if cfg.partial else f'{len(cfg.seeds)} seeds each'})", "",
        f"Held-out avg@{k} of each run's final checkpoint, in percent; k = {k}, temperature "
        f"{cfg.sampling.temperature}, top-p {cfg.sampling.top_p}. `eval SE` is the evaluation's own standard error "
        "(sampling noise on the fixed problem set; for the mean: over seeds, combined). `p` is the one-sided "
        f"Mann-Whitney U test of 'this method > {cfg.baseline_label}' over the per-seed scores.", "",
        f"| method | mean avg@{k} | std (seeds) | eval SE of mean | pass@{k} mean | U | p | per seed (eval SE) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        per_seed = ", ".join(f"{seed}: {_num(x)} ({_num(e)})" for seed, x, e in zip(s.seeds, s.scores, s.eval_se))
        u = "baseline" if s.test is None else f"{s.test.u:g}"
        p = "" if s.test is None else f"{s.test.p_value:.4f} ({s.test.method})"
        lines.append(f"| {s.label} | {_num(s.mean)} | {_num(s.std)} | {_num(s.mean_eval_se)} | {_num(mean(list(s.pass_at_k)))} "
                     f"| {u} | {p} | {per_seed} |")
    lines += _dynamics_lines(dyn)
    lines += ["", "Curves (mean over seeds, band = +-1 std, moving average over ~4 % of the steps): "
              f"`{cfg.summary_path('curves.png').name}`. DelTA coefficient "
              f"quantiles per step: `{cfg.summary_path('coefficients.png').name}`.", ""]
    cfg.summary_path(".md").write_text("\n".join(lines))
