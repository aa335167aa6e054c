"""One process of the two-process CPU test (tests/adapters/test_trl_multiprocess.py).

    torchrun --nproc_per_node 2 tests/adapters/trl_multiprocess_worker.py OUT_DIR

Trains 2 steps of DeltaGRPOTrainer on a tiny from-config Qwen3 with delta_pooling="global",
then 2 steps with "local", then one step of each with a cache cap (local: every rank streams;
global: a cap between the two ranks' cache sizes, so the ranks must agree to stream), each a
fresh trainer under the same accelerate state (DDP over gloo). Every rank saves, per
generation batch, its batch, A, coef and the weights that sampled it, to OUT_DIR/rank{r}.pt.
Then it tries FSDP2 (`fully_shard` on a CPU mesh over gloo) on the LM head and records
whether torch allows it there and what `gathered_head` returns.

Resume (issue 27): for each pooling, with a frozen gamma and with random coefficients, a 2-step
run checkpointing every step, then a fresh trainer resumed from its checkpoint-1; every rank
saves both runs' step-2 coefficients and its checkpointed gamma.

FSDP2 (issue 27): one DeltaGRPOTrainer step under DDP and the same step under accelerate's FSDP2
(``fully_shard`` of every decoder layer and the root; accelerate refuses FSDP on CPU, so the
worker sets its state to FSDP after the trainer is built, the only change): both runs'
rollouts, coefficients and updated weights (gathered from the shards) are saved.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    import datasets
    import torch.distributed as dist

    from delta_rlvr.adapters.trl import DeltaGRPOConfig, DeltaGRPOTrainer, gathered_head
    from delta_rlvr.data import arithmetic_dataset, extract_arithmetic_answer, score_arithmetic
    from delta_rlvr.models import TinyModelConfig, build_char_tokenizer, build_tiny_model

    tiny = TinyModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128, seed=7)
    tokenizer = build_char_tokenizer()

    def correct(completions, gold, **_):
        return score_arithmetic(completions, gold)

    def has_answer(completions, **_):
        return [0.0 if extract_arithmetic_answer(c) is None else 1.0 for c in completions]

    class Recording(DeltaGRPOTrainer):
        def __init__(self, *args, **kwargs):
            self.records = []
            super().__init__(*args, **kwargs)

        def _delta_coefficients(self, batch):
            from torch.distributed.tensor import DTensor

            state = self.accelerator.unwrap_model(self.model).state_dict()
            weights = {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().clone() for k, v in state.items()}
            coef, stats = super()._delta_coefficients(batch)
            keep = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")
            self.records.append({"A": batch["advantages"].clone(), "coef": coef.clone(), "weights": weights,
                                 "info": dict(self.delta_pass_info), **{k: batch[k].clone() for k in keep}})
            return coef, stats

    rows = arithmetic_dataset(32)
    data = datasets.Dataset.from_list([{"prompt": r.question, "gold": r.gold} for r in rows])
    results = {}
    for name, extra in (("global", dict(delta_pooling="global")), ("local", dict(delta_pooling="local")),
                        ("local_streamed", dict(delta_pooling="local", delta_cache_mib=1e-3)),
                        ("global_streamed", dict(delta_pooling="global", delta_cache_mib=0.012))):
        args = DeltaGRPOConfig(
            output_dir=str(out / name), per_device_train_batch_size=8, num_generations=4, max_completion_length=8,
            max_steps=2 if "streamed" not in name else 1, learning_rate=1e-2, logging_steps=1, loss_type="dapo",
            beta=0.0, temperature=1.0, reward_weights=[1.0, 0.5], use_cpu=True, bf16=False, report_to=[],
            save_strategy="no", seed=11, dataloader_num_workers=0, disable_tqdm=True, **extra)
        trainer = Recording(model=build_tiny_model(tokenizer, tiny), reward_funcs=[correct, has_answer], args=args,
                            train_dataset=data, processing_class=tokenizer)
        trainer.train()
        results[name] = trainer.records
    rank = dist.get_rank()

    def config(name, max_steps=2, **extra):
        return DeltaGRPOConfig(
            output_dir=str(out / name), per_device_train_batch_size=8, num_generations=4, max_completion_length=8,
            max_steps=max_steps, learning_rate=1e-2, logging_steps=1, loss_type="dapo", beta=0.0, temperature=1.0,
            reward_weights=[1.0, 0.5], use_cpu=True, bf16=False, report_to=[], seed=11, dataloader_num_workers=0,
            disable_tqdm=True, **extra)

    def trainer_of(args):
        return Recording(model=build_tiny_model(tokenizer, tiny), reward_funcs=[correct, has_answer], args=args,
                         train_dataset=data, processing_class=tokenizer)

    resume = {}
    for pooling in ("local", "global"):
        for what, extra in (("frozen", dict(delta_freeze_temperature=True)), ("random", dict(delta_random_coefficients=True))):
            name = f"resume_{pooling}_{what}"
            full = trainer_of(config(name, delta_pooling=pooling, save_strategy="steps", save_steps=1, **extra))
            full.train()
            checkpoint = out / name / "checkpoint-1"
            resumed = trainer_of(config(name + "_resumed", delta_pooling=pooling, save_strategy="no", **extra))
            resumed.train(resume_from_checkpoint=str(checkpoint))
            saved = torch.load(checkpoint / f"delta_state_rank{rank}.pt", weights_only=True)
            resume[name] = {"full": [r["coef"] for r in full.records], "resumed": [r["coef"] for r in resumed.records],
                            "full_A": [r["A"] for r in full.records], "resumed_A": [r["A"] for r in resumed.records],
                            "saved_gamma": saved["gamma"], "resumed_gamma": resumed._delta_gamma.value,
                            "checkpoint": str(checkpoint)}

    # One step under DDP, then the same step under FSDP2 (the accelerate state is process-wide: FSDP2 last).
    steps = {}
    for name in ("ddp", "fsdp2"):
        trainer = trainer_of(config(f"step_{name}", delta_pooling="global", max_steps=1, save_strategy="no",
                                    optim="sgd"))  # SGD: the update is lr x the clipped gradient itself
        if name == "fsdp2":
            from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

            state = trainer.accelerator.state
            state.fsdp_plugin = FullyShardedDataParallelPlugin(
                fsdp_version=2, reshard_after_forward=True, auto_wrap_policy="transformer_based_wrap",
                transformer_cls_names_to_wrap=["Qwen3DecoderLayer"])
            state.distributed_type = DistributedType.FSDP
            trainer.is_fsdp_enabled = True
        trainer.train()
        from torch.distributed.tensor import DTensor

        params = dict(trainer.model.named_parameters())
        sharded = any(isinstance(v, DTensor) for v in params.values())
        after = {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().clone() for k, v in params.items()}
        rec = trainer.records[0]
        steps[name] = {"after": after, "before": {k: rec["weights"][k] for k in after}, "coef": rec["coef"],
                       "A": rec["A"], "completion_ids": rec["completion_ids"], "sharded": sharded,
                       "wrapper": type(trainer.model_wrapped).__name__, "info": rec["info"]}

    # FSDP2 on CPU: shard a fresh model's LM head over the two processes and gather it back.
    fsdp2 = {}
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor import DTensor

        model = build_tiny_model(tokenizer, tiny)
        full = model.get_output_embeddings().weight.detach().clone()
        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        fully_shard(model, mesh=mesh)  # one group: the head is tied to the embeddings
        weight = model.get_output_embeddings().weight
        fsdp2["is_dtensor"] = isinstance(weight, DTensor)
        fsdp2["local_rows"] = int(weight.to_local().shape[0]) if isinstance(weight, DTensor) else None
        gathered, _ = gathered_head(model.get_output_embeddings())
        fsdp2["gathered_equal"] = bool(torch.equal(gathered, full)) and not isinstance(gathered, DTensor)
        with torch.no_grad():  # a sharded forward runs on CPU/gloo too
            ids = torch.randint(3, 50, (2, 6))
            fsdp2["forward_ok"] = bool(torch.isfinite(model(input_ids=ids).logits).all())
        fsdp2["allowed"] = True
    except Exception as err:  # noqa: BLE001 - recorded for the test and the docs
        fsdp2["allowed"] = False
        fsdp2["error"] = f"{type(err).__name__}: {err}"
    torch.save({"results": results, "fsdp2": fsdp2, "resume": resume, "steps": steps, "world_size": dist.get_world_size()},
               out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
