"""String normalisations for extracted math answers, and an exact path for plain numbers.

Why this exists next to math-verify: math-verify parses LaTeX well but (a) misses plain-text
expressions models write (`pi/2`, `sqrt(3)`, `exp(16) - 1`), (b) compares numbers after
rounding to 6 decimals, which calls 1e-7 and 2e-7 equal, (c) deletes `\\mathrm{...}` and
`\\text{...}` groups wholesale (so `3+2\\mathrm{i}` becomes `3+2` and `70 \\text{ or more}`
becomes `70`), (d) cannot read `1 000`, `1000,99`, `185\\` or `10 cm^2`, and (e) is slow for the
most common case, two plain numbers.

Every rule here is one that cannot turn a wrong answer into a right one (each was checked
against the false-positive fuzz over every shipped gold, `tests/verifiers/test_math_fuzz_*`):

- `normalize_answer` removes presentation that never changes the value: `$`, `\\left`/`\\right`,
  thin spaces, `\\dfrac`/`\\tfrac`/`\\cfrac`, degree signs, currency, a trailing backslash, a
  final period, a leading `x =` / `x \\in`, thousands separators (`,`, `\\,`, `{,}`, a space) in a
  lone number, and *units*: only words from `UNIT_WORDS` (never a single letter outside
  `\\text{}`, never `pi`, `e`, `i`, `or`, `more`), optionally squared or cubed. `\\mathrm{i}` and
  `\\mathrm{e}` become `i` and `e`; any other `\\text{...}` that is not a unit is unwrapped into
  plain words (which math-verify then refuses to equate with a number), not deleted.
- `plain_number` reads integers, decimals, `a/b`, `\\frac{a}{b}`, scientific notation and
  percentages into exact `Fraction`s, and `numbers_match` compares two of them exactly, with a
  relative tolerance of 1e-6 only when one side is a rounded decimal of a non-terminating value.
- `decimal_comma_value` reads `1000,99` / `0,111` (a comma that cannot be a thousands
  separator); it is only ever compared with a number written with a decimal point.
- `plain_text_to_latex` turns `pi`, `sqrt(x)`, `exp(x)`, `**` and `infinity` into LaTeX so
  math-verify's LaTeX parser sees them.
All functions are total: they return a string or None and never raise on any str input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# Unit words that may follow a number and be dropped. Multi-letter only (a bare single letter
# after a number is a variable or a constant: `2 e`, `5 i`, `3 x`); single-letter units (m, g,
# s, l) count only inside `\text{}` / `\mathrm{}`. No word here is a math constant or a hedge.
_UNIT_STEMS = (
    "cm mm km nm dm meter metre centimeter centimetre millimeter millimetre kilometer kilometre "
    "inch inches ft feet foot yd yard mile mi "
    "kg mg gram kilogram lb lbs pound ounce oz ton tonne "
    "sec second minute min hr hour day week month year yr "
    "mph kph kmh "
    "ml liter litre gallon cup "
    "dollar cent euro yuan rupee peso yen "
    "unit degree deg radian rad "
    "square sq cubic"
)
UNIT_WORDS = frozenset(
    word for stem in _UNIT_STEMS.split() for word in (stem, stem + "s", stem + "es") if word not in ("mis", "ins")
)
_SINGLE_LETTER_UNITS = frozenset("m g s l L h".split())
_UNIT_EXPONENT = r"(?:\s*(?:\^\s*(?:\{\s*[23]\s*\}|[23])|²|³))?"
_UNIT_PHRASE = re.compile(r"(?:[a-zA-Z]+\.?(?:\s*/\s*[a-zA-Z]+)?" + _UNIT_EXPONENT + r"\s*){1,3}")

# Presentation-only LaTeX that never changes a value.
# A `\\\\` row break is matched first and kept, so its second backslash is never read as `\\ `.
_DROP = re.compile(r"(\\\\)|\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|\\displaystyle|\\[!,;:>]|\\ |~")
_FRAC_VARIANTS = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|°")
_CURRENCY = re.compile(r"\\\$|\$|\\euro|€|£")
_CONSTANT_ROMAN = re.compile(r"\\mathrm\s*\{\s*([ie])\s*\}|\\mathrm\s+([ie])(?![a-zA-Z])")
_TEXT_GROUP = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|operatorname)\s*\{([^{}]*)\}(" + _UNIT_EXPONENT + ")"
)
_THOUSANDS = re.compile(r"[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")  # `0,111` is a decimal comma
_SPACE_THOUSANDS = re.compile(r"[-+]?[1-9]\d{0,2}(?: \d{3})+(?:\.\d+)?")
_ASSIGNMENT = re.compile(r"^\s*[a-zA-Z](?:_\{?\w+\}?)?\s*(?:=|\\in(?![a-zA-Z]))\s*(.+)$", re.S)
_NUMBER_THEN_WORDS = re.compile(r"^([-+]?(?:\d[\d.,/]*|\\frac\{\d+\}\{\d+\})(?:\s*\\%|%)?)\s*(\S.*)$", re.S)
_VALUE_THEN_WORDS = re.compile(r"^(.*?[\d})])\s+([a-zA-Z][a-zA-Z\s/^{}23²³.]*)$", re.S)  # `3\sqrt{2} units`
_PERCENT = re.compile(r"\s*(?:\\%|%|\\text\{\s*(?:percent|pct)\s*\}|\s+(?:percent|percentage|pct))\s*$")


def is_unit_phrase(words: str) -> bool:
    """True for `cm`, `square meters`, `km/h`, `sq ft`, `m^2`: every word a known unit."""
    text = words.strip().rstrip(".")
    if not text or not _UNIT_PHRASE.fullmatch(text):
        return False
    tokens = re.findall(r"[a-zA-Z]+", text)
    if len(tokens) == 1 and len(tokens[0]) == 1:
        return False  # a bare single letter is a variable unless `\text{}` says otherwise
    return all(token.lower() in UNIT_WORDS or (len(tokens) > 1 and token in _SINGLE_LETTER_UNITS) for token in tokens)


def _text_group(match: re.Match, whole: bool) -> str:
    content = match.group(1).strip()
    if whole:
        return match.group(1)
    if content in _SINGLE_LETTER_UNITS or is_unit_phrase(content):
        return " "
    return f" {content} " + match.group(2)


def normalize_answer(answer: str) -> str:
    """A value-preserving canonical form of an extracted answer string (see module docstring)."""
    text = answer.strip()
    text = _DROP.sub(lambda match: match.group(1) or "", text)
    text = _FRAC_VARIANTS.sub(r"\\frac", text)
    text = _DEGREES.sub("", text)
    text = _CURRENCY.sub("", text)
    text = _CONSTANT_ROMAN.sub(lambda match: match.group(1) or match.group(2), text)
    text = text.replace("{,}", ",")
    whole = _TEXT_GROUP.fullmatch(text.strip())
    text = _TEXT_GROUP.sub(lambda match: _text_group(match, whole is not None), text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"(?:\\+|\.)$", "", text).strip()  # `185\`, `5.`
    assignment = _ASSIGNMENT.match(text)
    if assignment and "=" not in assignment.group(1):
        text = assignment.group(1).strip()
    for pattern in (_NUMBER_THEN_WORDS, _VALUE_THEN_WORDS):
        number_words = pattern.match(text)
        if number_words and is_unit_phrase(number_words.group(2)):
            text = number_words.group(1)
            break
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    elif _SPACE_THOUSANDS.fullmatch(text):
        text = text.replace(" ", "")
    return re.sub(r"\s+", " ", text).strip()


_DECIMAL_COMMA = re.compile(r"([-+]?)(\d+),(\d+)")
_DECIMAL_POINT = re.compile(r"[-+]?\d*\.\d+")


def decimal_comma_value(text: str) -> Fraction | None:
    """`1000,99` -> 1000.99 and `0,111` -> 0.111; None for anything a thousands reading fits."""
    match = _DECIMAL_COMMA.fullmatch(text.strip())
    if match is None:
        return None
    sign, whole, frac = match.groups()
    if len(frac) == 3 and not whole.startswith("0") and len(whole) <= 3:
        return None  # `1,000` / `40,200`: a thousands separator (math-verify's reading too)
    value = Fraction(int(whole + frac), 10 ** len(frac))
    return -value if sign == "-" else value


def is_point_decimal(text: str) -> bool:
    return _DECIMAL_POINT.fullmatch(text.strip()) is not None


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


_CHOICE_BARE = re.compile(r"^\(?\s*([A-E])\s*\)?[.:]?$")
_CHOICE_WITH_TEXT = re.compile(r"^(?:\(\s*([A-E])\s*\)|([A-E])[.):]|([A-E])(?=\s+[A-Z][a-z]))\s*(\S.*)?$")


def choice_letter(answer: str, *, with_option_text: bool = False) -> str | None:
    """`D`, `(D)`, `\\text{(D)}` -> "D"; with_option_text also reads `(D) Alina`, `C Cecile`,
    `D. text` and, for golds, the last line that starts with an option (`...\\n(C) Cecile`)."""
    text = normalize_answer(answer)
    match = _CHOICE_BARE.match(text)
    if match:
        return match.group(1)
    if not with_option_text:
        return None
    for line in reversed([line.strip() for line in answer.strip().splitlines() if line.strip()]):
        line = normalize_answer(line)
        match = _CHOICE_BARE.match(line) or _CHOICE_WITH_TEXT.match(line)
        if match:
            return next(group for group in match.groups() if group)
    return None


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
