"""Signals never lose the final export, the summary or the resume hint: a stream of SIGTERMs (the
first stops the run, the rest land during the export) and a rapid triple-or-more Ctrl-C both end
with the data files, stats.json and dataset_info.json written and the summary printed."""

from __future__ import annotations

import json
import signal
import time

import pytest
from conftest import assert_no_traceback, start_cli, wait_for

pytestmark = pytest.mark.timeout(120)


def _keep_signalling(proc, sig, first_gap: float, gap: float, seconds: float = 4.0) -> None:
    """One signal, a short pause, then one every ``gap`` seconds until the process is gone."""
    proc.send_signal(sig)
    time.sleep(first_gap)
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            break
        time.sleep(gap)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_during_the_final_export_do_not_kill_it(make_project, server, sig, code):
    server.latency_s = 0.02
    proj = make_project(rows=400, limits={"concurrency": 8},
                        output={"format": "alpaca", "columns": {"instruction": "question", "output": "answer"}})
    proc = start_cli("augment", str(proj.pipeline), "--quiet")
    wait_for(lambda: server.requests >= 40, timeout=30)
    _keep_signalling(proc, sig, first_gap=0.05, gap=0.003)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, (proc.returncode, err[-2000:])
    assert_no_traceback(err)
    assert "run dir:" in out and "written:" in out           # the summary
    assert "Resume with:" in err                             # and how to go on
    stats = json.loads((proj.run_dir / "stats.json").read_text())
    assert stats["interrupted"] is True
    info = json.loads((proj.run_dir / "dataset_info.json").read_text())
    assert info["out"]["file_name"] == "data/out.jsonl"
    assert len(proj.data()) == stats["run_totals"]["written"] > 0
    assert not list(proj.run_dir.rglob("*.tmp"))


def test_rapid_triple_ctrl_c_keeps_the_summary_and_the_resume_hint(make_project, server):
    server.latency_s = 0.05
    proj = make_project(rows=200, limits={"concurrency": 4},
                        output={"format": "alpaca", "columns": {"instruction": "question", "output": "answer"}})
    proc = start_cli("augment", str(proj.pipeline), "--quiet")
    wait_for(lambda: server.requests >= 12, timeout=30)
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    _keep_signalling(proc, signal.SIGINT, first_gap=0.0, gap=0.005, seconds=2.0)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err[-2000:]
    assert_no_traceback(err)
    assert "written:" in out and "Resume with:" in err
    assert (proj.run_dir / "dataset_info.json").exists()
    assert proj.stats()["interrupted"] is True
