"""Pull the final answer out of a model's response.

Design choices:
- One extractor per answer format, in a visible name -> function table (`ANSWER_EXTRACTORS`).
  Which one applies is a property of the dataset (MATH: boxed, GSM8K: `####`, DAPO-Math:
  `Answer:`), so callers pick it explicitly; "auto" exists for mixed evaluation only.
- Extraction runs in the caller's process, before any worker is involved: it is pure Python,
  linear in the text length (a single left-to-right brace scan, no backtracking regex over the
  whole text), so it cannot hang, and a timed-out check can still report what was extracted.
- The *last* occurrence wins everywhere: models restate candidate answers before settling.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

AnswerFormat = Literal["boxed", "hashes", "answer_line", "answer_tag", "auto", "raw", "number", "choice"]

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def _find_last_command(text: str) -> tuple[int, str] | None:
    """Position just after the last `\\boxed` or `\\fbox` that is a whole command name."""
    best: tuple[int, str] | None = None
    for command in _BOX_COMMANDS:
        start = text.rfind(command)
        while start != -1:
            end = start + len(command)
            # `\boxedx` is another macro, not `\boxed` followed by x.
            if end >= len(text) or not text[end].isalpha():
                if best is None or start > best[0]:
                    best = (start, command)
                break
            start = text.rfind(command, 0, start)
    if best is None:
        return None
    return best[0] + len(best[1]), best[1]


def _balanced_group(text: str, open_index: int) -> str | None:
    """Content of the brace group opening at `open_index`, or None when it never closes.

    Escaped braces (`\\{`, `\\}`) are literal set braces and do not count towards the depth.
    """
    depth = 0
    index = open_index
    length = len(text)
    while index < length:
        char = text[index]
        if char == "\\":
            index += 2  # skip the escaped character, whatever it is
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index]
        index += 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` (nested braces kept), or `\\boxed 5`.

    Returns None when there is no box or its group is never closed (a truncated response).
    """
    found = _find_last_command(text)
    if found is None:
        return None
    after, _ = found
    rest_start = after
    while rest_start < len(text) and text[rest_start] in " \t":
        rest_start += 1
    if rest_start < len(text) and text[rest_start] == "{":
        content = _balanced_group(text, rest_start)
        return None if content is None else content.strip()
    if rest_start > after:
        # `\boxed 5`: TeX takes the next token; models write a number or a short word there.
        match = re.match(r"[^\s$}]+", text[rest_start:])
        if match:
            return match.group(0).rstrip(".,;")
    return None


def _all_boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every closed `\\boxed{...}` / `\\fbox{...}`, left to right."""
    boxes = []
    for command in _BOX_COMMANDS:
        start = text.find(command)
        while start != -1:
            after = start + len(command)
            if after < len(text) and text[after] == "{":
                content = _balanced_group(text, after)
                if content is not None:
                    boxes.append((start, after + len(content) + 2, content.strip()))
            start = text.find(command, after)
    return sorted(boxes)


# What may stand between two boxes of one answer: `\boxed{1}, \boxed{2} and \boxed{3}`,
# `\(\boxed{1}\) and \(\boxed{-2}\)`, `$\boxed{a}$ or $\boxed{b}$`.
_BOX_SEPARATOR = re.compile(
    r"(?:\s|\$|\\[()\[\]]|\\quad|\\qquad|\\[,;]|[,;+]|\\\Z|\band\b|\bor\b|\\text\{[^{}$]{0,40}\}|\b[a-zA-Z]{1,12}\s+(?=and\b|or\b)"
    r"|(?<![a-zA-Z\\])[a-zA-Z](?:_\{?\w{1,3}\}?)?\s*=\s*\Z)*"  # named parts: `y_2=\boxed{...}`
)


def extract_boxed_answers(text: str) -> str | None:
    """The final answer in boxes: the last box, joined (", ") with the boxes just before it when
    only separators (`,`, `and`, `or`, `$`, `\\quad`) stand between them, as math-verify reads
    `\\boxed{1} and \\boxed{2}` (the set {1, 2}). One box: its content, as `extract_boxed`."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    boxes = _all_boxes(text)
    if not boxes:
        return extract_boxed(text)
    last = extract_boxed(text)
    if last is None or boxes[-1][2] != last:
        return last  # a later `\\boxed 5` (no braces) or an unclosed box: the old rule decides
    chain = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        between = text[box[1] : chain[0][0]]
        if box[1] > chain[0][0] or not _BOX_SEPARATOR.fullmatch(between):
            break
        chain.insert(0, box)
    if len(chain) == 1:
        return last
    return ", ".join(content for _, _, content in chain)


_HASHES = re.compile(r"####[ \t]*([^\n]*)")


_FINAL_STATEMENT = re.compile(r"(?i)\bfinal\s+answer\s*(?:is|:)\s*(?:is\s*)?:?\s*")


def _last_box_end(text: str) -> int:
    """Where the last box (braced or `\\boxed 5`) ends; -1 when there is none."""
    found = _find_last_command(text)
    if found is None:
        return -1
    after = found[0]
    rest = after
    while rest < len(text) and text[rest] in " \t":
        rest += 1
    if rest < len(text) and text[rest] == "{":
        content = _balanced_group(text, rest)
        return rest + 1 if content is None else rest + len(content) + 2
    return rest


def final_statement(text: str, start: int = 0) -> str | None:
    """The answer of the last explicit "final answer is X" / "Final Answer: X" after `start`:
    the math `$X$` / `\\(X\\)` that follows, else the words up to the end of the sentence."""
    matches = list(_FINAL_STATEMENT.finditer(text, start))
    if not matches:
        return None
    rest = text[matches[-1].end():]
    math = re.match(r"\s*(?:\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\])", rest, re.S)
    if math:
        answer = next(group for group in math.groups() if group is not None)
    else:
        plain = re.match(r"\s*([^\n]*?)(?:\.\s|\.?$|\n)", rest)
        answer = plain.group(1) if plain else ""
        if not re.search(r"[\d\\]", answer) or "$" in answer or len(answer) > 80:
            return None  # "... my final answer: it holds" states no value
    answer = answer.strip().rstrip(".").strip()
    return answer or None


def extract_committed_box(text: str) -> str | None:
    """The boxed answer (`extract_boxed_answers`), unless an explicit "final answer is X"
    statement comes after the last box: the response committed to X, and an intermediate box
    (`... = \\boxed{255}$ ... The final answer is $10,455$`) is not its answer."""
    boxed = extract_boxed_answers(text)
    if boxed is None:
        return None
    statement = final_statement(text, _last_box_end(text))
    return statement if statement is not None else boxed


def extract_hashes(text: str) -> str | None:
    """Text after the last `#### ` marker (GSM8K's answer line), up to the end of that line."""
    matches = _HASHES.findall(text)
    if not matches:
        return None
    answer = matches[-1].strip().rstrip(".")
    return answer or None


_ANSWER_LINE = re.compile(r"(?im)^[ \t*_]*(?:final[ \t]+)?answer[ \t*_]*:[ \t*_]*([^\n]*)")


def extract_answer_line(text: str) -> str | None:
    """Text after the last line starting `Answer:` (DAPO-Math style), `$` and a final `.` removed."""
    matches = _ANSWER_LINE.findall(text)
    if not matches:
        return None
    answer = matches[-1].strip().strip("*_ ").rstrip(".").strip()
    # "Final Answer: The final answer is $10,455$. I hope it is correct." (Minerva's format)
    phrase = re.match(r"(?i)(?:the\s+)?(?:final\s+)?answer\s+is\s*:?\s*(.+)$", answer)
    if phrase:
        answer = phrase.group(1).strip()
        math = re.match(r"\$([^$]+)\$", answer)
        answer = math.group(1).strip() if math else answer.rstrip(".").strip()
    if answer.startswith("$") and answer.endswith("$") and len(answer) >= 2:
        answer = answer.strip("$").strip()
    return answer or None


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)


def extract_answer_tag(text: str) -> str | None:
    """Content of the last `<answer>...</answer>` (reasoning-gym and R1-style prompts)."""
    matches = _ANSWER_TAG.findall(text)
    if not matches:
        return None
    answer = matches[-1].strip()
    return answer or None


_AFTER_ANSWER = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*(-?\d+)", re.I)
_INTEGER = re.compile(r"-?\d+")


def extract_number(text: str) -> str | None:
    """Lenient, for short numeric answers from small models: a boxed answer, else the integer
    after the last "answer", else the last integer in the text."""
    boxed = extract_boxed_answers(text)
    if boxed is not None:
        return boxed.strip()
    after = _AFTER_ANSWER.findall(text)
    if after:
        return after[-1]
    numbers = _INTEGER.findall(text)
    return numbers[-1] if numbers else None


_CHOICE_ANCHOR = re.compile(r"(?i)answer(?:\s+is)?\s*(?:[:=]|is)?\s*(?:\w+\s+){0,3}?\(?\**([A-E])\b(?![\'’]\w)")
_CHOICE_MORE_LETTERS = re.compile(r"\)?\**[ \t]*(?:,|;|/|&|\bor\b|\band\b)?[ \t]*\(?\**[A-E]\b\**\)?(?![\w\'’])")
_CHOICE_START = re.compile(r"^\s*\(?\**([A-E])\**\)?(?:[.):]|\s|$)")
_CHOICE_ANY = re.compile(r"(?<![\w\\])\(?([A-E])\)?(?![\w\'’])")


def extract_choice(text: str) -> str | None:
    """A multiple-choice letter A-E: a boxed letter, else the letter after the last "answer
    (is)", else a letter opening the response (`D. because ...`), else the last lone letter."""
    boxed = extract_boxed(text)
    if boxed is not None:
        from delta_rlvr.verifiers.normalize import choice_letter, is_choice_hedge

        if is_choice_hedge(boxed):
            return boxed.strip()  # `(C) or (D)`: several letters are no answer; scored wrong
        letter = choice_letter(boxed, with_option_text=True)
        return letter or boxed.strip()
    anchored = list(_CHOICE_ANCHOR.finditer(text))
    if anchored:
        last = anchored[-1]
        position, more = last.end(), 0
        while more < 8:  # each step consumes one more letter; bounded, so linear
            step = _CHOICE_MORE_LETTERS.match(text, position, position + 40)
            if step is None:
                break
            position, more = step.end(), more + 1
        if more:
            return text[last.start(1):position].strip()  # `answer is C or D`, `(A) (B) (C) (D)`
        return last.group(1)
    start = _CHOICE_START.match(text)
    if start:
        return start.group(1)
    letters = _CHOICE_ANY.findall(text)
    return letters[-1] if letters else None


def extract_raw(text: str) -> str | None:
    """The whole text is the answer (golds, or tasks whose completions are just the answer)."""
    answer = text.strip()
    return answer or None


def extract_auto(text: str) -> str | None:
    """Boxed (a chain of boxes is one answer), then `####`, then `Answer:`, then `<answer>`:
    for evaluation over mixed sources. `score_math` goes one step further for "auto": a
    response with none of these is read by math-verify's own free-text extraction."""
    for extractor in (extract_committed_box, extract_hashes, extract_answer_line, extract_answer_tag):
        answer = extractor(text)
        if answer is not None:
            return answer
    return None


ANSWER_EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "boxed": extract_committed_box,
    "hashes": extract_hashes,
    "answer_line": extract_answer_line,
    "answer_tag": extract_answer_tag,
    "auto": extract_auto,
    "raw": extract_raw,
    "number": extract_number,
    "choice": extract_choice,
}


def extract_answer(text: str, answer_format: AnswerFormat = "boxed") -> str | None:
    """The final answer of `text` in `answer_format`, or None when there is none."""
    try:
        extractor = ANSWER_EXTRACTORS[answer_format]
    except KeyError:
        raise ValueError(
            f"answer_format={answer_format!r} is not one of {sorted(ANSWER_EXTRACTORS)}; "
            "pick the format the dataset's prompts ask for"
        ) from None
    return extractor(text)


_GOLD_DELIMITERS = re.compile(r"^\s*(?:\$\$|\$|\\\(|\\\[)(.*?)(?:\$\$|\$|\\\)|\\\])\s*$", re.S)


def prepare_gold(gold: str) -> str:
    """A gold as the verifier compares it: boxes inside it become the answer (all of a chain:
    `\\(\\boxed{1}\\) and \\(\\boxed{-2}\\)` -> `1, -2`), one pair of math delimiters
    (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`) around the whole gold is removed."""
    text = gold.strip()
    if "\\boxed" in text or "\\fbox" in text:
        boxed = extract_boxed_answers(text)
        if boxed:
            return boxed
    match = _GOLD_DELIMITERS.fullmatch(text)
    if match and match.group(1).strip() and "$" not in match.group(1):
        return match.group(1).strip()
    return text
