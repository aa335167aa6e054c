"""Templates ask for the format the verifier extracts; reasoning-gym tasks use their scorer."""

import pytest

from delta_rlvr.data import PromptRecord, ReasoningGymTask, TemplateOptions, render_prompt

RECORD = PromptRecord(id="1", gold="4", source="t", question="What is 2+2?")


class FakeTokenizer:
    """Stands in for a Hugging Face tokenizer: renders turns as <|role|>content lines."""

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages) + "<|assistant|>"


def test_plain_template_asks_for_a_boxed_answer():
    assert render_prompt(RECORD) == "What is 2+2?\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    assert "#### <answer>" in render_prompt(RECORD, options=TemplateOptions(answer_format="hashes"))


def test_chat_template_goes_through_the_tokenizer():
    text = render_prompt(RECORD, "chat", TemplateOptions(tokenizer=FakeTokenizer(), system="Be brief."))
    assert text.startswith("<|system|>Be brief.\n<|user|>What is 2+2?")
    assert text.endswith("<|assistant|>")


def test_few_shot_puts_examples_before_the_question():
    options = TemplateOptions(examples=(("1+1?", "\\boxed{2}"),))
    text = render_prompt(RECORD, "few_shot", options)
    assert text.index("Question: 1+1?\nAnswer: \\boxed{2}") < text.index("Question: What is 2+2?\nAnswer:")


def test_templates_refuse_missing_inputs():
    with pytest.raises(ValueError, match="examples"):
        render_prompt(RECORD, "few_shot")
    with pytest.raises(ValueError, match="tokenizer"):
        render_prompt(RECORD, "chat")


def test_reasoning_gym_dataset_is_scored_by_its_own_scorer():
    pytest.importorskip("reasoning_gym", reason="optional extra delta-rlvr[gym] not installed")
    task = ReasoningGymTask("chain_sum", size=4, seed=1)
    golds = [f"<answer>{r.gold}</answer>" for r in task.records]
    assert task.score(golds, task.records) == [1.0] * 4
    assert task.score(["no tags", "<answer>not a number</answer>", "", ""], task.records) == [0.0] * 4
