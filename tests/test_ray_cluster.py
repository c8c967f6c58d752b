"""The Ray engine against a real multi-node cluster: ``ray start --head`` plus a second ``ray start
--address`` node on this machine (two raylets, one CPU each), then ``datafactory augment --engine ray
--ray-address`` from a separate driver process. One worker actor lands on each node; every row is
accounted once. Both ``ray start --block`` processes run in their own process groups, which the teardown
ends (whatever happened), so nothing of the cluster outlives the test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli_env, run_cli

pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
pytestmark = pytest.mark.timeout(180)

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([RAY, "start", "--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
                             "--disable-usage-stats", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)


def _wait_started(proc: subprocess.Popen[str], timeout: float = 90) -> None:
    """Until ``ray start`` says its node runs (it prints that once the node is registered)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("ray start exited:\n" + "".join(seen[-40:]))
        seen.append(line)
        if "Ray runtime started" in line:
            return
    raise AssertionError("ray start did not finish:\n" + "".join(seen[-40:]))


def _end(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the process group this test started (ray start and the node's processes), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # node processes the group leader left behind


@pytest.fixture
def two_node_cluster() -> Iterator[str]:
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="dfray")  # short: Ray's socket paths live under it
    env = cli_env(RAY_AUTH_MODE="disabled")  # one local cluster: no token to share between the nodes
    procs: list[subprocess.Popen[str]] = []
    try:
        procs.append(_start(["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", temp],
                            env))
        _wait_started(procs[0])
        procs.append(_start(["--address", f"127.0.0.1:{port}"], env))
        _wait_started(procs[1])
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            _end(proc)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_run_against_a_two_node_cluster_puts_a_worker_on_each_node_and_accounts_for_every_row(
        two_node_cluster, make_project, server):
    server.latency_s = 0.05
    proj = make_project(rows=60, limits={"concurrency": 4},
                        quality={"exact_dedup": {"fields": ["question"]}})
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--engine", "ray", "--ray-address", two_node_cluster,
                  "--workers", "2", env=cli_env(RAY_AUTH_MODE="disabled"), timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    proj.assert_accounted()
    assert server.requests == 60
    stats = proj.stats()
    assert stats["engine"] == "ray" and stats["workers"] == 2 and stats["written"] == 60
    assert stats["ray"]["address"].endswith(two_node_cluster.split(":")[1])   # the cluster's GCS (its node IP)
    assert stats["ray"]["workers_seen"] == 2 and stats["ray"]["nodes_seen"] == 2   # one worker per node
    assert stats["requests_sent"] == 60
