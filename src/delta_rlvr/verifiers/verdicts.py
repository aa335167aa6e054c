"""Verdicts: the verifier's answer on one response, with its reason and what it extracted.

A `Scorer` maps (responses, records) to verdicts; every task's held-out set and every benchmark
is scored by one. `math_verdicts` (score_math with an answer format), `code_verdicts`
(score_code in the sandbox) and `reward_verdicts` (a task's own reward, nothing extracted) are
the scorers of the math, code and reasoning-gym tasks; the arithmetic task's is
`delta_rlvr.data.arithmetic_verdicts`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from delta_rlvr.errors import ConfigError, SandboxUnavailable
from delta_rlvr.verifiers.code_reward import build_program, parse_code_spec, score_code
from delta_rlvr.verifiers.code_runner import DEFAULT_MAX_FILE_BYTES
from delta_rlvr.verifiers.math_reward import score_math

PromptRecord = Any
"""A `delta_rlvr.data.PromptRecord` (the data layer sits above this one): scorers read `gold` / `golds`."""


@dataclass(frozen=True)
class Verdict:
    """The verifier's answer on one response."""

    correct: bool
    reason: str
    """"correct", "wrong", "unparsed" (no answer found), or the math verifier's other reasons
    ("gold_unparsed", "timeout"); code: "correct", "wrong", "error", "timeout" (the sandbox's
    status), and "partial" (some cases passed) with partial credit."""
    extracted: str | None


Scorer = Callable[[list[str], list[PromptRecord]], list[Verdict]]


def math_verdicts(answer_format: str) -> Scorer:
    """score_math (math-verify in the verifier pool) with `answer_format`'s extractor."""

    def score(responses: list[str], records: list[PromptRecord]) -> list[Verdict]:
        results = score_math(responses, [r.golds for r in records], answer_format=answer_format)
        return [Verdict(r.score == 1.0, r.reason, r.extracted) for r in results]

    return score


def reward_verdicts(score: Callable[[list[str], list[PromptRecord]], list[float]]) -> Scorer:
    """For tasks whose scorer returns only a reward (reasoning-gym): no extracted answer."""

    def wrapped(responses: list[str], records: list[PromptRecord]) -> list[Verdict]:
        return [Verdict(s >= 1.0, "correct" if s >= 1.0 else "wrong", None) for s in score(responses, records)]

    return wrapped


CODE_TIMEOUT_S = 5.0
"""Wall-clock limit per sandboxed process (per case for stdio tests): task.code.timeout_s's default."""
EXTRACTED_CHARS = 2000
"""A code verdict keeps at most this much of the program it ran (the dump's `extracted`)."""


def _short_program(program: str) -> str:
    if len(program) <= EXTRACTED_CHARS:
        return program
    return program[:EXTRACTED_CHARS] + f"\n# ... [{len(program) - EXTRACTED_CHARS} more characters]\n"


def code_verdicts(
    partial_credit: bool = False,
    timeout_s: float = CODE_TIMEOUT_S,
    memory_mb: int = 1024,
    workers: int | None = None,
    isolation: str = "bwrap",
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Scorer:
    """score_code (each response's program on its problem's tests, sandboxes in parallel) as
    verdicts: correct when every case passes; reason = the sandbox's status ("correct" for
    passed, "wrong" for failed, "error", "timeout"), or "partial" when, with `partial_credit`,
    some but not all cases passed (every case is then run). `extracted` is the program
    `build_program` made of the response (the prompt's prefix included), cut at
    EXTRACTED_CHARS. The gold of each record is its CodeSpec JSON."""

    def score(responses: list[str], records: list[PromptRecord]) -> list[Verdict]:
        specs = [parse_code_spec(r.gold) for r in records]
        try:
            results = score_code(responses, specs, partial_credit=partial_credit, timeout_s=timeout_s,
                                 memory_mb=memory_mb, workers=workers, isolation=isolation,
                                 max_file_bytes=max_file_bytes)
        except SandboxUnavailable as err:
            raise ConfigError(f"code benchmarks run the model's programs in the sandbox: {err}") from None
        out = []
        for text, spec, result in zip(responses, specs, results):
            correct = result.score == 1.0
            if correct:
                reason = "correct"
            elif partial_credit and 0 < result.passed_cases < result.total_cases:
                reason = "partial"
            else:
                reason = {"passed": "correct", "failed": "wrong"}.get(result.status, result.status)
            program = build_program(text, spec.prefix) if isinstance(text, str) else None
            out.append(Verdict(correct, reason, None if program is None else _short_program(program)))
        return out

    return score
