"""DelTA with TRL on CPU, no GPU and no download: a tiny Qwen3 built from a config, two processes.

    torchrun --standalone --nproc_per_node 2 examples/trl/train_delta_grpo_cpu.py --output-dir runs/trl-cpu

(about 20 s on two cores; ``--max-steps`` for longer). It is the GPU example's setup in
miniature: DAPO loss, no KL, DelTA with the paper's K = 1 and coefficients in [0.8, 1.2],
gloo DDP between the two processes, transformers generation. Arithmetic prompts
(`delta_rlvr.data.arithmetic_dataset`) are scored by the project's exact-answer checker plus a
format reward. TRL runs no old-log-prob forward here (one optimiser step per generation batch),
and DelTA takes the hidden states from generation: ``delta/forwards`` is 0. Checkpoints hold
each process's DelTA state (``delta_state_rank{r}.pt``); ``--resume`` continues from one on the
same number of processes.

Use torchrun: ``accelerate launch --cpu --num_processes 2`` starts a single process (accelerate's
CPU launcher leaves the other processes to mpirun), which DeltaGRPOTrainer warns about.
The last step's ``delta/*`` metrics are printed by process 0 as one JSON line.
"""

from __future__ import annotations

import argparse
import json

import datasets
import torch

from delta_rlvr.adapters.trl import DeltaGRPOConfig, DeltaGRPOTrainer
from delta_rlvr.data import arithmetic_dataset, extract_arithmetic_answer, score_arithmetic
from delta_rlvr.models import TinyModelConfig, build_char_tokenizer, build_tiny_model


def correct(completions, gold, **_):
    return score_arithmetic(completions, gold)


def has_answer(completions, **_):
    return [0.0 if extract_arithmetic_answer(c) is None else 1.0 for c in completions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="runs/trl-cpu")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--save-steps", type=int, default=2)
    parser.add_argument("--pooling", choices=["local", "global"], default="local")
    parser.add_argument("--resume", default=None, help="a checkpoint folder of an earlier run to continue from")
    args = parser.parse_args()
    torch.set_num_threads(1)  # two processes on two cores

    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, TinyModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2,
                                                        intermediate_size=128, seed=7))
    rows = arithmetic_dataset(64)
    data = datasets.Dataset.from_list([{"prompt": r.question, "gold": r.gold} for r in rows])
    config = DeltaGRPOConfig(
        output_dir=args.output_dir,
        use_cpu=True,
        bf16=False,
        num_generations=4,
        per_device_train_batch_size=8,
        max_completion_length=8,
        temperature=1.0,
        loss_type="dapo",
        beta=0.0,
        learning_rate=1e-3,
        reward_weights=[1.0, 0.5],
        max_steps=args.max_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        logging_steps=1,
        report_to=[],
        disable_tqdm=True,
        seed=0,
        delta_refine_steps=1,
        delta_coef_min=0.8,
        delta_coef_max=1.2,
        delta_pooling=args.pooling,
    )
    trainer = DeltaGRPOTrainer(model=model, reward_funcs=[correct, has_answer], args=config, train_dataset=data,
                               processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=args.resume)
    if trainer.accelerator.is_main_process:
        last = [entry for entry in trainer.state.log_history if "delta/forwards" in entry][-1]
        print(json.dumps({"step": last["step"], "processes": trainer.accelerator.num_processes,
                          **{k: v for k, v in last.items() if k.startswith("delta/") or k == "reward"}}))


if __name__ == "__main__":
    main()
