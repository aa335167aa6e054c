"""DelTA with TRL's GRPOTrainer on several GPUs, generation by a vLLM server.

    # GPU 7: the vLLM server (TRL's own CLI)
    CUDA_VISIBLE_DEVICES=7 trl vllm-serve --model Qwen/Qwen3-8B-Base --port 8000
    # GPUs 0-6: training
    CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6 accelerate launch \
        --config_file examples/trl/accelerate_multi_gpu.yaml --num_processes 7 \
        examples/trl/train_delta_grpo.py --model Qwen/Qwen3-8B-Base --vllm-host 127.0.0.1

Settings follow the paper (the paper's training settings) where TRL has them: DAPO loss (token mean),
clip 0.2 / 0.28, no KL, lr 1e-6 constant, weight decay 0.1, grad clip 1.0, 16 samples per
prompt, temperature 1.0, DelTA K = 1 with coefficients in [0.8, 1.2]. TRL has no dual-clip
(its loss is unchanged by this adapter) and no dynamic sampling (off in the paper anyway).
The data is a JSONL file with "prompt" and "gold" fields (\\boxed{} answers), scored by the
project's math verifier (`delta_rlvr.rewards.math_reward`: math-verify in worker processes with
hard deadlines; a timeout scores 0). Code problems: examples/trl/train_code_grpo.py.
"""

from __future__ import annotations

import argparse

from datasets import load_dataset

from delta_rlvr.adapters.trl import DeltaGRPOConfig, DeltaGRPOTrainer
from delta_rlvr.rewards import math_reward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--train-file", required=True, help="JSONL with 'prompt' and 'gold' fields")
    parser.add_argument("--output-dir", default="runs/trl-delta")
    parser.add_argument("--vllm-host", default="127.0.0.1")
    parser.add_argument("--vllm-port", type=int, default=8000)
    parser.add_argument("--per-device-batch", type=int, default=16, help="completions per GPU per micro-step")
    parser.add_argument("--steps-per-generation", type=int, default=4, help="mini-batches per rollout batch")
    parser.add_argument("--pooling", choices=["local", "global"], default="local")
    parser.add_argument("--cache-mib", type=float, default=None,
                        help="cap (MiB per GPU) of DelTA's packed hidden-state cache; past it the pass streams")
    args = parser.parse_args()

    config = DeltaGRPOConfig(
        output_dir=args.output_dir,
        # rollout: 16 samples per prompt at temperature 1.0
        num_generations=16,
        temperature=1.0,
        top_p=1.0,
        max_completion_length=20480,
        use_vllm=True,
        vllm_mode="server",
        vllm_server_host=args.vllm_host,
        vllm_server_port=args.vllm_port,
        # optimisation (paper): DAPO token-mean, clip-higher, no KL, AdamW lr 1e-6 wd 0.1, clip 1.0
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        beta=0.0,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        weight_decay=0.1,
        max_grad_norm=1.0,
        per_device_train_batch_size=args.per_device_batch,
        steps_per_generation=args.steps_per_generation,
        num_iterations=1,
        bf16=True,
        gradient_checkpointing=True,
        # DelTA (paper defaults, spelled out)
        delta_refine_steps=1,
        delta_coef_min=0.8,
        delta_coef_max=1.2,
        delta_pooling=args.pooling,
        # vLLM IS correction is on by default: DelTA reuses TRL's old-log-prob forward (no extra one)
        delta_cache_mib=args.cache_mib,
        logging_steps=1,
        report_to=["tensorboard"],
        save_steps=20,
    )
    dataset = load_dataset("json", data_files=args.train_file, split="train")
    trainer = DeltaGRPOTrainer(model=args.model, reward_funcs=[math_reward], args=config, train_dataset=dataset)
    trainer.train()


if __name__ == "__main__":
    main()
