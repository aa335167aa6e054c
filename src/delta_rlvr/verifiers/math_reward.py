"""`score_math`: the batch math reward the trainer and the evaluator call.

Contract (why it looks like this):
- One `MathResult` per (prediction, gold) pair, in order; score is 1.0 or 0.0, never partial,
  so a reward is a verdict, not a similarity.
- Checks never raise into the caller and never exceed `timeout_s` of worker time each: a check
  past its deadline scores 0 with reason "timeout" (see `pool.py`). Only caller *bugs* raise
  (lists of different lengths, an unknown answer format, a non-positive timeout), at once and
  before any work is done.
- Golds are bare answers (`\\frac{14}{3}`, `18`), not solutions: the data layer extracts them
  once at load time (`delta_rlvr.data`), so a wrong gold format fails there, loudly. A gold may
  also be a list or tuple of answers, meaning any of them (`["1/2", "0.5"]`); boxes and `$`
  inside a gold are read as the verifier reads them (`extract.prepare_gold`).
- answer_format "auto": a box (a chain of boxes is one answer), `####`, `Answer:` or
  `<answer>`; a response with none of them is read by math-verify's own free-text extraction
  inside the worker (as graders call it), so it is never "unparsed" just for lacking a marker.
- Predictions longer than `MAX_ANSWER_CHARS` after extraction are "unparsed" without a worker
  round trip: no benchmark answer is that long, and sympy on a 100k-character expression only
  burns the deadline.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal

from delta_rlvr.verifiers.extract import ANSWER_EXTRACTORS, AnswerFormat, extract_answer
from delta_rlvr.verifiers.pool import CheckOutcome, VerifierPool, default_pool

MathReason = Literal["correct", "wrong", "unparsed", "gold_unparsed", "timeout"]

MAX_ANSWER_CHARS = 2000
MAX_FREE_TEXT_CHARS = 4000  # free-text extraction reads the end of a response only
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class MathResult:
    """The reward for one response. `extracted` is the prediction's final answer, if found."""

    score: float
    reason: MathReason
    extracted: str | None
    detail: str = ""


def _as_text(value: object) -> str | None:
    """Model outputs are str; bytes and None come from broken pipelines and are tolerated."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return None


def _result(reason: MathReason, extracted: str | None, detail: str) -> MathResult:
    return MathResult(1.0 if reason == "correct" else 0.0, reason, extracted, detail)


def _gold_texts(value: object) -> list[str] | None:
    if isinstance(value, (list, tuple)):
        texts = [text for text in (_as_text(item) for item in value) if text is not None and text.strip()]
        return texts or None
    text = _as_text(value)
    return [text] if text is not None and text.strip() else None


def score_math(
    predictions: list[str],
    golds: list[str | list[str] | tuple[str, ...]],
    *,
    answer_format: AnswerFormat = "boxed",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    pool: VerifierPool | None = None,
) -> list[MathResult]:
    """Score each prediction against its gold answer; see the module docstring for guarantees.

    predictions: full model responses; the final answer is extracted with `answer_format`.
    golds: bare gold answers, one per prediction (a list/tuple: any of them is correct).
    timeout_s: worker time allowed per check (queueing behind other checks is not counted).
    pool: a `VerifierPool`; default the lazily created process-wide one.
    """
    if len(predictions) != len(golds):
        raise ValueError(
            f"score_math got {len(predictions)} predictions and {len(golds)} golds; "
            "pass one gold per prediction (repeat a prompt's gold for each of its samples)"
        )
    if answer_format not in ANSWER_EXTRACTORS:
        raise ValueError(f"answer_format={answer_format!r} is not one of {sorted(ANSWER_EXTRACTORS)}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s={timeout_s!r} must be a positive number of seconds")

    results: list[MathResult | None] = [None] * len(predictions)
    pending: list[tuple[int, str, Future]] = []
    for index, (raw_pred, raw_gold) in enumerate(zip(predictions, golds)):
        gold_texts = _gold_texts(raw_gold)
        pred = _as_text(raw_pred)
        if gold_texts is None:
            results[index] = _result("gold_unparsed", None, f"gold is {type(raw_gold).__name__} {raw_gold!r:.40}")
            continue
        if pred is None:
            results[index] = _result("unparsed", None, f"prediction is {type(raw_pred).__name__}")
            continue
        try:
            extracted = extract_answer(pred, answer_format)
        except Exception as error:  # noqa: BLE001 - extraction bugs must not crash training
            results[index] = _result("unparsed", None, f"extraction error {type(error).__name__}")
            continue
        mode = "extracted"
        if answer_format == "auto" and pred.strip():
            # the worker tries the extracted answer first, then math-verify's own extraction
            mode = "free"
        if extracted is None and mode != "free":
            results[index] = _result("unparsed", None, f"no {answer_format} answer found")
            continue
        if mode == "extracted" and len(extracted) > MAX_ANSWER_CHARS:
            results[index] = _result("unparsed", extracted[:100], f"answer longer than {MAX_ANSWER_CHARS} chars")
            continue
        if any(len(gold) > MAX_ANSWER_CHARS for gold in gold_texts):
            results[index] = _result("gold_unparsed", extracted, f"gold longer than {MAX_ANSWER_CHARS} chars")
            continue
        if pool is None:
            pool = default_pool()
        gold_arg: str | list[str] = gold_texts[0].strip() if len(gold_texts) == 1 else [g.strip() for g in gold_texts]
        sent = extracted if mode == "extracted" else pred[-MAX_FREE_TEXT_CHARS:]
        pending.append((index, extracted, pool.submit(gold_arg, sent, timeout_s, mode)))

    for index, extracted, future in pending:
        outcome: CheckOutcome = future.result()
        results[index] = _result(outcome.verdict, extracted, outcome.detail)  # type: ignore[arg-type]
    return results  # type: ignore[return-value]
