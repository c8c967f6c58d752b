"""Batch mode through the CLI in a subprocess: --batch, --no-wait and the rerun that collects, Ctrl-C while
waiting, --cancel-batches, a batch the provider does not know, and kill -9 at each step of a submission
followed by a rerun that never submits a row twice."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from datafactory.testing.batch_api import api_for
from datafactory.testing.loopback import LoopbackServer
from tests.conftest import assert_no_traceback, run_cli, start_cli, wait_for

FAST = {"batch": {"poll_s": 0.05}}


def cli(proj: Any, *flags: str) -> Any:
    return run_cli("augment", str(proj.pipeline), "--batch", *flags)


def test_no_wait_submits_and_exits_then_the_same_command_collects(make_project: Any, server: LoopbackServer) -> None:
    api = api_for(server)
    api.hold = True
    proj = make_project(10, provider=FAST)
    first = cli(proj, "--no-wait")
    assert first.returncode == 0, first.stderr
    assert "1 batch (10 requests) keep running on the provider: batch-" in first.stderr
    assert "rerun the same command to collect" in first.stderr
    assert proj.data() == [] and api.batch_sizes() == [10]
    again = cli(proj, "--no-wait")  # still running: nothing new is submitted
    assert again.returncode == 0, again.stderr
    assert api.batch_sizes() == [10]
    api.hold = False
    done = cli(proj)
    assert done.returncode == 0, done.stderr
    assert "batches: 0 running" in done.stderr and "10 collected" in done.stderr  # the progress line
    assert len(proj.data()) == 10 and api.batch_sizes() == [10] and max(api.submitted.values()) == 1
    assert server.requests == 0
    proj.assert_accounted()


def test_ctrl_c_while_waiting_says_the_batches_keep_running_and_cancel_batches_cancels(
        make_project: Any, server: LoopbackServer) -> None:
    api = api_for(server)
    api.hold = True
    proj = make_project(6, provider=FAST)
    proc = start_cli("augment", str(proj.pipeline), "--batch", "--quiet")
    wait_for(lambda: api.calls["retrieve"] >= 2, timeout=60)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert_no_traceback(err)
    assert "keep running on the provider" in err and "--cancel-batches" in err
    (bid,) = api.batches
    assert bid in err
    cancelled = cli(proj, "--cancel-batches")
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"batch {bid}: cancelling" in cancelled.stdout
    api.hold = False
    done = cli(proj, "--quiet")
    assert done.returncode == 0, done.stderr
    assert api.batches[bid]["status"] == "cancelled"
    assert api.batch_sizes() == [6, 6]  # the cancelled batch's rows, asked again
    assert len(proj.data()) == 6


def test_a_batch_the_provider_does_not_know_is_a_clear_error_naming_it(make_project: Any,
                                                                       server: LoopbackServer) -> None:
    api = api_for(server)
    api.hold = True
    proj = make_project(4, provider=FAST)
    assert cli(proj, "--no-wait", "--quiet").returncode == 0
    (bid,) = api.batches
    api.forget()  # as if the key now belongs to another project
    res = cli(proj, "--quiet")
    assert res.returncode == 1
    assert_no_traceback(res.stderr)
    assert bid in res.stderr and "another API key or project" in res.stderr


@pytest.mark.parametrize("step", ["upload", "before_create", "create", "retrieve", "content"])
def test_kill_9_at_each_step_then_rerun_submits_every_row_exactly_once(make_project: Any, server: LoopbackServer,
                                                                       step: str) -> None:
    """upload: the file reached the provider, its id was never recorded; before_create: the file id is
    recorded, no batch exists yet; create: the batch exists, its id was never recorded; retrieve: the batch
    runs; content: the output is being downloaded."""
    api = api_for(server)
    if step == "retrieve":
        api.hold = True
    elif step == "before_create":
        api.faults = {"create": [503] * 50}
    else:
        api.delays[step] = 60.0
    proj = make_project(12, provider=FAST)
    proc = start_cli("augment", str(proj.pipeline), "--batch", "--quiet")
    watched = "create_refused" if step == "before_create" else step
    wait_for(lambda: api.calls[watched] >= 1, timeout=60)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    api.hold, api.faults, api.delays = False, {}, {}
    res = cli(proj, "--quiet")
    assert res.returncode == 0, res.stderr
    assert len(api.batches) == 1, f"{len(api.batches)} batches created"
    assert sorted(api.submitted.values()) == [1] * 12, "a row was submitted twice"
    assert len(proj.data()) == 12
    proj.assert_accounted()


def test_no_wait_without_batch_mode_is_a_usage_error(make_project: Any, server: LoopbackServer) -> None:
    proj = make_project(2)
    res = run_cli("augment", str(proj.pipeline), "--no-wait")
    assert res.returncode == 2 and "--no-wait applies to batch mode" in res.stderr
    assert server.requests == 0
