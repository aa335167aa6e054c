"""What the trainer trains on: prompts in, rewards out, behind one small interface.

A task gives deterministic training prompts by position (so a resumed run sees exactly the
prompts an uninterrupted one would), a fixed held-out set, and a scorer that never raises.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from delta_rlvr.data import (
    BUILTIN_DATASETS,
    CODE_PRESETS,
    ArithmeticConfig,
    CodeFields,
    FieldMap,
    PromptRecord,
    ReasoningGymTask,
    TemplateOptions,
    arithmetic_problem,
    arithmetic_verdicts,
    check_golds_score_themselves,
    field_map,
    load_code_file,
    load_file,
    load_humaneval,
    render_prompt,
    score_arithmetic,
)
from delta_rlvr.data.loaders import load_hub
from delta_rlvr.errors import ConfigError
from delta_rlvr.train.config import TaskConfig
from delta_rlvr.verifiers import score_code, score_math
from delta_rlvr.verifiers.code_runner import require_sandbox
from delta_rlvr.verifiers.verdicts import Verdict, code_verdicts, math_verdicts, reward_verdicts


class Task(Protocol):
    name: str
    answer_hint: str

    def train_records(self, position: int, count: int) -> tuple[list[PromptRecord], int]:
        """`count` training prompts starting at `position`; returns them and the next position."""

    def eval_records(self) -> list[PromptRecord]:
        """The held-out set (fixed for a config)."""

    def score(self, completions: list[str], records: list[PromptRecord]) -> list[float]:
        """One reward in [0, 1] per completion; never raises."""

    def verdicts(self, completions: list[str], records: list[PromptRecord]) -> list[Verdict]:
        """The held-out scorer: correct or not, why, and what was extracted (eval, compare)."""


class ArithmeticTask:
    """The built-in arithmetic family; the held-out problems never appear in training."""

    answer_hint = "boxed"  # only used by non-raw templates; score_arithmetic reads boxed answers first

    def __init__(self, cfg: TaskConfig) -> None:
        self.config = ArithmeticConfig(
            min_terms=cfg.terms, max_terms=cfg.terms, min_digits=cfg.digits, max_digits=cfg.digits,
            operators=cfg.operators, seed=cfg.seed,
        )
        self.name = f"arithmetic-{cfg.terms}x{cfg.digits}{cfg.operators}"
        # Eval problems come from a separate seed; training skips any question that is in it.
        eval_cfg = ArithmeticConfig(**{**self.config.__dict__, "seed": cfg.seed + 1_000_003})
        self._eval = [arithmetic_problem(i, eval_cfg) for i in range(cfg.eval_size)]
        self._eval_questions = {r.question for r in self._eval}

    def train_records(self, position: int, count: int) -> tuple[list[PromptRecord], int]:
        out = []
        while len(out) < count:
            record = arithmetic_problem(position, self.config)
            position += 1
            if record.question not in self._eval_questions:
                out.append(record)
        return out, position

    def eval_records(self) -> list[PromptRecord]:
        return list(self._eval)

    def score(self, completions: list[str], records: list[PromptRecord]) -> list[float]:
        return score_arithmetic(completions, [r.gold for r in records])

    def verdicts(self, completions: list[str], records: list[PromptRecord]) -> list[Verdict]:
        return arithmetic_verdicts(completions, records)


class _ListTask:
    """Training prompts cycled from a list in a seeded order; a separate held-out list."""

    def __init__(self, name: str, train: list[PromptRecord], evals: list[PromptRecord], seed: int) -> None:
        if not train:
            raise ConfigError(f"task {name!r} has no training prompts")
        self.name = name
        self._train = list(train)
        random.Random(seed).shuffle(self._train)
        self._eval = evals

    def train_records(self, position: int, count: int) -> tuple[list[PromptRecord], int]:
        n = len(self._train)
        return [self._train[(position + i) % n] for i in range(count)], position + count

    def eval_records(self) -> list[PromptRecord]:
        return list(self._eval)


class GymTask(_ListTask):
    def __init__(self, cfg: TaskConfig) -> None:
        self.answer_hint = cfg.answer_format or "answer_tag"
        self._gym = ReasoningGymTask(
            cfg.gym_name, size=cfg.gym_size + cfg.eval_size, seed=cfg.seed, answer_format=self.answer_hint, **cfg.gym_kwargs
        )
        records = self._gym.records
        super().__init__(f"gym-{cfg.gym_name}", records[cfg.eval_size:], records[: cfg.eval_size], cfg.seed)

    def score(self, completions: list[str], records: list[PromptRecord]) -> list[float]:
        return self._gym.score(completions, records)

    def verdicts(self, completions: list[str], records: list[PromptRecord]) -> list[Verdict]:
        return reward_verdicts(self.score)(completions, records)  # gym scorers extract nothing we can show


DATA_FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet")


def _load_task_file(cfg: TaskConfig, name: str, path: str, setting: str) -> list[PromptRecord]:
    """Records of a built-in dataset (from its local copy `path` or the hub) or of a user file."""

    if name in BUILTIN_DATASETS:
        spec = BUILTIN_DATASETS[name]
        fields = field_map(cfg.question_field, cfg.answer_field, cfg.gold_format, spec.fields)
        if path:
            records, summary = load_file(path, fields, source=name, skip_bad_rows=cfg.skip_bad_rows)
        else:
            records, summary = load_hub(spec.hub_id, fields, split=spec.split, config=spec.hub_config, source=name,
                                        skip_bad_rows=cfg.skip_bad_rows)
    elif Path(name).suffix.lower() in DATA_FILE_SUFFIXES or Path(name).is_file():
        fields = field_map(cfg.question_field, cfg.answer_field, cfg.gold_format, FieldMap())
        records, summary = load_file(name, fields, source=Path(name).stem, skip_bad_rows=cfg.skip_bad_rows)
    else:
        raise ConfigError(
            f"{setting} = {name!r} is neither a built-in dataset ({sorted(BUILTIN_DATASETS)}) nor a data file "
            f"(.jsonl, .json or .parquet): for your own file set {setting}=path/to/file.jsonl"
        )
    _report_skipped(summary)
    return records


def _report_skipped(summary) -> None:
    """One stderr line for the bad rows a task.skip_bad_rows load skipped (never silent)."""
    if summary.rows_skipped:
        first = summary.skipped[0]
        print(f"{summary.source}: skipped {summary.rows_skipped} of {summary.rows_read} bad rows (task.skip_bad_rows; first: "
              f"line {first.line}: {first.message})", file=sys.stderr)


def _warn_if_golds_fail(records: list[PromptRecord], answer_format: str, name: str) -> None:
    """One stderr warning when too many golds score 0 against themselves (the check eval runs on a
    file): a run would otherwise train on rewards no answer can earn."""
    _, warning = check_golds_score_themselves(records, answer_format, name=name)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def _hold_out(train: list[PromptRecord], cfg: TaskConfig) -> tuple[list[PromptRecord], list[PromptRecord]]:
    """(training, held-out) when no task.eval_dataset is given: the first eval_size problems are
    held out, and a file that would leave nothing to train on is refused with the numbers."""
    if len(train) <= cfg.eval_size:
        raise ConfigError(
            f"task.eval_size = {cfg.eval_size} holds out the first {cfg.eval_size} problems of {cfg.dataset} for "
            f"evaluation, but it has {len(train)}: nothing would be left to train on. Set task.eval_size below "
            f"{len(train)} (for example --set task.eval_size={max(1, len(train) // 5)}), or give a separate "
            "held-out file with task.eval_dataset=FILE"
        )
    return train[cfg.eval_size:], train[: cfg.eval_size]


class MathDatasetTask(_ListTask):
    def __init__(self, cfg: TaskConfig) -> None:
        train = _load_task_file(cfg, cfg.dataset, cfg.dataset_path, "task.dataset")
        if cfg.eval_dataset or cfg.eval_path:
            evals = _load_task_file(cfg, cfg.eval_dataset or cfg.eval_path, cfg.eval_path if cfg.eval_dataset else "",
                                    "task.eval_dataset")
            evals = evals[: cfg.eval_size]
        else:  # hold out the first eval_size problems of the training file
            train, evals = _hold_out(train, cfg)
        spec = BUILTIN_DATASETS.get(cfg.dataset)
        default_format = spec.answer_format if spec is not None else "boxed"
        if cfg.gold_format == "choice":
            default_format = "choice"
        self.answer_hint = cfg.answer_format or default_format
        name = cfg.dataset if spec is not None else Path(cfg.dataset).stem
        _warn_if_golds_fail(train + evals, self.answer_hint, f"task.dataset {name}")
        super().__init__(f"dataset-{name}", train, evals, cfg.seed)

    def score(self, completions: list[str], records: list[PromptRecord]) -> list[float]:
        results = score_math(completions, [r.golds for r in records], answer_format=self.answer_hint)
        return [r.score for r in results]

    def verdicts(self, completions: list[str], records: list[PromptRecord]) -> list[Verdict]:
        return math_verdicts(self.answer_hint)(completions, records)


class CodeTask(_ListTask):
    """Code problems from a data file (or "humaneval"), rewarded by their tests in the sandbox.

    The held-out set is task.eval_dataset, else the first task.eval_size problems of the file.
    Rewards: 1 when every test case passes (task.code.partial_credit: the fraction passed),
    each response's program run in its own sandboxed process, task.code.workers at once.
    """

    answer_hint = "code"

    def __init__(self, cfg: TaskConfig) -> None:
        code = cfg.code
        require_sandbox("task.kind = code", code.isolation,
                        fix="set task.code.isolation=none for code you trust (UNSAFE: a policy can then reach your files and network)")
        self.settings = code
        train = self._load(cfg, cfg.dataset, "task.dataset")
        if cfg.eval_dataset:
            evals = self._load(cfg, cfg.eval_dataset, "task.eval_dataset")[: cfg.eval_size]
        else:
            train, evals = _hold_out(train, cfg)
        super().__init__(f"code-{Path(cfg.dataset).name.split('.')[0]}", train, evals, cfg.seed)

    @staticmethod
    def _load(cfg: TaskConfig, name: str, setting: str) -> list[PromptRecord]:
        """Records of a code file (its fields from task.code and task.question_field) or HumanEval."""
        code = cfg.code
        if name == "humaneval" and not any((code.preset, code.tests_field, code.tests_format)):
            records, summary = load_humaneval(skip_bad_rows=cfg.skip_bad_rows)
        else:
            if not Path(name).is_file():
                raise ConfigError(f"{setting} = {name!r}: no such code file; give a .jsonl, .json or .parquet file of code "
                                  "problems (or 'humaneval')")
            fields = CODE_PRESETS.get(code.preset, CodeFields())
            changes = {"tests": code.tests_field, "tests_format": code.tests_format, "entry_point": code.entry_point_field,
                       "prompt": cfg.question_field}
            fields = replace(fields, **{key: value for key, value in changes.items() if value})
            if code.complete_prompt is not None:
                fields = replace(fields, complete_prompt=code.complete_prompt)
            records, summary = load_code_file(name, fields, skip_bad_rows=cfg.skip_bad_rows)
        _report_skipped(summary)
        return records

    def score(self, completions: list[str], records: list[PromptRecord]) -> list[float]:
        code = self.settings
        results = score_code(completions, [r.gold for r in records], partial_credit=code.partial_credit,
                             timeout_s=code.timeout_s, memory_mb=code.memory_mb, workers=code.workers or None,
                             isolation=code.isolation, max_file_bytes=code.max_file_bytes)
        return [r.score for r in results]

    def verdicts(self, completions: list[str], records: list[PromptRecord]) -> list[Verdict]:
        code = self.settings
        return code_verdicts(partial_credit=code.partial_credit, timeout_s=code.timeout_s, memory_mb=code.memory_mb,
                             workers=code.workers or None, isolation=code.isolation,
                             max_file_bytes=code.max_file_bytes)(completions, records)


TASKS = {"arithmetic": ArithmeticTask, "reasoning_gym": GymTask, "dataset": MathDatasetTask, "code": CodeTask}


def build_task(cfg: TaskConfig) -> Task:
    """The task of ``cfg``; a task that cannot be built raises ConfigError naming the setting."""
    try:
        return TASKS[cfg.kind](cfg)
    except ConfigError:
        raise
    except (ValueError, ImportError) as err:  # DataError (a file's row), reasoning-gym's, a missing extra
        setting = {"reasoning_gym": "task.gym_name / task.gym_kwargs", "dataset": "task.dataset / task.dataset_path",
                   "arithmetic": "task.terms / task.digits / task.operators",
                   "code": "task.dataset / task.code"}.get(cfg.kind, "task")
        raise ConfigError(f"{setting}: {err}") from None


@dataclass(frozen=True)
class PromptEncoder:
    """Renders records into prompt token ids with the configured template.

    "raw" feeds the question as is (the tiny character model was warmed up on bare questions);
    "plain", "few_shot" and "chat" add the instruction for the task's answer format, "chat"
    through the tokenizer's own chat template (whose special tokens it already contains).
    """

    tokenizer: object
    template: str
    answer_format: str = "boxed"

    def __call__(self, records: list[PromptRecord]) -> list[list[int]]:
        tok = self.tokenizer
        if self.template == "raw":
            return [tok(r.question if r.question is not None else r.chat()[-1]["content"])["input_ids"] for r in records]
        if self.template == "chat" and getattr(tok, "chat_template", None) is None:
            raise ConfigError("task.template = 'chat' but the tokenizer has no chat template; use 'plain'")
        options = TemplateOptions(answer_format=self.answer_format, tokenizer=tok)
        texts = [render_prompt(r, self.template, options) for r in records]
        return [tok(t, add_special_tokens=self.template != "chat")["input_ids"] for t in texts]
