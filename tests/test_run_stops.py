"""A run that cannot succeed stops early, says why and exits non-zero: the run-level breaker (nothing
listening, 404, 400/403/422, a 500 on every request, a streak after successes), a run that writes
nothing, and the rerun that finishes the job once the setup is fixed."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import assert_no_traceback, run_cli

from datafactory.errors import RequestsFailing
from datafactory.testing.loopback import Fault

pytestmark = pytest.mark.timeout(90)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_nothing_listening_at_the_base_url_stops_within_tens_of_requests_and_exits_3(make_project, server):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    proj = make_project(rows=200, provider={"base_url": url}, limits={"concurrency": 8, "max_attempts": 6})
    res = run_cli("augment", str(proj.pipeline), "--quiet", timeout=60)
    assert res.returncode == 3, res.stderr[-2000:]
    assert_no_traceback(res.stderr)
    assert "connection problem" in res.stderr          # what the client saw
    assert "is the server up" in res.stderr and url in res.stderr
    assert "datafactory augment" in res.stderr          # how to go on once it is fixed
    stats = proj.stats()
    assert stats["stopped"] == "RequestsFailing"
    assert stats["requests_sent"] <= 30                 # not 200 rows × 6 attempts
    # once the server is there, the same command (pointed at it) does every row
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--base-url", server.base_url)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(proj.data()) == 200
    proj.assert_accounted()


def test_nothing_listening_with_adaptive_concurrency_stops_as_early_as_a_fixed_small_one(make_project):
    # concurrency: auto runs max_concurrency (256) workers; the breaker must not wait for 512 failures
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    proj = make_project(rows=300, provider={"base_url": url}, limits={"concurrency": "auto", "max_attempts": 6})
    res = run_cli("augment", str(proj.pipeline), "--quiet", timeout=60)
    assert res.returncode == 3, res.stderr[-2000:]
    assert_no_traceback(res.stderr)
    assert proj.stats()["requests_sent"] <= 60


def test_every_row_404_stops_early_with_the_servers_message_and_a_hint_then_a_fixed_rerun_completes(
        make_project, server):
    proj = make_project(rows=200, limits={"concurrency": 4})
    server.set_fault_fn(lambda i, body: Fault(status=404, message="The model `gpt-4o-mini` does not exist"))
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 3, res.stderr[-2000:]
    assert_no_traceback(res.stderr)
    assert "HTTP 404: The model `gpt-4o-mini` does not exist" in res.stderr
    assert "--model" in res.stderr and "/v1" in res.stderr
    assert server.requests <= 20
    sent = server.requests
    server.set_fault_fn(None)
    server.reset_counters()
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 0, res.stderr[-2000:]
    # the rows that got a 404 are asked again, the others were never attempted: 200 requests in all
    assert server.requests == 200 and sent <= 20
    assert len(proj.data()) == 200 and proj.rejects() == []
    proj.assert_accounted()


def test_base_url_without_v1_gets_a_hint_about_v1(make_project, server):
    # what vLLM answers at http://host:8000/chat/completions (the URL the user meant ends in /v1)
    proj = make_project(rows=50, provider={"base_url": server.root_url})
    server.set_fault_fn(lambda i, body: Fault(status=404, message="Not Found"))
    with pytest.raises(RequestsFailing) as info:
        proj.augment()
    assert "HTTP 404: Not Found" in str(info.value)
    assert "does not end in /v1" in info.value.hint
    assert server.requests <= 20


@pytest.mark.parametrize(("status", "message", "hint"), [
    (400, "presence_penalty: Input should be a valid number", "provider.params.presence_penalty"),
    (422, "max_tokens must be an integer", "provider.params.max_tokens"),
    (403, "Forbidden", "not allowed to use model"),
    (500, "Internal Server Error", "the server fails every request"),
])
def test_a_failure_every_request_gets_trips_the_breaker_within_a_small_bound(make_project, server, status,
                                                                              message, hint):
    proj = make_project(rows=100, limits={"concurrency": 4, "max_attempts": 3},
                        provider={"params": {"temperature": 0, "max_tokens": 256, "presence_penalty": 0}})
    server.set_fault_fn(lambda i, body: Fault(status=status, message=message))
    with pytest.raises(RequestsFailing) as info:
        proj.augment()
    exc = info.value
    assert f"HTTP {status}: {message}" in str(exc)
    assert hint in exc.hint
    assert exc.error is not None and exc.error.status == status
    assert server.requests <= 20
    assert exc.stats is not None and exc.stats.stopped == "RequestsFailing"
    # rows not attempted have no outcome; stats and files are written all the same
    assert len(proj.rejects()) + len(proj.data()) < 20
    assert proj.stats()["stopped"] == "RequestsFailing"


def test_a_streak_of_failures_after_successes_stops_the_run(make_project, server):
    proj = make_project(rows=300, limits={"concurrency": 4})
    server.set_fault_fn(lambda i, body: Fault(status=404) if i >= 30 else None)
    with pytest.raises(RequestsFailing, match="in a row failed"):
        proj.augment()
    assert server.requests <= 30 + 50 + 8
    assert len(proj.data()) >= 26


def test_scattered_failures_do_not_trip_the_breaker(make_project, server):
    proj = make_project(rows=120, limits={"concurrency": 4, "max_attempts": 2})
    server.set_fault_fn(lambda i, body: Fault(status=404) if i % 3 == 0 else None)
    stats = proj.augment()
    assert stats.stopped is None and stats.rows_done == 120
    proj.assert_accounted()


def test_a_run_that_writes_no_row_exits_5_with_the_top_reason_and_an_example(make_project, server):
    proj = make_project(rows=6)
    server.set_fault_fn(lambda i, body: Fault(kind="content", content="Sorry, I cannot help with that."))
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 5, res.stderr[-2000:]
    assert_no_traceback(res.stderr)
    assert "no row was written; top reason: invalid_json (6 rows)" in res.stderr
    assert "e.g." in res.stderr
    assert "top reject reasons:" in res.stdout and "invalid_json ×6" in res.stdout
    assert json.loads((proj.run_dir / "stats.json").read_text())["top_rejects"][0]["reason"] == "invalid_json"
