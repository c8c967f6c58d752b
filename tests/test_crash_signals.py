"""Crashes and signals, with the real CLI in a subprocess: kill -9 at random moments, Ctrl-C,
SIGTERM, and a disk that fills up. After each, a resume finishes the job, every input row is
accounted for exactly once, and no request whose response was stored is ever sent again."""

from __future__ import annotations

import json
import os
import random
import resource
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLI, assert_no_traceback, cli_env, is_reask, qid_of, run_cli, start_cli, wait_for

from datafactory.testing.loopback import Fault

pytestmark = pytest.mark.timeout(120)


def _stored_requests(run_dir: Path) -> set[str]:
    """Every request whose response is in the cache (what has been paid for), as canonical JSON."""
    db = sqlite3.connect(run_dir / "cache.sqlite")
    try:
        return {json.dumps(json.loads(blob)["messages"], sort_keys=True)
                for (blob,) in db.execute("SELECT request FROM responses")}
    finally:
        db.close()


def _sent(entries) -> list[str]:
    return [json.dumps(e.body["messages"], sort_keys=True) for e in entries]


def _some_rows_need_a_reask(index, body):
    qid = qid_of(body)
    if qid and int(qid[1:]) % 17 == 0 and not is_reask(body):
        return Fault(kind="content", content="no JSON here, sorry")
    return None


# ---------------------------------------------------------------------- kill -9
def kill_three_times_then_resume(proj, server, *, after_requests: int, max_sleep_s: float,
                                 final_timeout_s: float = 120) -> None:
    """Three runs killed (-9) at random moments, then one that finishes: every input row accounted for
    exactly once, in input order, no stored request sent again, and a last rerun has nothing to do."""
    seed = int(time.time())
    rng = random.Random(seed)
    for attempt in range(4):
        stored = _stored_requests(proj.run_dir) if (proj.run_dir / "cache.sqlite").exists() else set()
        mark = len(server.log)
        proc = start_cli("augment", str(proj.pipeline), "--quiet")
        if attempt < 3:
            wait_for(lambda mark=mark: len(server.log) > mark + after_requests, timeout=60)
            time.sleep(rng.uniform(0.0, max_sleep_s))
            proc.kill()
            proc.communicate(timeout=30)
            assert proc.returncode == -signal.SIGKILL, f"seed {seed}: run {attempt} ended before the kill"
            # whatever the moment, the data file is never torn (it is only ever replaced atomically)
            if proj.data_file.exists():
                proj.data()
        else:
            out, err = proc.communicate(timeout=final_timeout_s)
            assert proc.returncode == 0, err
        sent = _sent(server.log[mark:])
        repeated = set(sent) & stored
        assert not repeated, f"seed {seed}: run {attempt} sent {len(repeated)} stored requests again"
        assert len(sent) == len(set(sent)), f"seed {seed}: a request was sent twice within run {attempt}"
    proj.assert_accounted()
    assert [r["qid"] for r in proj.data()] == [r["qid"] for r in proj.rows]
    assert proj.stats()["run_totals"]["written"] == len(proj.rows)
    server.reset_counters()
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 0 and server.requests == 0


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_accounts_for_every_row_once(make_project, server):
    server.latency_s = 0.1
    server.set_fault_fn(_some_rows_need_a_reask)
    proj = make_project(rows=400, limits={"concurrency": 8})
    kill_three_times_then_resume(proj, server, after_requests=8, max_sleep_s=0.6)


# ---------------------------------------------------------------------- Ctrl-C / SIGTERM
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_says_how_to_resume_and_the_resume_completes(make_project, server, sig, code):
    server.latency_s = 0.1
    proj = make_project(rows=120, limits={"concurrency": 4})
    proc = start_cli("augment", str(proj.pipeline))
    wait_for(lambda: server.requests >= 12, timeout=30)
    t_sig = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert time.monotonic() - t_sig < 3.0  # in-flight requests land (0.1 s), then it exits
    assert_no_traceback(err)
    assert "Stopped early" in err
    resume_line = next(line for line in err.splitlines() if line.startswith("Resume with:"))
    resume = shlex.split(resume_line.split(":", 1)[1])
    assert resume[:3] == ["datafactory", "augment", str(proj.pipeline)]
    assert "--output" in resume and resume[resume.index("--output") + 1] == str(proj.run_dir)
    # what was finished is saved: data, rejects, stats (marked interrupted)
    stats = proj.stats()
    assert stats["interrupted"] is True
    done = proj.data()
    assert 0 < len(done) < 120
    assert len(done) == stats["rows_done"]
    # every response that came back was used: nothing paid for is left unwritten
    assert len(_stored_requests(proj.run_dir)) == len(done)
    stored = _stored_requests(proj.run_dir)

    server.latency_s = 0.0
    mark = len(server.log)
    res = run_cli(*resume[1:], "--quiet")
    assert res.returncode == 0, res.stderr
    assert not set(_sent(server.log[mark:])) & stored
    assert len(server.log) - mark == 120 - len(done)
    proj.assert_accounted()
    assert [r["qid"] for r in proj.data()] == [r["qid"] for r in proj.rows]


def test_second_ctrl_c_stops_waiting_for_a_hung_request(make_project, server):
    server.latency_s = 0.05
    proj = make_project(rows=60, limits={"concurrency": 2, "timeout_s": 30})
    server.set_fault_fn(lambda index, body: Fault(kind="hang", hang_s=30) if index == 4 else None)
    proc = start_cli("augment", str(proj.pipeline), "--quiet")
    wait_for(lambda: server.requests >= 8, timeout=30)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    # without the second Ctrl-C it would wait the 3 s grace period for the hung request
    assert time.monotonic() - t0 < 2.0
    assert proc.returncode == 130, err
    assert "Resume with:" in err
    assert_no_traceback(err)
    server.set_fault_fn(None)
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 0, res.stderr
    proj.assert_accounted()


def test_library_augment_reports_an_interrupt_in_stats(make_project, server):
    """The same stop path from Python: a SIGINT to this process during augment()."""
    import threading

    server.latency_s = 0.05
    proj = make_project(rows=80, limits={"concurrency": 2})

    def interrupt():
        wait_for(lambda: server.requests >= 6, timeout=30)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt)
    t.start()
    stats = proj.augment()
    t.join()
    assert stats.interrupted and stats.stop_signal == signal.SIGINT
    assert 0 < stats.rows_done < 80
    assert proj.stats()["interrupted"] is True


# ---------------------------------------------------------------------- disk full
def _first_run_then_fill(proj, server, run_second):
    """Complete a small run, then rerun with a big input that cannot fit; the earlier data must survive."""
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 0, res.stderr
    before = proj.data_file.read_bytes()
    assert len(proj.data()) == 10
    big = proj.root / "big.jsonl"
    with big.open("w") as fh:
        for i in range(3000):
            fh.write(json.dumps({"qid": f"q{i:05d}", "question": f"Problem {i}: " + "x" * 2000,
                                 "answer": f"#### {i}"}) + "\n")
    server.responder = lambda body, index: json.dumps(
        {"question": "Long rephrased question " + "y" * 4000, "answer": "Steps ... #### 1"})
    res = run_second(big)
    assert res.returncode == 1, res.stderr[-2000:]
    assert_no_traceback(res.stderr)
    assert "cannot write" in res.stderr
    # the earlier rows are all still there, unchanged (new rows may have been added next to them)
    after = proj.data_file.read_bytes()
    assert after.endswith(b"\n")
    assert set(before.splitlines()) <= set(after.splitlines())
    return res


def test_disk_full_on_a_small_tmpfs_stops_with_a_clear_error_and_keeps_earlier_data(make_project, server,
                                                                                      tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True,
                       capture_output=True, timeout=10)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {exc}")
    try:
        proj = make_project(rows=10, output={"dir": str(mnt / "run")}, limits={"concurrency": 8})

        def second(big):
            return run_cli("augment", str(proj.pipeline), "--quiet", "--input", str(big))

        res = _first_run_then_fill(proj, server, second)
        assert "disk full" in res.stderr or "No space left" in res.stderr
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def test_file_size_limit_stops_with_a_clear_error_and_keeps_earlier_data(make_project, server):
    limit = 1 << 20

    def cap_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proj = make_project(rows=10, limits={"concurrency": 8})

    def second(big):
        return subprocess.run([*CLI, "augment", str(proj.pipeline), "--quiet",
                               "--input", str(big)], capture_output=True, text=True, env=cli_env(),
                              preexec_fn=cap_file_size, timeout=120)

    _first_run_then_fill(proj, server, second)
    # and once there is room again, the same command finishes the job
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--input", str(proj.root / "big.jsonl"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(proj.data()) == 3010
    proj.assert_accounted(proj.rows + [json.loads(line) for line in (proj.root / "big.jsonl").open()])


def test_file_too_large_while_writing_a_data_file_is_a_disk_write_error(tmp_path):
    """EFBIG (ulimit -f) on the atomic writer: a clear DiskWriteError, the old file untouched."""
    target = tmp_path / "data.jsonl"
    target.write_bytes(b'{"old": 1}\n')
    code = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
from datafactory.errors import DiskWriteError
from datafactory.io.atomic import atomic_write_bytes
try:
    atomic_write_bytes({str(target)!r}, b"x" * 1_000_000)
except DiskWriteError as exc:
    print("DiskWriteError:", exc)
    sys.exit(3)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env())
    assert res.returncode == 3, res.stderr
    assert f"cannot write {target}: File too large" in res.stdout
    assert target.read_bytes() == b'{"old": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]  # no temp file left behind
