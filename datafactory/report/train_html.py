"""The train-eval part of the report: loss curves, base vs tuned scores, eval samples, stage times."""

from __future__ import annotations

from typing import Any

from datafactory.report.html import Safe, el, join, kv_table, note, num, pre, section, table, text_block
from datafactory.report.svg import PALETTE, Series, grouped_bars, hbar_chart, legend, line_chart
from datafactory.report.train_data import TrainRun, paired_examples

TEXT_LIMIT = 2500


def pct(value: Any, stderr: Any = None) -> str:
    if not isinstance(value, (int, float)):
        return "n/a"
    text = f"{100 * value:.1f}%"
    return text + (f" ± {100 * stderr:.1f}" if isinstance(stderr, (int, float)) and stderr else "")


def delta_text(value: Any) -> str:
    return f"{100 * value:+.1f} pts" if isinstance(value, (int, float)) else "n/a"


def render_train(run: TrainRun) -> Safe:
    rec = run.recipe
    model = (rec.get("model") or {}).get("name_or_path")
    train = rec.get("train") or {}
    datasets = ", ".join(map(str, (rec.get("data") or {}).get("datasets") or [])) or "n/a"
    facts = [("base model", model or "n/a"), ("tuned model", str(run.path / "merged")),
             ("training", f"{train.get('stage', 'n/a')} / {train.get('method', 'n/a')} on {datasets}"),
             ("best checkpoint", _best_text(run)), ("global steps", num(run.state.get("global_step")))]
    return join([
        el("h2", run.name, el("span", "train-eval", class_="badge")),
        el("p", str(run.path), class_="path"),
        kv_table(facts),
        section("Base vs tuned (lm-eval exact match)", *_scores(run)),
        section("Loss curves", *_losses(run)),
        section("Eval questions, both models' answers", *_examples(run)),
        section("Stages and their times", *_stages(run)),
        section("Recipe (recipe.resolved.yaml)", pre(run.recipe_text, 40_000) if run.recipe_text
                else note("no recipe.resolved.yaml")),
    ])


def _best_text(run: TrainRun) -> str:
    sel = run.selection
    if not sel:
        return "n/a (select has not run)"
    loss = sel.get("eval_loss")
    shown = f", eval_loss {loss:.4f}" if isinstance(loss, (int, float)) else ""
    return f"step {sel.get('step')}{shown} ({sel.get('reason')})"


def _scores(run: TrainRun) -> list[Safe]:
    if not run.results:
        return [note("no eval results yet (eval/base.json, eval/tuned.json)")]
    rows, groups = [], []
    for task, per_filter in run.results.items():
        for flt, r in per_filter.items():
            rows.append((task, flt, el("span", pct(r.get("base"), r.get("base_stderr")), class_="n"),
                         el("span", pct(r.get("tuned"), r.get("tuned_stderr")), class_="n"),
                         el("span", delta_text(r.get("delta")), class_="n")))
            groups.append((f"{task} {flt}", [("base", r.get("base"), r.get("base_stderr")),
                                             ("tuned", r.get("tuned"), r.get("tuned_stderr"))]))
    settings = run.tuned.get("settings") or run.base.get("settings") or {}
    samples = run.tuned.get("samples") or run.base.get("samples") or {}
    info = ", ".join(f"{k}={settings.get(k)}" for k in ("num_fewshot", "limit", "apply_chat_template", "backend")
                     if k in settings)
    scored = ", ".join(f"{t}: {n}" for t, n in samples.items())
    two = [Series("base", [], PALETTE[0]), Series("tuned", [], PALETTE[1])]
    return [table(["task", "filter", "base ± stderr", "tuned ± stderr", "delta"], rows),
            legend(two), grouped_bars(groups, label="base vs tuned"),
            note(f"{info}; rows scored: {scored or 'n/a'}; whiskers: ± one standard error")]


def _losses(run: TrainRun) -> list[Safe]:
    if not run.train_loss and not run.eval_loss:
        return [note("no logged losses (train/trainer_state.json)")]
    series = [Series("train loss", [(float(s), v) for s, v in run.train_loss], PALETTE[0]),
              Series("eval loss", [(float(s), v) for s, v in run.eval_loss], PALETTE[1], dots=True)]
    series = [s for s in series if s.points]
    best = run.selection.get("step")
    vlines = [(float(best), f"best: step {best}")] if isinstance(best, int) else []
    rows = [(el("span", num(s), class_="n"), el("span", f"{v:.4f}", class_="n"),
             "best" if s == best else "") for s, v in run.eval_loss]
    return [legend(series), line_chart(series, label="loss", x_label="step", y_label="loss", vlines=vlines,
                                       height=220, zero_based=False),
            table(["step", "eval_loss", ""], rows) if rows else note("no eval_loss logged")]


def _examples(run: TrainRun) -> list[Safe]:
    pairs = paired_examples(run)
    if not pairs:
        return [note("no logged eval samples (eval/*.json from before logged samples, or eval has not run)")]
    out = [note(f"{len(pairs)} questions; ✓/✗ per filter is lm-eval's exact_match")]
    for p in pairs:
        first = p["tuned"] or p["base"] or {}
        out.append(el("div", el("div", f"{p['task']} · doc {p['doc_id']}", class_="meta"),
                      el("div", el("div", el("h4", "question"), pre(first.get("question") or "", TEXT_LIMIT)),
                         el("div", el("h4", "target"), pre(first.get("target") or "", 600)), class_="pair"),
                      el("div", _answer("base", p["base"]), _answer("tuned", p["tuned"]), class_="pair"),
                      class_="sample"))
    return out


def _answer(which: str, entry: dict[str, Any] | None) -> Safe:
    if not entry:
        return el("div", el("h4", which), note("not logged"))
    marks = []
    for flt, r in (entry.get("filters") or {}).items():
        em = r.get("exact_match")
        sign = el("span", "✓", class_="ok") if em == 1.0 else el("span", "✗", class_="bad") if em == 0.0 else "?"
        marks.append(el("div", sign, f" {flt}: ", el("code", r.get("answer") if r.get("answer") is not None else ""),
                        class_="meta"))
    return el("div", el("h4", f"{which} reply"), text_block(entry.get("response"), TEXT_LIMIT), *marks)


def _stages(run: TrainRun) -> list[Safe]:
    if not run.stages:
        return [note("no stage has finished yet (.stages/)")]
    rows = [(s["stage"], el("span", num(s.get("seconds")), class_="n"), s.get("finished_at") or "")
            for s in run.stages]
    bars = [(s["stage"], float(s["seconds"])) for s in run.stages if isinstance(s.get("seconds"), (int, float))]
    return [hbar_chart(bars, label="seconds per stage", color=PALETTE[0]),
            table(["stage", "seconds", "finished at"], rows),
            note("times of each stage's last run; a stage skipped on rerun keeps its earlier time")]


def compare_rows(run: TrainRun) -> dict[str, str]:
    """What the side-by-side table shows for a train-eval run."""
    out = {"best step": str(run.selection.get("step", "n/a"))}
    for task, per_filter in run.results.items():
        for flt, r in per_filter.items():
            out[f"{task} {flt} base"] = pct(r.get("base"), r.get("base_stderr"))
            out[f"{task} {flt} tuned"] = pct(r.get("tuned"), r.get("tuned_stderr"))
            out[f"{task} {flt} delta"] = delta_text(r.get("delta"))
    total = sum(s["seconds"] for s in run.stages if isinstance(s.get("seconds"), (int, float)))
    out["stage seconds (sum)"] = f"{total:,.1f}" if run.stages else "n/a"
    return out

