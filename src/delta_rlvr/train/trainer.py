"""The RLVR trainer: sample, score, advantages, old-policy pass, DelTA coefficients, update.

`Trainer.train_step` reads top to bottom in pipeline order. The stages are functions that
`delta-rlvr inspect`, `audit-proxy` and the benchmarks call too: `collect_rollout`
(train/rollout.py), `old_policy_pass` (train/old_policy.py), and the method table
(train/methods.py) that says what each method's credit, loss aggregation and advantage
estimator are. Design choices:
- Everything downstream of the rollout is a deterministic function of the rollout; sampling is
  seeded per (run seed, step, round), so a resumed run samples exactly what an uninterrupted
  one would, and checkpoints only need the model, optimizer and data position.
- The old-policy pass runs once per rollout batch, micro-batch by micro-batch, and yields
  log-probs at the rollout temperature, entropies, and - when the method needs coefficients -
  DelTA's token vectors under the configured proxy (models/token_vectors.py), cached, or fed to a
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

from delta_rlvr.core import PolicyLossConfig, group_advantages, masked_mean, policy_loss
from delta_rlvr.core.frozen import FrozenGamma
from delta_rlvr.core.losses import mini_batch_normaliser
from delta_rlvr.models import SampleBatch, decode_completions, sample_completions
from delta_rlvr.stats.estimators import avg_at_k, mean_pass_at_k, sampling_standard_error
from delta_rlvr.train.checkpoint import latest_checkpoint, load_state, rng_state, save_checkpoint, set_rng_state
from delta_rlvr.train.config import TrainConfig, save_config
from delta_rlvr.train.methods import Credit, CreditInputs
from delta_rlvr.train.metrics import MetricsWriter
from delta_rlvr.train.old_policy import OldPolicy, ProxySketch, old_policy_pass
from delta_rlvr.train.policy import library_progress_bars, load_policy
from delta_rlvr.train.rollout import PolicyRunner, Rollout, StageTimer, TokenView, collect_rollout
from delta_rlvr.train.tasks import PromptEncoder, build_task


class Trainer:
    """`delta-rlvr train`: the RL loop over the stages of train/rollout.py, train/old_policy.py
    and train/methods.py, with evaluation, checkpoints, metrics and signal handling."""

    def __init__(self, config: TrainConfig, *, resume: bool = False) -> None:
        self.config = config
        run = config.run
        torch.set_num_threads(run.threads or auto_threads())
        self.out = Path(run.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_root = self.out / "checkpoints"
        self.step = 0
        self.position = 0  # index of the next training prompt (tasks give prompts by position)
        self.gamma = FrozenGamma(config.algorithm.coefficients.freeze_temperature)
        self.sketch = ProxySketch()  # the full_sketch proxy's count-sketch, built on first use
        checkpoint = latest_checkpoint(self.ckpt_root) if resume else None
        if resume and checkpoint is None:
            print(f"--resume: no complete checkpoint in {self.ckpt_root}; starting from scratch")
        print(f"loading {checkpoint or config.model.name} ({torch.get_num_threads()} CPU threads) ...",
              file=sys.stderr, flush=True)
        with library_progress_bars(run.progress):
            self.model, self.tokenizer, self.device = load_policy(config.model, checkpoint)
        autocast = self.device.type == "cuda" and config.model.dtype in ("auto", "bfloat16")
        self.runner = PolicyRunner(self.model, config.rollout.temperature, config.optim.micro_batch_size, autocast)
        self.task = build_task(config.task)
        self.encode = PromptEncoder(self.tokenizer, config.task.template, getattr(self.task, "answer_hint", "boxed"))
        self.pad_id = self.tokenizer.pad_token_id
        opt = config.optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)
        total_updates = max(1, run.max_steps * opt.mini_batches)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda i: _lr_factor(i, opt.schedule, opt.warmup_steps, total_updates))
        if checkpoint is not None:
            state = load_state(checkpoint)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            self.step, self.position = state["step"], state["position"]
            self.gamma.load(state.get("frozen_gamma", state.get("frozen_temperature")))  # older checkpoints: the latter
            print(f"resumed from {checkpoint} at step {self.step}")
        save_config(config, self.out / "config.yaml")
        self.metrics = MetricsWriter(self.out, tensorboard=run.tensorboard, resume_step=self.step)
        self.last_view: TokenView | None = None  # tokens and coefficients of the last step, for tokens.html
        self.interrupted: int | None = None  # the signal that stopped train(), if one did

    # ------------------------------------------------------------------------------------------

    def _seed(self, *parts: int) -> int:
        """A seed that is a fixed function of the run seed and `parts` (step, round, ...)."""
        x = self.config.run.seed
        for p in parts:
            x = (x * 1_000_003 + p + 1) % (2**61 - 1)
        return x

    def _next_records(self, count: int):
        records, self.position = self.task.train_records(self.position, count)
        return records

    def rollout(self, timer: StageTimer) -> Rollout:
        """Stage 1: sample and score this step's batch (seeded by run seed, step and round)."""
        return collect_rollout(self.runner, self.tokenizer, self.encode, self._next_records, self.task.score,
                               self.config.rollout, lambda rounds: self._seed(self.step, rounds), timer)

    def _update(self, batch: SampleBatch, old_logp: Tensor, credit: Credit, timer: StageTimer) -> dict[str, float]:
        """Stage 4: `optim.mini_batches` optimizer steps over a shuffled split of the rollout batch.

        Each mini-batch's loss is accumulated over micro-batches, every one normalised by the
        whole mini-batch's count (`mini_batch_normaliser`), so the sum equals the mini-batch
        loss. A non-finite loss or gradient norm skips that optimizer step (counted in
        `skipped_updates`) and drops its gradients; the parameters stay as they were.
        """
        cfg = self.config
        algo, opt = cfg.algorithm, cfg.optim
        loss_cfg: PolicyLossConfig = replace(algo.loss, aggregation=algo.spec.aggregation or algo.loss.aggregation)
        b = old_logp.shape[0]
        # one shuffle per step, seeded by (run seed, step): mini-batch i is the i-th chunk of it
        perm = torch.randperm(b, generator=torch.Generator().manual_seed(self._seed(self.step, 7))).to(old_logp.device)
        sums: dict[str, float] = defaultdict(float)
        updates = skipped = 0
        self.model.train()
        with timer("update"):
            for mini in perm.chunk(opt.mini_batches):
                normaliser = mini_batch_normaliser(loss_cfg.aggregation, credit.loss_mask[mini], cfg.rollout.max_new_tokens)
                finite = True
                for rows in mini.split(opt.micro_batch_size):
                    out = self.runner.forward(batch, rows, hidden=False)
                    pl = policy_loss(out.logp, old_logp[rows], credit.token_advantages[rows], credit.loss_mask[rows], loss_cfg,
                                     normaliser=normaliser)
                    if not torch.isfinite(pl.loss):
                        finite = False
                        break
                    pl.loss.backward()
                    share = rows.numel() / mini.numel()  # the clip statistics are row-weighted means
                    sums["loss"] += pl.loss.item()
                    for key in ("clip_frac_low", "clip_frac_high", "dual_clip_frac", "approx_kl", "ratio_mean"):
                        sums[key] += getattr(pl, key).item() * share / opt.mini_batches
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), opt.grad_clip) if finite else torch.tensor(float("nan"))
                if not finite or not torch.isfinite(grad_norm):  # the skipped-update path
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
        rollout = self.rollout(timer)
        metrics = self.learn(rollout, timer)
        metrics["time/step"] = time.perf_counter() - step_start
        return metrics

    def learn(self, rollout: Rollout, timer: StageTimer) -> dict[str, float]:
        """Everything after the rollout: a deterministic function of it (and of the model)."""
        cfg = self.config
        batch, rewards = rollout.batch, rollout.rewards
        if batch is None:
            return {"reward_mean": float("nan"), "skipped_updates": 1, "sampling_rounds": rollout.rounds}
        spec = cfg.algorithm.spec
        # 2. Group-relative advantages (one per response).
        adv = group_advantages(rewards, batch.group_index.cpu(), spec.estimator).to(self.device)
        # 3. Old-policy pass (log-probs, entropy, proxy) and DelTA coefficients.
        old: OldPolicy = old_policy_pass(self.runner, batch, adv, cfg.algorithm, gamma=self.gamma,
                                         seed=self._seed(self.step, 99), sketch=self.sketch, timer=timer)
        # 4. Per-token credit for the chosen method.
        gen = torch.Generator().manual_seed(self._seed(self.step, 13))
        credit = spec.credit(CreditInputs(adv, batch.completion_mask, old.entropy, old.coef, gen), cfg.algorithm)
        # 5. Policy updates over mini-batches, coefficients fixed.
        upd = self._update(batch, old.logp, credit, timer)
        # 6. Metrics.
        mask = batch.completion_mask
        per_group = rewards.reshape(-1, cfg.rollout.samples_per_prompt)
        m = {
            "reward_mean": rewards.mean().item(),
            "reward_std": rewards.std().item() if rewards.numel() > 1 else 0.0,
            "accuracy": rollout.correct.mean().item(),
            "response_length": batch.completion_lengths.float().mean().item(),
            "response_length_max": batch.completion_lengths.max().item(),
            "truncated_frac": (~batch.ended_with_eos).float().mean().item(),
            "entropy": masked_mean(old.entropy, mask).item(),
            "zero_adv_groups": (per_group.max(1).values == per_group.min(1).values).float().mean().item(),
            "loss_tokens_frac": (credit.loss_mask.sum() / mask.sum().clamp_min(1)).item(),
            "sampling_rounds": rollout.rounds,
            "dropped_groups": rollout.dropped_groups,
            **upd,
        }
        if old.stats is not None:
            m.update(old.stats.as_metrics())
            m["delta/streamed"] = float(old.streamed)
        for stage in ("rollout", "scoring", "old_policy", "coefficients", "update"):
            m[f"time/{stage}"] = timer.seconds.get(stage, 0.0)
        self.last_view = TokenView.of_step(rollout, adv, old.coef)
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
        # 64 problems x k samples per generate call; the seed depends only on the chunk's
        # position, so every evaluation of a run draws the same samples from the same weights
        for i in range(0, len(records), 64):
            chunk = records[i:i + 64]
            with self.runner.autocast_context():
                batch = sample_completions(
                    self.model, self.encode(chunk), num_samples=k, max_new_tokens=ro.max_new_tokens,
                    temperature=run.eval_temperature, top_p=ro.top_p, pad_token_id=self.pad_id, seed=run.seed * 7919 + i,
                )
            texts = decode_completions(self.tokenizer, batch)
            scores += self.task.score(texts, [chunk[g] for g in batch.group_index.tolist()])
            bar.update(len(chunk))
        bar.close()

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
            "step": self.step, "position": self.position, "frozen_gamma": self.gamma.state(),
        }
        with library_progress_bars(self.config.run.progress):
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
        if self.step == 0 and self.interrupted is None:  # the starting point, logged as step 0
            ev = self.evaluate()
            self.metrics.write(0, ev)
            history.append({"step": 0, **ev})
        bar = tqdm(total=run.max_steps, initial=self.step, disable=not run.progress, desc="train", unit="step", dynamic_ncols=True)
        try:
            while self.step < run.max_steps and self.interrupted is None:
                m = self.train_step()
                self.step += 1
                last = self.step == run.max_steps
                # evaluate on the cadence and at the end, but not when a signal asked us to stop
                if ((run.eval_every and self.step % run.eval_every == 0) or last) and self.interrupted is None:
                    m.update(self.evaluate())
                self.metrics.write(self.step, m)
                history.append({"step": self.step, **m})
                bar.update(1)
                bar.set_postfix(reward=f"{m.get('reward_mean', float('nan')):.3f}", refresh=False)
                # checkpoint on the cadence, at the end, and after the step a signal interrupted
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
