"""The run dir after crashes and on read-only or broken paths: stale temp files of ours are cleared
(only while we hold the lock), and a run dir that cannot be written is a clear error naming the path."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import CLI, TEMPLATE, assert_no_traceback, base_config, cli_env, make_rows, run_cli, write_jsonl
from filelock import FileLock

from datafactory.errors import DiskWriteError, RunLocked

pytestmark = pytest.mark.timeout(60)

NOBODY = 65534


def _leave_temps(proj) -> tuple[list[Path], list[Path]]:
    """Temp files a crashed writer of ours leaves, and look-alikes that are not ours."""
    data = proj.run_dir / "data"
    ours = [data / ".out.jsonl.k3x9_q2a.tmp", proj.run_dir / ".stats.json.a1b2c3d4.tmp",
            proj.run_dir / ".rejects.jsonl.zz00yy11.tmp"]
    theirs = [proj.run_dir / "notes.tmp", data / ".out.jsonl.tmp", proj.run_dir / "draft.jsonl.abcdefgh.tmp"]
    for p in ours + theirs:
        p.write_bytes(b'{"partial": ')
    return ours, theirs


def test_next_run_removes_stale_temp_files_of_ours_once_it_holds_the_lock_and_nothing_else(make_project, server):
    proj = make_project(rows=3)
    proj.augment()
    ours, theirs = _leave_temps(proj)
    lock = FileLock(str(proj.run_dir / ".lock"))   # another run is busy: its temp files are in use
    lock.acquire(timeout=0)
    try:
        with pytest.raises(RunLocked):
            proj.augment()
        assert all(p.exists() for p in ours)
    finally:
        lock.release()
    proj.augment()
    assert [p for p in ours if p.exists()] == []
    assert all(p.exists() for p in theirs)
    assert len(proj.data()) == 3


@pytest.mark.parametrize("blocked", ["cache.sqlite", "rejects.jsonl"])
def test_a_directory_where_a_run_file_should_be_is_a_clear_error_naming_it(make_project, server, blocked):
    proj = make_project(rows=2)
    (proj.run_dir / blocked).mkdir(parents=True)
    with pytest.raises(DiskWriteError, match=str(proj.run_dir / blocked)):
        proj.augment()
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 1
    assert_no_traceback(res.stderr)
    assert f"{proj.run_dir / blocked}" in res.stderr


def test_a_file_that_is_not_a_database_in_place_of_the_cache_is_a_clear_error(make_project, server):
    proj = make_project(rows=2)
    proj.run_dir.mkdir()
    (proj.run_dir / "cache.sqlite").write_bytes(b"this is not sqlite" * 100)
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 1, res.stderr
    assert_no_traceback(res.stderr)
    assert "cache.sqlite" in res.stderr


def _shared_dir() -> Path:
    """A folder every user can traverse (pytest's tmp_path is private to its owner)."""
    root = Path(tempfile.mkdtemp(prefix="df-ro-"))
    root.chmod(0o755)
    return root


def test_read_only_existing_run_dir_is_a_clear_error_naming_the_path(server):
    # chmod does not bind root: as root, the CLI runs as 'nobody', for whom the mode is real
    as_root = os.geteuid() == 0
    root = _shared_dir()
    try:
        (root / "prompt.yaml").write_text(yaml.safe_dump(TEMPLATE), encoding="utf-8")
        write_jsonl(root / "input.jsonl", make_rows(2))
        cfg = base_config(root, server.base_url)
        (root / "pipeline.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
        run_dir = root / "run"
        (run_dir / "data").mkdir(parents=True)
        for p in root.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        for d in (run_dir / "data", run_dir):
            d.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        prefix: list[str] = []
        if as_root:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root and no setpriv to drop privileges")
            prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        try:
            probe = subprocess.run([*prefix, *CLI, "--version"], capture_output=True, text=True, env=cli_env(),
                                   cwd=root, timeout=60)
        except OSError as exc:
            pytest.skip(f"cannot run the CLI as an unprivileged user here: {exc}")
        if probe.returncode != 0:
            pytest.skip(f"cannot run the CLI as an unprivileged user here: {probe.stderr[-300:]}")
        res = subprocess.run([*prefix, *CLI, "augment", str(root / "pipeline.yaml"), "--quiet"],
                             capture_output=True, text=True, env=cli_env(HOME=str(root)), cwd=root, timeout=60)
        assert res.returncode == 1, res.stderr
        assert_no_traceback(res.stderr)
        assert str(run_dir) in res.stderr and "not writable" in res.stderr
        assert server.requests == 0
    finally:
        for p in [root, *root.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)
