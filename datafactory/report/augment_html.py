"""The augment part of the report: counts, reject chart, timeline, samples, dataset_info, config."""

from __future__ import annotations

from typing import Any

from datafactory.report.augment_data import AugmentRun
from datafactory.report.html import (
    Safe,
    as_json,
    cards,
    el,
    fields,
    join,
    kv_table,
    note,
    num,
    pre,
    section,
    table,
    text_block,
)
from datafactory.report.svg import PALETTE, Series, hbar_chart, legend, line_chart
from datafactory.report.timeline import levels, rates

TEXT_LIMIT = 3000      # characters of one model reply / error / field shown (the run dir has the rest)
CONFIG_LIMIT = 60_000


def counts(stats: dict[str, Any]) -> list[tuple[str, Any]]:
    """The counters a reader compares first, as (label, value) in display order."""
    tokens = stats.get("tokens") or {}
    cost = stats.get("estimated_cost_usd")
    rows = [
        ("input rows", stats.get("rows_total")),
        ("rows done (this invocation)", stats.get("rows_done")),
        ("rows already done (resume)", stats.get("rows_skipped_already_done")),
        ("written", stats.get("written")),
        ("rejected", stats.get("rejected_total")),
        ("requests sent", stats.get("requests_sent")),
        ("cache hits", stats.get("cache_hits")),
        ("retries", stats.get("retries")),
        ("429 answers", stats.get("rate_limited_429")),
        ("failed requests", stats.get("failed_requests")),
        ("re-asks", stats.get("reasks")),
        ("prompt tokens", tokens.get("prompt")),
        ("completion tokens", tokens.get("completion")),
        ("estimated cost (USD)", cost),
        ("elapsed (s)", stats.get("elapsed_s")),
        ("rows/s", stats.get("rows_per_s")),
        ("requests/s", stats.get("requests_per_s")),
    ]
    if stats.get("spent_usd") is not None:
        rows.append(("spent, run dir (USD)", stats["spent_usd"]))
    if stats.get("rows_deferred"):
        rows.append(("rows deferred (batch)", stats["rows_deferred"]))
    totals = stats.get("run_totals") or {}
    rows.append(("written, run dir total", totals.get("written")))
    return rows


def badges(stats: dict[str, Any]) -> Safe:
    out = []
    if stats.get("stopped"):
        out.append(el("span", f"stopped: {stats['stopped']}", class_="badge warn"))
    if stats.get("interrupted"):
        out.append(el("span", "interrupted", class_="badge warn"))
    if stats.get("export_kept"):
        out.append(el("span", "data/ kept from the previous configuration", class_="badge warn"))
    return join(out)


def render_augment(run: AugmentRun) -> Safe:
    s = run.stats
    parts: list[Safe] = [
        el("h2", run.name, el("span", "augment", class_="badge"), badges(s)),
        el("p", str(run.path), class_="path"),
        section("Counts", cards(counts(s)), _datasets(s)),
        section("Rejects by reason", *_reasons(run)),
        section("Timeline", *_timeline(run)),
        section("Written rows beside their source row", *_written(run)),
        section("Rejects, a few per reason", *_rejects(run)),
        section("dataset_info.json", pre(as_json(run.dataset_info), 20_000) if run.dataset_info
                else note("no dataset_info.json (a jsonl output, or nothing written yet)")),
        section("Resolved config (config.resolved.yaml)",
                pre(run.config_text, CONFIG_LIMIT) if run.config_text else note("no config.resolved.yaml")),
    ]
    extra = {k: s[k] for k in ("config_change", "export_kept") if s.get(k)}
    known = {"rows_total", "rows_done", "rows_skipped_already_done", "requests_sent", "cache_hits", "retries",
             "rate_limited_429", "failed_requests", "reasks", "tokens", "estimated_cost_usd", "written", "rejected",
             "rejected_total", "elapsed_s", "rows_per_s", "requests_per_s", "interrupted", "stopped", "spent_usd",
             "top_rejects", "run_totals", "datasets", "config_change", "export_kept", "rows_deferred"}
    extra.update({k: v for k, v in s.items() if k not in known})  # feature sections (steps, batch, endpoints...)
    if extra:
        parts.append(section("More from stats.json", *(_block(k, v) for k, v in extra.items())))
    return join(parts)


def _block(name: str, value: Any) -> Safe:
    """One feature's block of stats.json: a table when it is rows of plain values (steps, endpoints), else JSON."""
    def plain(v: Any) -> bool:
        return not isinstance(v, (dict, list)) or (isinstance(v, list) and not v)

    rows = value if isinstance(value, dict) and value else None
    if rows and all(plain(v) for v in rows.values()):
        return join([el("h4", name), kv_table((k, "—" if v == [] else num(v)) for k, v in rows.items())])
    if rows and all(isinstance(r, dict) and all(plain(v) for v in r.values()) for r in rows.values()):
        cols = list(dict.fromkeys(k for r in rows.values() for k in r))
        body = [(key, *(el("span", num(r[c]) if c in r else "—", class_="n") for c in cols)) for key, r in rows.items()]
        return join([el("h4", name), table(["", *cols], body)])
    return join([el("h4", name), pre(as_json(value, 20_000), 20_000)])


def _datasets(stats: dict[str, Any]) -> Safe:
    datasets = stats.get("datasets") or {}
    if not datasets:
        return Safe("")
    return table(["dataset (data/)", "rows"], [(name, el("span", num(n), class_="n")) for name, n in datasets.items()])


def _reasons(run: AugmentRun) -> list[Safe]:
    this = run.stats.get("rejected") or {}
    total = (run.stats.get("run_totals") or {}).get("rejected") or {}
    names = list(dict.fromkeys([*run.reject_counts, *total, *this]))
    if not names:
        return [note("no row was rejected")]
    rows = []
    for name in names:
        rows.append((name, el("span", num(this.get(name, 0)), class_="n"),
                     el("span", num(total.get(name, run.reject_counts.get(name, 0))), class_="n"), _kind(name)))
    chart_counts = {n: total.get(n, run.reject_counts.get(n, this.get(n, 0))) for n in names}
    bars = sorted(chart_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [hbar_chart([(n, float(v)) for n, v in bars], label="rejects by reason (run dir total)"),
            table(["reason", "this invocation", "run dir total", "class"], rows)]


def _kind(reason: str) -> str:
    from datafactory.engine.reasons import kind_of

    try:
        kind = kind_of(reason)
    except KeyError:
        return "unknown"
    return {"content": "content (final)", "input": "input (final)", "transient": "transient (asked again)",
            "setup": "setup (asked again)"}[kind.value]


def _timeline(run: AugmentRun) -> list[Safe]:
    samples = list(run.timeline)
    elapsed = run.stats.get("elapsed_s")
    if samples and isinstance(elapsed, (int, float)) and elapsed > samples[-1]["t"] + 0.05:
        # the run's last moment, from stats.json (the recorder's final sample lands after the report)
        last = dict(samples[-1])
        last.update(t=float(elapsed), rows_done=run.stats.get("rows_done", last.get("rows_done", 0)),
                    written=run.stats.get("written", last.get("written", 0)),
                    rejected=run.stats.get("rejected_total", last.get("rejected", 0)),
                    requests_sent=run.stats.get("requests_sent", last.get("requests_sent", 0)),
                    retries=run.stats.get("retries", last.get("retries", 0)),
                    rate_limited_429=run.stats.get("rate_limited_429", last.get("rate_limited_429", 0)),
                    in_flight=0)
        samples.append(last)
    if len(samples) < 3:
        out = [note("the run was too short for a timeline (a sample a second)" if run.timeline
                    else "no timeline.jsonl (recorded while augment runs; this run dir predates it)")]
        limit = _adaptive_limit(run.stats, float(elapsed) if isinstance(elapsed, (int, float)) else 0.0)
        if limit is not None:  # stats.json has it whatever the timeline holds
            out += [legend([limit]), line_chart([limit], label="adaptive limit", y_label="requests", height=130,
                                                x_min=0.0)]
        return out
    throughput = [Series("rows/s", rates(samples, "rows_done"), PALETTE[0]),
                  Series("requests/s", rates(samples, "requests_sent"), PALETTE[1], dashed=True)]
    trouble = [Series("retries/s", rates(samples, "retries"), PALETTE[6]),
               Series("429s/s", rates(samples, "rate_limited_429"), PALETTE[3], dashed=True)]
    out = [legend(throughput), line_chart(throughput, label="throughput", y_label="per s", height=170, x_min=0.0)]
    inflight = [Series("requests in flight", levels(samples, "in_flight"), PALETTE[4])]
    if not any(p.get("in_flight") for p in samples):
        inflight = []
        out.append(note("requests in flight: none recorded (this version of the engine does not count them)"))
    limit = _adaptive_limit(run.stats, float(samples[-1]["t"]))
    if limit is not None:
        inflight.append(limit)
    if inflight:
        out += [legend(inflight), line_chart(inflight, label="in flight", y_label="requests", height=130,
                                             x_min=0.0)]
    step = (samples[-1]["t"] - samples[0]["t"]) / max(1, len(samples) - 1)
    out += [legend(trouble), line_chart(trouble, label="retries and 429s", x_label="seconds since start",
                                        y_label="per s", height=150, x_min=0.0),
            note(f"{len(run.timeline)} samples, about one every {step:.3g} s (timeline.jsonl); "
                 "rates are per second between samples")]
    return out


def _adaptive_limit(stats: dict[str, Any], end: float) -> Series | None:
    """The adaptive concurrency limit over time (stats.json ``adaptive_concurrency.history``), a staircase."""
    history = (stats.get("adaptive_concurrency") or {}).get("history")
    if not isinstance(history, list) or not history:
        return None
    pts: list[tuple[float, float]] = []
    for item in history:
        if isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(v, (int, float)) for v in item):
            if pts:
                pts.append((float(item[0]), pts[-1][1]))
            pts.append((float(item[0]), float(item[1])))
    if not pts:
        return None
    pts.append((max(end, pts[-1][0]), pts[-1][1]))
    return Series("concurrency limit (adaptive)", pts, PALETTE[2], dashed=True)


def _written(run: AugmentRun) -> list[Safe]:
    if not run.written:
        return [note("no row was written")]
    n = len(run.written)
    out = [note(f"the first {n} written row{'s' if n != 1 else ''} (from {run.samples_from})")]
    if run.source_note:
        out.append(note(run.source_note))
    for s in run.written:
        where = f"input row {s.position}" if s.position is not None else "input row"
        left = (fields(s.source, TEXT_LIMIT) if s.source is not None
                else note("not available" + ("" if s.position is not None else " (no cache.sqlite to find it by)")))
        out.append(el("div", el("div", f"id {s.id}", class_="meta"),
                      el("div", el("div", el("h4", f"source ({where})"), left),
                         el("div", el("h4", "written"), fields(s.row, TEXT_LIMIT)), class_="pair"),
                      class_="sample"))
    return out


def _rejects(run: AugmentRun) -> list[Safe]:
    if not run.rejects:
        return [note("no row was rejected")]
    out = []
    for reason, samples in run.rejects.items():
        n = run.reject_counts.get(reason, len(samples))
        out.append(el("h4", f"{reason} — {num(n)} row{'s' if n != 1 else ''}, {len(samples)} shown"))
        for rej in samples:
            meta = (f"id {rej.get('id')} · stage {rej.get('stage')} · attempts {rej.get('attempts')}"
                    + (f" · reply was {num(rej['raw_output_chars'])} chars" if rej.get("raw_output_chars") else ""))
            raw = rej.get("raw_output")
            error = el("div", el("h4", "last error"), pre(rej.get("last_error") or "", TEXT_LIMIT))
            reply = el("div", el("h4", "raw output"), text_block(raw, TEXT_LIMIT) if raw is not None
                       else note("none (no reply)"))
            out.append(el("div", el("div", meta, class_="meta"), el("div", error, reply, class_="pair"),
                          class_="sample"))
    return out
