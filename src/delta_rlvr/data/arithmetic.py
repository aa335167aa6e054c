"""A dependency-free arithmetic task family: the trainer's embedded default.

Built for a ~1M-parameter character-level model, so prompts and answers are short:
question "37+48+19=", gold "104". Difficulty knobs: number of terms, digits per term, and the
operator set (`*` binds tighter than `+`/`-`, as written). Problem `index` of a config is a pure
function of (seed, index) - not of how many problems were drawn before - so a resumed run and
an evaluation set regenerate exactly the same problems.

Scoring is exact integer comparison, done in-process: these answers are integers, so the
verifier pool (built for LaTeX) would add a round trip and nothing else. The extractor agrees
with the math verifier's: a `\\boxed{}` answer wins; otherwise the number after the last
"answer"; otherwise the last integer in the completion.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from delta_rlvr.data.records import PromptRecord
from delta_rlvr.verifiers.extract import extract_number
from delta_rlvr.verifiers.verdicts import Verdict

_OPERATORS = frozenset("+-*")


@dataclass(frozen=True)
class ArithmeticConfig:
    """Difficulty knobs; defaults are the embedded task (three two-digit addends)."""

    min_terms: int = 3
    """Fewest numbers in a problem."""
    max_terms: int = 3
    """Most numbers in a problem."""
    min_digits: int = 2
    """Fewest digits per number."""
    max_digits: int = 2
    """Most digits per number."""
    operators: str = "+"
    """The operators problems may use (a string of + - *)."""
    seed: int = 0
    """Problem i is a fixed function of (seed, i)."""

    def __post_init__(self) -> None:
        if not 2 <= self.min_terms <= self.max_terms <= 16:
            raise ValueError(
                f"terms must satisfy 2 <= min_terms <= max_terms <= 16; got {self.min_terms}..{self.max_terms}"
            )
        if not 1 <= self.min_digits <= self.max_digits <= 9:
            raise ValueError(
                f"digits must satisfy 1 <= min_digits <= max_digits <= 9; got {self.min_digits}..{self.max_digits}"
            )
        if not self.operators or not set(self.operators) <= _OPERATORS:
            raise ValueError(f"operators={self.operators!r} must be a non-empty subset of '+-*'")


def _evaluate(terms: list[int], operators: list[str]) -> int:
    """Left-to-right with `*` first: sum of products, signs carried by the +/- before each."""
    total, product, sign = 0, terms[0], 1
    for operator, term in zip(operators, terms[1:]):
        if operator == "*":
            product *= term
        else:
            total += sign * product
            sign, product = (1 if operator == "+" else -1), term
    return total + sign * product


def arithmetic_problem(index: int, config: ArithmeticConfig = ArithmeticConfig()) -> PromptRecord:
    """Problem number `index` of the family defined by `config` (deterministic)."""
    rng = random.Random(f"delta-rlvr-arith|{config.seed}|{index}")
    count = rng.randint(config.min_terms, config.max_terms)
    terms = []
    for _ in range(count):
        digits = rng.randint(config.min_digits, config.max_digits)
        low = 0 if digits == 1 else 10 ** (digits - 1)
        terms.append(rng.randint(low, 10**digits - 1))
    operators = [rng.choice(config.operators) for _ in range(count - 1)]
    text = str(terms[0]) + "".join(op + str(term) for op, term in zip(operators, terms[1:]))
    return PromptRecord(
        id=f"arith-{config.seed}-{index}",
        gold=str(_evaluate(terms, operators)),
        source="arithmetic",
        question=text + "=",
        metadata={"terms": count, "operators": "".join(operators)},
    )


def arithmetic_dataset(size: int, config: ArithmeticConfig = ArithmeticConfig(), *, start: int = 0) -> list[PromptRecord]:
    """Problems `start .. start+size-1`; disjoint index ranges give disjoint train/eval sets."""
    if size < 0 or start < 0:
        raise ValueError(f"size={size} and start={start} must be >= 0")
    return [arithmetic_problem(index, config) for index in range(start, start + size)]


def extract_arithmetic_answer(completion: str) -> str | None:
    """Boxed answer, else the number after the last "answer", else the last integer."""
    return extract_number(completion)


def score_arithmetic(completions: list[str], golds: list[str]) -> list[float]:
    """1.0 where the extracted answer is the gold integer, else 0.0."""
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} golds; pass one gold per completion")
    scores = []
    for completion, gold in zip(completions, golds):
        answer = extract_arithmetic_answer(completion) if isinstance(completion, str) else None
        try:
            scores.append(1.0 if answer is not None and int(answer) == int(gold) else 0.0)
        except ValueError:
            scores.append(0.0)
    return scores


def arithmetic_verdicts(responses: list[str], records: list[PromptRecord]) -> list[Verdict]:
    """The arithmetic task's own checker (`score_arithmetic`) as verdicts, the extracted answer kept."""
    scores = score_arithmetic(responses, [r.gold for r in records])
    out = []
    for text, score in zip(responses, scores):
        extracted = extract_arithmetic_answer(text)
        reason = "correct" if score == 1.0 else "unparsed" if extracted is None else "wrong"
        out.append(Verdict(score == 1.0, reason, extracted))
    return out
