"""Prompts and gold answers: records, loaders, built-in datasets, procedural tasks, templates.

Public API:
- `PromptRecord`, `LoadSummary`, `DataError`
- `FieldMap`, `field_map` (from user options), `load_jsonl`, `load_parquet`, `load_hub`, `load_file`,
  `format_options` (multiple-choice options appended to a question), `check_golds_score_themselves`
  (a file's golds, written as a model answers, through the verifier), `gold_as_model_answer`
- `DatasetSpec`, `BUILTIN_DATASETS`, `SUITES` (paper7), `load_dataset_spec(name, path=..., skip_bad_rows=...)`
- `ArithmeticConfig`, `arithmetic_problem`, `arithmetic_dataset`, `score_arithmetic`,
  `extract_arithmetic_answer` (the embedded default task)
- `ReasoningGymTask` (optional extra `gym`)
- `TemplateOptions`, `render_prompt`, `TEMPLATES`
- `CodeFields`, `CODE_PRESETS`, `load_code_file`, `load_humaneval` (code problems)
"""

from delta_rlvr.data.arithmetic import (
    ArithmeticConfig,
    arithmetic_dataset,
    arithmetic_problem,
    arithmetic_verdicts,
    extract_arithmetic_answer,
    score_arithmetic,
)
from delta_rlvr.data.code import CODE_PRESETS, CodeFields, load_code_file, load_humaneval
from delta_rlvr.data.gym import ReasoningGymTask
from delta_rlvr.data.loaders import (
    FieldMap,
    check_golds_score_themselves,
    field_map,
    format_options,
    gold_as_model_answer,
    load_file,
    load_hub,
    load_jsonl,
    load_parquet,
)
from delta_rlvr.data.records import LoadSummary, PromptRecord
from delta_rlvr.data.specs import BUILTIN_DATASETS, SUITES, DatasetSpec, get_dataset_spec, load_dataset_spec
from delta_rlvr.data.templates import TEMPLATES, TemplateOptions, render_prompt
from delta_rlvr.errors import DataError

__all__ = [
    "BUILTIN_DATASETS",
    "CODE_PRESETS",
    "SUITES",
    "TEMPLATES",
    "ArithmeticConfig",
    "CodeFields",
    "DataError",
    "DatasetSpec",
    "FieldMap",
    "LoadSummary",
    "PromptRecord",
    "ReasoningGymTask",
    "TemplateOptions",
    "arithmetic_dataset",
    "arithmetic_verdicts",
    "check_golds_score_themselves",
    "format_options",
    "gold_as_model_answer",
    "arithmetic_problem",
    "extract_arithmetic_answer",
    "field_map",
    "get_dataset_spec",
    "load_dataset_spec",
    "load_file",
    "load_code_file",
    "load_hub",
    "load_humaneval",
    "load_jsonl",
    "load_parquet",
    "render_prompt",
    "score_arithmetic",
]
