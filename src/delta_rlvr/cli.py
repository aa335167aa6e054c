"""The `delta-rlvr` command line."""

from __future__ import annotations

import argparse
import sys

from delta_rlvr import __version__


def cmd_train(args: argparse.Namespace) -> int:
    from delta_rlvr.train import ConfigError, Trainer, load_config
    from delta_rlvr.train.report import plot_curves, token_page

    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"run.output_dir={args.output_dir}")
    if args.max_steps is not None:
        overrides.append(f"run.max_steps={args.max_steps}")
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    try:
        config = load_config(args.config, overrides)
        trainer = Trainer(config, resume=args.resume)
    except ConfigError as err:
        print(f"delta-rlvr train: bad configuration: {err}", file=sys.stderr)
        return 2
    history = trainer.train()
    out = trainer.out
    plot_curves(out)
    if trainer.last_batch is not None:
        token_page(out, trainer.last_batch, trainer.tokenizer, step=trainer.step)
    evals = [h for h in history if any(k.startswith("eval/avg@") for k in h)]
    if evals:
        key = next(k for k in evals[-1] if k.startswith("eval/avg@"))
        first = next((h for h in evals if h["step"] == 0), None)
        before = f"{first[key]:.3f} -> " if first else ""
        print(f"held-out {key}: {before}{evals[-1][key]:.3f}")
    print(f"run folder: {out} (metrics.jsonl, tensorboard/, checkpoints/, curves.png, tokens.html)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delta-rlvr",
        description="RL from verifiable rewards with DelTA per-token credit assignment.",
    )
    parser.add_argument("--version", action="version", version=f"delta-rlvr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = sub.add_parser("train", help="train a policy with RLVR (default: DelTA on the embedded task)")
    train.add_argument("--config", help="YAML preset (see configs/); default: the embedded default")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. --set optim.lr=3e-5 (repeatable)")
    train.add_argument("--output-dir", help="run folder (metrics, checkpoints, plots)")
    train.add_argument("--max-steps", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--resume", action="store_true", help="continue from the run folder's latest complete checkpoint")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
