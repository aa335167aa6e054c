"""`delta-rlvr eval`: a model x benchmarks x k samples -> dump, report.json, report.md.

Pipeline: resolve the model and benchmarks; check the output folder's settings match (a dump
must not mix sampling settings); drop incomplete problems from the dump; sample the remaining
problems batch by batch (prompt batches fixed by problem position, one seed per position);
score each batch with the benchmark's verifier and append it to the dump; recompute the
report from the whole dump. The model is only loaded when there is something left to sample.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from delta_rlvr.errors import ConfigError
from delta_rlvr.evaluation.backends import HFSampler, SamplingSettings, VLLMSampler, pick_backend
from delta_rlvr.evaluation.benchmarks import Benchmark, DataOptions, expand_specs, resolve_benchmark
from delta_rlvr.evaluation.dump import SampleRow, append_rows, compact_dump
from delta_rlvr.evaluation.models import ModelSource, resolve_model
from delta_rlvr.evaluation.report import EvalReport, build_report, write_report
from delta_rlvr.train.tasks import PromptEncoder

SETTINGS_FILE = "eval_settings.json"
TEMPLATES = ("auto", "raw", "plain", "chat", "few_shot")


@dataclass(frozen=True)
class EvalConfig:
    model: str = "embedded:arith-tiny"
    """Preset name, Hugging Face folder, trainer checkpoint, or run folder (newest checkpoint)."""
    benchmarks: tuple[str, ...] = ("arithmetic",)
    """Benchmark specs, see `delta_rlvr.evaluation.benchmarks`."""
    output_dir: str = "runs/eval"
    """Where samples.jsonl, eval_settings.json, report.json and report.md go."""
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    """k, temperature, top_p, max_new_tokens."""
    seed: int = 0
    """Run seed; problem i of a benchmark is sampled with a seed fixed by (seed, benchmark, i)."""
    data_dir: str | None = None
    """Folder with <name>/test.jsonl for the built-in benchmarks (else the hub)."""
    limit: int | None = None
    """Evaluate only the first N problems of each benchmark."""
    template: str = "auto"
    """"auto": the checkpoint's training template, else "raw" for the embedded model, "chat" when
    the tokenizer has a chat template, else "plain"."""
    backend: str = "auto"
    """"auto" (vLLM when installed with CUDA, else transformers), "hf" or "vllm"."""
    batch_problems: int = 8
    """Problems per generate call (rows = batch_problems x k)."""
    device: str = "auto"
    """"auto": cuda when available, else cpu."""
    progress: bool = True
    """Progress bars on stderr."""
    data: DataOptions = field(default_factory=DataOptions)
    """Field names, answer format and bad-row policy for benchmark files."""

    def __post_init__(self) -> None:
        if not self.benchmarks:
            raise ConfigError("no benchmark given; pass at least one, e.g. --benchmarks arithmetic gsm8k")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit = {self.limit} is invalid: use >= 1 (or leave it out for every problem)")
        if self.template not in TEMPLATES:
            raise ConfigError(f"template = {self.template!r} is invalid: choose one of {list(TEMPLATES)}")
        if self.batch_problems < 1:
            raise ConfigError(f"batch_problems = {self.batch_problems} is invalid: use >= 1")


def problem_seed(seed: int, benchmark: str, position: int) -> int:
    """Sampling seed of problem `position` of `benchmark`; independent of what is already done."""
    return (seed * 1_000_003 + zlib.crc32(benchmark.encode()) * 7919 + position) % (2**61 - 1)


def _template(cfg: EvalConfig, source: ModelSource, tokenizer) -> str:
    if cfg.template != "auto":
        return cfg.template
    if source.run_config is not None:
        return source.run_config.task.template
    if source.is_embedded:
        return "raw"
    return "chat" if getattr(tokenizer, "chat_template", None) else "plain"


def _bench_template(cfg: EvalConfig, source: ModelSource, template: str, bench: Benchmark) -> str:
    """The template of one benchmark: `template`, except that a completion-style benchmark
    (HumanEval: the response continues the prompt's function) is fed as is ("raw") to a model
    that "auto" would give "plain" (no chat template, no training template): a base model
    completes code, and the code instruction after a function header would only get in its way.
    A chat model keeps "chat" (the instruction asks for one fenced block; `build_program` puts
    the prompt's imports in front of it), and --template or a checkpoint's template always win."""
    if bench.completion and cfg.template == "auto" and source.run_config is None and template == "plain":
        return "raw"
    return template


PAPER_MAX_NEW_TOKENS = 30_000
"""The DelTA paper's evaluation length (max 30000 tokens; its training responses: 20480)."""


def default_max_new_tokens(source: ModelSource, benchmarks: tuple[str, ...] | list[str] = ()) -> int:
    """The checkpoint's rollout length; 40 for the embedded model; the paper's 30000 when the
    paper's suite (`paper7`) is asked for; else 1024. `--max-new-tokens` overrides all of them
    (lower it on a CPU: `--max-new-tokens 2048`)."""
    if source.run_config is not None:
        return source.run_config.rollout.max_new_tokens
    if source.is_embedded:
        return 40
    return PAPER_MAX_NEW_TOKENS if "paper7" in benchmarks else 1024


def _check_settings(out: Path, settings: dict) -> None:
    """A dump holds samples of one setting; refuse to resume it with another."""
    path = out / SETTINGS_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        for key, value in settings.items():
            if key in old and old[key] != value:
                raise ConfigError(
                    f"{out} holds samples drawn with {key} = {old[key]!r}, not {value!r}; pass the same value to "
                    "resume it, or choose a new --output-dir"
                )
    else:
        old = {}
    path.write_text(json.dumps({**old, **settings}, indent=2))


def evaluate(cfg: EvalConfig, benchmarks: list[Benchmark] | None = None, source: ModelSource | None = None) -> EvalReport:
    """Run (or resume) an evaluation and write its dump and report; see the module docstring.

    benchmarks / source: already-built objects (compare passes its task's held-out set and a
    checkpoint); by default both are resolved from `cfg`.
    """
    from tqdm.auto import tqdm

    if benchmarks is None:  # files are read (and names checked) before the model is loaded
        benchmarks = [resolve_benchmark(spec, cfg.data_dir, cfg.data) for spec in expand_specs(cfg.benchmarks)]
    names = [b.name for b in benchmarks]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"two benchmarks are named {duplicate!r}; each needs its own name (the dump is keyed by it): "
                          "drop the repeat or name a file NAME=FILE")
    source = source or resolve_model(cfg.model)
    benchmarks = [b.limited(cfg.limit) for b in benchmarks]
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump = out / "samples.jsonl"
    sampling = cfg.sampling
    settings = {"model": str(source.folder or source.name), "seed": cfg.seed, **asdict(sampling)}
    _check_settings(out, settings)  # before the dump is touched: a k mismatch must not drop rows
    skipped = {b.name: b.rows_skipped for b in benchmarks if b.rows_skipped}
    done = compact_dump(dump, sampling.k)
    todo = [(b, [i for i, r in enumerate(b.records) if (b.name, r.id) not in done]) for b in benchmarks]
    remaining = sum(len(p) for _, p in todo)
    if remaining:
        model, tokenizer, device = source.load(cfg.device)
        template = _template(cfg, source, tokenizer)
        settings["template"] = template
        _check_settings(out, {"template": template})
        backend = pick_backend(cfg.backend)
        sampler = VLLMSampler(str(source.weights_dir()), cfg.seed) if backend == "vllm" else HFSampler(model, tokenizer, device)

        bar = tqdm(total=remaining, desc="eval", unit="problem", disable=not cfg.progress, dynamic_ncols=True)
        for bench, positions in todo:
            own = _bench_template(cfg, source, template, bench)
            if bench.completion:  # its own template is recorded: a resumed run must render it the same way
                _check_settings(out, {f"template:{bench.name}": own})
            encode = PromptEncoder(tokenizer, own, bench.answer_format)
            # Batches are fixed windows of problem positions, so an uninterrupted run and a
            # resumed one draw the same batches for every window they both sample in full.
            windows: dict[int, list[int]] = {}
            for i in positions:
                windows.setdefault(i // cfg.batch_problems, []).append(i)
            for window in windows.values():
                records = [bench.records[i] for i in window]
                seeds = [problem_seed(cfg.seed, bench.name, i) for i in window]
                samples = sampler.sample(encode(records), seeds, sampling)
                texts, cut = samples.texts, samples.cut
                flat = [t for group in texts for t in group]
                rows_records = [r for r in records for _ in range(sampling.k)]
                verdicts = bench.scorer(flat, rows_records)
                append_rows(dump, [
                    SampleRow(bench.name, rec.id, pos, j, texts[n][j], verdicts[n * sampling.k + j].extracted,
                              verdicts[n * sampling.k + j].reason, verdicts[n * sampling.k + j].correct, rec.gold,
                              bool(cut[n][j]))
                    for n, (pos, rec) in enumerate(zip(window, records)) for j in range(sampling.k)
                ])
                bar.update(len(window))
        bar.close()
        done = compact_dump(dump, sampling.k)
    else:
        settings["template"] = _saved(out).get("template")
    own_templates = {f"template:{b.name}" for b in benchmarks}
    settings.update({key: value for key, value in _saved(out).items() if key in own_templates})
    if skipped:
        settings["rows_skipped"] = skipped
    report = build_report(done, [(b.name, [r.id for r in b.records]) for b in benchmarks], sampling.k, settings)
    write_report(report, out)
    return report


def _saved(out: Path) -> dict:
    path = out / SETTINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
