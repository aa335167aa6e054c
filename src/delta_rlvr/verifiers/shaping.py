"""Reward shaping terms as plain functions the trainer adds to the verifier's score.

- `soft_overlong_penalty`: DAPO's soft overlong punishment (Yu et al. 2025, eq. 13). With
  L_max the generation limit and L_cache the buffer, a response of length |y| gets
      0                                 if |y| <= L_max - L_cache
      (L_max - L_cache - |y|) / L_cache if L_max - L_cache < |y| <= L_max
      -1                                if |y| > L_max
  times `factor` (verl's `overlong_penalty_factor`; DAPO uses 1.0).
- `format_reward`: 1.0 when the response contains an answer in the required format, else 0.0,
  using the same extractors as the math verifier (one home per concept), so "well formatted"
  means exactly "the verifier could find an answer".
Both take and return plain lists so they compose with any reward function by addition.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

from delta_rlvr.verifiers.extract import extract_answer_line, extract_boxed, extract_hashes


def soft_overlong_penalty(
    lengths: Sequence[int], *, max_length: int, buffer_length: int, factor: float = 1.0
) -> list[float]:
    """DAPO soft overlong penalty per response length (in tokens); values in [-factor, 0]."""
    if max_length <= 0:
        raise ValueError(f"max_length={max_length} must be a positive token count")
    if not 0 < buffer_length <= max_length:
        raise ValueError(
            f"buffer_length={buffer_length} must be in (0, max_length={max_length}]; "
            "DAPO uses a 4096-token buffer for a 20480-token limit"
        )
    if factor < 0:
        raise ValueError(f"factor={factor} must be >= 0 (it scales a penalty, the sign is fixed)")
    expected = max_length - buffer_length
    penalties = []
    for length in lengths:
        if length < 0:
            raise ValueError(f"response length {length} is negative")
        if length <= expected:
            penalties.append(0.0)
        elif length <= max_length:
            penalties.append(factor * (expected - length) / buffer_length)
        else:
            penalties.append(-factor)
    return penalties


FormatName = Literal["boxed", "hashes", "answer_line", "think_then_boxed"]

_THINK = re.compile(r"^\s*<think>.*?</think>(.*)$", re.S)


def _think_then_boxed(text: str) -> bool:
    """`<think>...</think>` first (R1 style), then a boxed answer after the closing tag."""
    match = _THINK.match(text)
    return match is not None and extract_boxed(match.group(1)) is not None


FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "boxed": lambda text: extract_boxed(text) is not None,
    "hashes": lambda text: extract_hashes(text) is not None,
    "answer_line": lambda text: extract_answer_line(text) is not None,
    "think_then_boxed": _think_then_boxed,
}


def format_reward(responses: Sequence[str], *, required: FormatName = "boxed") -> list[float]:
    """1.0 for each response in the `required` format, else 0.0 (scale it in the trainer)."""
    try:
        check = FORMAT_CHECKS[required]
    except KeyError:
        raise ValueError(f"required={required!r} is not one of {sorted(FORMAT_CHECKS)}") from None
    return [1.0 if isinstance(text, str) and check(text) else 0.0 for text in responses]
