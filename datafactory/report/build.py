"""Assemble ``report.html`` for one run dir or several side by side, and write it atomically.

A run dir is recognised by what it holds: ``stats.json`` (augment) or ``recipe.resolved.yaml`` /
``.stages/`` (train-eval). Several run dirs give one page: a comparison table of their main numbers,
then each run in its own column.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datafactory.errors import NotARunDir
from datafactory.io.atomic import atomic_write_text
from datafactory.report.html import Safe, clip, el, join, note, num, page

REPORT_FILE = "report.html"
log = logging.getLogger("datafactory")


def _load(path: Path, fingerprint: str | None) -> tuple[str, Any]:
    from datafactory.report.augment_data import is_augment_run, load_augment
    from datafactory.report.train_data import is_train_run, load_train

    if not path.is_dir():
        raise NotARunDir(f"{path}: no such directory", path=path)
    if is_augment_run(path):
        return "augment", load_augment(path, fingerprint=fingerprint)
    if is_train_run(path):
        return "train", load_train(path)
    raise NotARunDir(f"{path} is not a datafactory run directory (no stats.json from augment, no "
                     "recipe.resolved.yaml or .stages/ from train-eval)", path=path)


def _render(kind: str, run: Any) -> Safe:
    if kind == "augment":
        from datafactory.report.augment_html import render_augment

        return render_augment(run)
    from datafactory.report.train_html import render_train

    return render_train(run)


def _summary(kind: str, run: Any) -> dict[str, str]:
    if kind == "augment":
        from datafactory.report.augment_html import counts

        out = {label: num(value) for label, value in counts(run.stats)}
        for reason, n in sorted((run.stats.get("run_totals") or {}).get("rejected", {}).items()):
            out[f"rejected: {reason}"] = num(n)
        return out
    from datafactory.report.train_html import compare_rows

    return compare_rows(run)


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a.b": "1"}``; lists as JSON (what a config diff compares)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)}


def _settings(kind: str, run: Any) -> dict[str, str]:
    return flatten(run.config if kind == "augment" else run.recipe)


def _table(head: Safe, labels: list[str], columns: list[dict[str, str]]) -> Safe:
    rows = [el("tr", el("th", label), *(el("td", c.get(label, "—"), class_="n") for c in columns)) for label in labels]
    return el("table", el("thead", head), el("tbody", *rows), class_="grid kv")


def _comparison(loaded: list[tuple[str, Any]]) -> Safe:
    summaries = [_summary(kind, run) for kind, run in loaded]
    labels = list(dict.fromkeys(k for s in summaries for k in s))
    head = el("tr", el("th", ""), *(el("th", run.name) for _, run in loaded))
    settings = [_settings(kind, run) for kind, run in loaded]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    differ = [k for k in keys if len({s.get(k) for s in settings}) > 1]
    clipped = [{k: clip(v, 300) for k, v in s.items()} for s in settings]
    diff = (_table(head, differ, clipped) if differ else note("the runs' configurations are the same"))
    return el("div", el("h2", "Side by side"),
              el("div", el("div", el("h3", "Numbers"), _table(head, labels, summaries)),
                 el("div", el("h3", "What differs in their configurations"), diff), class_="tables"),
              class_="compare")


def render(run_dirs: Sequence[str | Path], *, fingerprint: str | None = None) -> str:
    """The HTML of the report for ``run_dirs`` (one or more)."""
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise NotARunDir("no run directory given")
    loaded = [_load(p, fingerprint if len(paths) == 1 else None) for p in paths]
    columns = el("div", *(el("section", _render(kind, run), class_="run") for kind, run in loaded),
                 class_="runs", style=f"--cols:{len(loaded)}")
    body = join([_comparison(loaded) if len(loaded) > 1 else Safe(""), columns,
                 el("footer", f"datafactory report · generated {time.strftime('%Y-%m-%d %H:%M:%S %z')} · "
                              "one self-contained file: no script, no network")])
    names = " vs ".join(run.name for _, run in loaded)
    kinds = sorted({"augment" if k == "augment" else "train-eval" for k, _ in loaded})
    return page(f"datafactory report: {names}", f"{' + '.join(kinds)} · {len(loaded)} run dir"
                f"{'s' if len(loaded) != 1 else ''}", body)


def report(run_dirs: str | Path | Sequence[str | Path], *, output: str | Path | None = None,
           fingerprint: str | None = None) -> Path:
    """Write the HTML report of one run dir (default ``RUN_DIR/report.html``) or of several side by side
    (default ``./report.html``); returns its path. A folder that is no run dir raises NotARunDir."""
    from datafactory.secrets import redact

    dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    text = redact(render(dirs, fingerprint=fingerprint))  # what the run stored is redacted already; belt and braces
    target = Path(output) if output is not None else (Path(dirs[0]) / REPORT_FILE if len(dirs) == 1
                                                       else Path(REPORT_FILE))
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text)
    return target


def write_run_report(run_dir: str | Path, *, fingerprint: str | None = None) -> Path | None:
    """The end-of-run hook (augment's export, train-eval): ``RUN_DIR/report.html``, or a logged warning.

    A report is a view of data already saved: it never fails the run or changes its exit code."""
    try:
        return report(run_dir, fingerprint=fingerprint)
    except Exception as exc:  # noqa: BLE001 — any failure here must leave the run as it is
        log.warning("could not write %s/%s: %s: %s", run_dir, REPORT_FILE, type(exc).__name__, exc)
        return None
