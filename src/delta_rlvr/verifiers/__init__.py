"""Verifiable rewards: math answer checking, a sandboxed code runner, and reward shaping.

Public API:
- `score_math(predictions, golds, *, answer_format, timeout_s)` -> list[MathResult]
- `extract_answer(text, answer_format)` and the `ANSWER_EXTRACTORS` table
- `check_equivalence(gold, pred)` (in-process, no deadline; the pool runs it in workers)
- `VerifierPool`, `configure_default_pool`
- `run_code_tests(solution, tests, ...)` -> CodeResult (see `code_runner`)
- `score_code(responses, specs, ...)`, `CodeSpec`, `parse_code_spec`, `build_program`, `extract_code`
  (code rewards, see `code_reward`)
- `soft_overlong_penalty`, `format_reward` (see `shaping`)
"""

from delta_rlvr.verifiers.code_reward import CodeSpec, build_program, extract_code, parse_code_spec, score_code
from delta_rlvr.verifiers.code_runner import CodeResult, CodeTests, SandboxUnavailable, run_code_tests, sandbox_isolation
from delta_rlvr.verifiers.equivalence import check_equivalence
from delta_rlvr.verifiers.extract import ANSWER_EXTRACTORS, AnswerFormat, extract_answer
from delta_rlvr.verifiers.math_reward import MathReason, MathResult, score_math
from delta_rlvr.verifiers.pool import VerifierPool, configure_default_pool
from delta_rlvr.verifiers.shaping import format_reward, soft_overlong_penalty
from delta_rlvr.verifiers.verdicts import Scorer, Verdict, code_verdicts, math_verdicts, reward_verdicts

__all__ = [
    "ANSWER_EXTRACTORS",
    "AnswerFormat",
    "CodeResult",
    "CodeSpec",
    "SandboxUnavailable",
    "Scorer",
    "Verdict",
    "CodeTests",
    "MathReason",
    "MathResult",
    "VerifierPool",
    "build_program",
    "check_equivalence",
    "code_verdicts",
    "configure_default_pool",
    "extract_answer",
    "extract_code",
    "parse_code_spec",
    "format_reward",
    "math_verdicts",
    "reward_verdicts",
    "run_code_tests",
    "sandbox_isolation",
    "score_code",
    "score_math",
    "soft_overlong_penalty",
]
