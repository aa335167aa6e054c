"""Raw math-verify, called the way other graders call it: the yardstick `score_math` is held to.

Used by the regression suite (`tests/verifiers/test_math_regression_vs_graders.py`), the
false-positive fuzz and `benchmarks/compare_math_verify.py`; never by training or evaluation.

`call["match_types"]` says which extraction targets the grader's test uses: "latex" ->
`LatexExtractionConfig(boxed_match_priority=0)` (math-verify's own tests) or the default priority
(lighteval, which matches "final answer is" before boxes), "expr" -> `ExprExtractionConfig()`,
"NativeLetters" -> `StringExtractionConfig(strings=A..E)` (lighteval's letter extraction),
"default" -> `parse(text)` with math-verify's defaults. `precision` is `float_rounding`.
"""

from __future__ import annotations

import logging

logging.getLogger("math_verify").setLevel(logging.ERROR)


def raw_math_verify(gold: str, pred: str, call: dict | None = None, grader: str = "math-verify") -> bool:
    """math-verify's verdict on (gold, pred), both full texts, as `grader` calls it."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify

    call = call or {"match_types": ["latex", "expr"]}
    match_types = call.get("match_types", ["latex", "expr"])
    try:
        if match_types == "default":
            return bool(verify(parse(gold, parsing_timeout=None), parse(pred, parsing_timeout=None), timeout_seconds=None))
        targets = []
        for match_type in match_types:
            if match_type == "latex":
                targets.append(LatexExtractionConfig() if grader == "lighteval" else LatexExtractionConfig(boxed_match_priority=0))
            elif match_type == "expr":
                targets.append(ExprExtractionConfig())
            elif match_type == "NativeLetters":
                targets.append(StringExtractionConfig(strings=("A", "B", "C", "D", "E"), lowercase=False))
        gold_parsed = parse(gold, targets, parsing_timeout=None)
        pred_parsed = parse(pred, targets, parsing_timeout=None)
        return bool(verify(gold_parsed, pred_parsed, float_rounding=call.get("precision", 6), timeout_seconds=None))
    except Exception:  # noqa: BLE001 - a grader that raises gives no credit
        return False


def as_bare_gold(gold: str) -> str:
    """A bare gold answer as graders pass one to math-verify: inside `$...$` unless already delimited."""
    text = gold.strip()
    if "$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text:
        return text
    return f"${text}$"


def grader_case(row: dict) -> dict:
    """A harvested grader case (tests/verifiers/data/grader_cases.json) with what both graders
    are given: `response` (a bare-answer peer's prediction boxed, as a model writes it; else the
    peer's own text), `answer_format` for score_math ("choice" for letter cases, "boxed" for bare
    predictions, else "auto") and `raw_gold` for math-verify (a bare gold inside `$...$`)."""
    bare = row.get("pred_form") == "bare"
    letters = row["call"].get("match_types") == ["NativeLetters"]
    return {
        **row,
        # a bare `185\\` would escape the box's closing brace: a space keeps it a trailing backslash
        "response": f"The final answer is $\\boxed{{{row['pred'] + (' ' if row['pred'].endswith(chr(92)) else '')}}}$." if bare
        else row["pred"],
        "answer_format": "choice" if letters else "boxed" if bare else "auto",
        "raw_gold": as_bare_gold(row["gold"]) if bare else row["gold"],
    }
