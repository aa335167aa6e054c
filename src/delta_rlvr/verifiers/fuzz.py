"""False-positive fuzz cases: wrong answers built from a gold, each of which must score 0.

For a gold G (a bare answer) and W = G with one digit changed (`perturb_digit`):
- the right answer perturbed: W, and -G (a sign flip) when G does not already start with `-`;
- constants, variables and words appended to the right answer: `G pi`, `G\\pi`, `G i`,
  `G\\mathrm{i}`, `G e`, `G x`, `G or more`, `G \\text{ or more}`;
- units and hedges appended to the wrong answer: `W cm`, `W \\text{ cm}^2`, `W or 7`, `W and 5`.
Constants are appended only to golds that are plain numbers, and not to 0 (`0 pi` is 0). Used by
`tests/verifiers/test_math_fuzz_no_false_positives.py` and
`benchmarks/compare_math_verify.py`.
"""

from __future__ import annotations

import re

from delta_rlvr.verifiers.normalize import normalize_answer, plain_number

_CONSTANT_SUFFIXES = (" pi", "\\pi", " i", "\\mathrm{i}", " e", " x", " or more", " \\text{ or more}")
_WRONG_SUFFIXES = (" cm", " \\text{ cm}^2", " or 7", " and 5")


# Golds whose first digit can change without changing the value: they get `+1` instead.
_SAME_VALUE_AFTER_DIGIT_CHANGE = {
    "\\frac{\\sin (6 \\pi / 13)}{\\sin (\\pi / 13)}": "sin(7 pi/13) = sin(pi - 6 pi/13) = sin(6 pi/13)",
}


def perturb_digit(gold: str) -> str:
    """Change the first digit (or append +1 when there is none): a different answer."""
    if gold.strip() in _SAME_VALUE_AFTER_DIGIT_CHANGE:
        return gold + "+1"
    digit = re.search(r"\d", gold)
    if digit is None:
        return gold + "+1"
    return gold[: digit.start()] + str((int(digit.group()) + 1) % 10) + gold[digit.end():]


def wrong_variants(gold: str) -> list[tuple[str, str]]:
    """(kind, wrong answer) pairs for one gold; every one must score wrong against it."""
    wrong = perturb_digit(gold)
    out = [("digit changed", wrong)]
    if not gold.lstrip().startswith("-") and gold.strip() not in ("0", "0.0"):
        out.append(("sign flipped", f"-{gold}" if plain_number(normalize_answer(gold)) is not None else f"-({gold})"))
    number = plain_number(normalize_answer(gold))
    if number is not None:
        # `0 pi`, `0 x`, `0 i` are 0: the products keep the value, so a zero gold gets the words only
        suffixes = _CONSTANT_SUFFIXES if number.value != 0 else (" or more", " \\text{ or more}")
        out += [("constant or word appended", gold + suffix) for suffix in suffixes]
    out += [("unit or hedge on a wrong answer", wrong + suffix) for suffix in _WRONG_SUFFIXES]
    if plain_number(normalize_answer(gold)) is not None and gold.strip() not in ("7", "5"):
        out += [("hedge with the gold", f"{gold} or 7" if gold.strip() != "7" else f"{gold} or 8")]
    return out
