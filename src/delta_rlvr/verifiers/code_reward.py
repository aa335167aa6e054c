"""Code rewards: a problem's tests as one JSON value, the program a response stands for, and
scores from the sandbox, run in parallel with deadlines.

A code problem's tests travel as a `CodeSpec`, written as a JSON object so that it fits where a
math problem keeps its gold answer (`PromptRecord.gold`, an eval dump's `gold`, a TRL dataset
column, verl's `reward_model.ground_truth`):

    {"style": "stdio",    "cases": [["1 2\\n", "3\\n"], ...]}
    {"style": "function", "function": "add", "calls": [[[1, 2], 3], ...], "accept_unwrapped": false}
    {"style": "function", "function": "pair", "typed_calls": <the calls in _value_codec's tagged form>}
    {"style": "assert",   "code": "assert add(1, 2) == 3\\n..."}

with an optional "prefix": code the program starts with (a HumanEval prompt, which the response
completes). `parse_code_spec` also reads the APPS / TACO / PRIME (Eurus-2-RL) form,
`{"inputs": [...], "outputs": [...], "fn_name": optional}`. `to_json` writes `typed_calls`
instead of `calls` when a call holds a value JSON would change (a tuple, a set, bytes, a dict
with non-string keys), so `parse_code_spec(spec.to_json()) == spec` always.

What program a response stands for (`build_program`, the one documented rule):
1. the code is the last fenced block tagged ```python / ```py (also python3, py3, any case);
   without one, the last bare ``` block; without one, the last block of any other tag. An
   unclosed last fence runs to the end of the response; a fence with a tag always opens a
   block (an unclosed block before it ends there); blocks holding only whitespace are
   ignored, and an indented fence (inside a list item) has that indentation removed from its
   lines, as Markdown does. A response without a fenced block is all code;
2. with a prefix, the program is the prefix followed by that code. A fenced block that defines
   the function again replaces the prefix's stub (the later `def` wins) and keeps the prefix's
   imports and helpers (a prefix that is not a program by itself, a bare `def f(a):` header,
   is dropped before a fenced block, which must then hold the whole solution); an unfenced
   continuation is cut at its first line, other than its first, that starts with `def `,
   `class `, `if `, `print(` or `#` at column 0 (the Codex paper's stop sequences `\\ndef `,
   `\\nclass `, `\\nif `, `\\nprint(`, `\\n#`), so trailing prose or a second attempt does not
   break a correct body.

Scores: 1.0 when every case passes (the default), or the fraction of cases passed with
`partial_credit=True` (every case is then run; an assert-style test is one case). Solutions run
in the hardened sandbox (`run_code_tests`), several at once in worker threads that each drive
one sandboxed process with its own wall-clock deadline.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from delta_rlvr.verifiers import _value_codec
from delta_rlvr.verifiers.code_runner import DEFAULT_MAX_FILE_BYTES, CodeResult, CodeTests, Isolation, run_code_tests

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
        return CodeTests(assert_code=self.code, assert_prefix=self.prefix)

    @property
    def case_count(self) -> int:
        return len(self.cases) if self.style == "stdio" else len(self.calls) if self.style == "function" else 1

    def to_json(self) -> str:
        body: dict[str, Any] = {"style": self.style}
        if self.style == "stdio":
            body["cases"] = [list(case) for case in self.cases]
        elif self.style == "function":
            body["function"] = self.function
            if all(_plain_json(value) for args, expected in self.calls for value in (*args, expected)):
                body["calls"] = [[list(args), expected] for args, expected in self.calls]
            else:  # a tuple, set, bytes, complex or a dict with non-string keys: keep the types
                body["typed_calls"] = _value_codec.encode_value(tuple(self.calls))
            if self.accept_unwrapped:
                body["accept_unwrapped"] = True
        else:
            body["code"] = self.code
        if self.prefix:
            body["prefix"] = self.prefix
        return json.dumps(body, ensure_ascii=False)


def _plain_json(value: Any) -> bool:
    """True when a JSON round trip gives `value` back with the same types (what values_match compares)."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return type(value) is int
    if isinstance(value, float):
        return type(value) is float and math.isfinite(value)
    if type(value) is list:
        return all(_plain_json(item) for item in value)
    if type(value) is dict:
        return all(type(key) is str and _plain_json(item) for key, item in value.items())
    return False


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
        def shape(value: Any) -> str:
            return f"a list of {len(value)}" if isinstance(value, list) else "missing" if value is None else type(value).__name__
        raise ValueError("an APPS-style test spec needs equal-length, non-empty 'inputs' and 'outputs' lists; its "
                         f"'inputs' is {shape(inputs)} and its 'outputs' {shape(outputs)}")
    name = body.get("fn_name")
    if name:
        calls = tuple((tuple(args) if isinstance(args, list) else (args,), out) for args, out in zip(inputs, outputs))
        return CodeSpec("function", function=str(name), calls=calls, accept_unwrapped=True, prefix=prefix)
    cases = []
    for index, (stdin, stdout) in enumerate(zip(inputs, outputs)):
        stdin = "\n".join(stdin) if isinstance(stdin, list) else stdin
        stdout = "\n".join(stdout) if isinstance(stdout, list) else stdout
        if not isinstance(stdin, str) or not isinstance(stdout, str):
            raise ValueError(f"APPS stdio case {index}: inputs[{index}] and outputs[{index}] must be strings (or lists "
                             f"of lines), got {type(stdin).__name__} and {type(stdout).__name__}; a call-based "
                             "problem needs 'fn_name'")
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
    if style not in STYLES:
        raise ValueError(f"test spec style {style!r} is unknown; use one of {list(STYLES)}")
    if style == "stdio":
        raw = _key(body, "cases", list, "a list of [input, output] pairs")
        if not raw:
            raise ValueError("a stdio test spec's 'cases' is empty; give at least one [input, output] pair")
        return CodeSpec("stdio", cases=tuple(_stdio_case(case, index) for index, case in enumerate(raw)), prefix=prefix)
    if style == "function":
        name = _key(body, "function", str, "the name of the function the calls are made on")
        if not name.isidentifier():
            raise ValueError(f"a function test spec's 'function' must be a Python name, got {name!r}")
        unwrapped = body.get("accept_unwrapped", False)
        if not isinstance(unwrapped, bool):
            raise ValueError(f"a function test spec's 'accept_unwrapped' must be true or false, got {unwrapped!r}")
        calls = _typed_calls(body["typed_calls"]) if "typed_calls" in body else _calls(
            _key(body, "calls", list, "a list of [[args...], expected] pairs"))
        if not calls:
            raise ValueError("a function test spec's 'calls' is empty; give at least one [[args...], expected] pair")
        return CodeSpec("function", function=name, calls=calls, accept_unwrapped=unwrapped, prefix=prefix)
    code = _key(body, "code", str, "test code (assert statements)")
    if not code.strip():
        raise ValueError("an assert test spec's 'code' is empty; give the test code (assert statements)")
    return CodeSpec("assert", code=code, prefix=prefix)


def _key(body: dict, key: str, kind: type, what: str) -> Any:
    if key not in body:
        raise ValueError(f"a {body['style']} test spec needs the key {key!r} ({what}); it has {sorted(body)}")
    value = body[key]
    if not isinstance(value, kind):
        raise ValueError(f"a {body['style']} test spec's {key!r} must be {what}, got {type(value).__name__} {value!r:.60}")
    return value


def _stdio_case(case: Any, index: int) -> tuple[str, str]:
    if isinstance(case, dict) and set(case) == {"input", "output"}:
        case = [case["input"], case["output"]]
    if not isinstance(case, (list, tuple)) or len(case) != 2 or not all(isinstance(part, str) for part in case):
        raise ValueError(f"stdio case {index} must be an [input, output] pair of strings, got {case!r:.80}")
    return (case[0], case[1])


def _calls(raw: list) -> tuple[tuple[tuple[Any, ...], Any], ...]:
    calls = []
    for index, call in enumerate(raw):
        if not isinstance(call, (list, tuple)) or len(call) != 2 or not isinstance(call[0], (list, tuple)):
            raise ValueError(f"function call {index} must be a [[args...], expected] pair (the arguments as a list), "
                             f"got {call!r:.80}")
        calls.append((tuple(call[0]), call[1]))
    return tuple(calls)


def _typed_calls(tree: Any) -> tuple[tuple[tuple[Any, ...], Any], ...]:
    try:
        calls = _value_codec.decode_value(tree)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"a function test spec's 'typed_calls' cannot be decoded ({error}); write it with "
                         "CodeSpec.to_json, or give plain 'calls'") from None
    if not isinstance(calls, tuple) or not all(
            isinstance(call, tuple) and len(call) == 2 and isinstance(call[0], tuple) for call in calls):
        raise ValueError("a function test spec's 'typed_calls' must hold (args tuple, expected) pairs")
    return calls


_FENCE = re.compile(r"^([ \t]*)```[ \t]*([A-Za-z0-9_+.-]*)[ \t\r]*$", re.MULTILINE)  # \r: CRLF text
_STOP = re.compile(r"^(?:def |class |if |print\(|#)", re.MULTILINE)
_PYTHON_TAGS = ("python", "py", "python3", "py3")


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(tag, code) of each fenced block, in order. A fence with a tag always opens a block (an
    unclosed one before it ends there); a bare fence closes the open block, or opens one."""
    blocks: list[tuple[str, str]] = []
    opening: re.Match[str] | None = None
    for fence in _FENCE.finditer(text):
        if opening is not None:
            blocks.append(_block(text, opening, fence.start()))
            opening = fence if fence.group(2) else None
        else:
            opening = fence
    if opening is not None:
        blocks.append(_block(text, opening, len(text)))
    return blocks


def _block(text: str, opening: re.Match[str], end: int) -> tuple[str, str]:
    body = text[opening.end():end].strip("\n")
    indent = len(opening.group(1))
    if indent:  # an indented fence (a list item): its lines lose up to that much indentation
        body = "\n".join(line[min(indent, len(line) - len(line.lstrip(" \t"))):] for line in body.split("\n"))
    return opening.group(2).lower(), body


def _last_fenced_block(text: str) -> str | None:
    blocks = [(tag, code) for tag, code in _fenced_blocks(text) if code.strip()]
    if not blocks:
        return None
    for wanted in (lambda tag: tag in _PYTHON_TAGS, lambda tag: tag == "", lambda tag: True):
        chosen = [code for tag, code in blocks if wanted(tag)]
        if chosen:
            return chosen[-1] + "\n"
    return None  # unreachable: the last test accepts every block


def extract_code(response: str) -> str:
    """The code of a response: its last fenced block, or the whole response without a fence."""
    block = _last_fenced_block(response)
    return block if block is not None else response


def _compiles(code: str) -> bool:
    try:
        compile(code, "<prefix>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def build_program(response: str, prefix: str = "") -> str:
    """The program a response stands for (see the module docstring for the rule)."""
    block = _last_fenced_block(response)
    if not prefix:
        return block if block is not None else response
    if block is None:  # a continuation of the prefix: stop where a new top-level statement starts
        stop = _STOP.search(response, 1)
        block = response[: stop.start()] if stop else response
    elif not _compiles(prefix):  # a bare header (`def f(a):`) cannot precede a whole function
        return block
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
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> list[CodeResult]:
    """Run each response's program on its problem's tests; one CodeResult per response, in order.

    The result's `score` is the reward: 1.0 / 0.0, or passed / total with `partial_credit`.
    max_file_bytes: the largest file a program may write (its stdout too; see run_code_tests).
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
        program = build_program(response, spec.prefix)
        try:
            program.encode("utf-8")
        except UnicodeEncodeError as error:  # a lone surrogate (text decoded with surrogateescape)
            return CodeResult("error", 0.0, 0, spec.case_count,
                              f"the program is not valid Unicode ({error.reason} at character {error.start}); nothing ran")
        result = run_code_tests(
            program, spec.tests(), timeout_s=timeout_s, memory_mb=memory_mb,
            stop_at_first_failure=not partial_credit, isolation=isolation, max_file_bytes=max_file_bytes,
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
