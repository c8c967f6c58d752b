"""The command line: instant --help, no heavy imports at start-up, the run summary, exit codes and
the lock that keeps two runs out of one run dir."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import CLI, REPO, assert_no_traceback, cli_env, run_cli, start_cli, wait_for

from datafactory.testing.loopback import Fault

pytestmark = pytest.mark.timeout(60)

HEAVY = ("openai", "datasets", "pyarrow", "aiohttp", "zhipuai", "polars", "numpy", "jsonschema", "tenacity")


@pytest.mark.parametrize("args", [["--help"], ["augment", "--help"], ["validate", "--help"]])
def test_help_answers_well_under_a_second(args):
    # warm the OS file cache first, then time a cold interpreter start
    subprocess.run([*CLI, *args], capture_output=True, env=cli_env(), check=True)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        res = subprocess.run([*CLI, *args], capture_output=True, text=True, env=cli_env())
        best = min(best, time.perf_counter() - t0)
        assert res.returncode == 0
        assert "usage: datafactory" in res.stdout
    assert best < 1.0, f"--help took {best:.2f}s"


def test_importing_the_cli_loads_no_heavy_library():
    code = ("import sys, json, datafactory.cli; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=True)
    loaded = set(json.loads(res.stdout))
    assert "datafactory" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_augment_help_lists_every_override_flag():
    res = run_cli("augment", "--help")
    for flag in ("--input", "--output", "--limit", "--concurrency", "--rpm", "--tpm", "--provider", "--model",
                 "--base-url", "--dry-run"):
        assert flag in res.stdout


def test_no_command_prints_help_and_exits_2():
    res = run_cli()
    assert res.returncode == 2
    assert "augment" in res.stdout and "validate" in res.stdout


def test_unknown_flag_is_a_usage_error_with_exit_2(make_project):
    proj = make_project(rows=1)
    res = run_cli("augment", str(proj.pipeline), "--concurrancy", "4")
    assert res.returncode == 2
    assert "unrecognized arguments: --concurrancy" in res.stderr


def test_augment_prints_a_summary_and_exits_0(make_project, server):
    proj = make_project(rows=5)
    server.set_fault_fn(lambda i, body: Fault(status=400) if i == 0 else None)
    res = run_cli("augment", str(proj.pipeline))
    assert res.returncode == 0, res.stderr
    assert f"run dir: {proj.run_dir}" in res.stdout
    assert "written: 4  rejected: 1 {'http_400': 1}  requests: 5" in res.stdout
    assert "estimated cost: $" in res.stdout
    assert f"dataset: {proj.run_dir}/data/out.jsonl (4 rows in total)" in res.stdout
    # not a terminal: plain progress lines on stderr, no traceback
    assert "[datafactory] done: 5/5 rows" in res.stderr
    assert_no_traceback(res.stderr)


def test_default_run_dir_is_under_runs_in_the_working_directory(make_project, server, tmp_path):
    proj = make_project(rows=2)
    proj.update(output={"dir": None})
    work = tmp_path / "cwd"
    work.mkdir()
    res = run_cli("augment", str(proj.pipeline), "--quiet", cwd=work)
    assert res.returncode == 0, res.stderr
    assert len((work / "runs" / "t" / "data" / "out.jsonl").read_text().splitlines()) == 2


def test_second_run_on_the_same_run_dir_is_refused_while_the_first_runs(make_project, server):
    server.latency_s = 0.2  # the first run needs ~4 s: plenty of time for the second to be refused
    proj = make_project(rows=40, limits={"concurrency": 2})
    first = start_cli("augment", str(proj.pipeline), "--quiet")
    try:
        wait_for(lambda: server.requests >= 2, timeout=30)
        # the intruder asks for another model, so anything it sent would show in the server log
        second = run_cli("augment", str(proj.pipeline), "--quiet", "--model", "intruder")
        assert second.returncode == 1
        assert f"another datafactory run is using {proj.run_dir}" in second.stderr
        assert "--output" in second.stderr
        assert_no_traceback(second.stderr)
        assert first.poll() is None, "the first run should still be going"
        server.latency_s = 0.0
        assert not [e for e in server.log if e.body.get("model") == "intruder"]
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert server.requests == 40
    proj.assert_accounted()
    # once the first run is over, the lock is free again
    again = run_cli("augment", str(proj.pipeline), "--quiet")
    assert again.returncode == 0, again.stderr


def test_lock_of_a_killed_run_does_not_block_the_next(make_project, server):
    server.latency_s = 0.1
    proj = make_project(rows=30, limits={"concurrency": 2})
    first = start_cli("augment", str(proj.pipeline), "--quiet")
    wait_for(lambda: server.requests >= 2, timeout=30)
    first.kill()
    first.communicate()
    server.latency_s = 0.0
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 0, res.stderr
    proj.assert_accounted()


def test_module_entry_point_matches_console_script():
    exe = REPO / ".venv" / "bin" / "datafactory"
    if not exe.exists():
        pytest.skip("console script not installed in .venv")
    res = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=cli_env())
    assert res.stdout.strip() == run_cli("--version").stdout.strip() == "datafactory 0.1.0"
