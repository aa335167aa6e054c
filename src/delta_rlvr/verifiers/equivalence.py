"""Is an extracted answer equal to the gold answer? The one answer checker of the project.

Runs inside a verifier worker process (see `pool.py`): it may be slow or hang on adversarial
input, and the pool's hard deadline is what makes that safe. Called directly it gives the same
verdict with no time guarantee (tests and debugging).

math-verify is the engine; the rules around it either decide cases it gets wrong in a way that
is provably safe, or keep its own normalisation away from the inputs it mangles. Order:
1. the gold is prepared (`extract.prepare_gold`: boxes inside it, `$...$`); a list of golds
   means any of them;
2. multiple choice: when the gold is an option (`D`, `(D) Alina`, `\\text{(D)}`) and the
   prediction is a bare letter, the letters decide;
3. normalised strings equal (`normalize.normalize_answer`, value-preserving rules only);
4. both sides plain numbers -> exact rational comparison, decisive both ways (this also
   refuses math-verify's 6-decimal rounding of tiny values); a decimal comma (`1000,99`)
   against a decimal point;
5. math-verify, gold first (`verify(gold, pred)` is not symmetric), over up to three renderings
   of each side compared level by level: normalised, plain text rewritten as LaTeX (`pi/2`,
   `exp(16)`), and as written - the last only when neither side holds `\\text`/`\\mathrm`
   groups, which math-verify deletes wholesale (`3+2\\mathrm{i}` -> `3+2`, `70 \\text{ or more}`
   -> `70`).
Free-text mode (answer format "auto" with no box, `####`, `Answer:` or tag) first lets
math-verify extract the answer from the whole response, as graders call it.
math-verify's own signal.alarm timeouts are disabled (they would fight the worker's deadline
timer and fail off the main thread); the worker enforces time instead.
"""

from __future__ import annotations

import logging
import re
from typing import Literal

from delta_rlvr.verifiers.extract import prepare_gold
from delta_rlvr.verifiers.normalize import (
    MATH_WORDS,
    answer_units,
    choice_letter,
    decimal_comma_value,
    has_relation,
    is_choice_hedge,
    is_point_decimal,
    normalize_answer,
    numbers_match,
    plain_number,
    plain_text_to_latex,
    text_form,
    text_words,
)

Verdict = Literal["correct", "wrong", "unparsed", "gold_unparsed"]
Mode = Literal["extracted", "free"]

# math-verify warns once that we disabled its timeouts; that is deliberate (see docstring).
logging.getLogger("math_verify").setLevel(logging.ERROR)
logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)

_DELETED_BY_MATH_VERIFY = re.compile(r"\\(?:text|textbf|textit|textrm|mbox|mathrm|operatorname)\b")


def _renderings(answer: str) -> list[str]:
    """Forms of one answer: normalised, LaTeX-ified, and as written (see module docstring)."""
    normalised = normalize_answer(answer)
    forms = [normalised, plain_text_to_latex(normalised)]
    if not _DELETED_BY_MATH_VERIFY.search(answer):
        forms.append(answer.strip())
    return forms


def _parse(form: str) -> list | None:
    """math-verify's parse of one rendering, or None when it yields no sympy object."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    from sympy import Basic, MatrixBase

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    # `\\boxed{28\\%}` fails where `$28\\%$` parses; only for percentages, since math-verify's
    # inline-math reading drops trailing words (`$70 or more$` -> 70).
    wrappings = [f"\\boxed{{{form}}}"] + ([f"${form}$"] if "%" in form and "$" not in form else [])
    for wrapped in wrappings:
        result = parse(wrapped, extraction_config=config, parsing_timeout=None)
        if any(isinstance(item, (Basic, MatrixBase)) for item in result):
            return result
    return None


def free_text_answer(text: str) -> tuple[list | None, str | None]:
    """math-verify's own extraction from a whole response (latex, then plain expressions)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    from sympy import Basic, MatrixBase

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    result = parse(text, extraction_config=config, parsing_timeout=None)
    if not result:
        return None, None
    parsed = result if any(isinstance(item, (Basic, MatrixBase)) for item in result) else None
    extracted = next((item for item in reversed(result) if isinstance(item, str)), None)
    return parsed, extracted


def check_equivalence(gold: str | list[str] | tuple[str, ...], pred: str, mode: Mode = "extracted") -> tuple[Verdict, str]:
    """Verdict for a prediction against a gold answer (or any of several), plus the rule that
    decided it. mode "free": `pred` is a whole response, read by math-verify's extraction."""
    golds = [gold] if isinstance(gold, str) else [g for g in gold if isinstance(g, str)]
    if not golds:
        return "gold_unparsed", "no gold"
    if mode != "free":
        return _any_gold(golds, pred, None)
    # A whole response: our extractors first (box chain, ####, Answer:, a lone `$...$`), then
    # math-verify's own extraction as graders call it.
    from delta_rlvr.verifiers.extract import extract_auto, extract_boxed_answers

    committed = extract_auto(pred)
    boxed = extract_boxed_answers(pred)
    if committed is not None and boxed is not None and committed != boxed:
        # a "final answer is X" statement after the last box: X is the answer, and math-verify's
        # own extraction (which prefers the box) must not score the intermediate box instead
        return _any_gold(golds, committed, None)
    candidates = [committed]
    whole = prepare_gold(pred)
    if whole != pred.strip() and "$" not in whole:
        candidates.append(whole)
    first: tuple[Verdict, str] | None = None
    for candidate in dict.fromkeys(c for c in candidates if c):
        verdict = _any_gold(golds, candidate, None)
        if verdict[0] == "correct":
            return verdict
        first = first or verdict
    if first is not None and first[0] == "wrong" and boxed is not None:
        # the response's boxed answer was read and judged wrong (an `Answer:` line may hold prose):
        # math-verify's free-text reading of the same box (`11 \text{ or more}` -> 11) must not undo that
        return first
    free_parse, extracted = free_text_answer(pred)
    if extracted is None:
        return first or ("unparsed", "math-verify found no answer in the response")
    verdict = _any_gold(golds, extracted, free_parse)
    if verdict[0] == "correct" or first is None:
        return verdict
    return first


def _any_gold(golds: list[str], pred: str, free_parse: list | None) -> tuple[Verdict, str]:
    verdicts = [_check_one(prepare_gold(g), pred, free_parse) for g in golds]
    for verdict in verdicts:
        if verdict[0] == "correct":
            return verdict if len(golds) == 1 else (verdict[0], f"{verdict[1]} (one of {len(golds)} golds)")
    return verdicts[0]


_WORD_TOKEN = re.compile(r"[a-zA-Z]{2,}\.?")


def _trailing_words(answer: str) -> str:
    """Qualifying words after a value (`or more`, `apples`), '' when there are none. Linear:
    whitespace-separated words are taken from the end while they are words."""
    tokens = answer.split()
    count = 0
    while count < len(tokens) - 1 and _WORD_TOKEN.fullmatch(tokens[-1 - count]):
        count += 1
    if count == 0 or not re.search(r"[\d\\}]", " ".join(tokens[: len(tokens) - count])):
        return ""
    words = tokens[len(tokens) - count:]
    return " ".join(words) if any(w.rstrip(".").lower() not in MATH_WORDS for w in words) else ""


# Words after a value that qualify it or change it (a hedge, a relation, a multiplier), so the
# value alone is not what was answered: `70 or more`, `70 thousand`, `5 squared`, `3 at least`.
_VALUE_CHANGING_WORDS = frozenset(
    "or and nor either neither more less least most fewer greater larger smaller bigger than at about around approximately "
    "approx roughly nearly almost over under above below up to between from through until not no none never except without "
    "plus minus times divided by per maybe possibly perhaps probably if unless negative positive inverse reciprocal base "
    "zero one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred thousand million "
    "billion trillion dozen half halves third thirds quarter quarters tens hundreds thousands millions billions ones "
    "squared cubed factorial power percent".split()
)


def _changes_the_value(words: str) -> bool:
    return any(word.rstrip(".").lower() in _VALUE_CHANGING_WORDS for word in words.split())


def _without_trailing_words(normalised: str, words: str) -> str:
    return normalised[: len(normalised) - len(words)].strip() if normalised.endswith(words) else normalised


_TEXT_RULE_MAX_CHARS = 200  # longer golds are solutions, read by math-verify's extraction below


def _is_text(normalised: str) -> bool:
    """Words that are not mathematics, and not a qualifier after a value (`5 apples`)."""
    return len(normalised) <= _TEXT_RULE_MAX_CHARS and bool(text_words(normalised)) and not _trailing_words(normalised)


def _check_one(gold: str, pred: str, free_parse: list | None) -> tuple[Verdict, str]:
    gold_norm = normalize_answer(gold)
    pred_norm = normalize_answer(pred)
    if not gold_norm:
        return "gold_unparsed", "empty gold"
    if not pred_norm:
        return "unparsed", "empty prediction"

    gold_letter = choice_letter(gold, with_option_text=True)
    if gold_letter is not None and (is_choice_hedge(pred) or is_choice_hedge(pred_norm)):
        return "wrong", "several option letters (a hedge)"
    pred_letter = choice_letter(pred)
    if gold_letter is not None and pred_letter is not None:
        return ("correct", "same option letter") if gold_letter == pred_letter else ("wrong", "different option letter")

    if has_relation(pred_norm) and not has_relation(gold_norm):
        return "wrong", "a relation (an inequality) where the gold is a value"
    gold_units, pred_units = answer_units(gold), answer_units(pred)
    if gold_units and pred_units and gold_units != pred_units:
        return "wrong", f"different units ({', '.join(sorted(pred_units))} for {', '.join(sorted(gold_units))})"

    if gold_norm == pred_norm or gold_norm.casefold() == pred_norm.casefold():
        return "correct", "normalised strings equal"

    gold_text = _is_text(gold_norm)
    # math-verify's free-text extraction returns the words around its parse (`about 1`): only
    # the gold side decides there
    pred_text = free_parse is None and _is_text(pred_norm)
    if gold_text or pred_text:
        # words compare as words, never as products of letter symbols (`Amy` is not `May`)
        same = text_form(gold) == text_form(pred)
        return ("correct", "same text") if same else ("wrong", "different text" if gold_text and pred_text else "text against a value")

    gold_number = plain_number(gold_norm)
    pred_number = plain_number(pred_norm)
    if gold_number is not None and pred_number is not None:
        if numbers_match(gold_number, pred_number):
            return "correct", "equal numbers"
        return "wrong", "different numbers"
    if "=" in pred_norm and "=" not in gold_norm and re.match(r"\s*[-+\d]", pred_norm.split("=", 1)[0]):
        # `-x=5` (x = -5) or `2x=10` against a value: math-verify compares the right side only
        return "wrong", "an equation whose left side is not the unknown"
    pred_words, gold_words = _trailing_words(pred_norm), _trailing_words(gold_norm)
    if pred_words and not gold_words:
        if _changes_the_value(pred_words):
            # `\\frac{1}{9} or more`, `70 thousand`: math-verify drops words after a LaTeX value
            return "wrong", f"words after the answer ({pred_words!r}) that qualify or change the value"
        # `17 \\text{ any text}`, `9 apples`: a description after the value; the value decides
        return _check_one(gold, _without_trailing_words(pred_norm, pred_words), free_parse)
    if gold_words and not pred_words and not _changes_the_value(gold_words):
        return _check_one(_without_trailing_words(gold_norm, gold_words), pred, free_parse)
    for comma_side, point_side in ((pred_norm, gold_norm), (gold_norm, pred_norm)):
        comma_value = decimal_comma_value(comma_side)
        if comma_value is not None and is_point_decimal(point_side):
            same = comma_value == plain_number(point_side).value
            return ("correct", "decimal comma") if same else ("wrong", "different numbers (decimal comma)")

    from math_verify import verify

    # Renderings are compared level by level (normalised with normalised, ...), never across
    # levels: a normalisation that loses information on one side only must not be able to make
    # two different answers meet.
    gold_parsed_any = pred_parsed_any = False
    tried: set[tuple[str, str]] = set()
    gold_forms, pred_forms = _renderings(gold), _renderings(pred)
    for gold_form, pred_form in zip(gold_forms, pred_forms):
        if (gold_form, pred_form) in tried or not gold_form or not pred_form:
            continue
        tried.add((gold_form, pred_form))
        gold_parse, pred_parse = _parse(gold_form), _parse(pred_form)
        gold_parsed_any |= gold_parse is not None
        pred_parsed_any |= pred_parse is not None
        if gold_parse is not None and pred_parse is not None:
            if verify(gold_parse, pred_parse, timeout_seconds=None):
                return "correct", "math-verify"
    if free_parse is not None and not _DELETED_BY_MATH_VERIFY.search(gold):
        gold_parse = _parse(gold_forms[0])
        if gold_parse is not None and verify(gold_parse, free_parse, timeout_seconds=None):
            return "correct", "math-verify (free text)"
        pred_parsed_any = True
    if not gold_parsed_any and len(gold) > 40:
        # A gold that is a whole solution, not an answer: math-verify extracts its answer.
        gold_free, gold_text = free_text_answer(gold)
        if gold_free is not None and gold_text:
            if len(gold_text) < len(gold):
                return _check_one(gold_text, pred, free_parse)
            return ("gold_unparsed", "math-verify could not parse the gold answer")
    if not gold_parsed_any:
        return "gold_unparsed", "math-verify could not parse the gold answer"
    if not pred_parsed_any:
        return "unparsed", "math-verify could not parse the prediction"
    return "wrong", "math-verify"
