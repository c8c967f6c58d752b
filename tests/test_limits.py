"""RPM / TPM limits: never above the limit in any window, and close to it in steady state.

The end-to-end tests run ``augment`` against the loopback server with the real 60 s window and measure
the paced steady-state rate over a few seconds; the window tests drive the real limiter with a short
window (its only parameter that differs) so that "never above the limit in *any* window" is checked
over many whole windows in seconds.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from datafactory.engine.ratelimit import Limits, WindowLimit
from datafactory.testing.faults import completion_body


def _max_in_window(starts: list[float], weights: list[float], window: float) -> float:
    """The largest sum of weights whose starts fall in one half-open window [t, t + window)."""
    worst, j, total = 0.0, 0, 0.0
    for i in range(len(starts)):
        while j < len(starts) and starts[j] < starts[i] + window:
            total += weights[j]
            j += 1
        worst = max(worst, total)
        total -= weights[i]
    return worst


def _server_usage(server) -> tuple[list[float], list[int]]:
    log = sorted(server.log, key=lambda e: e.t_start)
    usage = [json.loads(completion_body(e.body, e.index, server.responder))["usage"]["total_tokens"]
             for e in log]
    return [e.t_start for e in log], usage


# ---------------------------------------------------------------------- end to end (60 s window)
def test_tpm_with_large_max_tokens_and_short_replies_uses_over_90_percent_of_the_limit(make_project, server):
    # replies are ~60 completion tokens while max_tokens is 1024: charging max_tokens up front (the old
    # bucket) reached ~10 % of this limit; reserving what replies really cost reaches the limit
    tpm = 66_000  # 1100 tokens/s ≈ 9 requests/s of ≈ 120 tokens
    proj = make_project(rows=45, limits={"concurrency": 16, "tpm": tpm},
                        provider={"params": {"max_tokens": 1024}})
    proj.augment()
    starts, usage = _server_usage(server)
    assert len(starts) == 45
    rate = tpm / 60
    # steady state: after the first few requests (the pacing slack and the first, max_tokens-sized
    # reservations) until the last request went out
    steady_t, steady_u = starts[8:], usage[8:]
    achieved = sum(steady_u[:-1]) / (steady_t[-1] - steady_t[0])
    assert achieved >= 0.9 * rate, f"{achieved / rate:.0%} of the limit"
    # and never ahead of the limit: nothing above rate × t plus the pacing slack (1 s ahead, 1 s of
    # credit kept from settled reservations) and one request
    for span in (0.5, 1.0, 2.0, 3.0):
        assert _max_in_window(starts, usage, span) <= rate * (span + 2.0) + max(usage)
    # the whole run lies in one 60 s window: it used no more than the limit
    assert sum(usage) <= tpm
    proj.assert_accounted()


def test_rpm_spreads_requests_evenly_with_no_burst(make_project, server):
    rpm = 600  # 10 requests/s
    proj = make_project(rows=25, limits={"concurrency": 16, "rpm": rpm})
    proj.augment()
    starts = sorted(e.t_start for e in server.log)
    assert len(starts) == 25
    gap = 60 / rpm
    # the old bucket let a second's worth go at once; now no two requests are much closer than 1/rate
    assert _max_in_window(starts, [1.0] * len(starts), 1.0 - 0.05) <= 10
    assert _max_in_window(starts, [1.0] * len(starts), gap * 3 - 0.03) <= 3
    elapsed = starts[-1] - starts[0]
    assert elapsed <= 24 * gap * 1.1 + 0.3, "well below the limit"
    proj.assert_accounted()


# ---------------------------------------------------------------------- any window (short window)
def test_request_limit_is_never_exceeded_in_any_window_and_is_reached():
    limit, window = 20, 1.0

    async def run() -> list[float]:
        lim = WindowLimit(limit, window)
        times: list[float] = []
        t0 = time.monotonic()

        async def worker() -> None:
            while time.monotonic() - t0 < 3.0:
                await lim.acquire(1)
                times.append(time.monotonic())
                await asyncio.sleep(0.01)

        await asyncio.gather(*(worker() for _ in range(12)))
        return sorted(times)

    times = asyncio.run(run())
    assert _max_in_window(times, [1.0] * len(times), window) <= limit
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate >= 0.95 * limit / window


def test_token_limit_counts_real_usage_never_exceeds_any_window_and_reaches_90_percent():
    limit, window, max_tokens = 24_000, 2.0, 1024

    async def run() -> list[tuple[float, int]]:
        lim = Limits(None, limit, max_completion=max_tokens, window_s=window)
        rng = random.Random(7)
        sent: list[tuple[float, int]] = []
        t0 = time.monotonic()

        async def worker() -> None:
            while time.monotonic() - t0 < 6.0:
                ticket = await lim.before_request(40)
                t = time.monotonic()
                await asyncio.sleep(rng.uniform(0.02, 0.08))
                completion = rng.randint(100, 200)  # ≈ 150, far below max_tokens
                lim.after_response(ticket, 45, completion)
                sent.append((t, 45 + completion))

        await asyncio.gather(*(worker() for _ in range(16)))
        return sorted(sent)

    sent = asyncio.run(run())
    starts, usage = [t for t, _ in sent], [u for _, u in sent]
    assert _max_in_window(starts, usage, window) <= limit
    # steady state: every whole window after the first
    t0 = starts[0]
    for k in range(1, 3):
        in_window = sum(u for t, u in sent if t0 + k * window <= t < t0 + (k + 1) * window)
        assert in_window >= 0.9 * limit, f"window {k}: {in_window / limit:.0%}"


def test_refused_request_gives_its_token_reservation_back():
    async def run() -> tuple[float, float]:
        lim = Limits(None, 10_000, max_completion=1000)
        ticket = await lim.before_request(100)
        assert lim.tpm is not None
        held = lim.tpm.used
        lim.after_failure(ticket, answered=True)
        return held, lim.tpm.used

    held, after = asyncio.run(run())
    assert held == 1100 and after == 0


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf")])
def test_limit_must_be_finite_and_positive(bad):
    with pytest.raises(ValueError):
        WindowLimit(bad)
