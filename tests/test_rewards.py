"""Code and math rewards through the paths TRL and verl call them (delta_rlvr.rewards).

TRL: the example script examples/trl/train_code_grpo.py builds DeltaGRPOTrainer on the embedded
model and trains 2 steps on CPU; TRL's own `_calculate_rewards` calls the code reward with the
"tests" column. verl: `compute_score` is loaded from examples/verl/reward.py by verl's own
`get_custom_reward_fn` / `load_reward_manager`, inside verl's `RewardLoopWorker` (in process)
and inside the Ray actors of `RewardLoopManager` with the reward settings of
examples/verl/run_delta_8gpu.sh. Every program runs in the real sandbox.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from code_sandbox import needs_sandbox

from delta_rlvr.data import PromptRecord, load_humaneval
from delta_rlvr.data.code import humaneval_path
from delta_rlvr.rewards import (
    code_reward,
    completion_text,
    compute_score,
    is_code_task,
    make_code_reward,
    make_math_reward,
    math_reward,
    trl_rows,
    verl_rows,
)
from delta_rlvr.verifiers import score_code

# Without bubblewrap the code reward refuses (SandboxUnavailable): the tests skip (code_sandbox.py).
pytestmark = needs_sandbox

ROOT = Path(__file__).resolve().parents[1]
ASSET = ROOT / "src" / "delta_rlvr" / "assets" / "arith-tiny"

ADD = json.dumps({"style": "function", "function": "add", "calls": [[[1, 2], 3], [[2, 2], 4]]})
ADD_RIGHT = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```\n"
ADD_HALF = "def add(a, b):\n    return 3\n"  # passes the first call only
ADD_WRONG = "def add(a, b):\n    return a - b\n"
SUM_APPS = json.dumps({"inputs": ["1 2\n", "4 5\n"], "outputs": ["3\n", "9\n"]})
SUM_RIGHT = "a, b = map(int, input().split())\nprint(a + b)\n"

# Four small problems in the example script's default row form {prompt, tests: CodeSpec JSON},
# each with a right and a wrong (but running) solution.
PROBLEMS = [
    ("def add(a, b):\n", ADD, ADD_RIGHT, ADD_WRONG),
    ("def neg(x):\n", json.dumps({"style": "function", "function": "neg", "calls": [[[1], -1], [[0], 0]]}),
     "def neg(x):\n    return -x\n", "def neg(x):\n    return x\n"),
    ("Read two integers and print their sum.\n",
     json.dumps({"style": "stdio", "cases": [["1 2\n", "3\n"], ["4 5\n", "9\n"]]}), SUM_RIGHT, "print(0)\n"),
    ("def double(x):\n", json.dumps({"style": "assert", "code": "assert double(2) == 4\nassert double(0) == 0\n"}),
     "def double(x):\n    return 2 * x\n", "def double(x):\n    return x\n"),
]


def load_example(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# TRL


def test_a_two_step_trl_run_of_the_code_example_logs_the_code_rewards_mean(tmp_path):
    pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    data = tmp_path / "code.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "tests": t}) + "\n" for p, t, _, _ in PROBLEMS))
    example = load_example("train_code_grpo", ROOT / "examples" / "trl" / "train_code_grpo.py")
    args = example.parse_args(["--model", str(ASSET), "--train-file", str(data), "--output-dir", str(tmp_path / "out")])
    trainer = example.build_trainer(
        args, use_cpu=True, use_vllm=False, bf16=False, gradient_checkpointing=False, num_generations=4,
        per_device_train_batch_size=8, steps_per_generation=1, max_completion_length=16, max_steps=2,
        learning_rate=1e-2, report_to=[], save_strategy="no", seed=3, dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    assert isinstance(trainer.train_dataset, datasets.Dataset) and trainer.train_dataset.column_names == ["prompt", "tests"]

    # The embedded arithmetic model writes no Python. So that the rewards carry a signal, the
    # first completion of each prompt in a generation batch is replaced by the right solution
    # and the second by a wrong one (the text TRL scores; everything after it is TRL's own).
    solutions = {p: (right, wrong) for p, _, right, wrong in PROBLEMS}
    generate = trainer._generate

    def generate_then_answer(prompts):
        out = list(generate(prompts))
        completions, seen = list(out[3]), {}
        for index, prompt in enumerate(prompts):
            count = seen[prompt] = seen.get(prompt, 0) + 1
            if count <= 2:
                completions[index] = solutions[prompt][count - 1]
        out[3] = completions
        return tuple(out)

    trainer._generate = generate_then_answer
    try:
        trainer.train()
    finally:
        torch.set_num_threads(previous)

    logged = [h for h in trainer.state.log_history if "rewards/code_reward/mean" in h]
    assert len(logged) == 2  # one per step, under the reward function's __name__
    for entry in logged:
        mean = entry["rewards/code_reward/mean"]
        assert isinstance(mean, float) and math.isfinite(mean) and 0.0 <= mean <= 1.0
        assert mean == 0.25  # 1 right of 4 completions per prompt
        assert entry["code_reward/timeout"] == 0.0  # the reward's own log_metric
        assert entry["delta/side_tokens_pos"] > 0 and entry["delta/side_tokens_neg"] > 0  # DelTA got a signal
    # TRL's per-completion rewards of the last batch are score_code on what it scored, row by row.
    tests = {p: t for p, t, _, _ in PROBLEMS}
    prompts, completions = list(trainer._logs["prompt"]), list(trainer._logs["completion"])
    expected = [r.score for r in score_code(completions, [tests[p] for p in prompts])]
    assert list(trainer._logs["rewards"]["code_reward"]) == expected and sum(expected) == 2


def test_code_reward_scores_right_wrong_and_conversational_completions():
    completions = [ADD_RIGHT, ADD_WRONG, [{"role": "assistant", "content": ADD_RIGHT}],
                   [{"role": "assistant", "content": [{"type": "text", "text": ADD_RIGHT}]}],
                   [{"role": "assistant", "content": ADD_WRONG}, {"role": "tool", "content": "ok"},
                    {"role": "assistant", "content": ADD_RIGHT}], SUM_RIGHT]
    tests = [ADD] * 5 + [SUM_APPS]
    assert code_reward(prompts=["p"] * 6, completions=completions, tests=tests) == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert code_reward.__name__ == "code_reward" and make_code_reward().__name__ == "code_reward"
    assert make_code_reward(name="code_pass_rate").__name__ == "code_pass_rate"
    assert completion_text([{"role": "user", "content": "x"}]) == ""


def test_partial_credit_gives_the_fraction_of_cases_passed():
    partial = make_code_reward(partial_credit=True)
    assert partial(prompts=["p"] * 3, completions=[ADD_RIGHT, ADD_HALF, ADD_WRONG], tests=[ADD] * 3) == [1.0, 0.5, 0.0]
    assert code_reward(prompts=["p"], completions=[ADD_HALF], tests=[ADD]) == [0.0]


# A program that writes a 2 MiB scratch file in its private /tmp, then answers.
WRITE = json.dumps({"style": "function", "function": "write", "calls": [[[2 << 20], 2 << 20]]})
WRITE_2MIB = "def write(n):\n    import os\n    open('/tmp/scratch', 'wb').write(b'x' * n)\n    return os.path.getsize('/tmp/scratch')\n"
ECHO = json.dumps({"style": "stdio", "cases": [["7\n", "7\n"]]})
ECHO_AFTER_2MIB = "open('/tmp/scratch', 'wb').write(b'x' * (2 << 20))\nprint(input())\n"


def test_max_file_bytes_reaches_the_sandbox_from_make_code_reward_and_compute_score():
    def trl(**settings):
        return make_code_reward(**settings)(prompts=["p"], completions=[WRITE_2MIB], tests=[WRITE])

    assert trl() == [1.0]  # the default, 64 MiB
    assert trl(max_file_bytes=4 << 20) == [1.0] and trl(max_file_bytes=1 << 20) == [0.0]  # EFBIG past the limit
    assert compute_score("code", ECHO_AFTER_2MIB, ECHO, max_file_bytes=4 << 20) == 1.0
    assert compute_score("code", ECHO_AFTER_2MIB, ECHO, max_file_bytes=1 << 20) == 0.0
    with pytest.raises(ValueError, match="max_file_bytes=0 must be a positive number of bytes"):
        make_code_reward(max_file_bytes=0)


def test_a_bad_tests_value_raises_naming_the_column_and_the_row():
    with pytest.raises(ValueError, match=r"column 'tests', batch row 1 \(prompt 'second'\): test spec style 'x' is unknown"):
        code_reward(prompts=["first", "second"], completions=[ADD_RIGHT] * 2, tests=[ADD, '{"style": "x"}'])
    with pytest.raises(ValueError, match=r"batch row 0 .*not JSON"):
        code_reward(prompts=["p"], completions=[ADD_RIGHT], tests=["assert add(1, 2) == 3"])
    with pytest.raises(ValueError, match=r"batch row 0 .*empty"):
        code_reward(prompts=["p"], completions=[ADD_RIGHT], tests=[None])
    with pytest.raises(ValueError, match=r"no column 'tests' \(it has \['gold'\]\).*make_code_reward\(column=\.\.\.\)"):
        code_reward(prompts=["p"], completions=[ADD_RIGHT], gold=["3"], trainer_state=None)
    with pytest.raises(ValueError, match="column 'problem_tests'"):
        make_code_reward(column="problem_tests")(prompts=["p"], completions=[ADD_RIGHT], problem_tests=["[]"])


def test_humaneval_records_through_trl_rows_score_their_canonical_solutions():
    records = load_humaneval()[0][:3]
    rows = trl_rows(records)
    assert [sorted(r) for r in rows] == [["prompt", "tests"]] * 3 and rows[0]["prompt"] == records[0].question
    with gzip.open(humaneval_path(), "rt") as handle:
        canonical = [json.loads(line)["canonical_solution"] for line, _ in zip(handle, range(3))]
    prompts = [r["prompt"] for r in rows] * 2
    rewards = code_reward(prompts=prompts, completions=canonical + ["    return None\n"] * 3,
                          tests=[r["tests"] for r in rows] * 2)
    assert rewards == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_math_reward_and_a_mixed_dataset_where_each_reward_scores_its_own_rows():
    math_record = PromptRecord("m1", "12", "gsm", question="3 * 4?")
    alt_record = PromptRecord("m2", "1/2", "gsm", question="half?", alternatives=("0.5",))
    code_record = load_humaneval()[0][0]
    rows = trl_rows([math_record, alt_record, code_record], chat=True)
    assert rows[0] == {"prompt": [{"role": "user", "content": "3 * 4?"}], "tests": None, "gold": ["12"]}
    assert rows[1]["gold"] == ["1/2", "0.5"] and rows[2]["gold"] is None and rows[2]["tests"] == code_record.gold
    columns = {key: [r[key] for r in rows] for key in ("tests", "gold")}
    completions = ["so \\boxed{12}", "\\boxed{0.5}", [{"role": "assistant", "content": "    return True\n"}]]
    assert math_reward(prompts=[r["prompt"] for r in rows], completions=completions, **columns) == [1.0, 1.0, None]
    assert code_reward(prompts=[r["prompt"] for r in rows], completions=completions, **columns) == [None, None, 0.0]
    assert trl_rows([math_record]) == [{"prompt": "3 * 4?", "gold": "12"}]
    assert make_math_reward(answer_format="number")(completions=["it is 12"], gold=["12"]) == [1.0]
    with pytest.raises(ValueError, match="column 'gold', batch row 0"):
        math_reward(prompts=["q"], completions=["\\boxed{1}"], gold=[""])


# ---------------------------------------------------------------------------------------------
# verl


def test_compute_score_dispatches_code_and_math_by_ground_truth_and_data_source():
    assert compute_score("humaneval", ADD_RIGHT, ADD) == 1.0
    assert compute_score("anything", ADD_WRONG, json.loads(ADD)) == 0.0  # a dict ground truth
    assert compute_score("apps", SUM_RIGHT, SUM_APPS) == 1.0
    assert compute_score("codecontests", ADD_HALF, ADD, partial_credit=True) == 0.5
    assert compute_score("openai/gsm8k", "\\boxed{12}", "12") == 1.0
    assert compute_score("math", "\\boxed{13}", "12") == 0.0
    assert compute_score("math", "\\boxed{0.5}", "1/2", {"alternatives": []}) == 1.0
    assert compute_score("math", "\\boxed{0.5}", "half", {"alternatives": ["0.5"]}) == 1.0
    assert is_code_task("12", "code_golf") and is_code_task("12", "taco") and not is_code_task("{1, 2}", "math")
    with pytest.raises(ValueError, match=r"data_source 'taco', extra_info.index 7: .*not a readable code test spec"):
        compute_score("taco", SUM_RIGHT, "42", {"index": 7})


def test_verl_rows_round_trip_through_parquet_and_score(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    code = PromptRecord("c1", ADD, "mine", question="Write add(a, b).",
                        metadata={"tests_format": "spec"})
    apps = PromptRecord("c2", SUM_APPS, "mine", messages=(("user", "Sum two integers."),))
    maths = PromptRecord("m1", "1/2", "mine", question="half?", alternatives=("0.5",))
    rows = verl_rows([code, apps, maths], data_source="mixed")
    assert rows[0]["prompt"] == [{"role": "user", "content": "Write add(a, b)."}] and rows[0]["ability"] == "code"
    assert rows[2]["reward_model"] == {"style": "rule", "ground_truth": "1/2"} and rows[2]["ability"] == "math"
    assert rows[1]["extra_info"] == {"split": "train", "index": 1, "id": "c2", "alternatives": []}
    path = tmp_path / "rows.parquet"
    pd.DataFrame(rows).to_parquet(path)
    back = pd.read_parquet(path).to_dict("records")
    responses = [ADD_RIGHT, SUM_RIGHT, "\\boxed{0.5}"]
    scores = [compute_score(r["data_source"], s, r["reward_model"]["ground_truth"], dict(r["extra_info"]))
              for r, s in zip(back, responses)]
    assert scores == [1.0, 1.0, 1.0]
    # a struct ground truth reads back with numpy arrays inside; they are read as lists
    pd.DataFrame([{"gt": json.loads(SUM_APPS)}]).to_parquet(tmp_path / "struct.parquet")
    struct = pd.read_parquet(tmp_path / "struct.parquet")["gt"][0]
    assert type(struct["inputs"]).__name__ == "ndarray" and compute_score("apps", SUM_RIGHT, struct) == 1.0


def _verl_batch(tokenizer, items):
    """A DataProto as verl's agent loop hands it to the reward loop: left-padded prompts,
    right-padded responses ending in EOS, one attention mask over both."""
    import numpy as np
    import torch
    from tensordict import TensorDict
    from verl import DataProto

    prompt_len, response_len = 16, 96
    n = len(items)
    prompts = torch.full((n, prompt_len), tokenizer.pad_token_id, dtype=torch.long)
    responses = torch.full((n, response_len), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros(n, prompt_len + response_len, dtype=torch.long)
    lengths = []
    for i, (_, response, _) in enumerate(items):
        p = tokenizer("Solve it.", add_special_tokens=False).input_ids
        r = tokenizer(response, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        assert len(p) <= prompt_len and len(r) <= response_len
        prompts[i, prompt_len - len(p):] = torch.tensor(p)
        mask[i, prompt_len - len(p):prompt_len] = 1
        responses[i, : len(r)] = torch.tensor(r)
        mask[i, prompt_len:prompt_len + len(r)] = 1
        lengths.append(len(r))
    batch = TensorDict({"prompts": prompts, "responses": responses, "attention_mask": mask,
                        "input_ids": torch.cat([prompts, responses], dim=1)}, batch_size=n)
    non_tensor = {
        "data_source": np.array([source for source, _, _ in items], dtype=object),
        "reward_model": np.array([{"style": "rule", "ground_truth": gt} for _, _, gt in items], dtype=object),
        "extra_info": np.array([{"index": i} for i in range(n)], dtype=object),
    }
    return DataProto(batch=batch, non_tensor_batch=non_tensor), torch.tensor(lengths)


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    spec = importlib.util.find_spec("verl")
    config_dir = os.path.join(spec.submodule_search_locations[0], "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


VERL_ITEMS = [("humaneval", ADD_RIGHT, ADD), ("codecontests", ADD_HALF, ADD), ("openai/gsm8k", "so \\boxed{12}", "12")]


def test_verls_custom_reward_loader_and_reward_loop_worker_score_code_and_math():
    pytest.importorskip("verl")
    import torch
    from verl.experimental.reward_loop import RewardLoopWorker
    from verl.trainer.ppo.reward import get_custom_reward_fn, resolve_reward_manager_cls

    config = _compose([
        f"actor_rollout_ref.model.path={ASSET}",
        f"reward.custom_reward_function.path={ROOT / 'examples' / 'verl' / 'reward.py'}",
        "reward.custom_reward_function.name=compute_score",
        "+reward.custom_reward_function.reward_kwargs.partial_credit=true",
    ])  # fmt: skip
    # verl's loader: the file's function, wrapped with the config's reward_kwargs merged in
    loaded = get_custom_reward_fn(config)
    assert loaded(data_source="apps", solution_str=ADD_HALF, ground_truth=ADD, extra_info={}) == 0.5

    # The worker class RewardLoopManager runs as a Ray actor, here in process: its tokenizer
    # from actor_rollout_ref.model.path, load_reward_manager -> the "naive" manager's run_single.
    worker = RewardLoopWorker(config)
    assert type(worker.reward_manager).__name__ == "NaiveRewardManager"
    data, lengths = _verl_batch(worker.input_tokenizer, VERL_ITEMS)
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))
    assert [o["reward_score"] for o in outputs] == [1.0, 0.5, 1.0]
    assert [o["reward_extra_info"] for o in outputs] == [{"acc": 1.0}, {"acc": 0.5}, {"acc": 1.0}]
    # RewardLoopManager.compute_rm_score's assembly: the score on each response's last token
    scores = resolve_reward_manager_cls(config).assemble_rm_scores(data, [o["reward_score"] for o in outputs])
    assert scores[torch.arange(3), lengths - 1].tolist() == [1.0, 0.5, 1.0] and scores.sum().item() == 2.5


@pytest.mark.slow
def test_the_8gpu_scripts_reward_settings_score_code_and_math_in_verls_ray_reward_loop(tmp_path):
    """RewardLoopManager as RayPPOTrainer.init_workers builds it, with the reward overrides of
    examples/verl/run_delta_8gpu.sh (the dapo manager, its overlong buffer, reward.py)."""
    pytest.importorskip("verl")
    ray = pytest.importorskip("ray")
    import torch
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop import RewardLoopManager

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\n')
    (fake / "python").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", MODEL="m", TRAIN="t.parquet", VAL="v.parquet")
    env.pop("NNODES", None)
    subprocess.run(["bash", str(ROOT / "examples" / "verl" / "run_delta_8gpu.sh")], env=env, check=True, timeout=60)
    argv = (tmp_path / "argv").read_text().splitlines()[2:]
    reward_args = [a for a in argv if a.startswith(("reward.", "+reward."))]
    assert f"reward.custom_reward_function.path={ROOT / 'examples' / 'verl' / 'reward.py'}" in reward_args
    config = _compose([*reward_args, f"actor_rollout_ref.model.path={ASSET}", "reward.num_workers=1"])
    assert config.reward.reward_manager.name == "dapo"  # RewardLoopManager resolves DAPORewardManager

    tokenizer = AutoTokenizer.from_pretrained(ASSET)
    data, lengths = _verl_batch(tokenizer, VERL_ITEMS[:1] + [("apps", ADD_WRONG, ADD)] + VERL_ITEMS[2:])
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        manager = RewardLoopManager(config)
        assert manager.reward_manager_cls.__name__ == "DAPORewardManager"
        out = manager.compute_rm_score(data)  # what RayPPOTrainer._compute_reward_colocate calls
        streamed = ray.get(manager.reward_loop_workers[0].compute_score.remote(data[0:1]))  # the agent loop's call
    finally:
        if started:
            ray.shutdown()
    scores = out.batch["rm_scores"]
    assert scores[torch.arange(3), lengths - 1].tolist() == [1.0, 0.0, 1.0] and scores.sum().item() == 2.0
    assert out.meta_info["reward_extra_keys"] == ["acc"] and out.non_tensor_batch["acc"].tolist() == [1.0, 0.0, 1.0]
    assert streamed["reward_score"] == 1.0


def test_the_examples_import_the_shared_rewards():
    sys.modules.pop("verl_reward_example", None)
    module = load_example("verl_reward_example", ROOT / "examples" / "verl" / "reward.py")
    assert module.compute_score is compute_score
    pytest.importorskip("trl")
    trl_example = load_example("train_delta_grpo", ROOT / "examples" / "trl" / "train_delta_grpo.py")
    assert trl_example.math_reward is math_reward
