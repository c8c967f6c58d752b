"""``limits.concurrency: auto``: the in-flight limit follows the server (engine/adaptive.py)."""

from __future__ import annotations

import time

import pytest
from conftest import run_cli, wait_for

from datafactory import load_pipeline
from datafactory.errors import ConfigError
from datafactory.testing.capabilities import Capabilities
from datafactory.testing.loopback import Fault

pytestmark = pytest.mark.timeout(90)


def _throughput(server, trim: float = 0.1) -> float:
    """Answers per second in the steady state: between the answers at ``trim`` and ``1 - trim`` of the run
    (the first second is the limit finding its level; the last rows leave the server idle)."""
    ends = sorted(e.t_end for e in server.log if e.status == 200)
    lo, hi = int(len(ends) * trim), int(len(ends) * (1 - trim)) - 1
    return (hi - lo) / (ends[hi] - ends[lo])


def test_auto_gets_70_percent_of_a_queueing_servers_capacity_with_zero_timeouts(make_project, server):
    """The server works on 16 requests at once and queues the rest (no 429): at 160 in flight its queue
    makes replies take 1.5 s, past timeout_s (next test); auto keeps the queue short instead."""
    latency, workers = 0.15, 16
    server.capabilities = Capabilities(max_working=workers)
    server.latency_s = latency
    proj = make_project(rows=480, limits={"concurrency": "auto", "timeout_s": 1.5, "max_attempts": 3})
    stats = proj.augment()
    share = _throughput(server) / (workers / latency)
    assert share >= 0.70, f"{share:.0%} of capacity"
    assert stats.written == 480 and stats.retries == 0 and stats.failed_requests == 0
    assert server.statuses[0] == 0 and set(server.statuses) == {200}          # no timeout, no drop
    block = proj.stats()["adaptive_concurrency"]
    assert block["ceiling"] == 256 and 16 <= block["peak"] <= 64
    assert server.max_in_flight <= 2 * block["peak"]


def test_fixed_concurrency_past_the_servers_queue_times_out(make_project, server):
    """The same server and timeout with 160 in flight: the requests in its queue time out (issue 13)."""
    server.capabilities = Capabilities(max_working=16)
    server.latency_s = 0.15
    proj = make_project(rows=200, limits={"concurrency": 160, "timeout_s": 1.5, "max_attempts": 2})
    stats = proj.augment()
    assert stats.retries > 0 or stats.failed_requests > 0


def test_auto_grows_on_a_server_that_keeps_up_and_stops_at_max_concurrency(make_project, server):
    server.latency_s = 0.05
    proj = make_project(rows=400, limits={"concurrency": "auto", "max_concurrency": 12})
    assert proj.augment().written == 400
    block = proj.stats()["adaptive_concurrency"]
    assert block["peak"] == 12 and server.max_in_flight == 12


def test_auto_backs_off_from_a_server_that_answers_one_at_a_time(make_project, server):
    """LLaMA-Factory's API server by default: one request at a time, the rest wait in its queue."""
    server.capabilities = Capabilities(max_working=1)
    server.latency_s = 0.04
    proj = make_project(rows=80, limits={"concurrency": "auto", "max_concurrency": 64})
    assert proj.augment().written == 80
    block = proj.stats()["adaptive_concurrency"]
    assert block["final"] <= 8 and block["decreases"] >= 1
    assert server.max_in_flight <= 12


def test_auto_against_a_one_at_a_time_server_with_a_short_timeout_has_no_timeouts(make_project, server):
    """Issue 13's LLaMA-Factory run: 16 in flight, one answered at a time, timeout_s shorter than the queue
    (12 of 16 rows failed). Fixed concurrency times out; auto keeps the queue within the timeout."""
    server.capabilities = Capabilities(max_working=1)
    server.latency_s = 0.2
    fixed = make_project(rows=16, limits={"concurrency": 16, "timeout_s": 1.5, "max_attempts": 2})
    assert fixed.augment().written <= 10
    wait_for(lambda: server.capabilities.working == 0, timeout=10)   # it finished what was abandoned
    server.reset_counters()
    proj = make_project(rows=10, limits={"concurrency": "auto", "timeout_s": 1.5, "max_attempts": 2},
                        output={"dir": str(fixed.root / "auto")})
    stats = proj.augment()
    assert stats.written == 10 and stats.retries == 0 and set(server.statuses) == {200}


def test_a_429_storm_without_retry_after_shrinks_the_limit_and_the_run_recovers_and_finishes(make_project, server):
    """DataDesigner #575: their AIMD collapses to 1 under sustained 429s and writes 0 rows. Here the limit
    halves to its floor during the storm, grows again once answers come back, and every row is written."""
    storm_s, t0 = 3.0, []
    server.latency_s = 0.02

    def fn(index, body):
        t0.append(time.monotonic()) if not t0 else None
        return Fault(status=429) if time.monotonic() - t0[0] < storm_s else None

    server.set_fault_fn(fn)
    proj = make_project(rows=300, limits={"concurrency": "auto", "max_concurrency": 64, "max_attempts": 4})
    stats = proj.augment()
    assert stats.written == 300 and not proj.rejects()
    block = proj.stats()["adaptive_concurrency"]
    limits_over_time = [limit for _, limit in block["history"]]
    assert block["decreases"] >= 1 and min(limits_over_time) >= block["floor"] == 2
    low = limits_over_time.index(min(limits_over_time))
    assert max(limits_over_time[low:]) >= 8               # grew back after the storm


def test_sustained_429s_do_not_collapse_the_run_to_zero_rows(make_project, server):
    """Every third request is a 429 for the whole run, now and then without Retry-After: rows keep
    being written, and the limit never goes below its floor."""
    server.latency_s = 0.01
    server.set_fault_fn(lambda i, body: None if i % 3 else
                        Fault(status=429, headers={} if i % 15 == 0 else {"Retry-After": "0.05"}))
    proj = make_project(rows=60, limits={"concurrency": "auto", "max_concurrency": 32})
    stats = proj.augment()
    assert stats.written == 60 and stats.rate_limited >= 25
    block = proj.stats()["adaptive_concurrency"]
    assert block["decreases"] >= 1 and min(limit for _, limit in block["history"]) >= 2


def test_concurrency_auto_resolves_to_max_concurrency_workers_and_an_adaptive_limit(make_project):
    proj = make_project(rows=1, limits={"concurrency": "auto", "max_concurrency": 40})
    lim = load_pipeline(proj.pipeline).limits
    assert (lim.concurrency, lim.adaptive) == (40, True)
    lim = load_pipeline(proj.pipeline, concurrency=8).limits
    assert (lim.concurrency, lim.adaptive) == (8, False)
    proj.update(limits={"concurrency": 8})
    lim = load_pipeline(proj.pipeline, concurrency="auto").limits
    assert (lim.concurrency, lim.adaptive) == (40, True)


def test_a_concurrency_that_is_neither_a_number_nor_auto_is_a_config_error(make_project):
    proj = make_project(rows=1, limits={"concurrency": "fast"})
    with pytest.raises(ConfigError, match="limits.concurrency: expected a positive integer or auto"):
        load_pipeline(proj.pipeline)


def test_cli_takes_concurrency_auto(make_project, server):
    proj = make_project(rows=5)
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--concurrency", "auto")
    assert res.returncode == 0, res.stderr
    assert "adaptive_concurrency" in proj.stats() and len(proj.data()) == 5
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--concurrency", "many")
    assert res.returncode == 2 and "positive integer or auto" in res.stderr
