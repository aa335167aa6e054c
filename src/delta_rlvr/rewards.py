"""Reward functions for TRL and verl: code (the sandbox) and math (math-verify), one module.

TRL (trl 1.16.0, ``trl/trainer/grpo_trainer.py``, ``GRPOTrainer._calculate_rewards``): every
reward function is called with keyword arguments only,
``reward_func(prompts=..., completions=..., completion_ids=..., **reward_kwargs)``, where
``reward_kwargs`` holds every dataset column but "prompt", "completion" and "completion_ids"
as a list over the batch (each prompt repeated once per generation), plus ``trainer_state``,
``log_extra`` and ``log_metric``. A completion is a string, or for a conversational dataset
(``GRPOTrainer._generate``) a list of message dicts, ``[{"role": "assistant", "content": ...}]``
(more messages after tool calls). A ``None`` reward becomes NaN and is left out of that
function's mean, and the name the rewards are logged under (``rewards/<name>/mean``) is
``trl.trainer.utils.get_callable_name``: the callable's ``__name__``.

    from delta_rlvr.rewards import make_code_reward, math_reward, trl_rows
    rows = trl_rows(records)          # {"prompt", "tests"} for code, {"prompt", "gold"} for math
    trainer = DeltaGRPOTrainer(..., reward_funcs=[make_code_reward(partial_credit=True)],
                               train_dataset=datasets.Dataset.from_list(rows))

verl (verl 0.9.1): ``compute_score`` has verl's custom-reward signature. verl loads it with
``verl/trainer/ppo/reward.py``, ``get_custom_reward_fn`` (``reward.custom_reward_function.path``
and ``.name``; ``.reward_kwargs`` are merged into every call by ``_call_with_kwargs``), and
``load_reward_manager`` hands it to the registered reward manager, which calls it once per
response from a thread of its event loop's default executor
(``verl/experimental/reward_loop/reward_manager/naive.py`` and ``dapo.py``,
``run_single``: ``compute_score(data_source=..., solution_str=..., ground_truth=...,
extra_info=...)``), inside the ``RewardLoopWorker`` Ray actors that ``RewardLoopManager``
starts (``verl/experimental/reward_loop/reward_loop.py``). The ground truth is the row's
``reward_model.ground_truth``; ``verl_rows`` writes rows in that parquet form.

What is code (``is_code_task``): a ground truth that is a code spec (a dict, or a string of a
JSON object, with "style", or with APPS "inputs" / "outputs"), or a ``data_source`` in
``CODE_DATA_SOURCES`` ("codecontests", "apps", "codeforces", "taco": the set verl's
``default_compute_score`` sends to its code scorer, the sources of PRIME's Eurus-2-RL-Data code
rows) or starting with "code". Everything else is math. A row whose data source says code but
whose ground truth is not a readable spec raises ValueError (a data problem, never a silent 0).

Code runs in the bubblewrap sandbox (``delta_rlvr.verifiers.code_runner``); without it the
reward raises ``SandboxUnavailable`` rather than score. Throughput and isolation:
``docs/verifiers_and_data.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from delta_rlvr.data.records import PromptRecord
from delta_rlvr.verifiers.code_reward import CodeSpec, parse_code_spec, score_code
from delta_rlvr.verifiers.code_runner import DEFAULT_MAX_FILE_BYTES, Isolation
from delta_rlvr.verifiers.extract import AnswerFormat
from delta_rlvr.verifiers.math_reward import DEFAULT_TIMEOUT_S, score_math

__all__ = [
    "CODE_DATA_SOURCES",
    "CodeReward",
    "MathReward",
    "code_reward",
    "completion_text",
    "compute_score",
    "is_code_task",
    "make_code_reward",
    "make_math_reward",
    "math_reward",
    "trl_rows",
    "verl_rows",
]

CODE_DATA_SOURCES = frozenset({"codecontests", "apps", "codeforces", "taco"})
"""verl data sources that mean code (verl 0.9.1 ``verl/utils/reward_score/__init__.py``,
``default_compute_score``; PRIME's Eurus-2-RL-Data code rows)."""

_TRL_KEYS = ("trainer_state", "log_extra", "log_metric", "environments", "completion_ids")


# ---------------------------------------------------------------------------------------------
# shared helpers


def completion_text(completion: Any) -> str:
    """A TRL completion as text: the string itself, or a conversational completion's last
    assistant message's content (text parts joined; no assistant message or no content: "")."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role") == "assistant":
                return _content_text(message.get("content"))
        return ""
    raise TypeError(f"a completion must be text or a list of message dicts, got {type(completion).__name__}")


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):  # multimodal parts: [{"type": "text", "text": ...}, ...]
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict) and part.get("type") == "text")
    return str(content)


def _plain(value: Any) -> Any:
    """Numpy arrays (what a parquet list or struct column reads back as) as plain lists, deep."""
    if isinstance(value, (str, bytes)):
        return value
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        value = value.tolist()
        if not isinstance(value, list):
            return value
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _spec_body(value: Any) -> dict | None:
    """The decoded code spec when `value` looks like one (no validation), else None."""
    if isinstance(value, CodeSpec):
        return {"style": value.style}
    if isinstance(value, (str, bytes)):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if not text.lstrip().startswith("{"):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
    if isinstance(value, dict) and ("style" in value or "inputs" in value or "outputs" in value):
        return value
    return None


def is_code_task(ground_truth: Any, data_source: str | None = None) -> bool:
    """True when a row is a code problem: its ground truth is a code spec, or its data source
    is one of `CODE_DATA_SOURCES` or starts with "code" (see the module docstring)."""
    if _spec_body(ground_truth) is not None:
        return True
    source = str(data_source or "").strip().lower()
    return source in CODE_DATA_SOURCES or source.startswith("code")


def _golds(value: Any) -> str | list[str]:
    """A math gold as `score_math` takes it: a string, or a list meaning any of them (a numpy
    array from a parquet list column becomes a list)."""
    value = _plain(value)
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return str(value)


def _texts(completions: Sequence[Any], name: str) -> list[str]:
    try:
        return [completion_text(c) for c in completions]
    except TypeError as error:
        raise ValueError(f"{name}: {error}") from None


def _column(kwargs: dict, column: str, name: str, count: int, what: str, factory: str) -> list:
    if column not in kwargs:
        columns = sorted(key for key in kwargs if key not in _TRL_KEYS)
        raise ValueError(f"{name}: the dataset has no column {column!r} (it has {columns}); each row needs its "
                         f"{what} in a column named {column!r} (trl_rows writes it), or name the column: "
                         f"{factory}(column=...)")
    values = list(kwargs[column])
    if len(values) != count:
        raise ValueError(f"{name}: column {column!r} has {len(values)} values for {count} completions")
    return values


def _other_task(kwargs: dict, column: str, index: int) -> bool:
    """A mixed dataset: the row is the other kind (its own column `column` is set)."""
    values = kwargs.get(column)
    return values is not None and index < len(values) and values[index] is not None


def _where(prompts: Sequence[Any] | None, index: int) -> str:
    if not prompts or index >= len(prompts):
        return ""
    prompt = prompts[index]
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        prompt = prompt[-1].get("content")
    return f" (prompt {str(prompt)[:60]!r})"


# ---------------------------------------------------------------------------------------------
# TRL


class CodeReward:
    """A TRL reward function: runs each completion's program on its row's tests in the sandbox.

    Built by `make_code_reward`; called by TRL as ``reward(prompts=, completions=, tests=, ...)``
    (`tests` being the dataset column named `column`). Returns one float per completion, 1.0
    when every case passes (or the fraction passed with `partial_credit`), and None for a row of
    a mixed dataset that has no tests but a math gold (column `math_column`), which TRL leaves
    out of this function's mean. A tests value that cannot be read raises ValueError naming the
    column, the batch row and what is wrong; no sandbox raises `SandboxUnavailable`.

    With TRL's `log_metric`, it also logs `<name>/timeout` and `<name>/error`: the fraction of
    this batch's code completions that ran out of time or did not run (syntax error, crash).
    """

    def __init__(
        self,
        *,
        partial_credit: bool = False,
        timeout_s: float = 5.0,
        memory_mb: int = 1024,
        workers: int | None = None,
        isolation: Isolation = "bwrap",
        column: str = "tests",
        math_column: str = "gold",
        name: str = "code_reward",
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s={timeout_s!r} must be a positive number of seconds")
        if max_file_bytes < 1:
            raise ValueError(f"max_file_bytes={max_file_bytes!r} must be a positive number of bytes")
        if not name.isidentifier():
            raise ValueError(f"name={name!r} must be an identifier (TRL logs rewards/<name>/mean)")
        self.partial_credit, self.timeout_s, self.memory_mb = partial_credit, timeout_s, memory_mb
        self.workers, self.isolation, self.column, self.math_column = workers, isolation, column, math_column
        self.max_file_bytes = max_file_bytes
        self.__name__ = name

    def __repr__(self) -> str:
        return (f"CodeReward(name={self.__name__!r}, column={self.column!r}, partial_credit={self.partial_credit}, "
                f"timeout_s={self.timeout_s}, isolation={self.isolation!r})")

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any) -> list:
        name = self.__name__
        texts = _texts(completions, name)
        tests = _column(kwargs, self.column, name, len(texts), "tests", "make_code_reward")
        rewards: list[float | None] = [None] * len(texts)
        rows, specs = [], []
        for index, value in enumerate(tests):
            if value is None and _other_task(kwargs, self.math_column, index):
                continue  # a math row of a mixed dataset: not this function's to score
            try:
                if value is None:
                    raise ValueError("it is empty (None)")
                specs.append(parse_code_spec(value))
            except (ValueError, TypeError) as error:
                raise ValueError(f"{name}: column {self.column!r}, batch row {index}{_where(prompts, index)}: {error}. "
                                 "Each row's tests are a CodeSpec JSON ({\"style\": \"stdio\"|\"function\"|\"assert\", ...}) "
                                 "or the APPS form {\"inputs\", \"outputs\", \"fn_name\"?}") from None
            rows.append(index)
        if not rows:
            return rewards
        results = score_code([texts[i] for i in rows], specs, partial_credit=self.partial_credit,
                             timeout_s=self.timeout_s, memory_mb=self.memory_mb, workers=self.workers,
                             isolation=self.isolation, max_file_bytes=self.max_file_bytes)  # fmt: skip
        for index, result in zip(rows, results):
            rewards[index] = float(result.score)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            for status in ("timeout", "error"):
                log_metric(f"{name}/{status}", sum(r.status == status for r in results) / len(results))
        return rewards


class MathReward:
    """A TRL reward function: 1/0 by the project's math verifier (`score_math`: math-verify in
    worker processes with hard deadlines; a timeout scores 0). The gold column (`column`) holds a
    bare answer, or a list of answers meaning any of them. None for a row of a mixed dataset
    that has no gold but tests (column `code_column`)."""

    def __init__(
        self,
        *,
        answer_format: AnswerFormat = "boxed",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        column: str = "gold",
        code_column: str = "tests",
        name: str = "math_reward",
    ) -> None:
        if not name.isidentifier():
            raise ValueError(f"name={name!r} must be an identifier (TRL logs rewards/<name>/mean)")
        self.answer_format, self.timeout_s, self.column, self.code_column = answer_format, timeout_s, column, code_column
        self.__name__ = name

    def __repr__(self) -> str:
        return f"MathReward(name={self.__name__!r}, column={self.column!r}, answer_format={self.answer_format!r})"

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any) -> list:
        name = self.__name__
        texts = _texts(completions, name)
        golds = _column(kwargs, self.column, name, len(texts), "gold answer", "make_math_reward")
        rewards: list[float | None] = [None] * len(texts)
        rows = []
        for index, value in enumerate(golds):
            if value is None and _other_task(kwargs, self.code_column, index):
                continue
            if value is None or (isinstance(value, str) and not value.strip()):
                raise ValueError(f"{name}: column {self.column!r}, batch row {index}{_where(prompts, index)}: "
                                 f"the gold answer is empty ({value!r})")
            rows.append(index)
        if rows:
            results = score_math([texts[i] for i in rows], [_golds(golds[i]) for i in rows],
                                 answer_format=self.answer_format, timeout_s=self.timeout_s)  # fmt: skip
            for index, result in zip(rows, results):
                rewards[index] = float(result.score)
        return rewards


def make_code_reward(
    partial_credit: bool = False,
    timeout_s: float = 5.0,
    *,
    memory_mb: int = 1024,
    workers: int | None = None,
    isolation: Isolation = "bwrap",
    column: str = "tests",
    name: str = "code_reward",
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> CodeReward:
    """A code reward function for TRL with these settings (see `CodeReward`).

    partial_credit: the fraction of cases passed instead of 1/0 (every case is then run).
    timeout_s: wall clock per program. memory_mb: memory of each program's process tree (its
    cgroup; RLIMIT_AS per process where no cgroup can be made). max_file_bytes: the largest
    file a program may write, its stdout included (RLIMIT_FSIZE, default 64 MiB). workers:
    sandboxes at once (default one per CPU core). column: the dataset column holding the tests.
    name: what TRL logs the rewards under (``rewards/<name>/mean``); give two code rewards two names.
    """
    return CodeReward(partial_credit=partial_credit, timeout_s=timeout_s, memory_mb=memory_mb, workers=workers,
                      isolation=isolation, column=column, name=name, max_file_bytes=max_file_bytes)


def make_math_reward(
    answer_format: AnswerFormat = "boxed", timeout_s: float = DEFAULT_TIMEOUT_S, *, column: str = "gold",
    name: str = "math_reward",
) -> MathReward:
    """A math reward function for TRL with these settings (see `MathReward`)."""
    return MathReward(answer_format=answer_format, timeout_s=timeout_s, column=column, name=name)


_CODE_REWARD = CodeReward()
_MATH_REWARD = MathReward()


def code_reward(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), tests: Sequence[Any] | None = None,
                **kwargs: Any) -> list:
    """TRL reward: 1.0 when a completion's program passes every test of its row's `tests`
    column, else 0.0 (defaults of `make_code_reward`; see `CodeReward`)."""
    if tests is not None:
        kwargs["tests"] = tests
    return _CODE_REWARD(prompts, completions, **kwargs)


def math_reward(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), gold: Sequence[Any] | None = None,
                **kwargs: Any) -> list:
    """TRL reward: 1.0 when a completion's \\boxed{} answer equals its row's `gold` column by
    math-verify, else 0.0 (defaults of `make_math_reward`; see `MathReward`)."""
    if gold is not None:
        kwargs["gold"] = gold
    return _MATH_REWARD(prompts, completions, **kwargs)


# ---------------------------------------------------------------------------------------------
# verl


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    *,
    partial_credit: bool = False,
    timeout_s: float = 5.0,
    memory_mb: int = 1024,
    isolation: Isolation = "bwrap",
    answer_format: AnswerFormat = "boxed",
    math_timeout_s: float = DEFAULT_TIMEOUT_S,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    **_: Any,
) -> float:
    """verl's custom reward: one response's score, a float (see the module docstring).

    Code (`is_code_task`): `score_code` on the ground truth's spec, 1.0 / 0.0 or the fraction
    of cases with `partial_credit`; `timeout_s`, `memory_mb` (the process tree's cgroup) and
    `max_file_bytes` (the largest file the program may write) as in `make_code_reward`.
    Math: `score_math` (1/0) with `answer_format`; a list ground truth, or
    ``extra_info["alternatives"]`` (what `verl_rows` writes), adds answers any of which is correct. The keyword settings come from
    ``reward.custom_reward_function.reward_kwargs`` (e.g.
    ``+reward.custom_reward_function.reward_kwargs.partial_credit=true``); other keywords verl
    passes (``reward_router_address``, ...) are ignored.

    A float, not a dict: ``RewardLoopManager.compute_rm_score`` gathers the extra-info keys of
    the batch's first response only, so a dict whose keys differ between code and math rows
    would break a mixed batch; a float is logged by the manager as ``acc``.
    """
    ground_truth = _plain(ground_truth)
    if is_code_task(ground_truth, data_source):
        try:
            spec = parse_code_spec(ground_truth)
        except (ValueError, TypeError) as error:
            index = extra_info.get("index") if isinstance(extra_info, dict) else None
            where = f"data_source {data_source!r}" + (f", extra_info.index {index!r}" if index is not None else "")
            raise ValueError(f"compute_score: {where}: reward_model.ground_truth is not a readable code test spec: "
                             f"{error}") from None
        result = score_code([solution_str], [spec], partial_credit=partial_credit, timeout_s=timeout_s,
                            memory_mb=memory_mb, workers=1, isolation=isolation, max_file_bytes=max_file_bytes)[0]  # fmt: skip
        return float(result.score)
    golds = _golds(ground_truth)
    alternatives = _plain(extra_info.get("alternatives")) if isinstance(extra_info, dict) else None
    if isinstance(alternatives, list) and alternatives:
        golds = [*([golds] if isinstance(golds, str) else golds), *(str(a) for a in alternatives)]
    return float(score_math([solution_str], [golds], answer_format=answer_format, timeout_s=math_timeout_s)[0].score)


# ---------------------------------------------------------------------------------------------
# dataset rows


def _record_is_code(record: PromptRecord) -> bool:
    return "tests_format" in record.metadata or _spec_body(record.gold) is not None


def _prompt(record: PromptRecord, chat: bool) -> str | list[dict[str, str]]:
    return record.chat() if chat or record.question is None else record.question


def _gold_value(record: PromptRecord, as_list: bool) -> str | list[str]:
    return [record.gold, *record.alternatives] if as_list else record.gold


def trl_rows(records: Sequence[PromptRecord], *, chat: bool = False) -> list[dict[str, Any]]:
    """TRL dataset rows: {"prompt", "tests"} for a code record (its CodeSpec JSON), {"prompt",
    "gold"} for a math one. The prompt is the question text (a completion continues it; a
    HumanEval stub), or a chat list (conversational) for chat records or with `chat=True`.
    A mixed list gets both columns, None where a row is the other kind (`code_reward` and
    `math_reward` each score their own rows). Math golds with alternatives make the whole gold
    column lists (any of them is correct), since a column has one type.
    """
    if not records:
        raise ValueError("trl_rows got no records")
    code = [_record_is_code(r) for r in records]
    as_list = any(r.alternatives for r, c in zip(records, code) if not c)
    rows = []
    for record, is_code in zip(records, code):
        row: dict[str, Any] = {"prompt": _prompt(record, chat)}
        if all(code):
            row["tests"] = record.gold
        elif not any(code):
            row["gold"] = _gold_value(record, as_list)
        else:
            row["tests"] = record.gold if is_code else None
            row["gold"] = None if is_code else _gold_value(record, as_list)
        rows.append(row)
    return rows


def verl_rows(records: Sequence[PromptRecord], *, data_source: str | None = None, split: str = "train") -> list[dict]:
    """verl's RL parquet rows (the form of verl's ``examples/data_preprocess/gsm8k.py``):
    ``data_source``, ``prompt`` (a chat list), ``ability`` ("code" or "math"),
    ``reward_model`` {"style": "rule", "ground_truth": the CodeSpec JSON or the gold answer},
    ``extra_info`` {"split", "index", "id"}, plus "alternatives" (further golds, read by
    `compute_score`) on every row when any math record has them. The ground truth is always a
    string, so a mixed code and math file has one column type. `data_source` defaults to each
    record's source. Write them with ``pandas.DataFrame(rows).to_parquet(path)``.
    """
    if not records:
        raise ValueError("verl_rows got no records")
    with_alternatives = any(r.alternatives for r in records)
    rows = []
    for index, record in enumerate(records):
        is_code = _record_is_code(record)
        extra: dict[str, Any] = {"split": split, "index": index, "id": record.id}
        if with_alternatives:
            extra["alternatives"] = [] if is_code else list(record.alternatives)
        rows.append({
            "data_source": data_source or record.source,
            "prompt": record.chat(),
            "ability": "code" if is_code else "math",
            "reward_model": {"style": "rule", "ground_truth": record.gold},
            "extra_info": extra,
        })
    return rows
