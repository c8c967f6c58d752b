"""Waiting on rate limits is bounded by time, not by attempts: a 429 storm the run rides out gives no
row up (OpenAI-compatible and ZhipuAI paths), one request that never gets through gives up after
``limits.rate_limit_wait_s``, and a run that is rate limited that long without a single success stops."""

from __future__ import annotations

import time

import pytest
from conftest import qid_of

from datafactory.errors import RequestsFailing
from datafactory.testing.loopback import Fault

pytestmark = pytest.mark.timeout(90)


def _storm(seconds: float, retry_after: str):
    start: list[float] = []

    def fn(index, body):
        now = time.monotonic()
        if not start:
            start.append(now)
        return Fault(status=429, headers={"Retry-After": retry_after}) if now - start[0] < seconds else None

    return fn


@pytest.mark.parametrize("kind", ["openai", "zhipuai"])
def test_429_storm_longer_than_max_attempts_gives_no_row_up(make_project, server, kind):
    provider = {"kind": kind} if kind == "openai" else {"kind": "zhipuai", "base_url": server.zhipu_base_url}
    proj = make_project(rows=20, provider=provider, limits={"concurrency": 2, "max_attempts": 2})
    server.set_fault_fn(_storm(3.0, "0.3"))
    proj.augment()
    per_row: dict[str, int] = {}
    for entry in server.log:
        if entry.status == 429:
            per_row[qid_of(entry.body) or ""] = per_row.get(qid_of(entry.body) or "", 0) + 1
    assert max(per_row.values()) > 2      # a row met more 429s than its max_attempts, and was not given up
    assert proj.rejects() == [] and len(proj.data()) == 20
    proj.assert_accounted()


def test_a_request_rate_limited_for_rate_limit_wait_s_gives_up_while_the_others_finish(make_project, server):
    proj = make_project(rows=12, limits={"concurrency": 3, "max_attempts": 2, "rate_limit_wait_s": 1.5})
    server.set_fault_fn(lambda i, body: Fault(status=429, headers={"Retry-After": "0.2"})
                        if qid_of(body) == "q00004" else None)
    t0 = time.monotonic()
    proj.augment()
    assert time.monotonic() - t0 >= 1.5
    (rej,) = proj.rejects()
    assert rej["reason"] == "rate_limited"
    assert rej["attempts"] > 2           # 429s did not use up the row's max_attempts
    assert len(proj.data()) == 11


def test_a_run_rate_limited_for_rate_limit_wait_s_without_a_success_stops(make_project, server):
    proj = make_project(rows=100, limits={"concurrency": 4, "rate_limit_wait_s": 1.5})
    server.set_fault_fn(lambda i, body: Fault(status=429, headers={"Retry-After": "0.3"}))
    with pytest.raises(RequestsFailing, match="rate limited for") as info:
        proj.augment()
    assert "quota" in info.value.hint
    assert server.requests <= 4 * (1.5 / 0.3 + 3)
    assert proj.data() == []
