"""Command line: parse flags, call the library function of the same name, map errors to exit codes.

Exit codes (also in ``--help``)::

    0    done (a rerun with nothing left to do is done too)
    1    error: bad config or input, wrong API key (401), disk full, run dir in use
    2    usage: unknown flag, missing argument
    3    augment stopped early: requests fail systematically (nothing listening at the URL, wrong model
         or URL, a parameter the server refuses, a server error on every request); the server's message
         and a hint are printed; fix it and rerun the same command
    4    augment stopped early: the cost limit (--max-cost / limits.max_cost_usd) is reached; rerun with
         a higher one to continue
    5    augment finished but no row was written (every row rejected; the top reason is printed)
    130  interrupted (Ctrl-C)      143  terminated (SIGTERM)

Everything heavy is imported inside the command functions so ``--help`` answers instantly.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from typing import Any

EPILOG = """examples:
  datafactory augment pipelines/gsm8k_rephrase.yaml --dry-run
  OPENAI_API_KEY=... datafactory augment pipelines/gsm8k_rephrase.yaml --limit 100
  datafactory augment pipelines/gsm8k_rephrase.yaml --base-url http://127.0.0.1:8000/v1 --model Qwen2.5-7B-Instruct
  datafactory validate pipelines/gsm8k_rephrase.yaml
  datafactory build-info runs/gsm8k_rephrase/data
  datafactory train-eval pipelines/train_qwen_gsm8k_lora.yaml
  datafactory report runs/gsm8k_rephrase runs/gsm8k_rephrase_v2 --output compare.html

exit codes:
  0    done (also: a rerun with nothing left to do)
  1    error: bad config or input, wrong API key, disk full, run dir in use
  2    usage: unknown flag, missing argument
  3    augment stopped: requests fail systematically (server down, wrong model or URL, refused parameter)
  4    augment stopped: the cost limit (--max-cost / limits.max_cost_usd) is reached
  5    augment finished but wrote no row (every row rejected)
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM)
"""
EXIT_BREAKER, EXIT_BUDGET, EXIT_NOTHING_WRITTEN = 3, 4, 5


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="datafactory",
        description="Generate synthetic fine-tuning data with LLM APIs (concurrent, rate-limited, cached, "
                    "resumable), register it for LLaMA-Factory, train and evaluate.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version="datafactory 0.1.0")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser("augment", help="run an augmentation pipeline (resumable: rerun the same command)",
                       description="Send every input row through the pipeline's prompt to the model, validate "
                                   "the JSON replies and write the dataset into the run directory. A rerun or "
                                   "resume never pays twice for a request whose response was stored.")
    a.add_argument("pipeline", help="pipeline YAML (see pipelines/)")
    a.add_argument("--input", help="input file (.jsonl/.json/.csv/.parquet) or datasets hub id; overrides input.path")
    a.add_argument("--output", metavar="RUN_DIR", help="run directory (default: runs/<pipeline name>)")
    a.add_argument("--limit", type=int, help="process only the first N input rows")
    a.add_argument("--concurrency", type=_concurrency, help="requests in flight at once, or auto (learned from "
                   "the server, up to limits.max_concurrency)")
    a.add_argument("--rpm", type=float, help="requests per minute limit")
    a.add_argument("--tpm", type=float, help="tokens per minute limit")
    a.add_argument("--provider", help="provider kind: openai (any OpenAI-compatible server) or zhipuai")
    a.add_argument("--model", help="model name")
    a.add_argument("--base-url", action="append", help="API base URL, e.g. http://127.0.0.1:8000/v1 for a local "
                   "vLLM/Ollama; more than once: several endpoints (requests shared, failover)")
    a.add_argument("--max-cost", type=float, metavar="USD",
                   help="stop before the run dir's spend (priced from the usage servers report) could pass "
                        "this; overrides limits.max_cost_usd")
    a.add_argument("--dry-run", action="store_true",
                   help="render a few prompts, count rows, estimate tokens and cost (against --max-cost); "
                        "send nothing")
    a.add_argument("--quiet", action="store_true", help="no progress display")
    a.add_argument("--batch", action="store_true", help="send the requests as provider batches (Batch API: half "
                   "the price, results within 24 h); same as provider.mode: batch")
    a.add_argument("--no-wait", action="store_true", help="batch mode: submit, print what was submitted and exit; "
                   "rerun the same command to collect")
    a.add_argument("--cancel-batches", action="store_true", help="batch mode: cancel the run dir's batches still "
                   "running on the provider")
    a.add_argument("--engine", choices=("asyncio", "ray"), default="asyncio",
                   help="asyncio (one process, default) or ray: the same flow on Ray Data (pip install -e '.[ray]')")
    a.add_argument("--ray-address", metavar="ADDR", help="--engine ray: an existing Ray cluster (auto, or "
                   "HEAD:6379; the run dir must be on a filesystem every node sees); default: a local Ray")
    a.add_argument("--workers", type=_positive_int, help="--engine ray: worker actors, each with its own "
                   "connections and limits.concurrency requests in flight (default: one per CPU)")
    a.add_argument("--ray-dedup", choices=("auto", "driver", "shuffle"), default="auto",
                   help="--engine ray: decide exact/near dedup on the driver in input order, or by a Ray shuffle of "
                   "the workers' keys (the same kept set); auto: the shuffle on a multi-node cluster for 5M+ rows")

    v = sub.add_parser("validate", help="check a pipeline or train-eval recipe YAML without running it",
                       description="Check a pipeline (config, input file, input columns, gate field names) or "
                                   "a train-eval recipe (layout, files, datasets, template) the way augment / "
                                   "train-eval check it before they start; nothing is sent or trained.")
    v.add_argument("pipeline", metavar="FILE", help="pipeline or recipe YAML")

    b = sub.add_parser("build-info", help="write/merge LLaMA-Factory dataset_info.json for the datasets in DIR")
    b.add_argument("dir", help="directory to scan for .jsonl/.json/.parquet/.csv files and save_to_disk dirs")
    b.add_argument("--output", help="dataset_info.json path (default: DIR/dataset_info.json)")
    b.add_argument("--name-prefix", default="", help="prefix for the dataset names")
    b.add_argument("--force", action="store_true", help="replace entries whose name clashes")

    t = sub.add_parser("train-eval", help="LLaMA-Factory training + lm-eval GSM8K, base vs tuned (needs [train])")
    t.add_argument("recipe", help="recipe YAML (see pipelines/train_*.yaml)")
    t.add_argument("--stages", help="comma-separated subset of train,select,merge,eval,report (default: all; "
                                    "finished stages are skipped on rerun)")
    t.add_argument("--limit", type=float, help="evaluate only N GSM8K test rows (or a fraction < 1) for a quick check")
    t.add_argument("--output-dir", help="run directory (overrides the recipe's output_dir)")
    t.add_argument("--force", action="store_true", help="rerun stages even if they finished with the same inputs")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    r = sub.add_parser("report", help="write a self-contained HTML report of run dirs (several: side by side)",
                       description="One HTML file (no script, no network) per augment or train-eval run dir, or "
                                   "several run dirs side by side. augment and train-eval write "
                                   "RUN_DIR/report.html themselves at the end of every run.")
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="augment or train-eval run directory")
    r.add_argument("--output", metavar="FILE",
                   help="where to write it (default: RUN_DIR/report.html; ./report.html for several)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from datafactory.errors import UserError
    from datafactory.secrets import redact

    try:
        return int(COMMANDS[args.command](args, argv))
    except UserError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _concurrency(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {value!r}") from None


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def _augment(args: argparse.Namespace, argv: list[str]) -> int:
    from datafactory.config.pipeline import load_pipeline

    overrides = {"input": args.input, "output": args.output, "limit": args.limit,
                 "concurrency": args.concurrency, "rpm": args.rpm, "tpm": args.tpm, "provider": args.provider,
                 "model": args.model, "base_url": args.base_url, "max_cost": args.max_cost,
                 "mode": "batch" if args.batch else None, "batch_wait": False if args.no_wait else None}
    pipe = load_pipeline(args.pipeline, **overrides)
    if args.no_wait and pipe.provider.mode != "batch":
        print("error: --no-wait applies to batch mode (--batch or provider.mode: batch)", file=sys.stderr)
        return 2
    if args.cancel_batches:
        return _cancel_batches(pipe)
    if args.dry_run:
        return _print_plan(pipe)
    from datafactory.engine import signals
    from datafactory.engine.augment import augment
    from datafactory.engine.summary import summary_lines
    from datafactory.errors import BudgetExhausted, RunStopped
    from datafactory.secrets import redact

    _show_library_warnings()   # e.g. a changed configuration, announced before the first request
    signals.hold()  # from here on no signal can lose the export, the summary or the resume hint
    stopped: RunStopped | None = None
    try:
        stats = augment(pipe, quiet=args.quiet, engine=args.engine, ray_address=args.ray_address,
                        workers=args.workers, ray_dedup=args.ray_dedup)
    except RunStopped as exc:
        if exc.stats is None:
            raise
        stopped, stats = exc, exc.stats
    for line in summary_lines(stats, pipe.output.dir):
        print(line)
    if stats.export_kept is not None:
        kept = stats.export_kept
        print(f"data/ unchanged: it keeps {kept['rows_in_data']} rows of the previous configuration, this "
              f"configuration has {kept['rows_this_configuration']} so far ({kept['why']}); rerun to finish "
              "and replace them", file=sys.stderr)
    resume = list(argv) if "--output" in argv else [*argv, "--output", pipe.output.dir]
    from datafactory.engine.batch.control import notes as batch_notes

    command = "datafactory " + shlex.join(a for a in resume if a not in ("--no-wait", "--cancel-batches"))
    for line in batch_notes(stats, command):
        print(line, file=sys.stderr)
    if stopped is not None:
        print(f"\nerror: {redact(str(stopped))}", file=sys.stderr)
        if isinstance(stopped, BudgetExhausted):
            print(f"Everything finished so far is saved in {pipe.output.dir}.\nResume with a higher budget:  "
                  f"datafactory {shlex.join(_with_max_cost(resume, 2 * stopped.budget_usd))}", file=sys.stderr)
            return EXIT_BUDGET
        print(f"Nothing was lost: rows not finished are asked again by the same command once this is fixed:\n"
              f"  datafactory {shlex.join(resume)}", file=sys.stderr)
        return EXIT_BREAKER
    if stats.interrupted:
        print(f"\nStopped early; everything finished so far is saved in {pipe.output.dir}.\n"
              f"Resume with:  datafactory {shlex.join(resume)}", file=sys.stderr)
        return 143 if stats.stop_signal == signal.SIGTERM else 130
    if stats.rows_deferred:  # --no-wait: submitted, not failed
        print(f"{stats.rows_deferred} rows wait for their batches; rerun the same command to collect them",
              file=sys.stderr)
        return 0
    if stats.total_written == 0:
        top = stats.top_rejects[0] if stats.top_rejects else None
        why = (f"; top reason: {top[0]} ({top[1]} rows), e.g. {redact(top[2])[:500]}" if top
               else " (the input had no usable rows)")
        print(f"\nerror: no row was written{why}\nSee {pipe.output.dir}/rejects.jsonl for every reject.",
              file=sys.stderr)
        return EXIT_NOTHING_WRITTEN
    return 0


def _with_max_cost(argv: list[str], usd: float) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--max-cost":
            skip = True
            continue
        if not arg.startswith("--max-cost="):
            out.append(arg)
    return [*out, "--max-cost", f"{usd:g}"]


def _show_library_warnings() -> None:
    import logging

    log = logging.getLogger("datafactory")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        log.addHandler(handler)
        log.propagate = False


def _print_plan(pipe: Any) -> int:
    from datafactory.engine.plan import plan

    result = plan(pipe)
    print(f"pipeline {pipe.name}: model {pipe.provider.model} ({pipe.provider.kind}), input {pipe.input.path}")
    for i, messages in enumerate(result.sample_prompts, 1):
        print(f"\n--- prompt {i} ---")
        for m in messages:
            print(f"[{m['role']}]\n{m['content']}")
    print(f"\nrows: {result.rows} (+{result.bad_rows} unusable)  requests: {result.requests}")
    for reason, count in sorted(result.unusable.items(), key=lambda kv: -kv[1]):
        print(f"  unusable, {reason}: {count} rows, e.g. {result.unusable_examples[reason]}")
    print(f"estimated tokens: {result.prompt_tokens} prompt + {result.completion_tokens} completion (≈4 chars/token)")
    if result.cost_usd is None:
        print(f"estimated cost: unknown (no price for '{pipe.provider.model}'; set pricing.input_per_1m/output_per_1m)")
    else:
        print(f"estimated cost: ${result.cost_usd:.4f} (upper bound: completions at max_tokens)")
    budget = pipe.limits.max_cost_usd
    if budget is not None:
        if result.cost_usd is None:
            verdict = "no price for the model: the run will refuse to start; set pricing.input_per_1m/output_per_1m"
        elif result.cost_usd <= budget:
            verdict = f"the estimate fits ({100 * result.cost_usd / budget:.0f} % of it)"
        else:
            share = budget / result.cost_usd
            verdict = (f"the estimate is over it: the run will stop after about {int(share * result.rows)} of "
                       f"{result.rows} rows; rerun with a higher --max-cost to continue")
        print(f"budget: ${budget:.4f} (limits.max_cost_usd / --max-cost): {verdict}")
    if pipe.provider.mode == "batch":
        print(f"batch mode: priced at {pipe.pricing.batch_share:.0%} of the online price (pricing.batch_share)")
    print("dry run: nothing was sent")
    return 0


def _validate(args: argparse.Namespace, argv: list[str]) -> int:
    from datafactory.config.validate import validate_file

    result = validate_file(args.pipeline)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"ok: {args.pipeline} ({result.summary})")
    return 0


def _build_info(args: argparse.Namespace, argv: list[str]) -> int:
    from datafactory.formats.dataset_info import build_info, format_result

    result = build_info(args.dir, output=args.output, name_prefix=args.name_prefix, force=args.force)
    print(format_result(result))
    return 0


def _train_eval(args: argparse.Namespace, argv: list[str]) -> int:
    from datafactory.errors import Interrupted
    from datafactory.train.pipeline import summarize, train_eval

    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    try:
        result = train_eval(args.recipe, stages=args.stages, limit=limit, output_dir=args.output_dir,
                            force=args.force, show_progress=False if args.no_progress else None)
    except Interrupted as exc:  # the message has no prefix of its own
        print(f"interrupted: {exc}", file=sys.stderr)
        return 128 + exc.signum  # 130 Ctrl-C, 143 SIGTERM
    print(summarize(result))
    return 0


def _report(args: argparse.Namespace, argv: list[str]) -> int:
    from datafactory.report import report

    print(f"report: {report(args.run_dirs, output=args.output)}")
    return 0


COMMANDS = {"augment": _augment, "validate": _validate, "build-info": _build_info, "train-eval": _train_eval,
            "report": _report}


def _cancel_batches(pipe: Any) -> int:
    import asyncio

    from datafactory.engine.batch.control import cancel_batches
    from datafactory.providers.registry import api_key_for
    from datafactory.secrets import register_secret

    key = api_key_for(pipe.provider)
    register_secret(key)
    cancelled = asyncio.run(cancel_batches(pipe, key))
    for info in cancelled:
        print(f"batch {info.id}: {info.status}")
    print(f"{len(cancelled)} batch{'es' if len(cancelled) != 1 else ''} cancelled; rerun the same command without "
          "--cancel-batches to collect what they finished and ask the rest again")
    return 0
