"""Restate the labelled (gold, prediction, expected) cases of other graders' public test files as data.

Reads the test files of huggingface/Math-Verify and huggingface/lighteval from local git mirrors
(no code is imported or copied: the parametrize tables are read with `ast` and written out as
JSON rows) and writes `tests/verifiers/data/grader_cases.json`, which the regression suite
(`tests/verifiers/test_math_regression_vs_graders.py`) and the side-by-side table
(`benchmarks/compare_math_verify.py`) read.

    python scripts/harvest_grader_cases.py --math-verify /path/to/Math-Verify --lighteval /path/to/lighteval

Each row: source (repo:path::test), category, gold, pred, expected (0/1), call (how that grader
calls math-verify: targets and options), in_scope (False for non-English cases and for cases that
depend on non-default options: another precision, strict=False, set-relation comparison).
"""

from __future__ import annotations

import argparse
import ast
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--math-verify", required=True, help="a git clone of huggingface/Math-Verify")
    parser.add_argument("--lighteval", required=True, help="a git clone of huggingface/lighteval")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/verifiers/data/grader_cases.json"))
    args = parser.parse_args()
    rows = []
    for repo, root in (("math-verify", args.math_verify), ("lighteval", args.lighteval)):
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        for path in FILES[repo]:
            for row in harvest(repo, Path(root), path):
                row["commit"] = commit
                rows.append(row)
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
