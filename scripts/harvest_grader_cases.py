"""Restate the labelled (gold, prediction, expected) cases of other graders' public test files as data.

Reads the test files of eight peers from local git mirrors (no code is imported or copied: the
tables are read with `ast`, or by hand where a peer states its cases in prose, and written out
as JSON rows) and writes `tests/verifiers/data/grader_cases.json`, which the regression suite
(`tests/verifiers/test_math_regression_vs_graders.py`) and the side-by-side table
(`benchmarks/compare_math_verify.py`) read.

    python scripts/harvest_grader_cases.py --math-verify DIR --lighteval DIR --nemo-skills DIR --mario-eval DIR \
        --hendrycks-math DIR --open-r1 DIR --simple-evals DIR --qwen25-math DIR

Peers and how their cases are read:
- huggingface/Math-Verify, huggingface/lighteval: pytest parametrize tables of full texts
  (gold, pred, expected) and the options of the helper they call;
- NVIDIA/NeMo-Skills `tests/test_math_equal.py`: (a, b) pairs asserted equal (or not) in both
  directions, so each pair gives two rows;
- MARIO_EVAL `math_evaluation/tests/test_is_equiv.py`, hendrycks/math
  `modeling/math_equivalence_test.py`: unittest methods assigning `test_in` / `test_out` then
  asserting `is_equiv(test_in, test_out)` true or false (also over `test_pairs` lists);
- huggingface/open-r1 `tests/test_rewards.py`: `accuracy_reward(completion, solution)` asserted
  1.0 or 0.0;
- openai/simple-evals `common.py`: the worked examples of its equality-checker prompt
  (Expression 1 / Expression 2 / Yes|No);
- QwenLM/Qwen2.5-Math `evaluation/grader.py`: the (pred, gt) pairs its `_test_math_equal`
  debugs, unlabelled there, labelled here by the mathematics (`labelled_by: hand`).
Bare-answer peers (all but the first two and open-r1) give a bare prediction: `pred_form` is
"bare", and the verifiers see it boxed, as a model writes it (`\\boxed{pred}`).

Each row: source (repo:path::test), category, gold, pred, expected (0/1), call (how that grader
calls math-verify: targets and options), in_scope (False for non-English cases, cases that
depend on non-default options: another precision, strict=False, set-relation comparison, and
labels that follow one grader's policy rather than the mathematics, with `why`).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
from pathlib import Path

FILES = {
    "math-verify": [
        "tests/test_all.py", "tests/test_boxed.py", "tests/test_numina_cases.py",
        "tests/test_open_thoughts.py", "tests/test_yujianll.py",
    ],
    "lighteval": ["tests/unit/metrics/test_extractive_match.py"],
}

# Test function -> category of the side-by-side table.
CATEGORIES = {
    "test_extraction_abc": "multiple choice",
    "test_multilingual_extraction_abc": "multiple choice",
    "test_number_extraction": "number formats",
    "test_multilingual_extraction_math_latex_numbers": "number formats",
    "test_simple_fraction_notation": "fractions",
    "test_float_precision": "number formats",
    "test_sqrt_precision": "expressions",
    "test_sets_handling": "sets and intervals",
    "test_set_rel_assymetry": "sets and intervals",
    "test_latex_notation": "latex notation",
    "test_latex_notation_math": "latex notation",
    "test_percent_notation": "units and percent",
    "test_relations_math": "equations and relations",
    "test_matrix_extraction": "matrices",
    "test_complex_math_expressions": "expressions",
    "test_symbols": "expressions",
    "test_math_extraction_edge_cases": "extraction from text",
    "test_math_extraction_additional_cases": "extraction from text",
    "test_boxed": "multiple boxes",
    "test_numina_cases": "lists and tuples",
    "test_math_numina_cases": "lists and tuples",
    "test_open_thoughts": "lists and tuples",
    "test_string_extraction": "expressions",
    "test_multilingual_extraction_math": "extraction from text",
}


def _value(node: ast.AST):
    """A literal, with `Language.FRENCH` read as "Language.FRENCH" and pytest.param(...) unwrapped."""
    if isinstance(node, ast.Attribute):
        return ast.unparse(node)
    if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("param"):
        return tuple(_value(arg) for arg in node.args)
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_value(e) for e in node.elts)
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None  # an f-string or expression built at test time: the case is skipped


def _call_options(function: ast.FunctionDef) -> dict:
    """match_types / precision / strict / allow_set_relation_comp of the helper call in the body."""
    options: dict = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("compare_strings", "verify"):
            if ast.unparse(node.func) == "verify":
                options.setdefault("match_types", "default")
            for keyword in node.keywords:
                try:
                    options[keyword.arg] = ast.literal_eval(keyword.value)
                except ValueError:
                    options[keyword.arg] = "$" + ast.unparse(keyword.value)  # a parameter's name
            if ast.unparse(node.func) == "compare_strings" and len(node.args) >= 4:
                options["match_types"] = "$" + ast.unparse(node.args[3])
    return options


def harvest(repo: str, root: Path, path: str) -> list[dict]:
    text = subprocess.run(["git", "-C", str(root), "show", f"HEAD:{path}"], capture_output=True, text=True, check=True).stdout
    rows = []
    for function in ast.walk(ast.parse(text)):
        if not isinstance(function, ast.FunctionDef):
            continue
        for decorator in function.decorator_list:
            if not (isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("parametrize")):
                continue
            names = [n.strip() for n in ast.literal_eval(decorator.args[0]).split(",")]
            options = _call_options(function)
            for item in decorator.args[1].elts:
                values = _value(item)
                case = dict(zip(names, values if isinstance(values, tuple) else (values,)))
                if "gold" not in case or "pred" not in case:
                    continue
                expected = case.get("expected", case.get("result"))
                call = {}
                for key, value in options.items():
                    call[key] = case.get(value[1:]) if isinstance(value, str) and value.startswith("$") else value
                call.setdefault("match_types", ["latex", "expr"])
                language = case.get("language", "Language.ENGLISH")
                in_scope = (
                    language == "Language.ENGLISH"
                    and call.get("precision", 6) == 6
                    and call.get("strict", True) is True
                    and not call.get("allow_set_relation_comp", False)
                    and isinstance(case["gold"], str) and isinstance(case["pred"], str)
                )
                rows.append({
                    "source": f"{repo}:{path}::{function.name}",
                    "category": CATEGORIES.get(function.name, "other"),
                    "gold": case["gold"], "pred": case["pred"], "expected": int(expected),
                    "call": call, "grader": repo, "in_scope": bool(in_scope),
                })
    return rows


def _categorise(gold: str, pred: str) -> str:
    """The side-by-side table's category of a bare-answer pair, from the gold and the prediction."""
    both = f"{gold} {pred}"
    if re.search(r"%|\\text|\\mathrm|\\\$|degrees?\b|feet|units?\b|\\circ", both):
        return "units and percent"
    if "\\begin" in both:
        return "matrices"
    if re.search(r"=|<|>|\\[lg]eq?\b|\\neq?\b", both):
        return "equations and relations"
    if "," in gold or "," in pred or "\\{" in both:
        return "lists and tuples"
    if re.fullmatch(r"[-+0-9., /\\{}fracdt!]*", both.replace(" ", "")):
        return "number formats" if "frac" not in both and "/" not in both else "fractions"
    return "expressions"


def _bare(text) -> str | None:
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, (int, float)):
        return str(text)
    if not isinstance(text, str):
        return None
    text = text.strip()
    if len(text) >= 2 and text.startswith("$") and text.endswith("$") and text.count("$") == 2:
        text = text[1:-1].strip()
    return text


def _pair_row(repo: str, path: str, test: str, gold, pred, expected: int, **extra) -> dict | None:
    gold, pred = _bare(gold), _bare(pred)
    if gold is None or pred is None or not gold or not pred:
        return None
    return {"source": f"{repo}:{path}::{test}", "category": _categorise(gold, pred), "gold": gold, "pred": pred,
            "expected": int(expected), "call": {"match_types": ["latex", "expr"]}, "grader": repo, "in_scope": True,
            "pred_form": "bare", **extra}


def harvest_both_ways(repo: str, root: Path, path: str) -> list[dict]:
    """NeMo-Skills: parametrized (a, b) pairs, each asserted in both directions."""
    tree = ast.parse(_show(root, path))
    rows = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        expected = 1 if "correct" in function.name and "incorrect" not in function.name else 0
        for decorator in function.decorator_list:
            if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("parametrize"):
                for item in decorator.args[1].elts:
                    pair = _value(item)
                    if not isinstance(pair, tuple) or len(pair) != 2:
                        continue
                    for gold, pred in (pair, pair[::-1]):
                        row = _pair_row(repo, path, function.name, gold, pred, expected)
                        if row:
                            rows.append(row)
    return rows


def _is_equiv_call(node: ast.AST) -> tuple[str, ast.Call] | None:
    """`self.assertTrue(is_equiv(a, b))` -> ("assertTrue", the inner call)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("assertTrue", "assertFalse")):
        return None
    inner = node.args[0] if node.args else None
    if isinstance(inner, ast.Call) and len(inner.args) >= 2:
        return node.func.attr, inner
    return None


def harvest_unittest_pairs(repo: str, root: Path, path: str) -> list[dict]:
    """MARIO_EVAL, hendrycks/math: `test_in = ...; test_out = ...; self.assertTrue(is_equiv(test_in, test_out))`."""
    tree = ast.parse(_show(root, path))
    rows = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef) or not function.name.startswith("test"):
            continue
        variables: dict[str, object] = {}

        def visit(statements, variables=variables, function=function):
            for statement in statements:
                if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
                    variables[statement.targets[0].id] = _value(statement.value)
                elif isinstance(statement, ast.For) and isinstance(statement.iter, ast.Name):
                    pairs = variables.get(statement.iter.id) or ()
                    names = [ast.unparse(e) for e in getattr(statement.target, "elts", [])]
                    for pair in pairs:
                        if isinstance(pair, tuple) and len(pair) == len(names):
                            variables.update(zip(names, pair))
                            visit(statement.body)
                elif isinstance(statement, ast.Expr):
                    found = _is_equiv_call(statement.value)
                    if found is None:
                        continue
                    assertion, inner = found
                    a, b = (variables.get(arg.id) if isinstance(arg, ast.Name) else _value(arg) for arg in inner.args[:2])
                    helper = ast.unparse(inner.func)
                    # `self.assertFalse(_test_is_not_equiv(...))` asserts *not equal*: the helper returns is_equiv
                    expected = 1 if assertion == "assertTrue" else 0
                    row = _pair_row(repo, path, function.name, a, b, expected)
                    if row and helper != "are_equal_under_sympy":
                        rows.append(row)

        visit(function.body)
    return rows


def harvest_open_r1(repo: str, root: Path, path: str) -> list[dict]:
    """open-r1: `completion(s)` content and `solution(s)`, then `assertEqual(rewards[i], 1.0 | 0.0)`."""
    tree = ast.parse(_show(root, path))
    rows = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef) or "accuracy" not in function.name and "multiple_completions" not in function.name:
            continue
        variables = {}
        for statement in function.body:
            if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
                variables[statement.targets[0].id] = _value(statement.value)
        completions = variables.get("completion") or variables.get("completions") or ()
        solutions = variables.get("solution") or variables.get("solutions") or ()
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "self.assertEqual" and len(node.args) == 2:
                target = ast.unparse(node.args[0])
                match = re.fullmatch(r"rewards\[(\d+)\]", target)
                if not match:
                    continue
                index = int(match.group(1))
                try:
                    content = completions[index][0]["content"]
                    solution = solutions[index]
                except (IndexError, KeyError, TypeError):
                    continue
                expected = ast.literal_eval(node.args[1])
                if expected in (0.0, 1.0):
                    rows.append({"source": f"{repo}:{path}::{function.name}", "category": _categorise(solution, content),
                                 "gold": solution, "pred": content, "expected": int(expected),
                                 "call": {"match_types": ["latex", "expr"]}, "grader": repo, "in_scope": True})
    return rows


def harvest_simple_evals(repo: str, root: Path, path: str) -> list[dict]:
    """simple-evals: the Expression 1 / Expression 2 / Yes|No examples of its equality prompt."""
    text = _show(root, path)
    template = text[text.index("EQUALITY_TEMPLATE"):text.index("YOUR TASK")]
    rows = []
    for match in re.finditer(r"Expression 1: (.+)\n\s*Expression 2: (.+)\n\s*\n(Yes|No)\n?(\(.*\))?", template):
        gold, pred, verdict, note = match.group(1), match.group(2), match.group(3), match.group(4) or ""
        row = _pair_row(repo, path, "EQUALITY_TEMPLATE", gold, pred, verdict == "Yes")
        if row:
            if "nontrivial" in note:
                row.update(in_scope=False, why="labelled No by the judge's policy (no non-trivial simplification) though equal")
            rows.append(row)
    return rows


# Qwen2.5-Math's grader debugs these (pred, gt) pairs without labels; labelled here by the mathematics.
QWEN_DEBUG_PAIRS = [
    ("0.0833333333333333", "\\frac{1}{12}", 1),
    ("(1,4.5)", "(1,\\frac{9}{2})", 1),
    ("\\frac{x}{7}+\\frac{2}{7}", "\\frac{x+2}{7}", 1),
    ("\\sec^2(y)", "\\tan^2(y)+1", 1),
    ("\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{2\\sqrt{33}+15}", "\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{15+2\\sqrt{33}}", 1),
    ("(+5)(b+2)", "(a+5)(b+2)", 0),
    ("\\frac{1+\\sqrt{5}}{2}", "2", 0),
    ("\\frac{34}{16}+\\frac{\\sqrt{1358}}{16}", "4", 0),
    ("1", "1\\sqrt{19}", 0),
    ("x+1", "x+2n+1", 0),
]


def harvest_qwen(repo: str, root: Path, path: str) -> list[dict]:
    text = _show(root, path)
    rows = []
    for pred, gold, expected in QWEN_DEBUG_PAIRS:
        if pred.replace("\\\\", "\\") not in text.replace("\\\\", "\\") and pred not in text:
            continue  # only pairs the grader file really lists
        row = _pair_row(repo, path, "_test_math_equal", gold, pred, expected, labelled_by="hand")
        if row:
            rows.append(row)
    return rows


def _show(root: Path, path: str) -> str:
    return subprocess.run(["git", "-C", str(root), "show", f"HEAD:{path}"], capture_output=True, text=True, check=True).stdout


# Labels that follow one grader's policy, not the mathematics: kept, marked out of scope, with why.
POLICY_LABELS = {
    ("mario-eval", "x + \\sqrt2I", "x + 1.414I"): "equal only under MARIO_EVAL's loose numeric tolerance (4 digits of an irrational)",
    ("mario-eval", "\\frac13, \\sqrt3, \\pi", "1/3, 1.732, 3.1416"): "same: 4-digit decimals of irrationals",
    ("mario-eval", "40\\pi", "125.663"): "same: a 3-decimal rounding of 40 pi",
    ("mario-eval", "\\begin{cases} a+b=\\frac12 \\\\ a-b=\\sqrt3 \\end{cases}", "\\begin{cases} a+b=0.5\\\\ a-b=1.732\\end{cases}"):
        "same: 1.732 for sqrt 3",
    ("mario-eval", "[1,+\\infty)", "[2^{\\frac{1}{2^{1000}}}, \\infty)"): "equal only under a numeric tolerance (2^(2^-1000) > 1)",
    ("mario-eval", "10cm", "10"): "MARIO_EVAL refuses a unit written without a space; 10 cm is 10",
    ("mario-eval", "10m", "10"): "same",
    ("mario-eval", "20:34", "08:34 \\text{P.M.}"): "clock times, a MARIO_EVAL special case",
    ("mario-eval", "20:34", "20:34:00"): "clock times, a MARIO_EVAL special case",
    ("math-verify", "$9$", "Answer $ \n 9 \n $"): "a test of math-verify's parser (inline math may not span lines), not a verdict on 9",
    ("math-verify", "$9$", "Answer \\( \n 9 \n \\)"): "same, with \\( \\)",
    ("hendrycks-math", "10, 4, -2", "4, 10, -2"): "hendrycks' string grader is order-sensitive; the MATH answers it grades are sets",
    ("hendrycks-math", "0.1, 4, 2", "4, .1, 2"): "same",
}


def mark_policy_labels(rows: list[dict]) -> None:
    for row in rows:
        why = POLICY_LABELS.get((row["grader"], row["gold"], row["pred"]))
        if why:
            row.update(in_scope=False, why=why)


PEERS = {
    "nemo-skills": (harvest_both_ways, ["tests/test_math_equal.py"]),
    "mario-eval": (harvest_unittest_pairs, ["math_evaluation/tests/test_is_equiv.py"]),
    "hendrycks-math": (harvest_unittest_pairs, ["modeling/math_equivalence_test.py"]),
    "open-r1": (harvest_open_r1, ["tests/test_rewards.py"]),
    "simple-evals": (harvest_simple_evals, ["common.py"]),
    "qwen25-math": (harvest_qwen, ["evaluation/grader.py"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--math-verify", required=True, help="a git clone of huggingface/Math-Verify")
    parser.add_argument("--lighteval", required=True, help="a git clone of huggingface/lighteval")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/verifiers/data/grader_cases.json"))
    for peer in PEERS:
        parser.add_argument(f"--{peer}", help=f"a git clone of {peer}")
    args = parser.parse_args()
    rows = []
    for repo, root in (("math-verify", args.math_verify), ("lighteval", args.lighteval)):
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        for path in FILES[repo]:
            for row in harvest(repo, Path(root), path):
                row["commit"] = commit
                rows.append(row)
    for peer, (reader, paths) in PEERS.items():
        root = getattr(args, peer.replace("-", "_"))
        if not root:
            continue
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        for path in paths:
            for row in reader(peer, Path(root), path):
                row["commit"] = commit
                rows.append(row)
    mark_policy_labels(rows)
    seen, unique = set(), []
    for row in rows:  # lighteval repeats many math-verify tables: keep the first copy
        key = (row["gold"], row["pred"], row["expected"], json.dumps(row["call"], sort_keys=True))
        if key not in seen:
            seen.add(key)
            unique.append(row)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(unique, indent=1, ensure_ascii=False) + "\n")
    scope = sum(r["in_scope"] for r in unique)
    print(f"{len(unique)} cases ({scope} in scope) from {len(rows)} rows -> {args.out}")


if __name__ == "__main__":
    main()
