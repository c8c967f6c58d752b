"""The asyncio engine's event loop (uvloop when installed, DATAFACTORY_LOOP to choose) and its garbage
collector pacing during the request loop (engine/runloop.py)."""

from __future__ import annotations

import gc
import importlib.util

import pytest

from datafactory.engine.stats import Stats
from datafactory.errors import AuthenticationFailed, ConfigError

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


class GcWatch:
    """A progress display that notes the collector's settings each time the ticker calls it."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[int, int, int], int]] = []

    def start(self, stats: Stats) -> None:
        pass

    def update(self, stats: Stats) -> None:
        self.seen.append((gc.get_threshold(), gc.get_freeze_count()))

    def stop(self, stats: Stats) -> None:
        pass


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop not installed")
def test_run_uses_uvloop_when_installed_and_says_so_in_stats(make_project, monkeypatch):
    monkeypatch.delenv("DATAFACTORY_LOOP", raising=False)
    proj = make_project(rows=3)
    proj.augment()
    assert proj.stats()["runtime"]["event_loop"] == "uvloop"
    assert len(proj.data()) == 3
    proj.assert_accounted()


def test_datafactory_loop_asyncio_runs_the_same_pipeline_on_the_standard_loop(make_project, monkeypatch):
    monkeypatch.setenv("DATAFACTORY_LOOP", "asyncio")
    proj = make_project(rows=3)
    proj.augment()
    assert proj.stats()["runtime"]["event_loop"] == "asyncio"
    assert len(proj.data()) == 3
    proj.assert_accounted()


def test_unknown_datafactory_loop_is_a_config_error_naming_the_variable_before_any_request(
        make_project, server, monkeypatch):
    monkeypatch.setenv("DATAFACTORY_LOOP", "tokio")
    proj = make_project(rows=3)
    with pytest.raises(ConfigError) as err:
        proj.augment()
    assert "DATAFACTORY_LOOP" in str(err.value) and "asyncio" in str(err.value)
    assert server.requests == 0


def test_collector_is_paced_during_the_request_loop_and_restored_after_even_when_the_run_fails(
        make_project, server, monkeypatch):
    before = gc.get_threshold()
    server.latency_s = 0.3  # the ticker (4 per second) sees the loop running
    watch = GcWatch()
    proj = make_project(rows=4)
    proj.augment(progress=watch)
    assert watch.seen and all(t[0] >= 10_000 and frozen > 0 for t, frozen in watch.seen)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")  # a 401 stops the run with an error
    with pytest.raises(AuthenticationFailed):
        make_project(rows=4, output={"dir": str(proj.run_dir) + "-401"}).augment(progress=GcWatch())
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
