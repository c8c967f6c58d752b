"""``train_eval``: one recipe → train → select → merge → eval → report, resumable stage by stage.

Every stage writes into the run directory (``recipe.output_dir``)::

    recipe.resolved.yaml  train.yaml  export.yaml      # the LLaMA-Factory files can be rerun by hand
    train/                (checkpoints, trainer_state.json, training_loss.png)
    best_checkpoint.json  merged/  eval/base.json  eval/tuned.json
    report.md  report.json  loss.png  report.html  logs/*.log  .stages/*.json

See :mod:`datafactory.train.stages` for how finished stages are recognised and skipped.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from datafactory.config.recipe import Recipe, load_recipe, recipe_from_dict
from datafactory.errors import RunLocked, UserError
from datafactory.io.atomic import atomic_write_text
from datafactory.io.jsonfile import read_json_object as _read_json
from datafactory.proc import extras as check
from datafactory.train import stages as st
from datafactory.train.stages import STAGES, RunLayout

STAGE_NEEDS = {"train": ("torch", "llamafactory"), "merge": ("torch", "llamafactory"),
               "eval": ("torch", "lm_eval")}


@dataclass
class Context:
    """What the stage functions share."""

    recipe: Recipe
    layout: RunLayout
    limit: float | None
    show_progress: bool
    cuda: bool
    bf16_ok: bool
    say: Callable[[str], None]
    force: bool = False
    model_checked: bool = False
    child_env: dict[str, str] = dataclasses.field(default_factory=dict)  # e.g. HF_HUB_OFFLINE=1


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_eval(recipe: str | Path | Recipe | dict[str, Any], *, stages: str | Iterable[str] | None = None,
               limit: float | None = None, output_dir: str | Path | None = None, force: bool = False,
               show_progress: bool | None = None, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the train/eval stages of ``recipe`` (a YAML path, a dict or a :class:`Recipe`).

    ``stages`` picks stages (names or ``"train,select"``; default all); a
    finished stage whose inputs did not change is skipped unless ``force``. ``limit`` overrides
    ``eval.limit`` (rows per task; a float < 1 is a fraction). ``output_dir`` overrides the recipe's
    run directory. ``show_progress`` (default: stderr is a terminal) draws rich progress bars; ``say``
    receives the one-line status messages (default: print to stderr). Returns ``{"run_dir",
    "stages": {name: "ran" | "skipped" | "done earlier"}, "warnings", "report" (the report.json dict,
    or None before the report stage), "report_md", "report_json", "report_html"}``. User mistakes raise UserError.
    """
    rec = _as_recipe(recipe, output_dir)
    wanted = st.parse_stages(stages)
    for stage in wanted:
        if stage in STAGE_NEEDS:
            check.require_train_extra(STAGE_NEEDS[stage], purpose=f"the {stage} stage")
    say = say or _stderr
    for warning in rec.warnings:
        say(f"warning: {warning}")
    layout = RunLayout(rec.output_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    cuda = check.cuda_available() if any(s in STAGE_NEEDS for s in wanted) else False
    ctx = Context(rec, layout, limit if limit is not None else rec.eval.limit,
                  sys.stderr.isatty() if show_progress is None else show_progress,
                  cuda, check.bf16_available() if cuda else False, say, force)
    from filelock import FileLock, Timeout

    try:
        with FileLock(str(layout.lock), timeout=0):
            atomic_write_text(layout.resolved_recipe, yaml.safe_dump(rec.to_dict(), sort_keys=False))
            try:
                status = _run_stages(ctx, wanted)
            finally:  # what the stages that ran left, as a page (a failure there is a warning, never an error)
                from datafactory.report import write_run_report

                html = write_run_report(layout.root)
    except Timeout:
        raise RunLocked(f"another datafactory process is using {layout.root} (lock {layout.lock})") from None
    report = _read_json(layout.report_json) if st.read_marker(layout, "report") else None
    return {"run_dir": str(layout.root), "stages": status, "warnings": list(rec.warnings), "report": report,
            "report_md": str(layout.report_md), "report_json": str(layout.report_json),
            "report_html": str(html) if html is not None else None}


def _as_recipe(recipe: str | Path | Recipe | dict[str, Any], output_dir: str | Path | None) -> Recipe:
    if isinstance(recipe, Recipe):
        rec = recipe
    elif isinstance(recipe, dict):
        rec = recipe_from_dict(recipe)
    else:
        rec = load_recipe(recipe)
    if output_dir is not None:
        rec.output_dir = Path(output_dir).expanduser().resolve()
    return rec


def _run_stages(ctx: Context, wanted: list[str]) -> dict[str, str]:
    status: dict[str, str] = {}
    upstream = ""
    for i, stage in enumerate(STAGES):
        later = [s for s in STAGES[i:] if s in wanted]
        if not later:
            break
        input_hash = st.hash_values(stage, upstream, _stage_inputs(ctx, stage))
        marker = st.read_marker(ctx.layout, stage)
        done = marker is not None and marker.get("hash") == input_hash
        if stage not in wanted:
            if not done:
                why = "has not run yet" if marker is None else "is out of date (its inputs changed)"
                needed = STAGES[i:STAGES.index(later[-1]) + 1]
                raise UserError(f"stage '{stage}' {why}, and '{later[0]}' needs it: run it too "
                                f"(--stages {','.join(needed)}) or run all stages")
            status[stage] = "done earlier"
        elif done and not ctx.force:
            ctx.say(f"[{stage}] up to date, skipped")
            status[stage] = "skipped"
        else:
            _preflight(ctx, stage)
            st.clear_marker(ctx.layout, stage)
            ctx.say(f"[{stage}] running")
            start = time.monotonic()
            outputs, paths = RUNNERS[stage](ctx, input_hash)
            seconds = time.monotonic() - start
            st.write_marker(ctx.layout, stage, input_hash, seconds=seconds, outputs=outputs, paths=paths)
            ctx.say(f"[{stage}] done in {seconds:.1f}s")
            status[stage] = "ran"
        upstream = input_hash
    return status


def _preflight(ctx: Context, stage: str) -> None:
    """Before the first stage that loads the base model: can it be found? Before training: are there rows?"""
    from datafactory.train import preflight

    if stage in STAGE_NEEDS and not ctx.model_checked:
        source = preflight.locate_model(ctx.recipe)
        ctx.say(f"[model] {source.detail}")
        if source.offline:
            from datafactory.evaluate.gsm8k_offline import OFFLINE_ENV

            ctx.child_env.update(OFFLINE_ENV)
        ctx.model_checked = True
    if stage == "train":
        preflight.check_rows(ctx.recipe)


def _stage_inputs(ctx: Context, stage: str) -> Any:
    """What a stage's result depends on, besides the stage before it."""
    from datafactory.evaluate.report import REPORT_VERSION
    from datafactory.train import llamafactory_yaml

    rec, layout = ctx.recipe, ctx.layout
    if stage == "train":
        args = llamafactory_yaml.train_args(rec, train_dir=layout.train_dir, cuda=ctx.cuda,
                                            bf16_ok=ctx.bf16_ok)
        info = rec.data.dataset_dir / "dataset_info.json"
        data = {"info": st.fingerprint(info, content=True)}
        meta = _read_json(info) or {}
        for name in rec.data.datasets:
            file_name = (meta.get(name) or {}).get("file_name")
            if isinstance(file_name, str):
                data[name] = st.fingerprint(rec.data.dataset_dir / file_name, content=True)
        model = st.fingerprint(Path(rec.model.name_or_path), content=False)
        return {"args": args, "data": data, "model": model}
    if stage == "select":
        return {}
    if stage == "merge":
        best = (st.read_marker(layout, "select") or {}).get("outputs", {}).get("checkpoint")
        return {"checkpoint": best, "model": dataclasses.asdict(rec.model), "method": rec.train.method}
    if stage == "eval":
        return {"base": _eval_job(ctx, "base").to_dict(), "tuned": _eval_job(ctx, "tuned").to_dict()}
    return {"report_version": REPORT_VERSION}


# ------------------------------------------------------------------------------------------ stages
def _stage_train(ctx: Context, input_hash: str) -> tuple[dict[str, Any], list[Path]]:
    from datafactory.train import llamafactory_yaml, runner
    from datafactory.train.select import checkpoints

    layout = ctx.layout
    llamafactory_yaml.write_train_yaml(ctx.recipe, layout.train_yaml, train_dir=layout.train_dir,
                                       cuda=ctx.cuda, bf16_ok=ctx.bf16_ok)
    started = layout.stages_dir / "train.started.json"
    previous = (_read_json(started) or {}).get("hash")
    found = checkpoints(layout.train_dir)
    if layout.train_dir.exists():
        if previous == input_hash and found and not ctx.force:
            ctx.say(f"[train] resuming from {found[-1].name}")
        else:  # another recipe's (or an empty) output: LLaMA-Factory would refuse or resume the wrong run
            shutil.rmtree(layout.train_dir)
    atomic_write_text(started, json.dumps({"hash": input_hash}))
    result = runner.run_llamafactory("train", layout.train_yaml, log_path=layout.log("train"), cuda=ctx.cuda,
                                     show_progress=ctx.show_progress, env=ctx.child_env)
    state_file = layout.train_dir / "trainer_state.json"
    return {"seconds": result.seconds, "train_dir": str(layout.train_dir)}, [state_file]


def _stage_select(ctx: Context, input_hash: str) -> tuple[dict[str, Any], list[Path]]:
    from datafactory.train.select import select_best

    selection = select_best(ctx.layout.train_dir)
    atomic_write_text(ctx.layout.best_json, json.dumps(selection.to_dict(), indent=2) + "\n")
    loss = f"{selection.eval_loss:.4f}" if selection.eval_loss is not None else "n/a"
    ctx.say(f"[select] {Path(selection.checkpoint).name} (eval_loss {loss}, {selection.reason})")
    return selection.to_dict(), [Path(selection.checkpoint), ctx.layout.best_json]


def _stage_merge(ctx: Context, input_hash: str) -> tuple[dict[str, Any], list[Path]]:
    from datafactory.train import llamafactory_yaml, runner

    layout = ctx.layout
    best = _read_json(layout.best_json) or {}
    checkpoint = Path(best["checkpoint"])
    llamafactory_yaml.write_export_yaml(ctx.recipe, layout.export_yaml, checkpoint=checkpoint,
                                        export_dir=layout.merged_dir)
    if layout.merged_dir.exists():
        shutil.rmtree(layout.merged_dir)  # stale shards of an earlier export must not survive
    runner.run_llamafactory("export", layout.export_yaml, log_path=layout.log("export"), cuda=ctx.cuda,
                            show_progress=ctx.show_progress, env=ctx.child_env)
    if not (layout.merged_dir / "config.json").is_file():
        raise UserError(f"llamafactory-cli export wrote no model to {layout.merged_dir}; "
                        f"see {layout.log('export')}")
    outputs = {"merged_dir": str(layout.merged_dir), "checkpoint": str(checkpoint)}
    return outputs, [layout.merged_dir / "config.json"]


def _eval_job(ctx: Context, which: str) -> Any:
    from datafactory.evaluate.lm_eval_runner import EvalJob

    ev, rec = ctx.recipe.eval, ctx.recipe
    model = rec.model.name_or_path if which == "base" else str(ctx.layout.merged_dir)
    offline = {k: str(v) for k, v in ev.offline_data.items()} if ev.offline_data else None
    return EvalJob(model_path=model, tasks=list(ev.tasks), num_fewshot=ev.num_fewshot, limit=ctx.limit,
                   apply_chat_template=ev.apply_chat_template, backend=ev.backend, batch_size=ev.batch_size,
                   gen_kwargs=ev.gen_kwargs, model_args=dict(ev.model_args), device=ev.device,
                   trust_remote_code=rec.model.trust_remote_code, offline_data=offline,
                   task_dir=str(ctx.layout.eval_dir / f"tasks-{which}") if offline else None,
                   seed=rec.train.seed)


def _stage_eval(ctx: Context, input_hash: str) -> tuple[dict[str, Any], list[Path]]:
    from datafactory.evaluate.lm_eval_runner import run_eval

    layout, out = ctx.layout, {}
    for which in ("base", "tuned"):
        job = _eval_job(ctx, which)
        path = layout.eval_dir / f"{which}.json"
        job_hash = st.hash_values(job.to_dict(), st.fingerprint(Path(job.model_path), content=False))
        cached = _read_json(path)
        if which == "base" and cached and cached.get("job_hash") == job_hash:
            ctx.say("[eval] base model: reusing the earlier result (same model and settings)")
        else:
            ctx.say(f"[eval] {which} model: {job.model_path}")
            result = run_eval(job, out_path=path, log_path=layout.log(f"eval_{which}"), cuda=ctx.cuda,
                              show_progress=ctx.show_progress, label=f"eval {which}", env=ctx.child_env)
            result["job_hash"] = job_hash
            atomic_write_text(path, json.dumps(result, indent=2))
            cached = result
        out[which] = {"path": str(path), "scores": cached.get("scores")}
    return out, [layout.eval_dir / "base.json", layout.eval_dir / "tuned.json"]


def _stage_report(ctx: Context, input_hash: str) -> tuple[dict[str, Any], list[Path]]:
    from datafactory.evaluate import report as rpt
    from datafactory.train.select import read_trainer_state

    layout = ctx.layout
    state = read_trainer_state(layout.train_dir)
    selection = _read_json(layout.best_json) or {}
    train_marker = st.read_marker(layout, "train") or {}
    png = layout.loss_png if rpt.plot_losses(state, layout.loss_png, best_step=selection.get("step"),
                                             title=f"{layout.root.name}: loss") else None
    if png is None:
        ctx.say("[report] no loss curve (matplotlib missing or no logged losses)")
    report = rpt.build_report(recipe=ctx.recipe.to_dict(), run_dir=layout.root, selection=selection,
                              state=state,
                              train_seconds=(train_marker.get("outputs") or {}).get("seconds"),
                              base=_read_json(layout.eval_dir / "base.json") or {},
                              tuned=_read_json(layout.eval_dir / "tuned.json") or {},
                              tuned_model=str(layout.merged_dir), loss_png=png)
    rpt.write_report(report, json_path=layout.report_json, md_path=layout.report_md)
    ctx.say(f"[report] {layout.report_md}")
    return {"report_json": str(layout.report_json)}, [layout.report_json, layout.report_md]


RUNNERS: dict[str, Callable[[Context, str], tuple[dict[str, Any], list[Path]]]] = {
    "train": _stage_train, "select": _stage_select, "merge": _stage_merge, "eval": _stage_eval,
    "report": _stage_report,
}


def summarize(result: dict[str, Any]) -> str:
    """A short terminal summary of :func:`train_eval`'s result (what the CLI prints at the end)."""
    lines = [f"run dir: {result['run_dir']}",
             "stages: " + ", ".join(f"{k} {v}" for k, v in result["stages"].items())]
    report = result.get("report")
    if report:
        tr = report["training"]
        loss = tr.get("best_eval_loss")
        shown = f" (eval_loss {loss:.4f})" if isinstance(loss, float) else ""
        lines.append(f"best checkpoint: step {tr.get('best_step')}{shown}: {tr.get('best_checkpoint')}")
        for task, rows in report["eval"]["results"].items():
            for flt, r in rows.items():
                base, tuned, delta = r.get("base"), r.get("tuned"), r.get("delta")
                if isinstance(base, float) and isinstance(tuned, float) and isinstance(delta, float):
                    lines.append(f"{task} {flt}: base {100 * base:.1f}% → tuned {100 * tuned:.1f}% "
                                 f"({100 * delta:+.1f} pts)")
        lines.append(f"report: {result['report_md']}")
    return "\n".join(lines)
