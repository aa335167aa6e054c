"""Prompt templates: the tokenizer's chat template, a plain instruction, and few-shot.

The instruction names the same answer format the verifier extracts (`INSTRUCTIONS`), so a
dataset's `answer_format` fixes both what the model is asked for and what is scored.
All renderers share one signature, `(record, options) -> str`, behind `TEMPLATES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from delta_rlvr.data.records import PromptRecord
from delta_rlvr.verifiers.extract import AnswerFormat

INSTRUCTIONS: dict[str, str] = {
    "boxed": "Please reason step by step, and put your final answer within \\boxed{}.",
    "hashes": "Please reason step by step, and end with a line of the form '#### <answer>'.",
    "answer_line": "Please reason step by step, and end with a line of the form 'Answer: <answer>'.",
    "answer_tag": "Please reason step by step, and give your final answer as <answer>...</answer>.",
    "raw": "Give only the final answer.",
    "number": "Give only the final answer.",
    "code": "Write a Python solution and give it in one ```python code block.",
}

TemplateName = Literal["plain", "chat", "few_shot"]


@dataclass(frozen=True)
class TemplateOptions:
    """answer_format: what to ask for; tokenizer: for "chat" (anything with apply_chat_template);
    examples: (question, worked answer) pairs for "few_shot"; system: optional system prompt."""

    answer_format: AnswerFormat | Literal["code"] = "boxed"
    tokenizer: Any = None
    examples: tuple[tuple[str, str], ...] = ()
    system: str | None = None

    def __post_init__(self) -> None:
        if self.answer_format not in INSTRUCTIONS:
            raise ValueError(f"answer_format={self.answer_format!r} has no instruction; one of {sorted(INSTRUCTIONS)}")


def _question(record: PromptRecord) -> str:
    if record.question is None:
        raise ValueError(f"record {record.id!r} is a chat; use the 'chat' template for it")
    return record.question


def render_plain(record: PromptRecord, options: TemplateOptions) -> str:
    """The question, a blank line, then the answer-format instruction."""
    return f"{_question(record)}\n\n{INSTRUCTIONS[options.answer_format]}"


def render_few_shot(record: PromptRecord, options: TemplateOptions) -> str:
    """Worked examples as Question/Answer blocks, then the question with an open answer."""
    if not options.examples:
        raise ValueError("few_shot needs TemplateOptions(examples=((question, worked_answer), ...))")
    blocks = [f"Question: {q}\nAnswer: {a}" for q, a in options.examples]
    blocks.append(f"Question: {_question(record)}\nAnswer:")
    return INSTRUCTIONS[options.answer_format] + "\n\n" + "\n\n".join(blocks)


def render_chat(record: PromptRecord, options: TemplateOptions) -> str:
    """The tokenizer's own chat template, with the generation prompt appended."""
    if options.tokenizer is None or not hasattr(options.tokenizer, "apply_chat_template"):
        raise ValueError("the chat template needs TemplateOptions(tokenizer=...) with apply_chat_template")
    messages = record.chat()
    if record.question is not None:
        messages[-1]["content"] = render_plain(record, options)
    if options.system:
        messages.insert(0, {"role": "system", "content": options.system})
    return options.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


TEMPLATES: dict[str, Callable[[PromptRecord, TemplateOptions], str]] = {
    "plain": render_plain,
    "chat": render_chat,
    "few_shot": render_few_shot,
}


def render_prompt(record: PromptRecord, template: TemplateName = "plain", options: TemplateOptions = TemplateOptions()) -> str:
    try:
        renderer = TEMPLATES[template]
    except KeyError:
        raise ValueError(f"template={template!r} is not one of {sorted(TEMPLATES)}") from None
    return renderer(record, options)
