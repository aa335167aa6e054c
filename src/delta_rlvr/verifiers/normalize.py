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
    if content in _OPERATOR_NAMES:
        return f"\\operatorname{{{content}}}"  # `\\operatorname{lcm}(4,6)`: a function math-verify evaluates
    return f" {content} " + match.group(2)


_OPERATOR_NAMES = frozenset("lcm gcd sgn arg".split())


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
_MIXED = re.compile(r"([-+]?)(\d+)\s+(\d+)\s*/\s*(\d+)")  # `1 1/2` = 3/2, a proper fraction after a whole number
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
        mantissa = match.group(1)
        # `2.3148e-3` is written to 4 + 3 = 7 decimal places
        places = max(0, len(mantissa.split(".")[1]) - exponent) if "." in mantissa else None
        return PlainNumber(Fraction(mantissa) * Fraction(10) ** exponent, percent, places)
    match = _MIXED.fullmatch(text)
    if match and 0 < int(match.group(3)) < int(match.group(4)):
        whole = Fraction(int(match.group(2))) + Fraction(int(match.group(3)), int(match.group(4)))
        return PlainNumber(-whole if match.group(1) == "-" else whole, percent, None)
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


RELATIVE_TOLERANCE = Fraction(1, 10**6)
"""Relative tolerance for a decimal against a value it can only approximate (see numbers_match)."""


def numbers_match(gold: PlainNumber, pred: PlainNumber) -> bool:
    """Exact equality, with two documented allowances.

    Percent: when exactly one side carries `%`, `x%` also equals x/100 (`50%` = `0.5`, and
    `50%` = `50` as benchmarks write percentages without the sign); two percentages compare as
    written (`50%` != `0.5%`).
    Rounded decimals: a decimal with k places against a value it cannot equal exactly (a gold
    with no finite expansion, 1/3, 2/7; or a decimal written with fewer places) is accepted
    when it lies within one unit of its own last place (|pred - gold| < 10^-k: the value
    rounded or cut to k places, or its last digit off by one, `0.3333334` = 1/3) and within
    1e-6 relative of it; so `0.3333333` = 1/3 but `0.333` != 1/3, and no tolerance ever accepts
    a different integer or a decimal further off than one unit of its last place
    (`285714.0` != 2000000/7).
    Two terminating values otherwise compare exactly (1 != 1.0001, 0.001 != 0.0011).
    """
    gold_values = [gold.value] + ([gold.value / 100] if gold.percent and not pred.percent else [])
    pred_values = [pred.value] + ([pred.value / 100] if pred.percent and not gold.percent else [])
    for gold_value in gold_values:
        for pred_value in pred_values:
            if gold_value == pred_value:
                return True
            if _within_written_precision(pred, pred_value, gold_value) or _within_written_precision(gold, gold_value, pred_value):
                return True
    return False


def _within_written_precision(approx: PlainNumber, approx_value: Fraction, exact_value: Fraction) -> bool:
    """`approx` (a decimal with k places) is within one unit of its last place of `exact_value`, and close."""
    places = approx.decimal_places
    if places is None or places == 0 or exact_value == 0:
        return False
    if _terminates_within(exact_value, places):
        return False  # representable with k places: only exact equality counts
    difference = abs(approx_value - exact_value)
    return difference < Fraction(1, 10**places) and difference <= RELATIVE_TOLERANCE * abs(exact_value)


def _terminates_within(value: Fraction, places: int) -> bool:
    """True when `value` has an exact decimal expansion of at most `places` digits."""
    return (value * 10**places).denominator == 1


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


# --- units, relations, text answers and hedges (issue 25: rules a policy cannot game) ---

_UNIT_CANON = {
    "cm": "cm", "centimeter": "cm", "centimetre": "cm", "mm": "mm", "millimeter": "mm", "millimetre": "mm",
    "km": "km", "kilometer": "km", "kilometre": "km", "nm": "nm", "dm": "dm", "m": "m", "meter": "m", "metre": "m",
    "in": "in", "inch": "in", "ft": "ft", "feet": "ft", "foot": "ft", "yd": "yd", "yard": "yd", "mi": "mile", "mile": "mile",
    "kg": "kg", "kilogram": "kg", "g": "g", "gram": "g", "mg": "mg", "lb": "lb", "pound": "lb", "ounce": "oz", "oz": "oz",
    "ton": "ton", "tonne": "tonne",
    "s": "second", "sec": "second", "second": "second", "min": "minute", "minute": "minute", "h": "hour", "hr": "hour",
    "hour": "hour", "day": "day", "week": "week", "month": "month", "yr": "year", "year": "year",
    "mph": "mile/hour", "kph": "km/hour", "kmh": "km/hour",
    "l": "liter", "liter": "liter", "litre": "liter", "ml": "ml", "gallon": "gallon", "cup": "cup",
    "dollar": "dollar", "cent": "cent", "euro": "euro", "yuan": "yuan", "rupee": "rupee", "peso": "peso", "yen": "yen",
    "degree": "degree", "deg": "degree", "radian": "radian", "rad": "radian",
}  # fmt: skip
_WILDCARD_UNITS = frozenset({"unit", "units"})  # `square units`: says nothing about which unit


def _canon_unit_word(word: str) -> str | None:
    low = word.lower()
    for candidate in (low, low[:-2] if low.endswith("es") else None, low[:-1] if low.endswith("s") else None):
        if candidate and candidate in _UNIT_CANON:
            return _UNIT_CANON[candidate]
    return None


def canonical_unit(phrase: str) -> str | None:
    """`square centimeters` / `cm^2` / `sq cm` -> "cm^2", `hours` -> "hour", `km/h` -> "km/hour";
    None for a phrase that names no definite unit (`units`, `square units`, not a unit)."""
    tokens = re.findall(r"[a-zA-Z]+|\^\s*\{?\s*[23]|[²³]|/", phrase)
    parts: list[str] = []
    power = ""
    for token in tokens:
        low = token.lower()
        if low in ("square", "sq"):
            power = "^2"
        elif low == "cubic":
            power = "^3"
        elif low in _WILDCARD_UNITS:
            return None
        elif token == "/":
            parts.append("/")
        elif token[0] in "^²³":
            exponent = "^2" if ("2" in token or token == "²") else "^3"
            if parts and parts[-1] != "/":
                parts[-1] = parts[-1].split("^")[0] + exponent
        else:
            unit = _canon_unit_word(token)
            if unit is None:
                return None
            parts.append(unit + power)
            power = ""
    text = "".join(parts).strip("/")
    return text or None


_CURRENCY_SIGNS = ((re.compile(r"\\\$|^\s*-?\$(?=\s*\d)"), "dollar"), (re.compile(r"\\euro|€"), "euro"),
                   (re.compile(r"£|\\pounds"), "pound"))  # fmt: skip
_UNIT_TAIL = re.compile(r"(?:^|[\d})\s])\s*([a-zA-Z][a-zA-Z\s/.]*(?:\^\s*\{?\s*[23]\s*\}?|[²³])?)\s*$")


def answer_units(answer: str) -> frozenset[str]:
    """The definite units an answer names: currency signs, degrees, unit words in `\\text{}` or
    after a value (`3 hours`, `5 cm^2`, `90^\\circ`, `\\$50`). Empty when it names none."""
    text = answer.strip()
    units = set()
    for pattern, unit in _CURRENCY_SIGNS:
        if pattern.search(text) and (unit != "dollar" or text.count("$") - text.count("\\$") <= 1):
            units.add(unit)
    if _DEGREES.search(text):
        units.add("degree")
    for match in _TEXT_GROUP.finditer(text):
        content = match.group(1).strip()
        if content in _SINGLE_LETTER_UNITS or is_unit_phrase(content):
            unit = canonical_unit(content + match.group(2))
            if unit:
                units.add(unit)
    bare = _TEXT_GROUP.sub(" ", _DEGREES.sub(" ", text))
    bare = _DROP.sub(lambda match: match.group(1) or "", bare)
    for piece in re.split(r",|;|\\quad|\band\b", bare):
        if len(piece) > 80:
            continue  # a sentence, not a value with a unit (and keeps the scan linear)
        tail = _UNIT_TAIL.search(piece.strip())
        if tail and re.search(r"\d", piece) and is_unit_phrase(tail.group(1)):
            unit = canonical_unit(tail.group(1))
            if unit:
                units.add(unit)
    return frozenset(units)


_RELATION = re.compile(r"\\(?:geq?|leq?|neq?|gt|lt|geqslant|leqslant|ngeq|nleq|ngtr|nless)(?![a-zA-Z])|[<>≤≥≠]|!=")


def has_relation(answer: str) -> bool:
    """`\\geq 5`, `x \\neq 5`, `<5`: an inequality, not a value (`=` and `\\in` are not relations here)."""
    return _RELATION.search(answer) is not None


# Words that are mathematics, not text, inside an answer.
MATH_WORDS = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp sqrt pi infty inf infinity max min gcd lcm mod "
    "det lim sup sgn arg deg ker dim rank and or".split()
)
_COMMANDS = re.compile(r"\\(?:begin|end)\s*\{[a-zA-Z*]*\}|\\[a-zA-Z]+")
_SUBSCRIPT = re.compile(r"_\s*(?:\{[^{}]*\}|[a-zA-Z0-9]+)")
_WORD = re.compile(r"(?<![a-zA-Z])[a-zA-Z]{3,}(?![a-zA-Z])")


def text_words(normalised: str) -> list[str]:
    """Words of three or more letters that are not LaTeX commands, math functions or units."""
    bare = _SUBSCRIPT.sub(" ", _COMMANDS.sub(" ", normalised))  # `S_{MBCN}` names a point set, not a word
    return [w for w in _WORD.findall(bare) if w.lower() not in MATH_WORDS and w.lower() not in UNIT_WORDS]


_ARTICLES = re.compile(r"(?i)\b(?:the|a|an)\b")


def text_form(answer: str) -> str:
    """A text answer as text: `\\text{}` and braces removed, case folded, articles and spacing
    normalised, end punctuation dropped (`\\text{The Circle.}` -> "circle")."""
    text = normalize_answer(answer)
    text = re.sub(r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|operatorname)\s*", "", text)
    text = text.replace("{", " ").replace("}", " ").replace("\\", " ").casefold()
    text = _ARTICLES.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip(" .,;:!")


_HEDGE_SEPARATORS = re.compile(r"\\text\s*\{\s*(?:or|and)\s*\}|\\quad|\b(?:or|and)\b|[,;/&.]")
_OPTION_TOKEN = re.compile(r"\(?[A-E]\)?")


def is_choice_hedge(answer: str) -> bool:
    """Two or more option letters in one answer: `(C) or (D)`, `C, D`, `(A) (B) (C) (D)`, `ABCD`.
    Linear: separators become spaces, then every token must be one letter (no backtracking regex)."""
    text = answer.strip()
    if len(text) > 200:
        return False
    if re.fullmatch(r"\(?\s*[A-E]{2,5}\s*\)?\.?", text):
        return True
    tokens = _HEDGE_SEPARATORS.sub(" ", text).replace("( ", "(").replace(" )", ")").split()
    return len(tokens) >= 2 and all(_OPTION_TOKEN.fullmatch(token) for token in tokens)
