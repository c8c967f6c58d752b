"""report.html of augment runs, rendered in a real headless Chromium (Debian's ``chromium`` driven by
playwright): the visible text holds every number of stats.json and every reject reason, the console
stays clean, model text is shown and never run, the page asks for nothing but itself.

Screenshots go to ``$DATAFACTORY_SCREENSHOTS`` when it is set (else into the test's tmp dir).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import qid_of, run_cli, write_jsonl

from datafactory.engine.cache import Cache
from datafactory.engine.stats import Stats
from datafactory.report import report
from datafactory.report.augment_html import counts
from datafactory.report.html import num
from datafactory.report.timeline import TimelineRecorder, intervals, read_timeline
from datafactory.testing.browser import render, why_no_browser
from datafactory.testing.faults import Fault

pytestmark = pytest.mark.timeout(120)
needs_browser = pytest.mark.skipif(why_no_browser() is not None, reason=str(why_no_browser()))

HOSTILE = '<script>alert("pwned")</script><img src=x onerror="alert(2)"></pre></details>'


def screenshot_path(tmp_path: Path, name: str) -> Path:
    folder = os.environ.get("DATAFACTORY_SCREENSHOTS")
    return Path(folder) / name if folder else tmp_path / name


def assert_clean(page: Any, html_path: Path) -> None:
    assert page.errors == [], page.errors
    assert page.dialogs == [], "a script ran"
    assert page.scripts == 0
    assert page.requests == [html_path.resolve().as_uri()], "the page asked for something besides itself"


def assert_stats_visible(text: str, stats: dict[str, Any]) -> None:
    for label, value in counts(stats):
        assert f"{label}\n{num(value)}" in text, (label, num(value))
    for reason in {**stats["rejected"], **stats["run_totals"]["rejected"]}:
        assert reason in text, reason
        assert re.search(rf"{re.escape(reason)}\t{re.escape(num(stats['rejected'].get(reason, 0)))}\t"
                         rf"{re.escape(num(stats['run_totals']['rejected'][reason]))}\t", text), reason


def _faults(i: int, body: dict[str, Any]) -> Fault | None:
    qid = qid_of(body) or ""
    n = int(qid[1:]) if qid[1:].isdigit() else 0
    if n % 10 == 3:
        return Fault(kind="content", content=f"Sure! {HOSTILE} no JSON here")   # invalid_json
    if n % 10 == 7:
        return Fault(kind="content", content=json.dumps({"question": "short"}))     # schema_invalid
    if n % 20 == 5 and i % 3 == 0:
        return Fault(status=429, headers={"Retry-After": "0.05"})
    if n % 20 == 9 and i % 2 == 0:
        return Fault(status=500)
    return None


@needs_browser
def test_augment_run_ends_with_a_report_showing_every_number_reject_reason_and_the_timeline(
        make_project, server, tmp_path):
    server.latency_s = 0.06
    proj = make_project(rows=160, quality={"reask": 0}, limits={"concurrency": 4, "max_attempts": 4})
    server.set_fault_fn(_faults)
    stats = proj.augment()
    assert stats.rejected["invalid_json"] and stats.rejected["schema_invalid"]
    assert stats.retries and stats.rate_limited

    run = proj.run_dir
    html_path = run / "report.html"
    assert html_path.is_file()
    timeline = read_timeline(run / "timeline.jsonl")
    assert len(timeline) >= 3 and timeline[-1]["rows_done"] == 160  # the recorder's last sample, at stop
    assert [p["t"] for p in timeline] == sorted(p["t"] for p in timeline)

    page = render(html_path, screenshot=screenshot_path(tmp_path, "augment_run.png"))
    assert_clean(page, html_path)
    assert_stats_visible(page.text, proj.stats())
    assert HOSTILE in page.text  # the reply is shown as text
    for step, row in proj.stats().get("steps", {}).items():  # feature blocks of stats.json as tables
        assert f"{step}\t{num(row['in'])}\t{num(row['rejected'])}" in page.text, step
    for heading in ("Timeline", "Written rows beside their source row", "Rejects, a few per reason",
                    "Resolved config (config.resolved.yaml)"):
        assert heading in page.text
    assert "rows/s" in page.text and "429s/s" in page.text and "requests in flight" in page.text
    html = html_path.read_text()
    assert html.count("<polyline") >= 5  # rows/s, requests/s, in flight, retries/s, 429s/s
    # a written row beside its source row: the source's question is shown next to its rephrasing
    first = proj.rows[0]
    source_side = page.text.split("source (input row 1)", 1)[1].split("written", 1)[0]
    assert first["question"] in source_side and first["answer"] in source_side
    assert f"Rephrased: [{first['qid']}]" in page.text


def test_timeline_of_a_long_run_stays_bounded_and_keeps_its_ends(tmp_path):
    path = tmp_path / "timeline.jsonl"
    stats = Stats()
    rec = TimelineRecorder(_Quiet(), path, interval_s=1.0, max_samples=100)
    clock = time.monotonic()
    stats.started = clock
    rec.start(stats)
    for second in range(1, 20_001):  # 20 000 s of run at four ticks a second
        for quarter in range(4):
            stats.started = time.monotonic() - (second - 1 + quarter / 4)
            stats.rows_done += 1
            rec.update(stats)
    stats.started = time.monotonic() - 20_000.5
    rec.stop(stats)
    points = read_timeline(path)
    assert 50 <= len(points) <= 101
    assert points == rec.samples
    assert points[0]["t"] < 1 and points[0]["rows_done"] == 0
    assert points[-1]["t"] >= 20_000 and points[-1]["rows_done"] == 80_000
    steps = [b["t"] - a["t"] for a, b in zip(points, points[1:], strict=False)]
    assert max(steps) < 2 * min(steps) + 300  # evenly thinned, not a hole in the middle
    assert path.stat().st_size < 30_000


def test_timeline_stop_moments_after_a_tick_still_records_the_last_rows(tmp_path):
    path = tmp_path / "timeline.jsonl"
    stats = Stats()
    rec = TimelineRecorder(_Quiet(), path, interval_s=1.0)
    stats.started = time.monotonic()
    rec.start(stats)
    stats.started = time.monotonic() - 1.5
    stats.rows_done = 159
    rec.update(stats)              # a tick's sample ...
    stats.rows_done = 160          # ... the last row lands ...
    rec.stop(stats)                # ... and the run stops within the same few milliseconds
    points = read_timeline(path)
    assert [p["rows_done"] for p in points] == [0, 159, 160]
    rec.stop(stats)                # a stop with nothing new adds no sample
    assert len(read_timeline(path)) == 3


def test_timeline_rates_are_exact_means_and_a_last_few_ms_make_no_spike():
    samples = [{"t": float(t), "rows_done": 10 * t} for t in range(0, 1001)]
    samples.append({"t": 1000.01, "rows_done": 10_001})  # the stop sample, 10 ms after the last tick
    got = intervals(samples, "rows_done", max_points=100)
    assert len(got) <= 101
    assert got[0][0] == 0.0 and got[-1][1] == 1000.01
    assert all(abs(r - 10.0) < 0.2 for _, _, r in got)  # the 1 row in 10 ms is no 100 rows/s spike
    total = sum(r * (t1 - t0) for t0, t1, r in got)
    assert abs(total - 10_001) < 1e-6  # cumulative counters: nothing lost by thinning


class _Quiet:
    def start(self, stats: Stats) -> None: ...
    def update(self, stats: Stats) -> None: ...
    def stop(self, stats: Stats) -> None: ...


# ---------------------------------------------------------------------------------- a 100k-row run
def _big_run_dir(root: Path, rows: int = 100_000) -> Path:
    """A run dir in the shapes augment writes (commit log, data, rejects, stats, timeline), built directly."""
    run = root / "big"
    (run / "data").mkdir(parents=True)
    inp = root / "input.jsonl"
    source = [{"qid": f"q{i:06d}", "question": f"Sam has {i} apples and buys 3 more. How many now?",
               "answer": f"{i} + 3 = {i + 3}\n#### {i + 3}"} for i in range(rows)]
    write_jsonl(inp, source)
    from datafactory.record import content_hash

    reasons = ["invalid_json", "schema_invalid", "answer_mismatch", "near_duplicate", "http_404"]
    cache = Cache(run / "cache.sqlite")
    cache.record_config("fp1", {"prompt": "x"})
    batch, rejected = [], {r: 0 for r in reasons}
    raw = "x" * 11_000 + "<script>alert(1)</script>"
    with (run / "data" / "out.jsonl").open("wb") as data, (run / "rejects.jsonl").open("wb") as rej:
        for seq, row in enumerate(source, 1):
            key = content_hash(row)
            if seq % 10 == 0:
                reason = reasons[(seq // 10) % len(reasons)]
                rejected[reason] += 1
                payload = {"id": key, "stage": "gate", "reason": reason, "attempts": 1,
                           "last_error": f"{reason} on row {seq}", "raw_output": raw}
                batch.append((key, seq, [(False, reason, payload)]))
                rej.write(orjson.dumps(payload) + b"\n")
            else:
                out = {"id": key, "qid": row["qid"], "question": "Rephrased: " + row["question"] * 3,
                       "answer": row["answer"]}
                batch.append((key, seq, [(True, None, out)]))
                data.write(orjson.dumps(out) + b"\n")
            if len(batch) == 5000:
                cache.commit_rows("fp1", batch)
                batch = []
    cache.commit_rows("fp1", batch)
    cache.close()
    written = rows - sum(rejected.values())
    stats = Stats(rows_total=rows, rows_done=rows, requests_sent=rows + 900, retries=900, rate_limited=400,
                  prompt_tokens=9_000_000, completion_tokens=7_000_000, written=written, cost_usd=12.345678)
    stats.rejected.update(rejected)
    stats.total_written, stats.total_rejected = written, dict(rejected)
    stats.finished = stats.started + 3600.0
    (run / "stats.json").write_bytes(orjson.dumps(stats.to_json()))
    (run / "config.resolved.yaml").write_text(f"name: big\ninput:\n  path: {inp}\n  format: jsonl\n")
    with (run / "timeline.jsonl").open("wb") as fh:
        for i in range(1201):  # one sample every 3 s, ending where stats.json ends
            share = i / 1200
            fh.write(orjson.dumps({"t": i * 3.0, "rows_done": round(rows * share), "written": round(written * share),
                                   "requests_sent": round((rows + 900) * share), "retries": round(900 * share),
                                   "rate_limited_429": round(400 * share), "in_flight": 32}) + b"\n")
    return run


@needs_browser
def test_report_of_a_100k_row_run_is_a_few_hundred_kb_and_quick(tmp_path):
    run = _big_run_dir(tmp_path)
    started = time.perf_counter()
    path = report(run)
    took = time.perf_counter() - started
    size = path.stat().st_size
    print(f"report of a 100k-row run dir: {size / 1e6:.2f} MB in {took:.2f} s")
    assert size < 1_000_000, size
    assert took < 5.0, took
    page = render(path, screenshot=screenshot_path(tmp_path, "augment_100k.png"))
    assert_clean(page, path)
    assert_stats_visible(page.text, json.loads((run / "stats.json").read_text()))
    assert "11,000 characters" not in page.text and "characters cut" in page.text  # replies are clipped


# ---------------------------------------------------------------------------------- text is never markup
@needs_browser
def test_model_text_is_shown_never_run_even_from_files_without_a_cache(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    row = {"id": "r1", "question": HOSTILE, "answer": "#### 1"}
    (run / "data" / "out.jsonl").write_text(json.dumps(row) + "\n")
    reject = {"id": "r2", "stage": "parse", "reason": "invalid_json", "attempts": 2,
              "last_error": f"Expecting value: {HOSTILE}", "raw_output": HOSTILE}
    (run / "rejects.jsonl").write_text(json.dumps(reject) + "\n")
    stats = Stats(rows_done=2, written=1, requests_sent=2)
    stats.rejected["invalid_json"] = 1
    stats.total_written, stats.total_rejected = 1, {"invalid_json": 1}
    (run / "stats.json").write_text(json.dumps(stats.to_json()))
    (run / "config.resolved.yaml").write_text(f"name: '{HOSTILE}'\n")
    path = report(run)
    page = render(path, screenshot=screenshot_path(tmp_path, "augment_hostile.png"))
    assert_clean(page, path)
    assert page.text.count(HOSTILE) >= 4  # title, written row, last error, raw output (and the config)
    assert HOSTILE in page.title


# ---------------------------------------------------------------------------------- CLI, failures
@needs_browser
def test_cli_report_puts_two_run_dirs_side_by_side(make_project, server, tmp_path):
    proj = make_project(rows=12)
    proj.augment()
    first = tmp_path / "first"
    proj.run_dir.rename(first)
    proj.update(name="second", quality={"reask": 0})
    server.set_fault_fn(lambda i, body: Fault(kind="content", content="nope") if i % 3 == 0 else None)
    proj.augment()
    out = tmp_path / "compare.html"
    done = run_cli("report", str(first), str(proj.run_dir), "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout
    page = render(out, screenshot=screenshot_path(tmp_path, "augment_compare.png"))
    assert_clean(page, out)
    assert "Side by side" in page.text
    second = proj.stats()
    assert f"rejected: invalid_json\t—\t{num(second['run_totals']['rejected']['invalid_json'])}" in page.text
    assert page.text.count("Counts") == 2
    assert "name\tt\tsecond" in page.text and "quality.reask\t1\t0" in page.text  # what differs in the configs


def test_cli_report_on_a_folder_that_is_no_run_dir_says_so(tmp_path):
    done = run_cli("report", str(tmp_path))
    assert done.returncode == 1
    assert "is not a datafactory run directory" in done.stderr and str(tmp_path) in done.stderr
    assert "Traceback" not in done.stderr


def test_a_report_that_cannot_be_written_only_warns(make_project, server, caplog):
    proj = make_project(rows=5)
    (proj.run_dir / "report.html").mkdir(parents=True)  # a folder where the file should go
    with caplog.at_level(logging.WARNING, logger="datafactory"):
        stats = proj.augment()
    assert stats.written == 5 and len(proj.data()) == 5
    assert any("report.html" in r.getMessage() for r in caplog.records)


def test_the_cli_exit_code_does_not_depend_on_the_report(make_project, server):
    proj = make_project(rows=4)
    (proj.run_dir / "report.html").mkdir(parents=True)
    done = run_cli("augment", str(proj.pipeline), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "could not write" in done.stderr and "report.html" in done.stderr
    assert len(proj.data()) == 4


@needs_browser
def test_an_adaptive_run_shows_its_concurrency_limit_over_time(make_project, server, tmp_path):
    server.latency_s = 0.02
    proj = make_project(rows=600, limits={"concurrency": "auto", "max_concurrency": 24})
    proj.augment()
    history = proj.stats()["adaptive_concurrency"]["history"]
    assert len(history) >= 2
    page = render(proj.run_dir / "report.html", screenshot=screenshot_path(tmp_path, "augment_adaptive.png"))
    assert page.errors == []
    assert "concurrency limit (adaptive)" in page.text
    html = (proj.run_dir / "report.html").read_text()
    assert "concurrency limit (adaptive)</title>" in html  # drawn, not only named


@needs_browser
def test_a_run_the_breaker_stopped_still_ends_with_a_report_that_says_so(make_project, server, tmp_path):
    from datafactory.errors import RequestsFailing

    proj = make_project(rows=40, limits={"concurrency": 2, "max_attempts": 1})
    server.set_fault_fn(lambda i, body: Fault(status=404))
    with pytest.raises(RequestsFailing):
        proj.augment()
    page = render(proj.run_dir / "report.html", screenshot=screenshot_path(tmp_path, "augment_stopped.png"))
    assert page.errors == []
    assert "stopped: RequestsFailing" in page.text
    assert_stats_visible(page.text, proj.stats())
    assert "http_404" in page.text and "setup (asked again)" in page.text


def test_the_timeline_records_requests_in_flight_up_to_the_concurrency(make_project, server):
    server.latency_s = 0.08
    proj = make_project(rows=300, limits={"concurrency": 8})
    proj.augment()
    points = read_timeline(proj.run_dir / "timeline.jsonl")
    middle = [p["in_flight"] for p in points[1:-1]]
    assert middle and max(middle) <= 8 and sum(middle) / len(middle) >= 4, middle  # requests on the wire
    assert points[-1]["in_flight"] == 0  # none left when the run stopped
    html = (proj.run_dir / "report.html").read_text()
    assert "requests in flight</title>" in html and "none recorded" not in html
