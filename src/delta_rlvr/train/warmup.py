"""Supervised warm-up of the embedded tiny models on worked arithmetic.

RL needs a policy that is sometimes right: a random 0.75M-parameter model never is. The
embedded models therefore start from a short supervised warm-up on worked solutions, stopped
early, while sampled accuracy is still low (~30-50 %), so that RL has room to improve it.
`scripts/build_default_model.py` runs this once per model and the result ships in
`delta_rlvr/assets/<name>`. Two solution styles, one per embedded model:

- "compact" (arith-tiny, the default task): "37+48+19=" -> "37+48=85. 85+19=104. answer 104";
- "verbose" (arith-verbose): the same sums inside a fixed wordy template, "Add left to right.
  Step 1: 37 + 48 = 85. Step 2: 85 + 19 = 104. The final answer is 104." - about 90 tokens of
  which ~10 (the digits of the partial sums and the answer) decide correctness and the rest is
  scaffolding shared by right and wrong answers: the situation DelTA is designed for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from delta_rlvr.data import ArithmeticConfig, arithmetic_problem, score_arithmetic
from delta_rlvr.models import decode_completions, sample_completions

STYLES = ("compact", "verbose")
#: Longest worked solution of each style for 3 two-digit terms, plus room: the rollout length.
STYLE_MAX_NEW_TOKENS = {"compact": 40, "verbose": 112}


def worked_solution(question: str, style: str = "compact") -> str:
    """Left-to-right partial sums of an addition chain.

    compact: '37+48+19=' -> '37+48=85. 85+19=104. answer 104'
    verbose: '37+48+19=' -> 'Add left to right. Step 1: 37 + 48 = 85. Step 2: 85 + 19 = 104. The final answer is 104.'
    """
    if style not in STYLES:
        raise ValueError(f"style = {style!r} is not a solution style; use one of {STYLES}")
    terms = [int(t) for t in question.rstrip("=").split("+")]
    steps, total = [], terms[0]
    for i, term in enumerate(terms[1:], start=1):
        new = total + term
        steps.append(f"{total}+{term}={new}." if style == "compact" else f"Step {i}: {total} + {term} = {new}.")
        total = new
    if style == "compact":
        return " ".join(steps) + f" answer {total}"
    return "Add left to right. " + " ".join(steps) + f" The final answer is {total}."


@dataclass(frozen=True)
class WarmupConfig:
    steps: int = 3000
    """Most supervised steps."""
    batch_size: int = 64
    """Problems per step."""
    lr: float = 3e-3
    """AdamW learning rate."""
    eval_every: int = 50
    """Sampled accuracy is measured every N steps."""
    eval_problems: int = 200
    """Held-out problems of that measurement."""
    target_accuracy: float = 0.35
    """Stop at the first evaluation whose sampled accuracy (T = 1) reaches this."""
    seed: int = 0
    """Seed of the training problems and of torch's RNG during the warm-up."""
    style: str = "compact"
    """Worked-solution style, see `worked_solution`."""


def _sample_accuracy(model, tokenizer, problems, seed, max_new_tokens: int = 40) -> float:
    prompts = [tokenizer(p.question)["input_ids"] for p in problems]
    batch = sample_completions(model, prompts, num_samples=1, max_new_tokens=max_new_tokens, temperature=1.0, seed=seed)
    texts = decode_completions(tokenizer, batch)
    return sum(score_arithmetic(texts, [p.gold for p in problems])) / len(problems)


def supervised_warmup(model, tokenizer, task: ArithmeticConfig, cfg: WarmupConfig = WarmupConfig(), log=print) -> list[dict]:
    """Train in place on worked solutions until `target_accuracy`; returns the eval history."""
    rng = random.Random(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    eval_set = [arithmetic_problem(i, ArithmeticConfig(**{**task.__dict__, "seed": task.seed + 555})) for i in range(cfg.eval_problems)]
    eos = tokenizer.eos_token
    history = []
    torch.manual_seed(cfg.seed)
    for step in range(1, cfg.steps + 1):
        model.train()
        problems = [arithmetic_problem(rng.randrange(10**9), task) for _ in range(cfg.batch_size)]
        prompts = [tokenizer(p.question)["input_ids"] for p in problems]
        answers = [tokenizer(worked_solution(p.question, cfg.style) + eos, add_special_tokens=False)["input_ids"] for p in problems]
        width = max(len(a) + len(q) for a, q in zip(answers, prompts))
        ids = torch.full((len(problems), width), tokenizer.pad_token_id)
        labels = torch.full_like(ids, -100)
        attn = torch.zeros_like(ids)
        for i, (q, a) in enumerate(zip(prompts, answers)):
            seq = q + a
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, len(q): len(seq)] = torch.tensor(a)  # loss on the answer only
            attn[i, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % cfg.eval_every == 0:
            model.eval()
            acc = _sample_accuracy(model, tokenizer, eval_set, seed=cfg.seed + step, max_new_tokens=STYLE_MAX_NEW_TOKENS[cfg.style])
            history.append({"step": step, "loss": loss.item(), "sampled_accuracy": acc})
            log(f"warm-up step {step}: loss {loss.item():.4f}, sampled accuracy {acc:.3f}")
            if acc >= cfg.target_accuracy:
                break
    model.eval()
    return history
