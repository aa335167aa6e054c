"""The final answer is found in each dataset's format, and absent answers are reported as None."""

import pytest

from delta_rlvr.verifiers import extract_answer

CASES = [
    ("boxed", r"so $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    ("boxed", r"first \boxed{1} then finally \boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
    ("boxed", r"nested \boxed{\{1, \{2\}\}} ok", r"\{1, \{2\}\}"),
    ("boxed", r"the answer is \boxed 5.", "5"),
    ("boxed", r"\fbox{42}", "42"),
    ("boxed", r"\boxed{1} and \fbox{2}", "1, 2"),  # one answer in two boxes, as math-verify reads it
    ("boxed", r"\boxed{1}. Checking again, the answer is \boxed{2}", "2"),
    ("boxed", r"truncated \boxed{\frac{1}{2", None),
    ("boxed", "no box at all", None),
    ("boxed", r"\boxedfoo{3}", None),
    ("hashes", "steps\n#### 42", "42"),
    ("hashes", "#### 1\nmore\n#### 1,234.", "1,234"),
    ("answer_line", "reasoning\nAnswer: $x = 5$", "x = 5"),
    ("answer_line", "**Final Answer:** 12.", "12"),
    ("answer_tag", "think <answer> -4 </answer>", "-4"),
    ("auto", "Answer: 7\n\\boxed{8}", "8"),
    ("raw", "  17 ", "17"),
]


@pytest.mark.parametrize(("answer_format", "text", "expected"), CASES)
def test_extracts_the_last_answer_in_the_requested_format(answer_format, text, expected):
    assert extract_answer(text, answer_format) == expected


def test_thousands_of_nested_braces_are_scanned_in_linear_time():
    text = r"\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}"
    assert extract_answer(text, "boxed") == "{" * 5000 + "1" + "}" * 5000


def test_unknown_format_is_a_caller_error_naming_the_choices():
    with pytest.raises(ValueError, match="boxed"):
        extract_answer("x", "latex")  # type: ignore[arg-type]
