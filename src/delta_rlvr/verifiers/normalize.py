"""String normalisations for extracted math answers, and an exact path for plain numbers.

Why this exists next to math-verify: math-verify parses LaTeX well but (a) misses plain-text
expressions models write (`pi/2`, `sqrt(3)`, `exp(16) - 1`), (b) compares numbers after
rounding to 6 decimals, which calls 1e-7 and 2e-7 equal, and (c) is slow for the most common
case, two plain numbers. So:

- `normalize_answer` removes presentation that never changes the value: `$`, `\\left`/`\\right`,
  thin spaces, `\\dfrac`/`\\tfrac`, degree signs, currency, unit words and `\\text{}` after a
  number, thousands separators in a lone number, a leading `x =` or `x \\in`, a final period.
- `plain_number` reads integers, decimals, `a/b`, `\\frac{a}{b}`, scientific notation and
  percentages into exact `Fraction`s, and `numbers_match` compares two of them exactly, with a
  relative tolerance of 1e-6 only when one side is a rounded decimal of a non-terminating value.
- `plain_text_to_latex` turns `pi`, `sqrt(x)`, `exp(x)`, `**` and `infinity` into LaTeX so
  math-verify's LaTeX parser sees them.
All functions are total: they return a string or None and never raise on any str input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# Presentation-only LaTeX that never changes a value.
# A `\\\\` row break is matched first and kept, so its second backslash is never read as `\\ `.
_DROP = re.compile(r"(\\\\)|\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|\\displaystyle|\\[!,;:>]|\\ |~")
_FRAC_VARIANTS = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|°")
_CURRENCY = re.compile(r"\\\$|\$|\\euro|€|£")
_TEXT_GROUP = re.compile(r"\\(?:text|textbf|textit|mbox|mathrm|operatorname)\s*\{([^{}]*)\}")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_ASSIGNMENT = re.compile(r"^\s*[a-zA-Z](?:_\{?\w+\}?)?\s*(?:=|\\in(?![a-zA-Z]))\s*(.+)$", re.S)
_TRAILING_UNITS = re.compile(r"^([-+]?[\d.,/]+(?:\s*\\%|%)?)\s+(?:[a-zA-Z]+\.?\s*){1,3}$")
_PERCENT = re.compile(r"\s*(?:\\%|%|\\text\{\s*percent\s*\}|\s+percent)\s*$")


def normalize_answer(answer: str) -> str:
    """A value-preserving canonical form of an extracted answer string (see module docstring)."""
    text = answer.strip()
    text = _DROP.sub(lambda match: match.group(1) or "", text)
    text = _FRAC_VARIANTS.sub(r"\\frac", text)
    text = _DEGREES.sub("", text)
    text = _CURRENCY.sub("", text)
    text = _strip_text_groups(text)
    text = text.strip().rstrip(".").strip()
    assignment = _ASSIGNMENT.match(text)
    if assignment and "=" not in assignment.group(1):
        text = assignment.group(1).strip()
    units = _TRAILING_UNITS.match(text)
    if units:
        text = units.group(1)
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    return re.sub(r"\s+", " ", text).strip()


def _strip_text_groups(text: str) -> str:
    """Drop `\\text{unit}` after a value; unwrap `\\text{word}` when it is the whole answer."""
    stripped = _TEXT_GROUP.sub("", text).strip()
    if stripped and any(char.isalnum() for char in stripped):
        return stripped
    return _TEXT_GROUP.sub(lambda match: match.group(1), text).strip()


@dataclass(frozen=True)
class PlainNumber:
    """An exact number read from an answer; `percent` records a trailing % sign."""

    value: Fraction
    percent: bool
    decimal_places: int | None  # digits after the point when written as a decimal, else None


_INT_OR_DEC = re.compile(r"([-+]?)(\d+)(?:\.(\d*))?|([-+]?)\.(\d+)")
_SCIENTIFIC = re.compile(r"([-+]?\d+(?:\.\d+)?)\s*(?:e|E|\\times\s*10\s*\^|\\cdot\s*10\s*\^)\s*\{?\s*([-+]?\d+)\s*\}?")
_SLASH = re.compile(r"([-+]?\d+)\s*/\s*([-+]?\d+)")
_FRAC = re.compile(r"([-+]?)\s*\\frac\s*(?:\{\s*([-+]?\d+)\s*\}|(\d))\s*(?:\{\s*([-+]?\d+)\s*\}|(\d))")


def plain_number(answer: str) -> PlainNumber | None:
    """The exact value of a normalised answer that is a single plain number, else None."""
    text = answer.strip()
    percent = False
    if _PERCENT.search(text):
        percent = True
        text = _PERCENT.sub("", text).strip()
    if len(text) > 64:  # not a plain number; also caps the cost of big exponents below
        return None
    if text.startswith("(") and text.endswith(")") and text.count("(") == 1:
        text = text[1:-1].strip()
    match = _INT_OR_DEC.fullmatch(text)
    if match:
        if match.group(2) is not None:
            sign, whole, frac = match.group(1), match.group(2), match.group(3)
        else:
            sign, whole, frac = match.group(4), "0", match.group(5)
        digits = frac or ""
        value = Fraction(int(whole + digits), 10 ** len(digits))
        value = -value if sign == "-" else value
        return PlainNumber(value, percent, len(digits) if frac is not None else None)
    match = _SCIENTIFIC.fullmatch(text)
    if match:
        exponent = int(match.group(2))
        if abs(exponent) > 400:
            return None
        return PlainNumber(Fraction(match.group(1)) * Fraction(10) ** exponent, percent, None)
    match = _SLASH.fullmatch(text)
    if match:
        return _ratio(match.group(1), match.group(2), percent)
    match = _FRAC.fullmatch(text)
    if match:
        sign = match.group(1)
        number = _ratio(match.group(2) or match.group(3), match.group(4) or match.group(5), percent)
        if number is not None and sign == "-":
            return PlainNumber(-number.value, percent, None)
        return number
    return None


def _ratio(numerator: str, denominator: str, percent: bool) -> PlainNumber | None:
    if int(denominator) == 0:
        return None
    return PlainNumber(Fraction(int(numerator), int(denominator)), percent, None)


_RELATIVE_TOLERANCE = Fraction(1, 10**6)


def numbers_match(gold: PlainNumber, pred: PlainNumber) -> bool:
    """Exact equality, accepting `50%` = `50` = `0.5` and long rounded decimals of 1/3 etc.

    A prediction written as a decimal may stand for a value with no finite decimal expansion
    (1/3, 2/7); it is accepted when it is within 1e-6 relative of the gold. Two terminating
    values (1 vs 1.0001, 0.001 vs 0.0011) must be exactly equal.
    """
    gold_values = [gold.value] + ([gold.value / 100] if gold.percent else [])
    pred_values = [pred.value] + ([pred.value / 100] if pred.percent else [])
    for gold_value in gold_values:
        for pred_value in pred_values:
            if gold_value == pred_value:
                return True
            if _is_rounded_decimal(pred, gold_value) and gold_value != 0:
                if abs(pred_value - gold_value) <= _RELATIVE_TOLERANCE * abs(gold_value):
                    return True
    return False


def _is_rounded_decimal(pred: PlainNumber, gold_value: Fraction) -> bool:
    """Pred is a decimal and gold has no finite decimal expansion, so rounding was forced."""
    if pred.decimal_places is None:
        return False
    denominator = gold_value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator != 1


_WORD_PI = re.compile(r"(?<![\\a-zA-Z])pi(?![a-zA-Z])")
_WORD_INF = re.compile(r"(?<![\\a-zA-Z])(?:infinity|inf|oo)(?![a-zA-Z])")
_FUNCTION_CALL = re.compile(r"(?<![\\a-zA-Z])(sqrt|exp)\s*\(")


def plain_text_to_latex(answer: str) -> str:
    """Rewrite plain-text math (`pi/2`, `sqrt(3)`, `exp(16) - 1`, `2**10`) as LaTeX."""
    text = answer.replace("**", "^")
    text = _WORD_PI.sub(r"\\pi ", text)
    text = _WORD_INF.sub(r"\\infty ", text)
    # Rewrite calls innermost-last; a bounded number of passes keeps this linear-ish and total.
    for _ in range(32):
        match = _FUNCTION_CALL.search(text)
        if match is None:
            break
        close = _matching_paren(text, match.end() - 1)
        if close is None:
            break
        inner = text[match.end() : close]
        replacement = f"\\sqrt{{{inner}}}" if match.group(1) == "sqrt" else f"e^{{{inner}}}"
        text = text[: match.start()] + replacement + text[close + 1 :]
    return text


def _matching_paren(text: str, open_index: int) -> int | None:
    depth = 0
    for index in range(open_index, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    return None
