"""Several endpoints (``provider.endpoints``, ``--base-url`` twice): shared by weight and capacity, a dying
endpoint taken out and probed back, its rows retried on the others, per-endpoint counts in stats.json."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from conftest import SENTINEL_KEY, run_cli

from datafactory.errors import ConfigError, MissingApiKey
from datafactory.testing.loopback import Fault, LoopbackServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def second() -> Iterator[LoopbackServer]:
    with LoopbackServer(expected_api_key=SENTINEL_KEY) as srv:
        yield srv


def _endpoints(*servers: LoopbackServer, **extra) -> list[dict]:
    return [{"base_url": s.base_url, **extra} for s in servers]


def test_requests_are_shared_by_weight(make_project, server, second):
    server.latency_s = second.latency_s = 0.01
    proj = make_project(rows=200, provider={"endpoints": [{"base_url": server.base_url, "weight": 3},
                                                          {"base_url": second.base_url, "weight": 1}]},
                        limits={"concurrency": 8})
    assert proj.augment().written == 200
    share = server.requests / (server.requests + second.requests)
    assert 0.65 <= share <= 0.85, share
    block = proj.stats()["endpoints"]
    assert block[server.base_url]["answers"] == server.requests
    assert block[second.base_url]["answers"] == second.requests
    assert block[server.base_url]["weight"] == 3


def test_an_endpoints_own_concurrency_caps_what_it_gets(make_project, server, second):
    server.latency_s = second.latency_s = 0.05
    proj = make_project(rows=60, provider={"endpoints": [{"base_url": server.base_url, "concurrency": 2},
                                                         {"base_url": second.base_url}]},
                        limits={"concurrency": 10})
    assert proj.augment().written == 60
    assert server.max_in_flight <= 2 and second.max_in_flight >= 6


def test_when_one_of_two_endpoints_dies_mid_run_every_row_is_still_written(make_project, server, second):
    server.latency_s = second.latency_s = 0.02

    def kill_first() -> None:
        while server.requests < 60:
            time.sleep(0.005)
        server.stop()                     # refused connections from now on; requests on the wire cut

    proj = make_project(rows=400, provider={"endpoints": _endpoints(server, second)},
                        limits={"concurrency": 8, "max_attempts": 4})
    killer = threading.Thread(target=kill_first, daemon=True)
    killer.start()
    stats = proj.augment()
    killer.join(5)
    assert stats.written == 400 and not proj.rejects()
    proj.assert_accounted()
    block = proj.stats()["endpoints"]
    dead, alive = block[server.base_url], block[second.base_url]
    assert dead["taken_out"] >= 1 and dead["state"] != "in"
    assert dead["failures"] <= 8 + 2 * dead["taken_out"]      # a few per cool-down, not one per row
    assert alive["answers"] >= 400 - dead["answers"]


def test_an_endpoint_failing_with_5xx_is_taken_out_probed_and_brought_back(make_project, server, second):
    # 503s for the first 0.5 s; the run lasts at least 600 / 4 × 0.03 = 4.5 s, well past the first cool-down
    # (2 s) and its probe, however slow the box
    server.latency_s = second.latency_s = 0.03
    t0: list[float] = []

    def flaky(index, body):
        t0.append(time.monotonic()) if not t0 else None
        return Fault(status=503) if time.monotonic() - t0[0] < 0.5 else None

    server.set_fault_fn(flaky)
    proj = make_project(rows=600, provider={"endpoints": _endpoints(server, second)},
                        limits={"concurrency": 4})
    assert proj.augment().written == 600
    block = proj.stats()["endpoints"][server.base_url]
    assert block["taken_out"] >= 1 and block["state"] == "in"
    assert any(e.status == 200 for e in server.log)            # back in the pool after the probe
    assert server.statuses[503] < 30


def test_several_api_keys_for_one_provider_are_endpoints_with_different_keys(make_project, server, second,
                                                                               monkeypatch):
    key_b = "sk-SECOND-KEY-7d1e2f3a4b5c6d7e8f9a0b1c"
    second.expected_api_key = key_b
    monkeypatch.setenv("SECOND_KEY", key_b)
    proj = make_project(rows=40, provider={"endpoints": [{"base_url": server.base_url},
                                                         {"base_url": second.base_url, "api_key_env": "SECOND_KEY"}]})
    assert proj.augment().written == 40
    assert server.statuses[401] == 0 and second.statuses[401] == 0 and second.requests > 0
    for path in proj.run_dir.rglob("*"):
        if path.is_file():
            assert key_b.encode() not in path.read_bytes() and SENTINEL_KEY.encode() not in path.read_bytes()


def test_a_missing_endpoint_key_is_named_before_anything_is_sent(make_project, server, second):
    proj = make_project(rows=3, provider={"endpoints": [{"base_url": server.base_url},
                                                        {"base_url": second.base_url, "api_key_env": "NOPE_KEY"}]})
    with pytest.raises(MissingApiKey, match="NOPE_KEY"):
        proj.augment()
    assert server.requests == 0 and second.requests == 0


def test_the_cache_does_not_depend_on_which_endpoint_answered(make_project, server, second):
    proj = make_project(rows=30, provider={"endpoints": _endpoints(server, second)})
    assert proj.augment().written == 30
    sent = server.requests + second.requests
    # only the export changes: every row is redone from the cache, now through the other endpoint alone
    proj.update(provider={"endpoints": None, "base_url": second.base_url},
                output={"columns": {"qid": "source.qid", "q": "question", "answer": "answer"}})
    stats = proj.augment()
    assert stats.written == 30 and stats.requests_sent == 0 and server.requests + second.requests == sent


def test_base_url_given_twice_on_the_command_line_makes_two_endpoints(make_project, server, second):
    proj = make_project(rows=20, limits={"concurrency": 4})
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--base-url", server.base_url,
                  "--base-url", second.base_url)
    assert res.returncode == 0, res.stderr
    assert server.requests > 0 and second.requests > 0 and len(proj.data()) == 20
    assert set(proj.stats()["endpoints"]) == {server.base_url, second.base_url}


def test_an_endpoint_without_base_url_is_a_config_error_naming_it(make_project, server):
    proj = make_project(rows=1, provider={"endpoints": [{"base_url": server.base_url}, {"weight": 2}]})
    with pytest.raises(ConfigError, match=r"provider\.endpoints\[1\]\.base_url: required key is missing"):
        proj.augment()


def test_an_endpoint_that_stops_answering_is_taken_out_after_its_timeouts(make_project, server, second):
    """Every request to the first endpoint hangs: after 3 timeouts in a row it is out, its rows are
    retried on the second, and its probes find it still hanging (a longer cool-down each time)."""
    server.set_fault_fn(lambda index, body: Fault(kind="hang", hang_s=30))
    second.latency_s = 0.01
    proj = make_project(rows=80, provider={"endpoints": _endpoints(server, second)},
                        limits={"concurrency": 4, "timeout_s": 0.3, "max_attempts": 4})
    stats = proj.augment()
    assert stats.written == 80 and not proj.rejects()
    block = proj.stats()["endpoints"][server.base_url]
    assert block["answers"] == 0 and block["taken_out"] >= 1 and block["failures"] <= 12
