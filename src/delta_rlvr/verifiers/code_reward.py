"""Code rewards: a problem's tests as one JSON value, the program a response stands for, and
scores from the sandbox, run in parallel with deadlines.

A code problem's tests travel as a `CodeSpec`, written as a JSON object so that it fits where a
math problem keeps its gold answer (`PromptRecord.gold`, an eval dump's `gold`, a TRL dataset
column, verl's `reward_model.ground_truth`):

    {"style": "stdio",    "cases": [["1 2\\n", "3\\n"], ...]}
    {"style": "function", "function": "add", "calls": [[[1, 2], 3], ...], "accept_unwrapped": false}
    {"style": "assert",   "code": "assert add(1, 2) == 3\\n..."}

with an optional "prefix": code the program starts with (a HumanEval prompt, which the response
completes). `parse_code_spec` also reads the APPS / TACO / PRIME (Eurus-2-RL) form,
`{"inputs": [...], "outputs": [...], "fn_name": optional}`.

What program a response stands for (`build_program`, the one documented rule):
1. the code is the last fenced block (```python, ```py or a bare ```; an unclosed last fence
   runs to the end of the response), or the whole response when it has no fence;
2. with a prefix, the program is the prefix followed by that code. A fenced block that defines
   the function again replaces the prefix's stub (the later `def` wins) and keeps the prefix's
   imports and helpers; an unfenced continuation is cut at the first line that starts with
   `def `, `class `, `if `, `print(` or `#` at column 0 (the Codex paper's stop sequences),
   so trailing prose or a second attempt does not break a correct body.

Scores: 1.0 when every case passes (the default), or the fraction of cases passed with
`partial_credit=True` (every case is then run; an assert-style test is one case). Solutions run
in the hardened sandbox (`run_code_tests`), several at once in worker threads that each drive
one sandboxed process with its own wall-clock deadline.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from delta_rlvr.verifiers.code_runner import CodeResult, CodeTests, Isolation, run_code_tests

CodeStyle = Literal["stdio", "function", "assert"]
STYLES = ("stdio", "function", "assert")

__all__ = ["CodeSpec", "build_program", "extract_code", "parse_code_spec", "score_code", "code_workers"]


@dataclass(frozen=True)
class CodeSpec:
    """One problem's tests (exactly one style) and the code its program starts with."""

    style: CodeStyle
    cases: tuple[tuple[str, str], ...] = ()
    """stdio: (stdin, expected stdout) pairs."""
    function: str = ""
    calls: tuple[tuple[tuple[Any, ...], Any], ...] = ()
    """function: (arguments, expected return value) pairs for `function`."""
    accept_unwrapped: bool = False
    """function: a one-element list also accepts its element (the APPS call-based convention)."""
    code: str = ""
    """assert: test code run after the program (AssertionError or any error fails it)."""
    prefix: str = ""
    """Code the program starts with (a HumanEval prompt); "" = the response's code alone."""

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"code spec style {self.style!r} is unknown; use one of {list(STYLES)}")
        self.tests()  # validates the cases (CodeTests names what is wrong)

    def tests(self) -> CodeTests:
        if self.style == "stdio":
            return CodeTests(stdio=self.cases)
        if self.style == "function":
            return CodeTests(function=self.function, calls=self.calls, accept_unwrapped=self.accept_unwrapped)
        return CodeTests(assert_code=self.code)

    @property
    def case_count(self) -> int:
        return len(self.cases) if self.style == "stdio" else len(self.calls) if self.style == "function" else 1

    def to_json(self) -> str:
        body: dict[str, Any] = {"style": self.style}
        if self.style == "stdio":
            body["cases"] = [list(case) for case in self.cases]
        elif self.style == "function":
            body["function"] = self.function
            body["calls"] = [[list(args), expected] for args, expected in self.calls]
            if self.accept_unwrapped:
                body["accept_unwrapped"] = True
        else:
            body["code"] = self.code
        if self.prefix:
            body["prefix"] = self.prefix
        return json.dumps(body, ensure_ascii=False)


def _json_value(value: Any, what: str) -> Any:
    """`value`, or the JSON it holds when it is a string of JSON."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{what} is a string but not JSON ({error.msg} at column {error.colno})") from None
    return value


def _apps_spec(body: dict, prefix: str) -> CodeSpec:
    """APPS / TACO / PRIME: {"inputs": [...], "outputs": [...], "fn_name": optional}."""
    inputs, outputs = body.get("inputs"), body.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs) or not inputs:
        raise ValueError("an APPS-style test spec needs equal-length, non-empty 'inputs' and 'outputs' lists; got "
                         f"{type(inputs).__name__} and {type(outputs).__name__}")
    name = body.get("fn_name")
    if name:
        calls = tuple((tuple(args) if isinstance(args, list) else (args,), out) for args, out in zip(inputs, outputs))
        return CodeSpec("function", function=str(name), calls=calls, accept_unwrapped=True, prefix=prefix)
    cases = []
    for index, (stdin, stdout) in enumerate(zip(inputs, outputs)):
        stdin = "\n".join(stdin) if isinstance(stdin, list) else stdin
        stdout = "\n".join(stdout) if isinstance(stdout, list) else stdout
        if not isinstance(stdin, str) or not isinstance(stdout, str):
            raise ValueError(f"stdio case {index}: input and output must be strings, got "
                             f"{type(stdin).__name__} and {type(stdout).__name__}")
        cases.append((stdin, stdout))
    return CodeSpec("stdio", cases=tuple(cases), prefix=prefix)


def parse_code_spec(value: Any) -> CodeSpec:
    """A CodeSpec from its JSON form (a string or an already decoded dict), or from the APPS /
    PRIME form; raises ValueError saying what is wrong."""
    if isinstance(value, CodeSpec):
        return value
    body = _json_value(value, "the test spec")
    if not isinstance(body, dict):
        raise ValueError(f"a test spec must be a JSON object, got {type(body).__name__}")
    prefix = body.get("prefix") or ""
    if not isinstance(prefix, str):
        raise ValueError("the test spec's 'prefix' must be a string of code")
    if "style" not in body:
        if "inputs" in body or "outputs" in body:
            return _apps_spec(body, prefix)
        raise ValueError(f"a test spec needs 'style' ({'/'.join(STYLES)}) or APPS 'inputs'/'outputs'; it has "
                         f"{sorted(body)[:8]}")
    style = body["style"]
    try:
        if style == "stdio":
            cases = tuple((str(pair[0]), str(pair[1])) for pair in body["cases"])
            return CodeSpec("stdio", cases=cases, prefix=prefix)
        if style == "function":
            calls = tuple((tuple(call[0]), call[1]) for call in body["calls"])
            return CodeSpec("function", function=str(body["function"]), calls=calls,
                            accept_unwrapped=bool(body.get("accept_unwrapped", False)), prefix=prefix)
        if style == "assert":
            return CodeSpec("assert", code=str(body["code"]), prefix=prefix)
    except KeyError as missing:
        raise ValueError(f"a {style} test spec needs the key {missing}") from None
    except (TypeError, IndexError):
        raise ValueError(f"a {style} test spec's cases are malformed: stdio cases are [input, output] pairs, "
                         "function calls are [[args...], expected] pairs") from None
    raise ValueError(f"test spec style {style!r} is unknown; use one of {list(STYLES)}")


_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[ \t]*$", re.MULTILINE)
_STOP = re.compile(r"^(?:def |class |if |print\(|#)", re.MULTILINE)


def _last_fenced_block(text: str) -> str | None:
    fences = list(_FENCE.finditer(text))
    if not fences:
        return None
    # Pair fences from the start: opening, closing, opening, ... An odd last one is an open block.
    blocks: list[str] = []
    for start in range(0, len(fences), 2):
        opening = fences[start]
        end = fences[start + 1].start() if start + 1 < len(fences) else len(text)
        blocks.append(text[opening.end():end].strip("\n"))
    return blocks[-1] + "\n"


def extract_code(response: str) -> str:
    """The code of a response: its last fenced block, or the whole response without a fence."""
    block = _last_fenced_block(response)
    return block if block is not None else response


def build_program(response: str, prefix: str = "") -> str:
    """The program a response stands for (see the module docstring for the rule)."""
    block = _last_fenced_block(response)
    if not prefix:
        return block if block is not None else response
    if block is None:  # a continuation of the prefix: stop where a new top-level statement starts
        stop = _STOP.search(response, 1)
        block = response[: stop.start()] if stop else response
    joiner = "" if prefix.endswith("\n") else "\n"
    return prefix + joiner + block


def code_workers(workers: int | None = None) -> int:
    """Sandboxes run at once: `workers`, else one per CPU core this process may use."""
    if workers:
        return max(1, int(workers))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def score_code(
    responses: Sequence[str],
    specs: Sequence[CodeSpec | str | dict],
    *,
    partial_credit: bool = False,
    timeout_s: float = 5.0,
    memory_mb: int = 1024,
    workers: int | None = None,
    isolation: Isolation = "bwrap",
) -> list[CodeResult]:
    """Run each response's program on its problem's tests; one CodeResult per response, in order.

    The result's `score` is the reward: 1.0 / 0.0, or passed / total with `partial_credit`.
    Nothing a response does raises; a spec that cannot be read raises ValueError (a data
    problem), and a machine without the sandbox raises SandboxUnavailable before any code runs.
    """
    if len(responses) != len(specs):
        raise ValueError(f"score_code got {len(responses)} responses and {len(specs)} test specs; pass one per response")
    parsed = [parse_code_spec(spec) for spec in specs]

    def one(index: int) -> CodeResult:
        response = responses[index]
        spec = parsed[index]
        if not isinstance(response, str):
            return CodeResult("error", 0.0, 0, spec.case_count, f"response is {type(response).__name__}, not text")
        result = run_code_tests(
            build_program(response, spec.prefix), spec.tests(), timeout_s=timeout_s, memory_mb=memory_mb,
            stop_at_first_failure=not partial_credit, isolation=isolation,
        )  # fmt: skip
        if partial_credit and result.total_cases:
            return CodeResult(result.status, result.passed_cases / result.total_cases, result.passed_cases,
                              result.total_cases, result.detail)
        return result

    if not parsed:
        return []
    count = min(code_workers(workers), len(parsed))
    if count == 1:
        return [one(i) for i in range(len(parsed))]
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="code-reward") as pool:
        return list(pool.map(one, range(len(parsed))))
