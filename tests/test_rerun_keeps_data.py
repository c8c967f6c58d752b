"""A rerun never loses or hides data: a changed configuration is announced before anything is paid,
and a run that fails or stops never shrinks the data files of its run dir."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import sqlite3

import pytest
from conftest import SENTINEL_KEY, run_cli, start_cli, wait_for

from datafactory.errors import AuthenticationFailed, DatafactoryError
from datafactory.testing.loopback import Fault

pytestmark = pytest.mark.timeout(90)


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


# ---------------------------------------------------------------------------- C2: announce a change
def test_rerun_with_another_model_and_params_announces_what_changed_rows_and_cost(make_project, server):
    proj = make_project(rows=10)
    first = run_cli("augment", str(proj.pipeline), "--quiet")
    assert first.returncode == 0, first.stderr
    assert "configuration changed" not in first.stderr

    proj.update(provider={"params": {"temperature": 0.7}})
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--model", "gpt-4o")
    assert res.returncode == 0, res.stderr
    err = res.stderr
    assert "the configuration changed since the last run" in err
    assert "model: \"gpt-4o-mini\" → \"gpt-4o\"" in err
    assert "params.temperature: 0 → 0.7" in err
    assert "10 rows will be asked again, estimated cost $" in err
    assert SENTINEL_KEY not in err + res.stdout
    change = proj.stats()["config_change"]
    assert change["rows_to_ask_again"] == 10 and change["requests_expected"] is True
    assert change["estimated_cost_usd"] > 0
    assert {c["key"] for c in change["changes"]} == {"model", "params.temperature"}

    server.reset_counters()
    again = run_cli("augment", str(proj.pipeline), "--quiet", "--model", "gpt-4o")
    assert again.returncode == 0 and "configuration changed" not in again.stderr
    assert server.requests == 0 and proj.stats()["config_change"] is None


def test_announcement_is_a_library_warning_before_the_first_request_and_a_stats_field(make_project, server):
    proj = make_project(rows=3)
    proj.augment()
    server.reset_counters()
    seen: list[tuple[str, int]] = []

    class Probe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), server.requests))

    probe = Probe(level=logging.WARNING)
    logging.getLogger("datafactory").addHandler(probe)
    try:
        stats = proj.augment(model="other-model")
    finally:
        logging.getLogger("datafactory").removeHandler(probe)
    assert stats.config_change is not None and stats.config_change["rows_to_ask_again"] == 3
    (message, requests_then), = [m for m in seen if "configuration changed" in m[0]]
    assert 'model: "gpt-4o-mini" → "other-model"' in message
    assert requests_then == 0 and server.requests == 3


def test_changing_only_output_columns_is_announced_as_served_from_the_cache(make_project, server):
    proj = make_project(rows=4)
    proj.augment()
    proj.update(output={"columns": {"original": "source.question"}})
    stats = proj.augment()
    change = stats.config_change
    assert change["requests_expected"] is False and change["estimated_cost_usd"] == 0.0
    assert [c["key"] for c in change["changes"]] == ["output"]


def test_prompt_template_change_is_named_without_dumping_the_template(make_project, server, tmp_path):
    import yaml
    from conftest import TEMPLATE

    proj = make_project(rows=2)
    proj.augment()
    (tmp_path / "prompt.yaml").write_text(yaml.safe_dump(dict(TEMPLATE, user=TEMPLATE["user"] + "Short.\n")))
    stats = proj.augment()
    (change,) = stats.config_change["changes"]
    assert change["key"] == "template" and change["old"].startswith("#") and change["new"].startswith("#")


def test_run_dir_from_before_configs_were_recorded_still_announces_rows_to_redo(make_project, server):
    proj = make_project(rows=5)
    proj.augment()
    with sqlite3.connect(proj.run_dir / "cache.sqlite") as db:
        db.execute("DROP TABLE configs")
    stats = proj.augment(model="another-model")
    assert stats.config_change["rows_to_ask_again"] == 5 and stats.config_change["changes"] == []


# ---------------------------------------------------------------------------- C3: never shrink data
@pytest.fixture
def finished_199(make_project, server):
    proj = make_project(rows=199, limits={"concurrency": 16})
    proj.augment()
    assert len(proj.data()) == 199
    snapshot = (proj.data_file.read_bytes(), proj.rejects_file.read_bytes())
    return proj, snapshot


def test_rerun_with_another_model_answered_401_keeps_all_199_rows(finished_199, server):
    proj, before = finished_199
    server.set_fault_fn(lambda i, body: Fault(status=401))
    with pytest.raises(AuthenticationFailed):
        proj.augment(model="another-model")
    assert len(proj.data()) == 199
    assert (proj.data_file.read_bytes(), proj.rejects_file.read_bytes()) == before


def test_rerun_with_another_model_against_a_dead_server_keeps_all_199_rows(finished_199, server):
    proj, before = finished_199
    with contextlib.suppress(DatafactoryError):   # the run-level breaker may stop it; both must keep data
        proj.augment(model="another-model", base_url=_dead_url(), limit=None)
    assert proj.data_file.read_bytes() == before[0]
    kept = proj.stats()["export_kept"]
    assert kept is not None and kept["rows_in_data"] == 199


def test_rerun_with_another_model_stopped_early_keeps_all_199_rows(finished_199, server):
    proj, before = finished_199
    server.latency_s = 0.3
    server.reset_counters()
    proc = start_cli("augment", str(proj.pipeline), "--quiet", "--model", "another-model")
    try:
        wait_for(lambda: server.requests >= 4, timeout=30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert proj.data_file.read_bytes() == before[0]
    assert proj.rejects_file.read_bytes() == before[1]
    assert "data/ unchanged: it keeps 199 rows" in err
    assert json.loads((proj.run_dir / "stats.json").read_text())["export_kept"]["rows_in_data"] == 199


def test_changed_configuration_replaces_data_when_its_run_finishes_and_the_old_rows_come_back(finished_199,
                                                                                               server):
    proj, before = finished_199
    server.set_fault_fn(lambda i, body: Fault(status=401))
    with pytest.raises(AuthenticationFailed):
        proj.augment(model="another-model")
    server.set_fault_fn(None)
    stats = proj.augment(model="another-model")
    assert stats.export_kept is None and stats.written == 199
    assert len(proj.data()) == 199 and proj.stats()["export_kept"] is None
    # the previous configuration's rows stay in cache.sqlite: rerunning it exports them, no request
    server.reset_counters()
    back = proj.augment()
    assert server.requests == 0 and back.rows_skipped_done == 199
    assert proj.data_file.read_bytes() == before[0]
