"""A worker whose row only waits for its gates' micro-batch hands the row over and sends the next request
(engine/scheduler.py ``_hand_over``); the row is still decided and committed exactly once."""

from __future__ import annotations

import statistics

from datafactory.engine.gate_batch import MAX_WAIT_S


def test_worker_sends_the_next_request_while_its_row_waits_for_the_gate_batch(make_project, server):
    # one worker, an instant server: had the worker waited for each row's gate batch (never full at 1 in
    # flight, so it waits out its age), every request would start at least MAX_WAIT_S after the one before
    proj = make_project(rows=30, limits={"concurrency": 1}, quality={"length": {"fields": ["question"]}})
    stats = proj.augment()
    starts = sorted(e.t_start for e in server.log)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(starts) == 30 and stats.written == 30
    assert statistics.median(gaps) < 0.5 * MAX_WAIT_S, gaps
    assert stats.sections["steps"]["gates"]["in"] == 30
    proj.assert_accounted()

