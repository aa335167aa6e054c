"""The RLVR trainer: sample, score, advantages, old-policy pass, DelTA coefficients, update.

`Trainer.train_step` reads top to bottom in pipeline order. Design choices:
- Everything downstream of the rollout is a deterministic function of the rollout; sampling is
  seeded per (run seed, step, round), so a resumed run samples exactly what an uninterrupted
  one would, and checkpoints only need the model, optimizer and data position.
- The old-policy pass runs once per rollout batch, micro-batch by micro-batch, and yields
  log-probs at the rollout temperature, entropies, and - when the method needs coefficients -
  DelTA's token vectors under the configured proxy (models/proxies.py), cached, or fed to a
  streaming estimator whose remaining K + 1 passes recompute hidden states.
- Coefficients are fixed for every mini-batch update of that rollout batch.
- A non-finite loss or gradient norm skips the optimizer step (logged); checkpoints are only
  written from finite parameters.
- SIGINT and SIGTERM end the current step, write a checkpoint and return (`interrupted` holds
  the signal); a second SIGINT stops at once (KeyboardInterrupt), with the last checkpoint intact.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from delta_rlvr.core import (
    DeltaStream,
    PolicyLossConfig,
    delta_coefficients,
    group_advantages,
    masked_mean,
    policy_loss,
)
from delta_rlvr.models import SampleBatch, completion_logprobs, sample_completions
from delta_rlvr.models.proxies import STREAMABLE, concat_vectors, make_sketch, token_vectors
from delta_rlvr.train.checkpoint import latest_checkpoint, load_state, rng_state, save_checkpoint, set_rng_state
from delta_rlvr.train.config import ConfigError, TrainConfig, save_config
from delta_rlvr.train.credit import AGGREGATION, METHODS, NEEDS_COEFFICIENTS, CreditInputs
from delta_rlvr.train.metrics import MetricsWriter
from delta_rlvr.train.policy import load_policy
from delta_rlvr.train.tasks import PromptEncoder, build_task


class StageTimer:
    """Wall time per pipeline stage, accumulated over a step (synchronising CUDA)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds[stage] += time.perf_counter() - start


def concat_samples(batches: list[SampleBatch], pad_id: int) -> SampleBatch:
    """Concatenate sample batches of different prompt and completion widths (re-padding)."""
    if len(batches) == 1:
        return batches[0]
    p = max(b.prompt_ids.shape[1] for b in batches)
    t = max(b.completion_ids.shape[1] for b in batches)

    def lpad(x, width, value):
        return torch.nn.functional.pad(x, (width - x.shape[1], 0), value=value)

    def rpad(x, width, value):
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    offset, groups = 0, []
    for b in batches:
        groups.append(b.group_index + offset)
        offset += int(b.group_index.max()) + 1
    return SampleBatch(
        prompt_ids=torch.cat([lpad(b.prompt_ids, p, pad_id) for b in batches]),
        prompt_mask=torch.cat([lpad(b.prompt_mask, p, False) for b in batches]),
        completion_ids=torch.cat([rpad(b.completion_ids, t, pad_id) for b in batches]),
        completion_mask=torch.cat([rpad(b.completion_mask, t, False) for b in batches]),
        group_index=torch.cat(groups),
        eos_token_ids=batches[0].eos_token_ids,
    )


def select_rows(batch: SampleBatch, rows: Tensor) -> SampleBatch:
    return SampleBatch(
        prompt_ids=batch.prompt_ids[rows], prompt_mask=batch.prompt_mask[rows],
        completion_ids=batch.completion_ids[rows], completion_mask=batch.completion_mask[rows],
        group_index=batch.group_index[rows], eos_token_ids=batch.eos_token_ids,
    )


def micro_slices(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


class Trainer:
    def __init__(self, config: TrainConfig, *, resume: bool = False) -> None:
        self.config = config
        run = config.run
        torch.set_num_threads(run.threads or auto_threads())
        self.out = Path(run.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_root = self.out / "checkpoints"
        self.step = 0
        self.position = 0
        self.frozen_temperature: Tensor | None = None
        self.sketch = None  # the full_sketch proxy's count-sketch, built on first use
        checkpoint = latest_checkpoint(self.ckpt_root) if resume else None
        if resume and checkpoint is None:
            print(f"--resume: no complete checkpoint in {self.ckpt_root}; starting from scratch")
        print(f"loading {checkpoint or config.model.name} ({torch.get_num_threads()} CPU threads) ...",
              file=sys.stderr, flush=True)
        self.model, self.tokenizer, self.device = load_policy(config.model, checkpoint)
        self.autocast = self.device.type == "cuda" and config.model.dtype in ("auto", "bfloat16")
        self.task = build_task(config.task)
        self.encode = PromptEncoder(self.tokenizer, config.task.template, getattr(self.task, "answer_hint", "boxed"))
        self.pad_id = self.tokenizer.pad_token_id
        opt = config.optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)
        total_updates = max(1, run.max_steps * opt.mini_batches)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda i: _lr_factor(i, opt.schedule, opt.warmup_steps, total_updates))
        if checkpoint is not None:
            state = load_state(checkpoint)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            self.step, self.position = state["step"], state["position"]
            self.frozen_temperature = state.get("frozen_temperature")
            print(f"resumed from {checkpoint} at step {self.step}")
        save_config(config, self.out / "config.yaml")
        self.metrics = MetricsWriter(self.out, tensorboard=run.tensorboard, resume_step=self.step)
        self.last_batch: dict | None = None  # tokens and coefficients of the last step, for the report
        self.interrupted: int | None = None  # the signal that stopped train(), if one did

    # ------------------------------------------------------------------------------------------

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()

    def _seed(self, *parts: int) -> int:
        """A seed that is a fixed function of the run seed and `parts` (step, round, ...)."""
        x = self.config.run.seed
        for p in parts:
            x = (x * 1_000_003 + p + 1) % (2**61 - 1)
        return x

    def _rollout(self, timer: StageTimer) -> tuple[SampleBatch, list, Tensor, Tensor, dict]:
        """Sample G responses for each prompt and score them; with dynamic sampling, keep only
        groups whose rewards differ, sampling more rounds (up to the cap) to fill the batch."""
        ro = self.config.rollout
        kept: list[SampleBatch] = []
        kept_records, kept_rewards, kept_correct = [], [], []
        groups, rounds, dropped = 0, 0, 0
        while groups < ro.prompts_per_step and rounds < ro.max_sampling_rounds:
            records, self.position = self.task.train_records(self.position, ro.prompts_per_step)
            with timer("rollout"), self._autocast():
                batch = sample_completions(
                    self.model, self.encode(records), num_samples=ro.samples_per_prompt,
                    max_new_tokens=ro.max_new_tokens, temperature=ro.temperature, top_p=ro.top_p,
                    pad_token_id=self.pad_id, seed=self._seed(self.step, rounds),
                )
            with timer("scoring"):
                texts = self.tokenizer.batch_decode(batch.completion_ids.masked_fill(~batch.completion_mask, self.pad_id), skip_special_tokens=True)
                rows = [records[g] for g in batch.group_index.tolist()]
                correct = torch.tensor(self.task.score(texts, rows), dtype=torch.float32)
                rewards = correct.clone()
                if ro.overlong_buffer:
                    from delta_rlvr.verifiers import soft_overlong_penalty

                    rewards += torch.tensor(soft_overlong_penalty(
                        batch.completion_lengths.tolist(), max_length=ro.max_new_tokens,
                        buffer_length=ro.overlong_buffer, factor=ro.overlong_factor))
            rounds += 1
            if ro.dynamic_sampling:
                per_group = rewards.reshape(-1, ro.samples_per_prompt)
                informative = (per_group.max(1).values > per_group.min(1).values).nonzero().squeeze(-1)
                informative = informative[: ro.prompts_per_step - groups]
                dropped += per_group.shape[0] - informative.numel()
                rows_kept = (informative[:, None] * ro.samples_per_prompt + torch.arange(ro.samples_per_prompt)).reshape(-1)
                batch = select_rows(batch, rows_kept.to(batch.group_index.device))
                records = [records[i] for i in informative.tolist()]
                rewards, correct = rewards[rows_kept], correct[rows_kept]
                # group_index must count 0..n-1 within this round
                batch = replace(batch, group_index=torch.arange(len(records), device=batch.group_index.device).repeat_interleave(ro.samples_per_prompt))
            if batch.completion_ids.shape[0]:
                kept.append(batch)
                kept_records += records
                kept_rewards.append(rewards)
                kept_correct.append(correct)
                groups += len(records)
            if not ro.dynamic_sampling:
                break
        if not kept:  # every group uninformative for every round: train on nothing this step
            return None, [], torch.zeros(0), torch.zeros(0), {"rounds": rounds, "dropped_groups": dropped}
        return (concat_samples(kept, self.pad_id), kept_records, torch.cat(kept_rewards), torch.cat(kept_correct),
                {"rounds": rounds, "dropped_groups": dropped})

    def _forward(self, batch: SampleBatch, rows: slice | Tensor, *, hidden: bool):
        with self._autocast():
            return completion_logprobs(
                self.model, batch.prompt_ids[rows], batch.prompt_mask[rows], batch.completion_ids[rows],
                batch.completion_mask[rows], temperature=self.config.rollout.temperature, return_hidden=hidden,
            )

    def _vectors(self, batch: SampleBatch, rows: slice, adv: Tensor, out=None):
        """DelTA's token vectors for some rows (advantages `adv`) under the configured proxy,
        recomputing the old-policy pass when `out` is not given."""
        out = out if out is not None else self._forward(batch, rows, hidden=True)
        proxy = self.config.algorithm.proxy
        if proxy.name == "full_sketch" and self.sketch is None:
            self.sketch = make_sketch(proxy, self.model)
        return token_vectors(proxy, self.model, batch.prompt_ids[rows], batch.prompt_mask[rows], batch.completion_ids[rows],
                             batch.completion_mask[rows], out, temperature=self.config.rollout.temperature, sketch=self.sketch,
                             advantages=adv)

    @torch.no_grad()
    def _old_policy_and_coefficients(self, batch: SampleBatch, adv: Tensor, timer: StageTimer):
        """One pass over the rollout batch: old log-probs, entropies and (if needed) the proxy;
        then the DelTA coefficients, cached or streamed. Returns (logp, entropy, coef, stats, mode)."""
        algo = self.config.algorithm
        need = algo.method in NEEDS_COEFFICIENTS
        mask = batch.completion_mask
        b, t = mask.shape
        width = algo.proxy.sketch_dim if algo.proxy.name == "full_sketch" else self.model.config.hidden_size
        mode = algo.hidden_states
        if need and mode == "cached" and b * t * width * 4 > algo.hidden_cache_mib * 2**20:
            if algo.proxy.name not in STREAMABLE:
                raise ConfigError(
                    f"the {algo.proxy.name} proxy of {b} x {t} tokens needs {b * t * width * 4 / 2**20:.0f} MiB, over "
                    f"algorithm.hidden_cache_mib = {algo.hidden_cache_mib}; raise the cap or use fewer/shorter responses"
                )
            mode = "streamed"  # the proxy would not fit under the cap: same coefficients, more passes
        cfg = algo.coefficients
        temperature = self.frozen_temperature if cfg.freeze_temperature else None
        gen = torch.Generator().manual_seed(self._seed(self.step, 99))
        stream = DeltaStream(cfg, temperature=temperature, generator=gen) if need and mode == "streamed" else None
        slices = micro_slices(b, self.config.optim.micro_batch_size)
        logps, ents, proxies = [], [], []
        with timer("old_policy"):
            for s in slices:
                out = self._forward(batch, s, hidden=need)
                logps.append(out.logp)
                ents.append(out.entropy)
                if need:
                    v = self._vectors(batch, s, adv[s], out)
                    if stream is not None:
                        stream.update(v, adv[s], mask[s])  # pass 0 of the streaming estimator
                    else:
                        proxies.append(v)
        logp, entropy = torch.cat(logps), torch.cat(ents)
        coef, stats = None, None
        if need:
            with timer("coefficients"):
                if stream is not None:
                    stream.end_pass()
                    res = stream.run(lambda: ((self._vectors(batch, s, adv[s]), adv[s], mask[s]) for s in slices))
                    coef = torch.cat(res.coef)
                    stats = res.stats
                else:
                    res = delta_coefficients(concat_vectors(proxies), adv, mask, cfg, temperature=temperature, generator=gen)
                    coef, stats = res.coef, res.stats
            if cfg.freeze_temperature and self.frozen_temperature is None:
                self.frozen_temperature = stats.temperature[0].detach().cpu()
        return logp, entropy, coef, stats, mode

    def _update(self, batch: SampleBatch, old_logp: Tensor, credit, timer: StageTimer) -> dict[str, float]:
        """`optim.mini_batches` optimizer steps over a shuffled split of the rollout batch."""
        cfg = self.config
        algo, opt = cfg.algorithm, cfg.optim
        loss_cfg: PolicyLossConfig = replace(algo.loss, aggregation=AGGREGATION.get(algo.method, algo.loss.aggregation))
        b = old_logp.shape[0]
        perm = torch.randperm(b, generator=torch.Generator().manual_seed(self._seed(self.step, 7))).to(old_logp.device)
        sums: dict[str, float] = defaultdict(float)
        updates = skipped = 0
        self.model.train()
        with timer("update"):
            for mini in perm.chunk(opt.mini_batches):
                mask = credit.loss_mask[mini]
                normaliser = {
                    "token_mean": mask.sum().clamp_min(1),
                    "seq_mean_token_mean": mini.numel(),
                    "constant": mini.numel() * cfg.rollout.max_new_tokens,
                }[loss_cfg.aggregation]
                finite = True
                for rows in mini.split(opt.micro_batch_size):
                    out = self._forward(batch, rows, hidden=False)
                    pl = policy_loss(out.logp, old_logp[rows], credit.token_advantages[rows], credit.loss_mask[rows], loss_cfg, normaliser=normaliser)
                    if not torch.isfinite(pl.loss):
                        finite = False
                        break
                    pl.loss.backward()
                    share = rows.numel() / mini.numel()
                    sums["loss"] += pl.loss.item()
                    for key in ("clip_frac_low", "clip_frac_high", "dual_clip_frac", "approx_kl", "ratio_mean"):
                        sums[key] += getattr(pl, key).item() * share / opt.mini_batches
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), opt.grad_clip) if finite else torch.tensor(float("nan"))
                if not finite or not torch.isfinite(grad_norm):
                    self.optimizer.zero_grad(set_to_none=True)
                    skipped += 1
                    continue
                sums.setdefault("lr", self.scheduler.get_last_lr()[0])  # the step's first update
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                sums["grad_norm"] += grad_norm.item()
                updates += 1
        self.model.eval()
        out = dict(sums)
        out["grad_norm"] = out.get("grad_norm", float("nan")) / max(updates, 1) if updates else float("nan")
        out["loss"] = out.get("loss", float("nan")) / max(opt.mini_batches, 1)
        out.setdefault("lr", self.scheduler.get_last_lr()[0])
        out["skipped_updates"] = skipped
        return out

    # ------------------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One RL step. Returns the step's metrics."""
        timer = StageTimer(self.device)
        step_start = time.perf_counter()
        # 1. Sample G responses per prompt and score them with the task's verifier.
        rollout = self._rollout(timer)
        metrics = self.learn(rollout, timer)
        metrics["time/step"] = time.perf_counter() - step_start
        return metrics

    def learn(self, rollout, timer: StageTimer) -> dict[str, float]:
        """Everything after the rollout: a deterministic function of it (and of the model)."""
        cfg = self.config
        batch, records, rewards, correct, ro_info = rollout
        if batch is None:
            return {"reward_mean": float("nan"), "skipped_updates": 1, "sampling_rounds": ro_info["rounds"]}
        # 2. Group-relative advantages (one per response).
        adv = group_advantages(rewards, batch.group_index.cpu(), cfg.algorithm.estimator).to(self.device)
        # 3. Old-policy pass (log-probs, entropy, proxy) and DelTA coefficients.
        old_logp, entropy, coef, stats, mode = self._old_policy_and_coefficients(batch, adv, timer)
        # 4. Per-token credit for the chosen method.
        gen = torch.Generator().manual_seed(self._seed(self.step, 13))
        credit = METHODS[cfg.algorithm.method](CreditInputs(adv, batch.completion_mask, entropy, coef, gen), cfg.algorithm)
        # 5. Policy updates over mini-batches, coefficients fixed.
        upd = self._update(batch, old_logp, credit, timer)
        # 6. Metrics.
        mask = batch.completion_mask
        per_group = rewards.reshape(-1, cfg.rollout.samples_per_prompt)
        m = {
            "reward_mean": rewards.mean().item(),
            "reward_std": rewards.std().item() if rewards.numel() > 1 else 0.0,
            "accuracy": correct.mean().item(),
            "response_length": batch.completion_lengths.float().mean().item(),
            "response_length_max": batch.completion_lengths.max().item(),
            "truncated_frac": (~batch.ended_with_eos).float().mean().item(),
            "entropy": masked_mean(entropy, mask).item(),
            "zero_adv_groups": (per_group.max(1).values == per_group.min(1).values).float().mean().item(),
            "loss_tokens_frac": (credit.loss_mask.sum() / mask.sum().clamp_min(1)).item(),
            "sampling_rounds": ro_info["rounds"],
            "dropped_groups": ro_info["dropped_groups"],
            **upd,
        }
        if stats is not None:
            m.update(stats.as_metrics())
            m["delta/streamed"] = float(mode == "streamed")
        for stage in ("rollout", "scoring", "old_policy", "coefficients", "update"):
            m[f"time/{stage}"] = timer.seconds.get(stage, 0.0)
        self.last_batch = {
            "completion_ids": batch.completion_ids.cpu(), "mask": mask.cpu(), "rewards": rewards.cpu(),
            "advantages": adv.cpu(), "coef": None if coef is None else coef.cpu(),
            "prompts": [records[g].question or records[g].chat()[-1]["content"] for g in batch.group_index.tolist()],
        }
        return m

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """avg@k and pass@k on the held-out set, sampled with a fixed seed."""
        run, ro = self.config.run, self.config.rollout
        from tqdm.auto import tqdm

        records = self.task.eval_records()
        k = run.eval_samples
        scores = []
        bar = tqdm(total=len(records), disable=not run.progress, desc="eval", unit="problem", leave=False,
                   dynamic_ncols=True)
        for i in range(0, len(records), 64):
            chunk = records[i:i + 64]
            with self._autocast():
                batch = sample_completions(
                    self.model, self.encode(chunk), num_samples=k, max_new_tokens=ro.max_new_tokens,
                    temperature=run.eval_temperature, top_p=ro.top_p, pad_token_id=self.pad_id, seed=run.seed * 7919 + i,
                )
            texts = self.tokenizer.batch_decode(batch.completion_ids.masked_fill(~batch.completion_mask, self.pad_id), skip_special_tokens=True)
            scores += self.task.score(texts, [chunk[g] for g in batch.group_index.tolist()])
            bar.update(len(chunk))
        bar.close()
        from delta_rlvr.evaluation.estimators import avg_at_k, mean_pass_at_k, sampling_standard_error

        # a sample counts as correct with full marks (reasoning-gym scorers can give partial credit)
        correct = [[x >= 1.0 for x in scores[i * k:(i + 1) * k]] for i in range(len(records))]
        return {
            f"eval/avg@{k}": avg_at_k(correct),
            f"eval/avg@{k}_se": sampling_standard_error(correct),
            f"eval/pass@{k}": mean_pass_at_k(correct, k),
            "eval/problems": len(records),
        }

    def _save(self) -> None:
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            print(f"step {self.step}: parameters are not finite; no checkpoint written")
            return
        state = {
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
            "step": self.step, "position": self.position, "frozen_temperature": self.frozen_temperature,
        }
        save_checkpoint(self.ckpt_root, self.step, self.model, self.tokenizer, state,
                        (self.out / "config.yaml").read_text(), self.config.run.keep_last)

    def train(self) -> list[dict]:
        """Run to `run.max_steps`, evaluating before, every `eval_every` steps and at the end.

        SIGINT / SIGTERM: the current step finishes, a checkpoint is written, and the history so
        far is returned with `interrupted` set to the signal number.
        """
        with self._stop_on_signals():
            return self._train()

    @contextlib.contextmanager
    def _stop_on_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def stop(signum, frame):
            self.interrupted = signum
            name = signal.Signals(signum).name
            print(f"\n{name}: finishing step {self.step + 1} and writing a checkpoint (Ctrl-C again to stop at once)",
                  file=sys.stderr, flush=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
            if signum == signal.SIGTERM:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)

        for sig in previous:
            signal.signal(sig, stop)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _train(self) -> list[dict]:
        from tqdm.auto import tqdm

        run = self.config.run
        history = []
        if self.step == 0 and self.interrupted is None:
            ev = self.evaluate()
            self.metrics.write(0, ev)
            history.append({"step": 0, **ev})
        bar = tqdm(total=run.max_steps, initial=self.step, disable=not run.progress, desc="train", unit="step", dynamic_ncols=True)
        try:
            while self.step < run.max_steps and self.interrupted is None:
                m = self.train_step()
                self.step += 1
                last = self.step == run.max_steps
                if ((run.eval_every and self.step % run.eval_every == 0) or last) and self.interrupted is None:
                    m.update(self.evaluate())
                self.metrics.write(self.step, m)
                history.append({"step": self.step, **m})
                bar.update(1)
                bar.set_postfix(reward=f"{m.get('reward_mean', float('nan')):.3f}", refresh=False)
                if self.step % run.save_every == 0 or last or self.interrupted is not None:
                    self._save()
        finally:
            bar.close()
            self.metrics.close()
        return history


def auto_threads() -> int:
    """CPU threads for ``run.threads: 0``: the cores not already busy (1-minute load average),
    at least 1. torch's default takes every core, and on a machine whose cores are busy its
    spinning threads made a tiny-model step 8-18x slower (docs/implementation_details.md)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores
    return max(1, min(cores, cores - round(load)))


def _lr_factor(i: int, schedule: str, warmup: int, total: int) -> float:
    if warmup and i < warmup:
        return (i + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (i - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
