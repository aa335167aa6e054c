"""Built-in specs load the shared benchmark copies offline, and DeepMath's format is read."""

import json
from pathlib import Path

import pytest

from delta_rlvr.data import BUILTIN_DATASETS, load_dataset_spec, load_hub

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.parametrize(
    ("name", "relative", "count", "first_gold"),
    [("gsm8k", "gsm8k/test.jsonl", 1319, "18"), ("math500", "math500/test.jsonl", 500, r"\left( 3, \frac{\pi}{2} \right)"),
     ("aime24", "aime24/test.jsonl", 30, None), ("amc23", "amc23/test.jsonl", 40, "27")],
)
def test_builtin_specs_read_the_local_copies(name, relative, count, first_gold):
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} not present (benchmarks live beside the repo in ../shared/data)")
    records, summary = load_dataset_spec(name, path=path)
    assert len(records) == count and summary.rows_skipped == 0
    if first_gold is not None:
        assert records[0].gold == first_gold
    assert all(r.source == name and r.question for r in records)


def test_deepmath_spec_reads_its_field_names(tmp_path):
    rows = [
        {"question": "Evaluate $\\int_0^1 2x\\,dx$.", "final_answer": "1", "difficulty": 3.0, "topic": "Calculus",
         "r1_solution_1": "...", "r1_solution_2": "...", "r1_solution_3": "..."},
        {"question": "Find the limit.", "final_answer": "\\dfrac{1}{2}", "difficulty": 5.5, "topic": "Limits"},
    ]
    path = tmp_path / "deepmath.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records, _ = load_dataset_spec("deepmath", path=path)
    assert [r.gold for r in records] == ["1", "\\dfrac{1}{2}"]
    assert dict(records[1].metadata) == {"difficulty": 5.5, "topic": "Limits"}
    assert BUILTIN_DATASETS["deepmath"].hub_id == "zwhe99/DeepMath-103K"


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="gsm8k"):
        load_dataset_spec("gsm9k", path="x.jsonl")


def test_hub_loading_without_datasets_says_what_to_do():
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install datasets"):
            load_hub("zwhe99/DeepMath-103K", BUILTIN_DATASETS["deepmath"].fields, split="train")
    else:
        pytest.skip("datasets is installed; the hub path is exercised only online")
