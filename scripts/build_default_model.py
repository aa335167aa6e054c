"""Build an embedded model: a seeded tiny Qwen3 with a character tokenizer, warmed up by
supervised learning on worked 3 x 2-digit additions until sampled accuracy reaches ~35 %.

    python scripts/build_default_model.py                    # arith-tiny, compact solutions (the default task)
    python scripts/build_default_model.py --style verbose    # arith-verbose, the long-template task

Deterministic given torch version and thread count; the shipped copy was built with
torch 2.13.0 (CPU, 2 threads). Writes the model, the tokenizer and warmup.json (the history).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from delta_rlvr.data import ArithmeticConfig
from delta_rlvr.models import TinyModelConfig, build_char_tokenizer, build_tiny_model
from delta_rlvr.train.warmup import STYLES, WarmupConfig, supervised_warmup

ASSETS = Path(__file__).resolve().parents[1] / "src" / "delta_rlvr" / "assets"
OUT_NAMES = {"compact": "arith-tiny", "verbose": "arith-verbose"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", choices=STYLES, default="compact", help="worked-solution style (see train/warmup.py)")
    p.add_argument("--out", type=Path, help="default: src/delta_rlvr/assets/arith-tiny (compact) or arith-verbose")
    p.add_argument("--target-accuracy", type=float, default=WarmupConfig.target_accuracy)
    p.add_argument("--init", type=Path, help="start from this model folder (e.g. the arith-tiny asset) instead of a fresh init")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the shipped models used 2)")
    args = p.parse_args()
    args.out = args.out or ASSETS / OUT_NAMES[args.style]
    torch.set_num_threads(args.threads)
    tokenizer = build_char_tokenizer()
    if args.init:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(args.init)
    else:
        model = build_tiny_model(tokenizer, TinyModelConfig())
    start = time.time()
    history = supervised_warmup(model, tokenizer, ArithmeticConfig(), WarmupConfig(target_accuracy=args.target_accuracy, style=args.style))
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    record = {"style": args.style, "init": args.init.name if args.init else None, "seconds": round(time.time() - start, 1),
              "history": history}
    (args.out / "warmup.json").write_text(json.dumps(record, indent=1))
    print(f"saved to {args.out} after {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
