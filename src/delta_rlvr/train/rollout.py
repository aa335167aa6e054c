"""Stage 1 of the RL step: sample G responses per prompt and score them (`collect_rollout`).

The trainer, `delta-rlvr inspect`, `audit-proxy` and the overhead benchmark all call this
stage, so a token page shows the batch a training step would train on. `PolicyRunner` is how
every stage runs the model: the rollout temperature, micro-batches, and bf16 autocast on CUDA.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from delta_rlvr.data import PromptRecord
from delta_rlvr.models import SampleBatch, completion_logprobs, decode_completions, sample_completions
from delta_rlvr.train.config import RolloutConfig
from delta_rlvr.verifiers import soft_overlong_penalty

Scorer = Callable[[list[str], list[PromptRecord]], list[float]]


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


@dataclass(frozen=True)
class PolicyRunner:
    """How the step runs the policy: log-probs at the rollout temperature, `micro_batch_size`
    rows per forward, under bf16 autocast when `autocast` is set (CUDA)."""

    model: torch.nn.Module
    temperature: float
    micro_batch_size: int
    autocast: bool = False

    def autocast_context(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()

    def forward(self, batch: SampleBatch, rows: slice | Tensor, *, hidden: bool):
        """Token log-probs and entropies (and hidden states) of `rows` of the batch."""
        with self.autocast_context():
            return completion_logprobs(
                self.model, batch.prompt_ids[rows], batch.prompt_mask[rows], batch.completion_ids[rows],
                batch.completion_mask[rows], temperature=self.temperature, return_hidden=hidden,
            )  # fmt: skip

    def slices(self, rows: int) -> list[slice]:
        return micro_slices(rows, self.micro_batch_size)


def micro_slices(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@dataclass(frozen=True)
class Rollout:
    """A scored rollout batch. `batch` is None when every group of every round was dropped."""

    batch: SampleBatch | None
    records: tuple[PromptRecord, ...]
    """The prompt of each group (row i belongs to records[batch.group_index[i]])."""
    rewards: Tensor
    """(B,) the reward the advantages use: the verifier's score plus any overlong shaping."""
    correct: Tensor
    """(B,) the verifier's score alone."""
    rounds: int
    dropped_groups: int

    @property
    def prompts(self) -> list[str]:
        """The prompt text of every row."""
        return [prompt_text(self.records[g]) for g in self.batch.group_index.tolist()]


def prompt_text(record: PromptRecord) -> str:
    return record.question if record.question is not None else record.chat()[-1]["content"]


def score_rollout(tokenizer, batch: SampleBatch, records: list[PromptRecord], score: Scorer,
                  cfg: RolloutConfig) -> tuple[Tensor, Tensor]:
    """(rewards, correct) of every row: the verifier's score, plus DAPO's soft overlong penalty
    in the reward when `rollout.overlong_buffer` is set."""
    texts = decode_completions(tokenizer, batch)
    correct = torch.tensor(score(texts, [records[g] for g in batch.group_index.tolist()]), dtype=torch.float32)
    rewards = correct.clone()
    if cfg.overlong_buffer:
        rewards += torch.tensor(soft_overlong_penalty(
            batch.completion_lengths.tolist(), max_length=cfg.max_new_tokens,
            buffer_length=cfg.overlong_buffer, factor=cfg.overlong_factor))  # fmt: skip
    return rewards, correct


def collect_rollout(
    runner: PolicyRunner,
    tokenizer,
    encode: Callable[[list[PromptRecord]], list[list[int]]],
    next_records: Callable[[int], list[PromptRecord]],
    score: Scorer,
    cfg: RolloutConfig,
    seed: Callable[[int], int],
    timer: StageTimer | None = None,
) -> Rollout:
    """Sample `cfg.samples_per_prompt` responses for `cfg.prompts_per_step` prompts and score them.

    next_records(n): the next n prompts (called once per sampling round); seed(round): the
    sampling seed of a round. With `cfg.dynamic_sampling` (DAPO), groups whose rewards are all
    equal are dropped and further rounds are sampled, up to `cfg.max_sampling_rounds`, until
    the batch holds `prompts_per_step` groups.
    """
    timer = timer or StageTimer(next(runner.model.parameters()).device)
    kept: list[SampleBatch] = []
    kept_records: list[PromptRecord] = []
    kept_rewards, kept_correct = [], []
    groups = rounds = dropped = 0
    while groups < cfg.prompts_per_step and rounds < cfg.max_sampling_rounds:
        records = next_records(cfg.prompts_per_step)
        with timer("rollout"), runner.autocast_context():
            batch = sample_completions(
                runner.model, encode(records), num_samples=cfg.samples_per_prompt, max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature, top_p=cfg.top_p, pad_token_id=tokenizer.pad_token_id, seed=seed(rounds),
            )  # fmt: skip
        with timer("scoring"):
            rewards, correct = score_rollout(tokenizer, batch, records, score, cfg)
        rounds += 1
        if cfg.dynamic_sampling:
            # Keep the groups whose rewards differ, no more than the batch still needs. Rows of
            # group g are g*G .. g*G + G - 1 (sample_completions keeps a prompt's samples together).
            g = cfg.samples_per_prompt
            per_group = rewards.reshape(-1, g)
            informative = (per_group.max(1).values > per_group.min(1).values).nonzero().squeeze(-1)
            informative = informative[: cfg.prompts_per_step - groups]
            dropped += per_group.shape[0] - informative.numel()
            rows_kept = (informative[:, None] * g + torch.arange(g)).reshape(-1)
            batch = select_rows(batch, rows_kept.to(batch.group_index.device))
            records = [records[i] for i in informative.tolist()]
            rewards, correct = rewards[rows_kept], correct[rows_kept]
            # group_index counts 0 .. n-1 within this round; concat_samples offsets the rounds
            batch = replace(batch, group_index=torch.arange(len(records), device=batch.group_index.device).repeat_interleave(g))
        if batch.completion_ids.shape[0]:
            kept.append(batch)
            kept_records += records
            kept_rewards.append(rewards)
            kept_correct.append(correct)
            groups += len(records)
        if not cfg.dynamic_sampling:
            break
    if not kept:  # every group uninformative in every round: the step trains on nothing
        return Rollout(None, (), torch.zeros(0), torch.zeros(0), rounds, dropped)
    return Rollout(concat_samples(kept, tokenizer.pad_token_id), tuple(kept_records), torch.cat(kept_rewards),
                   torch.cat(kept_correct), rounds, dropped)


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
    )  # fmt: skip


@dataclass(frozen=True)
class TokenView:
    """One rollout batch as the token pages show it (tokens.html, `delta-rlvr inspect`), on CPU."""

    completion_ids: Tensor
    """(B, T) sampled token ids."""
    mask: Tensor
    """(B, T) bool, valid completion tokens."""
    rewards: Tensor
    """(B,) rewards."""
    advantages: Tensor
    """(B,) group advantages."""
    coef: Tensor | None
    """(B, T) DelTA coefficients; None for a method without them."""
    prompts: tuple[str, ...]
    """(B,) the prompt of each row."""

    @classmethod
    def of_step(cls, rollout, advantages: Tensor, coef: Tensor | None) -> TokenView:
        """The view of a training step's rollout (train/rollout.py's Rollout) and its credit."""
        batch = rollout.batch
        return cls(batch.completion_ids.cpu(), batch.completion_mask.cpu(), rollout.rewards.cpu(), advantages.cpu(),
                   None if coef is None else coef.cpu(), tuple(rollout.prompts))

    @classmethod
    def concat(cls, views: list[TokenView], pad_id: int) -> TokenView:
        """Several views as one, right-padded to the widest."""
        width = max(v.completion_ids.shape[1] for v in views)

        def pad(x, value):
            return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

        coef = None if any(v.coef is None for v in views) else torch.cat([pad(v.coef, 0.0) for v in views])
        return cls(torch.cat([pad(v.completion_ids, pad_id) for v in views]), torch.cat([pad(v.mask, False) for v in views]),
                   torch.cat([v.rewards for v in views]), torch.cat([v.advantages for v in views]), coef,
                   tuple(p for v in views for p in v.prompts))
