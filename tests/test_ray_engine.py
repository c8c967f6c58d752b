"""The Ray Data engine (``--engine ray``) on a local Ray cluster (2 CPUs, one per test module): every row
accounted once, dedup global across workers and in input order, a rerun sends nothing, and a kill -9
of the driver followed by a rerun accounts for every row once without paying twice for a stored response."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, run_cli, start_cli, wait_for

from datafactory.errors import ConfigError, RequestsFailing
from datafactory.testing.loopback import Fault


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    """One local Ray for the module, small enough for a shared 2-core box."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _qid(body: dict[str, Any]) -> int:
    return int(re.search(r"\[q(\d+)\]", body["messages"][-1]["content"]).group(1))


def _stored_prompts(run_dir: Path) -> set[int]:
    """The rows whose response a worker stored (from the workers' response files)."""
    out: set[int] = set()
    for path in (run_dir / "ray").glob("responses-*.sqlite"):
        with sqlite3.connect(path) as db:
            for (blob,) in db.execute("SELECT request FROM responses"):
                out.add(_qid(json.loads(blob)))
    return out


def test_a_ray_run_accounts_for_every_row_and_writes_the_same_run_dir(ray_cluster, make_project, server):
    proj = make_project(rows=40)
    stats = proj.augment(engine="ray", workers=2)
    proj.assert_accounted()
    assert server.requests == 40 and stats.requests_sent == 40
    assert len(proj.data()) == 40
    out = proj.stats()
    assert out["engine"] == "ray" and out["workers"] == 2
    assert out["written"] == 40 and out["requests_sent"] == 40
    assert out["ray"]["workers_seen"] == 2            # both actors did rows
    assert out["steps"]["request"]["in"] == 40
    # every worker's responses also land in the run's cache.sqlite (the asyncio engine reads the same dir)
    assert out["ray"]["responses_merged"] == 40
    # the same run dir as the asyncio engine's for the same pipeline (plus the workers' response files)
    ray_dir = proj.run_dir
    proj.update(output={"dir": str(ray_dir.parent / "asyncio_run")})
    proj.augment()
    assert proj.data() == [json.loads(line) for line in (ray_dir / "data" / "out.jsonl").read_text().splitlines()]
    def names(run: Path) -> list[str]:
        return sorted(p.name for p in run.iterdir() if p.name != "ray" and not p.name.endswith(("-wal", "-shm")))

    assert names(proj.run_dir) == names(ray_dir)


def test_dedup_is_global_across_workers_and_keeps_the_first_copy_in_input_order(ray_cluster, make_project,
                                                                                  server):
    def responder(body: dict[str, Any], k: int) -> str:  # eight distinct answers, five copies of each
        i = _qid(body) % 8
        return json.dumps({"question": f"Problem number {i}: how many apples are left in the basket?",
                           "answer": f"Take {i} away from the {i * 7} apples in the basket.\n#### {i * 6}"})

    rng = random.Random(7)
    server.responder = responder
    server.set_fault_fn(lambda i, body: Fault(status=200, delay_s=rng.uniform(0.0, 0.05)))
    proj = make_project(rows=40, limits={"concurrency": 4},
                        quality={"reask": 0, "exact_dedup": {"fields": ["question"]},
                                 "near_dedup": {"fields": ["answer"], "threshold": 0.8}})
    proj.augment(engine="ray", workers=2)
    proj.assert_accounted()
    assert [r["id"] for r in proj.data()] == proj.expected_keys()[:8]  # copies answered by either worker
    dups = [r for r in proj.rejects() if r["reason"] in ("duplicate", "near_duplicate")]
    assert len(dups) == 32
    assert proj.stats()["steps"]["ordered_gates"]["out_of_order"] == 0


def test_a_rerun_of_a_finished_ray_run_sends_nothing_and_starts_no_worker(ray_cluster, make_project, server):
    proj = make_project(rows=30)
    proj.augment(engine="ray", workers=2)
    before = server.requests
    stats = proj.augment(engine="ray", workers=2)
    assert server.requests == before == 30
    assert stats.rows_skipped_done == 30 and stats.rows_done == 0
    assert proj.stats()["workers"] == 0
    proj.assert_accounted()


def test_rows_whose_response_a_worker_stored_are_finished_from_it_by_any_worker(ray_cluster, make_project, server):
    proj = make_project(rows=24)
    proj.augment(engine="ray", workers=2)
    db = sqlite3.connect(proj.run_dir / "cache.sqlite")
    db.execute("DELETE FROM outcomes")            # as if the driver died before committing any row
    db.execute("DELETE FROM responses")           # only the workers' own files hold the responses
    db.commit()
    db.close()
    before = server.requests
    stats = proj.augment(engine="ray", workers=2)
    assert server.requests == before              # every response came from a worker's file
    assert stats.cache_hits == 24 and stats.rows_done == 24
    proj.assert_accounted()


def test_a_ray_run_finishes_from_the_responses_an_asyncio_run_stored_in_the_same_run_dir(ray_cluster, make_project,
                                                                                        server):
    proj = make_project(rows=20)
    proj.augment()                                # the asyncio engine
    with sqlite3.connect(proj.run_dir / "cache.sqlite") as db:
        db.execute("DELETE FROM outcomes")        # rows not finished, responses stored
    before = server.requests
    stats = proj.augment(engine="ray", workers=2)
    assert server.requests == before == 20 and stats.cache_hits == 20
    proj.assert_accounted()


def test_a_preference_run_on_ray_writes_what_the_asyncio_engine_writes(ray_cluster, make_project, server):
    def samples(body: dict[str, Any], k: int) -> str:  # per row: right but short, right, wrong, wrong but short
        i = _qid(body)
        text = [f"#### {i + 3}", f"Add three to it.\n#### {i + 3}", f"Subtract instead.\n#### {i + 10}",
                f"#### {i + 10}"][k]
        return json.dumps({"question": "A rephrased question?", "answer": text})

    server.responder = samples
    proj = make_project(rows=6, provider={"params": {"temperature": 1.0, "max_tokens": 256, "n": 4}},
                        quality={"reask": 0, "answer_check": {"output_field": "answer", "source_field": "answer"},
                                 "length": {"fields": ["output"], "min_chars": 20},
                                 "exact_dedup": {"fields": ["rejected"]}},
                        output={"format": "preference", "columns": {"instruction": "source.question"}})
    proj.augment(engine="ray", workers=2)
    on_ray = (proj.data(), sorted((r["id"], r["reason"]) for r in proj.rejects()))
    proj.update(output={"dir": str(proj.run_dir.parent / "asyncio_run")})
    proj.augment()
    assert on_ray == (proj.data(), sorted((r["id"], r["reason"]) for r in proj.rejects()))
    assert len(on_ray[0]) == 6


def test_decontamination_runs_on_every_worker_and_stats_json_adds_up_their_counts(ray_cluster, make_project, server):
    from datafactory.quality.decontam import builtin_eval_set

    test_questions = [json.loads(line)["question"] for line in builtin_eval_set("gsm8k").open()]
    rows = [{"qid": f"q{i:05d}", "question": test_questions[100 + i] if i % 4 == 0 else
             f"Sam has {i} apples and buys 3 more. How many apples does Sam have now?", "answer": "#### 7"}
            for i in range(24)]
    proj = make_project(rows, quality={"decontaminate": {"fields": ["question"], "inputs": ["question"]}})
    proj.augment(engine="ray", workers=2)
    proj.assert_accounted()
    assert len(proj.rejects_by_reason()["contaminated"]) == 6
    assert server.requests == 18                       # a contaminated input is never sent
    block = proj.stats()["decontamination"]
    assert block["eval_sets"]["gsm8k-test"]["rejected"] == 6 and block["eval_sets"]["gsm8k-test"]["items"] == 1319
    assert proj.stats()["ray"]["workers_seen"] == 2


def test_the_rpm_limit_holds_for_all_workers_together(ray_cluster, make_project, server):
    proj = make_project(rows=16, limits={"concurrency": 4, "rpm": 480})   # 8 per second, evenly spaced
    proj.augment(engine="ray", workers=2)
    proj.assert_accounted()
    starts = sorted(e.t_start for e in server.log)
    # one limit for the pool: 15 gaps of 1/8 s (two limits of 480 each would take half that)
    assert starts[-1] - starts[0] >= 1.6
    assert proj.stats()["ray"]["limiter"]["requests_admitted"] == 16


def test_a_429_seen_by_one_worker_pauses_every_worker(ray_cluster, make_project, server):
    server.latency_s = 0.2
    proj = make_project(rows=24, limits={"concurrency": 4})
    server.enqueue(Fault(status=429, headers={"Retry-After": "1.5"}, delay_s=0.0))
    proj.augment(engine="ray", workers=2)
    proj.assert_accounted()
    t429 = server.log[0].t_end
    # requests already on the wire land, and requests the limiter admitted before it heard of the 429 (one actor
    # round trip, ~0.1 s on a loaded 2-core box) may still start; after that nobody (neither worker) starts one
    # until the pause is over
    later = [e.t_start for e in server.log[1:] if e.t_start > t429 + 0.3]
    assert later and min(later) - t429 >= 1.4
    assert proj.stats()["ray"]["limiter"]["pauses"] >= 1


def test_a_breaker_trip_on_a_worker_stops_the_ray_run_then_the_fixed_rerun_does_every_row(ray_cluster, make_project,
                                                                                         server):
    proj = make_project(rows=200, limits={"concurrency": 4})
    server.set_fault_fn(lambda i, body: Fault(status=404, message="The model `gpt-4o-mini` does not exist"))
    with pytest.raises(RequestsFailing) as stopped:
        proj.augment(engine="ray", workers=2)
    assert "HTTP 404: The model `gpt-4o-mini` does not exist" in str(stopped.value)
    assert stopped.value.stats.stopped == "RequestsFailing" and proj.stats()["stopped"] == "RequestsFailing"
    assert server.requests <= 60                     # each worker's breaker trips within its first requests
    server.set_fault_fn(None)
    proj.augment(engine="ray", workers=2)
    proj.assert_accounted()
    assert len(proj.data()) == 200


def test_the_core_install_imports_no_ray_for_the_asyncio_engine_or_the_cli():
    code = ("import sys, datafactory, datafactory.cli, datafactory.engine.augment, datafactory.engine.ray; "
            "datafactory.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_engine_name_is_checked_before_anything_runs(make_project):
    proj = make_project(rows=3)
    with pytest.raises(ConfigError, match="engine"):
        proj.augment(engine="spark")
    assert not (proj.run_dir / "stats.json").exists()


def test_kill_9_of_the_ray_driver_then_a_rerun_accounts_for_every_row_once(ray_cluster, make_project, server):
    server.latency_s = 0.2                          # 8 in flight: ~40 rows/s, seconds left after the first 16
    proj = make_project(rows=160, limits={"concurrency": 4})
    args = ["augment", str(proj.pipeline), "--quiet", "--engine", "ray", "--ray-address", ray_cluster,
            "--workers", "2"]
    proc = start_cli(*args, env=cli_env(), start_new_session=True)
    try:
        wait_for(lambda: (proj.run_dir / "ray").exists() and len(_stored_prompts(proj.run_dir)) >= 16,
                 timeout=120, interval=0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1.0)                                # the cluster ends the dead driver's actors
    stored = _stored_prompts(proj.run_dir)
    assert 0 < len(stored) < 160
    sent_before = [_qid(e.body) for e in server.log]
    server.latency_s = 0.0
    done = run_cli(*args, timeout=240)
    assert done.returncode == 0, done.stderr
    proj.assert_accounted()
    resent = [_qid(e.body) for e in server.log[len(sent_before):]]
    assert not set(resent) & stored                # nothing stored was asked again
    assert len(resent) == len(set(resent))         # and nothing twice
    assert set(sent_before) | set(resent) == set(range(160))


def test_ctrl_c_stops_a_ray_run_with_everything_finished_saved_and_the_same_command_resumes(ray_cluster, make_project,
                                                                                            server):
    server.latency_s = 0.2
    proj = make_project(rows=160, limits={"concurrency": 4})
    args = ["augment", str(proj.pipeline), "--quiet", "--engine", "ray", "--ray-address", ray_cluster,
            "--workers", "2"]
    proc = start_cli(*args, env=cli_env())
    try:
        wait_for(lambda: (proj.run_dir / "ray").exists() and len(_stored_prompts(proj.run_dir)) >= 16,
                 timeout=120, interval=0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Resume with:" in err
    stats = proj.stats()
    assert stats["interrupted"] is True and stats["written"] < 160
    done = run_cli(*args, timeout=240)
    assert done.returncode == 0, done.stderr
    proj.assert_accounted()
