"""The train/eval report: ``report.json`` + ``report.md`` (base vs tuned, both GSM8K filters, deltas,
training time, best checkpoint) and ``loss.png`` (train and eval loss from the trainer's log_history).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from datafactory.io.atomic import atomic_write_text

REPORT_VERSION = 1


def loss_series(state: dict[str, Any]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train, eval) loss points ``(step, loss)`` from ``trainer_state.json``'s ``log_history``."""
    train: list[tuple[int, float]] = []
    evals: list[tuple[int, float]] = []
    for entry in state.get("log_history") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
            continue
        if isinstance(entry.get("loss"), (int, float)):
            train.append((entry["step"], float(entry["loss"])))
        if isinstance(entry.get("eval_loss"), (int, float)):
            evals.append((entry["step"], float(entry["eval_loss"])))
    return train, evals


def plot_losses(state: dict[str, Any], path: Path, *, best_step: int | None = None, title: str = "") -> bool:
    """Write the loss curve PNG; False when matplotlib is missing or there is nothing to plot."""
    train, evals = loss_series(state)
    if not train and not evals:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    try:
        if train:
            ax.plot([s for s, _ in train], [v for _, v in train], label="train loss", color="tab:blue",
                    alpha=0.8)
        if evals:
            ax.plot([s for s, _ in evals], [v for _, v in evals], "o-", label="eval loss", color="tab:orange")
        if best_step is not None:
            ax.axvline(best_step, color="tab:green", linestyle="--", linewidth=1,
                       label=f"best (step {best_step})")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title or "training loss")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp)
        tmp.replace(path)
    finally:
        plt.close(fig)
    return True


def compare(base: dict[str, Any], tuned: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """task → filter → {base, tuned, delta, base_stderr, tuned_stderr} from two lm-eval score dicts."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    b_scores, t_scores = base.get("scores") or {}, tuned.get("scores") or {}
    for task in list(dict.fromkeys([*b_scores, *t_scores])):
        rows: dict[str, dict[str, float | None]] = {}
        filters = list(dict.fromkeys([*(b_scores.get(task) or {}), *(t_scores.get(task) or {})]))
        for flt in filters:
            b = (b_scores.get(task) or {}).get(flt) or {}
            t = (t_scores.get(task) or {}).get(flt) or {}
            bv, tv = b.get("value"), t.get("value")
            delta = tv - bv if isinstance(bv, (int, float)) and isinstance(tv, (int, float)) else None
            rows[flt] = {"base": bv, "tuned": tv, "delta": delta,
                         "base_stderr": b.get("stderr"), "tuned_stderr": t.get("stderr")}
        out[task] = rows
    return out


def build_report(*, recipe: dict[str, Any], run_dir: Path, selection: dict[str, Any], state: dict[str, Any],
                 train_seconds: float | None, base: dict[str, Any], tuned: dict[str, Any],
                 tuned_model: str, loss_png: Path | None) -> dict[str, Any]:
    """Assemble the report dict (what ``report.json`` holds)."""
    train_pts, eval_pts = loss_series(state)
    summary = next((e for e in reversed(state.get("log_history") or [])
                    if isinstance(e, dict) and "train_runtime" in e), {})
    settings = tuned.get("settings") or base.get("settings") or {}
    return {
        "report_version": REPORT_VERSION,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_dir": str(run_dir),
        "recipe": recipe,
        "base_model": recipe["model"]["name_or_path"],
        "tuned_model": tuned_model,
        "training": {
            "stage": recipe["train"]["stage"],
            "method": recipe["train"]["method"],
            "wall_seconds": round(train_seconds, 1) if train_seconds is not None else None,
            "train_runtime_seconds": summary.get("train_runtime"),
            "global_step": state.get("global_step"),
            "epochs": state.get("epoch"),
            "train_loss": summary.get("train_loss"),
            "final_train_loss": train_pts[-1][1] if train_pts else None,
            "eval_losses": {str(s): v for s, v in eval_pts},
            "best_step": selection.get("step"),
            "best_checkpoint": selection.get("checkpoint"),
            "best_eval_loss": selection.get("eval_loss"),
            "selection": selection.get("reason"),
        },
        "eval": {
            "settings": settings,
            "samples": tuned.get("samples") or base.get("samples"),
            "results": compare(base, tuned),
        },
        "loss_curve": str(loss_png) if loss_png is not None else None,
    }


def _pct(value: float | None, stderr: float | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{100 * value:.1f}%"
    return text + (f" ± {100 * stderr:.1f}" if stderr else "")


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the results table first, then training details."""
    tr, ev = report["training"], report["eval"]
    settings = ev.get("settings") or {}
    rows = ", ".join(f"{t}={n}" for t, n in (ev.get("samples") or {}).items()) or "n/a"
    lines = [f"# Train/eval report: {Path(report['run_dir']).name}", "",
             f"- base model: `{report['base_model']}`", f"- tuned model: `{report['tuned_model']}`",
             f"- {tr['stage']} / {tr['method']} on {', '.join(report['recipe']['data']['datasets'])}", "",
             "## Results (lm-eval, exact match)", "",
             f"num_fewshot={settings.get('num_fewshot')}, limit={settings.get('limit')}, "
             f"apply_chat_template={settings.get('apply_chat_template')}, backend={settings.get('backend')}, "
             f"rows scored: {rows}", "",
             "| task | filter | base | tuned | delta |", "|---|---|---:|---:|---:|"]
    for task, per_filter in ev["results"].items():
        for flt, r in per_filter.items():
            delta = r.get("delta")
            d = f"{100 * delta:+.1f} pts" if isinstance(delta, (int, float)) else "n/a"
            lines.append(f"| {task} | {flt} | {_pct(r.get('base'), r.get('base_stderr'))} | "
                         f"{_pct(r.get('tuned'), r.get('tuned_stderr'))} | {d} |")
    wall = tr.get("wall_seconds")
    lines += ["", "## Training", "",
              f"- time: {_fmt(wall, 1)} s wall (trainer: {_fmt(tr.get('train_runtime_seconds'), 1)} s), "
              f"{tr.get('global_step')} steps, {_fmt(tr.get('epochs'), 2)} epochs",
              f"- best checkpoint: `{tr.get('best_checkpoint')}` (step {tr.get('best_step')}, "
              f"eval_loss {_fmt(tr.get('best_eval_loss'))}, {tr.get('selection')})",
              f"- train loss: {_fmt(tr.get('train_loss'))} (mean), "
              f"{_fmt(tr.get('final_train_loss'))} (last logged)",
              "", "| step | eval_loss |", "|---:|---:|"]
    lines += [f"| {s} | {_fmt(v)} |" for s, v in tr.get("eval_losses", {}).items()]
    if report.get("loss_curve"):
        lines += ["", f"![loss curve]({Path(report['loss_curve']).name})"]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], *, json_path: Path, md_path: Path) -> None:
    """Write ``report.json`` and ``report.md`` atomically."""
    atomic_write_text(json_path, json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(md_path, render_markdown(report))
