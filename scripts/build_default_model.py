"""Build the embedded default model: a seeded tiny Qwen3 with a character tokenizer, warmed up
by supervised learning on worked 3 x 2-digit additions until sampled accuracy reaches ~35 %.

    python scripts/build_default_model.py [--out src/delta_rlvr/assets/arith-tiny]

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
from delta_rlvr.train.warmup import WarmupConfig, supervised_warmup

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "delta_rlvr" / "assets" / "arith-tiny"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--target-accuracy", type=float, default=WarmupConfig.target_accuracy)
    args = p.parse_args()
    torch.set_num_threads(2)
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, TinyModelConfig())
    start = time.time()
    history = supervised_warmup(model, tokenizer, ArithmeticConfig(), WarmupConfig(target_accuracy=args.target_accuracy))
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    (args.out / "warmup.json").write_text(json.dumps({"seconds": round(time.time() - start, 1), "history": history}, indent=1))
    print(f"saved to {args.out} after {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
