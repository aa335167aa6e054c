"""Is an extracted answer equal to the gold answer? The one answer checker of the project.

Runs inside a verifier worker process (see `pool.py`): it may be slow or hang on adversarial
input, and the pool's hard deadline is what makes that safe. Called directly it gives the same
verdict with no time guarantee (tests and debugging).

Order of checks, cheapest and most exact first:
1. normalised strings equal (`\\dfrac{1}{2}` vs `\\frac{1}{2}`, `\\text{Evelyn}` vs `Evelyn`);
2. both sides plain numbers -> exact rational comparison (`normalize.numbers_match`); this
   decides the common case without sympy and avoids math-verify's 6-decimal rounding on tiny
   values;
3. math-verify, gold first (`verify(gold, pred)` is not symmetric), over three renderings of
   each side compared level by level: as written, normalised, and plain text rewritten as
   LaTeX (`pi/2`, `exp(16)`).
math-verify's own signal.alarm timeouts are disabled (they would fight the worker's deadline
timer and fail off the main thread); the worker enforces time instead.
"""

from __future__ import annotations

import logging
from typing import Literal

from delta_rlvr.verifiers.normalize import (
    normalize_answer,
    numbers_match,
    plain_number,
    plain_text_to_latex,
)

Verdict = Literal["correct", "wrong", "unparsed", "gold_unparsed"]

# math-verify warns once that we disabled its timeouts; that is deliberate (see docstring).
logging.getLogger("math_verify").setLevel(logging.ERROR)


def _renderings(answer: str) -> list[str]:
    """Three forms of one answer, most faithful first: as written, normalised, LaTeX-ified."""
    normalised = normalize_answer(answer)
    return [answer.strip(), normalised, plain_text_to_latex(normalised)]


def _parse(form: str) -> list | None:
    """math-verify's parse of one rendering, or None when it yields no sympy object."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    from sympy import Basic, MatrixBase

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    result = parse(f"\\boxed{{{form}}}", extraction_config=config, parsing_timeout=None)
    return result if any(isinstance(item, (Basic, MatrixBase)) for item in result) else None


def check_equivalence(gold: str, pred: str) -> tuple[Verdict, str]:
    """Verdict for an extracted prediction against a gold answer, plus which rule decided it."""
    gold_norm = normalize_answer(gold)
    pred_norm = normalize_answer(pred)
    if not gold_norm:
        return "gold_unparsed", "empty gold"
    if not pred_norm:
        return "unparsed", "empty prediction"
    if gold_norm == pred_norm or gold_norm.casefold() == pred_norm.casefold():
        return "correct", "normalised strings equal"

    gold_number = plain_number(gold_norm)
    pred_number = plain_number(pred_norm)
    if gold_number is not None and pred_number is not None:
        if numbers_match(gold_number, pred_number):
            return "correct", "equal numbers"
        return "wrong", "different numbers"

    from math_verify import verify

    # Renderings are compared level by level (as written with as written, normalised with
    # normalised, ...), never across levels: a normalisation that loses information on one side
    # only must not be able to make two different answers meet.
    gold_parsed_any = pred_parsed_any = False
    tried: set[tuple[str, str]] = set()
    for gold_form, pred_form in zip(_renderings(gold), _renderings(pred)):
        if (gold_form, pred_form) in tried or not gold_form or not pred_form:
            continue
        tried.add((gold_form, pred_form))
        gold_parse, pred_parse = _parse(gold_form), _parse(pred_form)
        gold_parsed_any |= gold_parse is not None
        pred_parsed_any |= pred_parse is not None
        if gold_parse is not None and pred_parse is not None:
            if verify(gold_parse, pred_parse, timeout_seconds=None):
                return "correct", "math-verify"
    if not gold_parsed_any:
        return "gold_unparsed", "math-verify could not parse the gold answer"
    if not pred_parsed_any:
        return "unparsed", "math-verify could not parse the prediction"
    return "wrong", "math-verify"
