"""The fault matrix: 429 (Retry-After in every form, storms), 5xx, 4xx, 401, dropped and refused
connections, hangs, broken 200 bodies; and the RPM / TPM / x-ratelimit limits. Timings come from
the server's own log (monotonic clock, same process)."""

from __future__ import annotations

import email.utils
import json
import threading
import time

import pytest
from conftest import assert_no_traceback, qid_of, run_cli

from datafactory.errors import AuthenticationFailed
from datafactory.testing.faults import completion_body
from datafactory.testing.loopback import Fault, LoopbackServer

pytestmark = pytest.mark.timeout(90)


def _by_qid(server, qid):
    return [e for e in server.log if qid_of(e.body) == qid]


def _fault_for(qid_faults):
    """A fault fn that gives the row with that qid the fault every time."""

    def fn(index, body):
        return qid_faults.get(qid_of(body))

    return fn


# ---------------------------------------------------------------------- 429 and Retry-After
@pytest.mark.parametrize(("headers", "min_wait"), [
    ({"Retry-After": "1"}, 1.0),
    ({"retry-after-ms": "1500"}, 1.5),
    ({"Retry-After": "0.3"}, 0.3),
])
def test_429_retry_waits_at_least_what_the_server_asked_then_succeeds(make_project, server, headers, min_wait):
    proj = make_project(rows=1, limits={"concurrency": 1})
    server.enqueue(Fault(status=429, headers=headers))
    stats = proj.augment()
    assert server.requests == 2
    first, retry = server.log
    assert first.status == 429 and retry.status == 200
    gap = retry.t_start - first.t_end
    assert gap >= min_wait
    assert gap < min_wait + 1.0  # honoured, not padded with a long backoff
    assert stats.rate_limited == 1 and stats.retries == 1
    assert len(proj.data()) == 1
    proj.assert_accounted()


def test_429_retry_after_as_http_date_is_honoured(make_project, server):
    proj = make_project(rows=1, limits={"concurrency": 1})
    marks = {}

    def fn(index, body):
        if index > 0:
            return None
        wall, mono = time.time(), time.monotonic()
        target = int(wall) + 2  # HTTP dates have whole seconds: 1 to 2 s from now
        marks["until"] = mono + (target - wall)
        return Fault(status=429, headers={"Retry-After": email.utils.formatdate(target, usegmt=True)})

    server.set_fault_fn(fn)
    proj.augment()
    assert server.requests == 2
    assert server.log[1].t_start >= marks["until"] - 0.02
    assert server.log[1].t_start - server.log[0].t_end < 3.0


def test_429_without_retry_after_pauses_and_completes(make_project, server):
    proj = make_project(rows=3, limits={"concurrency": 3})
    server.enqueue(Fault(status=429))
    stats = proj.augment()
    assert stats.rate_limited == 1
    assert len(proj.data()) == 3
    proj.assert_accounted()


def test_429_pauses_every_worker_not_just_the_one_that_got_it(make_project, server):
    server.latency_s = 0.05
    proj = make_project(rows=20, limits={"concurrency": 4})
    server.enqueue(Fault(status=429, headers={"Retry-After": "1"}, delay_s=0.0))
    proj.augment()
    t429 = server.log[0].t_end
    # after the 429 answer, nobody sends anything for a second
    # (a request that was already past the gate when the 429 arrived may land a moment later)
    later = [e.t_start for e in server.log[1:] if e.t_start > t429 + 0.05]
    assert later, "the run sent nothing after the 429"
    assert min(later) - t429 >= 1.0
    proj.assert_accounted()


@pytest.mark.slow
@pytest.mark.parametrize("retry_after", [1.0, None], ids=["with-retry-after", "without-retry-after"])
def test_429_storm_keeps_requests_bounded_then_completes(make_project, server, retry_after):
    storm_s, conc = 5.0, 8  # every request 429 for 5 s, as in the fault matrix
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after else {}
    server.latency_s = 0.02
    proj = make_project(rows=40, limits={"concurrency": conc, "max_attempts": 12})
    start: list[float] = []

    def fn(index, body):
        now = time.monotonic()
        if not start:
            start.append(now)
        if now - start[0] < storm_s:
            return Fault(status=429, headers=headers)
        return None

    server.set_fault_fn(fn)
    stats = proj.augment()
    during = [e for e in server.log if e.t_start - start[0] < storm_s]
    assert all(e.status == 429 for e in during)
    # without Retry-After every worker still pauses (1 s) and then backs off exponentially
    assert len(during) <= conc * (storm_s / (retry_after or 1.0) + 2)
    assert stats.rate_limited == len(during)
    assert len(proj.data()) == 40 and proj.rejects() == []
    proj.assert_accounted()


# ---------------------------------------------------------------------- 5xx and 4xx
def test_transient_5xx_are_retried_and_the_run_completes(make_project, server):
    proj = make_project(rows=6, limits={"concurrency": 2})
    server.enqueue(Fault(status=500), Fault(status=502), Fault(status=503), Fault(status=504))
    stats = proj.augment()
    assert server.statuses[500] == server.statuses[502] == server.statuses[503] == server.statuses[504] == 1
    assert server.statuses[200] == 6
    assert stats.retries == 4
    assert len(proj.data()) == 6
    proj.assert_accounted()


def test_row_that_always_gets_500_is_rejected_after_max_attempts(make_project, server):
    proj = make_project(rows=5, limits={"max_attempts": 3})
    server.set_fault_fn(_fault_for({"q00002": Fault(status=500)}))
    proj.augment()
    assert len(_by_qid(server, "q00002")) == 3
    rejects = proj.rejects()
    assert len(rejects) == 1
    rej = rejects[0]
    assert rej["id"] == proj.key_of(proj.rows[2])
    assert rej["reason"] == "request_failed" and rej["stage"] == "request"
    assert rej["attempts"] == 3
    assert "HTTP 500" in rej["last_error"]
    assert len(proj.data()) == 4
    assert proj.stats()["rejected"] == {"request_failed": 1}
    proj.assert_accounted()


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_client_errors_reject_the_row_at_once(make_project, server, status):
    proj = make_project(rows=4)
    server.set_fault_fn(_fault_for({"q00001": Fault(status=status)}))
    proj.augment()
    assert len(_by_qid(server, "q00001")) == 1
    (rej,) = proj.rejects()
    assert rej["reason"] == f"http_{status}" and rej["attempts"] == 1
    assert f"HTTP {status}" in rej["last_error"]
    assert len(proj.data()) == 3
    proj.assert_accounted()


def test_401_stops_the_run_at_once_and_keeps_rows_finished_before(make_project, server):
    server.latency_s = 0.02
    proj = make_project(rows=30, limits={"concurrency": 2})
    server.set_fault_fn(lambda index, body: Fault(status=401) if index >= 10 else None)
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 1
    assert "check your API key" in res.stderr
    assert_no_traceback(res.stderr)
    assert server.requests <= 12  # the 401, plus at most what the other worker had on the wire
    data = proj.data()
    assert 9 <= len(data) <= 10
    assert proj.rejects() == []  # a 401 is not the row's fault
    assert [r["qid"] for r in data] == [r["qid"] for r in proj.rows[:len(data)]]
    # with the key fixed, the rerun does only what is left
    server.set_fault_fn(None)
    server.reset_counters()
    proj.augment()
    assert server.requests == 30 - len(data)
    proj.assert_accounted()


def test_wrong_api_key_raises_authentication_failed_after_few_requests(make_project, server, monkeypatch):
    proj = make_project(rows=50, limits={"concurrency": 4})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-0000")
    with pytest.raises(AuthenticationFailed, match="check your API key"):
        proj.augment()
    assert 1 <= server.requests <= 4
    assert server.statuses[401] == server.requests
    assert proj.data() == [] and proj.rejects() == []


# ---------------------------------------------------------------------- connections
def test_dropped_connections_are_retried(make_project, server):
    proj = make_project(rows=5, limits={"concurrency": 2})
    server.enqueue(Fault(kind="drop"), Fault(kind="drop_mid"), Fault(kind="drop"))
    stats = proj.augment()
    assert stats.retries == 3
    assert len(proj.data()) == 5 and proj.rejects() == []
    proj.assert_accounted()


def test_server_restart_on_the_same_port_mid_run_is_survived(make_project, server):
    server.latency_s = 0.05
    proj = make_project(rows=60, limits={"concurrency": 4, "max_attempts": 10})
    port = server.port
    second: list[LoopbackServer] = []
    refused_window = {}

    def bounce():
        wait_until = time.monotonic() + 5
        while server.requests < 10 and time.monotonic() < wait_until:
            time.sleep(0.005)
        server.stop()
        refused_window["from"] = time.monotonic()
        time.sleep(0.5)  # connections are refused meanwhile
        srv = LoopbackServer(port=port, latency_s=0.05, expected_api_key=server.expected_api_key)
        second.append(srv.start())
        refused_window["to"] = time.monotonic()

    t = threading.Thread(target=bounce)
    t.start()
    try:
        stats = proj.augment()
    finally:
        t.join()
        for srv in second:
            srv.stop()
    assert second and second[0].requests > 0
    assert server.requests + second[0].requests >= 60
    assert stats.retries >= 1
    assert len(proj.data()) == 60 and proj.rejects() == []
    proj.assert_accounted()


def test_hung_request_times_out_at_timeout_s_and_is_retried(make_project, server):
    proj = make_project(rows=2, limits={"concurrency": 1, "timeout_s": 0.5})
    server.enqueue(Fault(kind="hang", hang_s=10))
    t0 = time.monotonic()
    stats = proj.augment()
    assert time.monotonic() - t0 < 3.0
    hung, retry = server.log[0], server.log[1]
    assert qid_of(hung.body) == qid_of(retry.body)
    assert 0.5 <= retry.t_start - hung.t_start < 0.5 + 0.5 + 0.5  # timeout + backoff (≤ 0.5 s) + slack
    assert stats.retries == 1
    assert len(proj.data()) == 2
    proj.assert_accounted()


# ---------------------------------------------------------------------- broken 200 bodies
@pytest.mark.parametrize("kind", ["html", "empty", "truncated_json"])
def test_unparseable_200_body_is_retried(make_project, server, kind):
    proj = make_project(rows=2, limits={"concurrency": 1})
    server.enqueue(Fault(kind=kind))
    stats = proj.augment()
    assert server.requests == 3 and stats.retries == 1
    assert len(proj.data()) == 2
    proj.assert_accounted()


@pytest.mark.parametrize(("kind", "raw_start"), [("html", "<html><body>Bad Gateway"),
                                                 ("truncated_json", '{"id":"chatcmpl-loopback'),
                                                 ("empty", None)])
def test_persistently_broken_body_is_rejected_as_bad_response_with_raw_output(make_project, server, kind,
                                                                              raw_start):
    proj = make_project(rows=3, limits={"max_attempts": 2})
    server.set_fault_fn(_fault_for({"q00001": Fault(kind=kind)}))
    proj.augment()
    assert len(_by_qid(server, "q00001")) == 2
    (rej,) = proj.rejects()
    assert rej["reason"] == "bad_response" and rej["attempts"] == 2
    assert "not JSON" in rej["last_error"]
    if raw_start is None:
        assert not rej["raw_output"]
    else:
        assert rej["raw_output"].startswith(raw_start)
    proj.assert_accounted()


def test_200_reply_without_choices_is_a_bad_response(make_project, server):
    # content="" still has a choice; the no-choices case needs n=0 in the reply, which the loopback
    # server never sends, so check the parser directly on a real completion body instead
    from datafactory.errors import BadResponse
    from datafactory.providers.base import completion_from_openai_json

    body = json.loads(completion_body({"messages": []}, 0, lambda b, i: "x"))
    body["choices"] = []
    with pytest.raises(BadResponse, match="no choices"):
        completion_from_openai_json(body, {})


# ---------------------------------------------------------------------- rate limits
def _max_in_window(starts, weights, rate, burst, slack_s=0.05):
    """Largest excess of sum(weights) over rate*window + burst across every window [t_i, t_j]."""
    worst = float("-inf")
    for i in range(len(starts)):
        total = 0.0
        for j in range(i, len(starts)):
            total += weights[j]
            worst = max(worst, total - (rate * (starts[j] - starts[i] + slack_s) + burst))
    return worst


def test_rpm_limit_is_honoured_and_nearly_reached(make_project, server):
    rpm = 120  # 2 requests/s, bucket holds one second's worth (2)
    proj = make_project(rows=14, limits={"concurrency": 8, "rpm": rpm})
    proj.augment()
    starts = sorted(e.t_start for e in server.log)
    assert len(starts) == 14
    rate, burst = rpm / 60, max(1.0, rpm / 60)
    assert _max_in_window(starts, [1.0] * len(starts), rate, burst) <= 0
    elapsed = starts[-1] - starts[0]
    assert 4.5 <= elapsed <= 7.0
    assert len(starts) >= 0.9 * (rate * elapsed + burst)


@pytest.mark.slow
def test_rpm_limit_sustained_throughput_reaches_95_percent_of_the_limit(make_project, server):
    rpm = 1200  # 20 requests/s over ~10 s: the one-second burst is amortised, the steady rate shows
    proj = make_project(rows=200, limits={"concurrency": 32, "rpm": rpm})
    proj.augment()
    starts = sorted(e.t_start for e in server.log)
    assert len(starts) == 200
    rate, burst = rpm / 60, max(1.0, rpm / 60)
    assert _max_in_window(starts, [1.0] * len(starts), rate, burst) <= 0
    # steady state: from the end of the initial burst to the last request
    steady = starts[int(burst):]
    achieved = (len(steady) - 1) / (steady[-1] - steady[0])
    assert 0.95 * rate <= achieved <= 1.05 * rate, achieved
    proj.assert_accounted()


def test_tpm_limit_is_honoured_using_the_usage_the_server_reported(make_project, server):
    tpm = 60_000  # 1000 tokens/s
    proj = make_project(rows=200, limits={"concurrency": 8, "tpm": tpm}, provider={"params": {"max_tokens": 60}})
    t0 = time.monotonic()
    proj.augment(limit=30)
    log = sorted(server.log, key=lambda e: e.t_start)
    usage = []
    for e in log:
        reply = json.loads(completion_body(e.body, e.index, server.responder))
        usage.append(reply["usage"]["total_tokens"])
    rate, burst = tpm / 60, tpm / 60
    per_request = max(usage)
    starts = [e.t_start for e in log]
    # what was sent never ran ahead of the bucket by more than one request's estimate
    assert _max_in_window(starts, usage, rate, burst) <= per_request + 60
    elapsed = starts[-1] - starts[0]
    assert elapsed >= 2.0, "the limit never kicked in"
    assert sum(usage) >= 0.9 * (rate * elapsed + burst) - per_request
    assert time.monotonic() - t0 < 10
    proj.assert_accounted(proj.rows[:30])


def test_exhausted_x_ratelimit_remaining_pauses_until_reset(make_project, server):
    server.latency_s = 0.05
    proj = make_project(rows=12, limits={"concurrency": 2})
    # the first reply comes late and says the request budget is used up; meanwhile the other
    # worker keeps going, and must stop too once the header has been seen
    server.enqueue(Fault(status=200, headers={"x-ratelimit-remaining-requests": "0",
                                              "x-ratelimit-reset-requests": "1s"}, delay_s=0.2))
    proj.augment()
    first = server.log[0]
    assert first.status == 200 and any(e.t_start < first.t_end for e in server.log[1:])
    # a request already past the gate when the header arrived may land a moment later
    later = [e.t_start - first.t_end for e in server.log if e.t_start > first.t_end + 0.05]
    assert later and min(later) >= 1.0
    assert min(later) < 1.6
    proj.assert_accounted()


def test_exhausted_token_budget_header_also_pauses(make_project, server):
    proj = make_project(rows=2, limits={"concurrency": 1})
    server.enqueue(Fault(status=200, headers={"x-ratelimit-remaining-tokens": "0",
                                              "x-ratelimit-reset-tokens": "600ms"}))
    proj.augment()
    assert server.log[1].t_start - server.log[0].t_end >= 0.6


# ---------------------------------------------------------------------- stress
def _vm_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS"))
    except (OSError, StopIteration):
        return 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_stress_20k_rows_at_concurrency_256_with_transient_faults(tmp_path, make_project):
    """20k rows, 256 in flight, 5 % of requests hit by a 429 / 500 / 503 / dropped connection (the
    loopback server's --fault-rate): the run completes, every row is accounted for, memory stays flat."""
    import os
    import subprocess
    import sys
    import urllib.request

    from conftest import CLI, REPO, cli_env, make_rows

    srv = subprocess.Popen([sys.executable, "-m", "datafactory.testing.loopback", "--port", "0",
                            "--latency", "0.01", "--fault-rate", "0.05", "--seed", "7"],
                           stdout=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO)
    proc = None
    try:
        line = srv.stdout.readline().strip()
        assert line.startswith("LISTENING "), line
        base_url = line.split(" ", 1)[1]
        stats_url = base_url.rsplit("/v1", 1)[0] + "/_stats"
        n = 20_000
        proj = make_project(rows=make_rows(n), provider={"base_url": base_url},
                            limits={"concurrency": 256, "max_attempts": 8, "timeout_s": 30})
        with (tmp_path / "stderr").open("w") as err:
            proc = subprocess.Popen([*CLI, "augment", str(proj.pipeline), "--quiet"],
                                    stdout=subprocess.DEVNULL, stderr=err, env=cli_env())
            rss_at: dict[int, int] = {}
            peak_kb = 0
            t0 = time.monotonic()
            while True:
                pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                rss = _vm_rss_kb(proc.pid)
                peak_kb = max(peak_kb, rss or 0)
                with urllib.request.urlopen(stats_url, timeout=5) as resp:
                    sent = json.loads(resp.read())["requests"]
                for mark in (5_000, 19_000):
                    if sent >= mark and mark not in rss_at:
                        rss_at[mark] = rss
                assert time.monotonic() - t0 < 240, "stress run took too long"
                time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = (tmp_path / "stderr").read_text()
        assert proc.returncode == 0, stderr[-3000:]
        assert_no_traceback(stderr)
        # sampled from /proc: wait4's ru_maxrss would include the pytest process's own RSS at fork time
        # (Linux keeps the high-water mark across exec), which grows when torch was loaded by other tests
        peak_mb = peak_kb / 1024
        assert 0 < peak_mb < 400, f"peak RSS {peak_mb:.0f} MB"
        if rss_at.get(5_000) and rss_at.get(19_000):
            assert rss_at[19_000] - rss_at[5_000] < 80 * 1024, rss_at  # flat, not growing with the rows
        stats = proj.stats()
        assert stats["retries"] > 0.03 * n  # the faults really happened
        data = proj.data()
        assert len(data) >= n - 5
        proj.assert_accounted()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        srv.terminate()
        srv.wait(timeout=10)


def test_retry_after_is_capped_and_backoff_grows_with_full_jitter():
    from tenacity import RetryCallState

    from datafactory import constants as C
    from datafactory.engine import retry
    from datafactory.errors import RateLimited, TransientError

    def state(exc: Exception, attempt: int) -> RetryCallState:
        st = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
        st.attempt_number = attempt
        st.set_exception((type(exc), exc, None))
        return st

    huge = retry._wait(state(RateLimited("429", retry_after=86_400), 1))
    assert C.RETRY_AFTER_CAP_S <= huge <= C.RETRY_AFTER_CAP_S + C.RESUME_JITTER_S
    waits = [retry._wait(state(TransientError("503"), 6)) for _ in range(200)]
    assert min(waits) >= 0 and max(waits) <= C.BACKOFF_INITIAL_S * 2 ** 5
    assert max(waits) > C.BACKOFF_INITIAL_S * 2 ** 3  # grows with the attempt number
