"""The Ray engine at scale (one local 2-CPU Ray for the module): global dedup by a Ray shuffle of the
workers' keys keeps what the driver's input-order pass keeps, the input goes to Ray in blocks without the
driver holding it, the cost limit holds for all workers together, batch mode is refused up front, and
stats.json adds up every worker's counters in the asyncio engine's shape."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
from test_ray_engine import ray_cluster  # noqa: F401 — the module's local Ray

from datafactory.errors import BudgetExhausted, ConfigError

WORDS = [f"{chr(97 + i)}word{chr(122 - i)}" for i in range(26)]


def _qid(body: dict[str, Any]) -> int:
    return int(re.search(r"\[q(\d+)\]", body["messages"][-1]["content"]).group(1))


def _chains(body: dict[str, Any], k: int) -> str:
    """Twelve families of answers; member m of a family has its first m words changed, so neighbours are
    near copies of each other but the ends of a family are not (chains the greedy pass must cut as the
    driver does); questions repeat every 30 rows (exact copies)."""
    q = _qid(body)
    family, member = q % 12, (q // 12) % 10
    words = [WORDS[(family + i) % 26] for i in range(24)]
    words[:member] = [f"changed{family}x{i}" for i in range(member)]
    return json.dumps({"question": f"Problem {q % 30}: how many apples are left in the basket?",
                       "answer": " ".join(words) + f"\n#### {family}"})


def test_the_shuffle_dedup_keeps_exactly_what_the_driver_dedup_keeps(ray_cluster, make_project, server):  # noqa: F811
    server.responder = _chains
    proj = make_project(rows=120, limits={"concurrency": 8},
                        quality={"reask": 0, "exact_dedup": {"fields": ["question"]},
                                 "near_dedup": {"fields": ["answer"], "threshold": 0.7}})
    proj.augment(engine="ray", workers=2, ray_dedup="driver")
    on_driver = (proj.data(), sorted((r["id"], r["reason"], r["last_error"]) for r in proj.rejects()))
    assert proj.stats()["ray"]["dedup"] == "driver"
    proj.update(output={"dir": str(proj.run_dir.parent / "shuffle_run")})
    proj.augment(engine="ray", workers=2, ray_dedup="shuffle")
    proj.assert_accounted()
    on_shuffle = (proj.data(), sorted((r["id"], r["reason"], r["last_error"]) for r in proj.rejects()))
    assert proj.stats()["ray"]["dedup"] == "shuffle" and proj.stats()["ray"]["shuffle_parts"] >= 2
    assert on_shuffle == on_driver                      # the same rows kept, the same rejects naming the same rows
    reasons = [r for _, r, _ in on_shuffle[1]]
    assert reasons.count("duplicate") == 90 and 0 < reasons.count("near_duplicate") < 30


def test_the_shuffle_dedup_rejects_output_repeating_the_input_and_rows_written_by_an_earlier_run(
        ray_cluster, make_project, server):  # noqa: F811
    def responder(body: dict[str, Any], k: int) -> str:
        q = _qid(body)  # 0-4 new; 5-9 repeat their input question; 10-14 repeat rows 0-4; 15-19 new
        text = (f"Sam has {q} apples and buys 3 more. How many apples does Sam have now?" if 5 <= q < 10 else
                f"A brand new question number {q - 10 if 10 <= q < 15 else q} about pears?")
        return json.dumps({"question": text, "answer": "#### 1"})

    server.responder = responder
    proj = make_project(rows=20, quality={"reask": 0, "exact_dedup": {"fields": ["question"],
                                                                    "against_input": ["question"]}})
    proj.augment(limit=5)                               # rows 0-4 written by an asyncio run
    proj.augment(engine="ray", workers=2, ray_dedup="shuffle")
    proj.assert_accounted()
    assert proj.stats()["ray"]["dedup"] == "shuffle"
    assert sorted(r["qid"] for r in proj.data()) == [f"q{i:05d}" for i in (*range(5), *range(15, 20))]
    dups = proj.rejects()
    assert sorted(r["reason"] for r in dups) == ["duplicate"] * 10
    assert all("same normalised text as input:" in r["last_error"] for r in dups)   # the seeded memory


def test_the_greedy_pass_over_near_candidates_cuts_chains_in_input_order_as_the_driver_does():
    from datafactory.engine.ray.shuffle import near_verdicts

    # 1 ~ 2 (key 10), 2 ~ 3 (key 20), 1 !~ 3: 2 goes, 3 stays (a union-find would drop 3 too);
    # 4 ~ seed -7 (key 30) goes; 5 ~ 4 (key 40) stays: 4 was not kept
    ords = np.array([2, 1, 2, 3, 4, -7, 4, 5])
    keys = np.array([10, 10, 20, 20, 30, 30, 40, 40], np.uint64)
    assert near_verdicts(ords, keys, np.array([], np.int64)) == {2: 1, 4: -7}
    # an exact duplicate takes no part: 2 dropped first, so nothing is near
    assert near_verdicts(ords, keys, np.array([2, 4])) == {}


def test_an_unknown_ray_dedup_is_refused_before_anything_runs(make_project):
    proj = make_project(rows=3)
    with pytest.raises(ConfigError, match="ray dedup"):
        proj.augment(engine="ray", ray_dedup="spark")
    assert not (proj.run_dir / "stats.json").exists()


# $1 per 1k tokens: one loopback request costs ≈ $0.1, its worst case (max_tokens 256) ≈ $0.33
PRICING = {"input_per_1m": 1000.0, "output_per_1m": 1000.0}


def test_the_cost_limit_holds_for_all_workers_together_and_a_higher_one_finishes(ray_cluster, make_project,  # noqa: F811
                                                                                server):
    server.latency_s = 0.2                              # many requests in flight on both workers at once
    proj = make_project(rows=60, pricing=PRICING, limits={"concurrency": 16})
    with pytest.raises(BudgetExhausted) as info:
        proj.augment(engine="ray", workers=2, max_cost=1.5)
    assert info.value.stats.spent_usd <= 1.5 and proj.stats()["stopped"] == "BudgetExhausted"
    assert 0 < server.requests <= 15                    # a budget per worker would let ~30 through
    assert proj.stats()["ray"]["limiter"]["refused_by_budget"] >= 1
    sent = server.requests
    stats = proj.augment(engine="ray", workers=2, max_cost=100)
    proj.assert_accounted()
    assert server.requests == 60 and stats.requests_sent == 60 - sent   # nothing paid for twice
    assert stats.spent_usd == pytest.approx(proj.stats()["estimated_cost_usd"], rel=0.01) or stats.spent_usd > 5


def test_batch_mode_on_ray_is_refused_up_front_and_says_to_use_the_asyncio_engine(make_project, server):
    proj = make_project(rows=3, provider={"mode": "batch"})
    with pytest.raises(ConfigError) as info:
        proj.augment(engine="ray")
    assert "asyncio engine" in str(info.value) and "provider.mode" in str(info.value)
    assert str(proj.pipeline) in str(info.value)        # names the file
    assert server.requests == 0 and not (proj.run_dir / "stats.json").exists()


def test_the_input_goes_to_ray_in_blocks_without_the_driver_holding_it(ray_cluster, make_project, server):  # noqa: F811
    import tracemalloc

    pad = "x" * 32_000                                  # 1500 rows × 32 KB: 48 MB of input
    rows = [{"qid": f"q{i:05d}", "question": f"Sam has {i} apples. How many now?", "answer": "#### 7",
             "notes": pad} for i in range(1500)]
    proj = make_project(rows, output={"columns": {"question": "question", "answer": "answer"}})
    proj.augment(engine="ray", workers=2, limit=4)      # imports and Ray Data's first-use state, not traced
    tracemalloc.start()
    try:
        proj.augment(engine="ray", workers=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    proj.assert_accounted()
    # holding the input would take 48 MB and more; the in-process loopback server's request log and Ray's
    # own driver state are most of what is traced
    assert peak < 20_000_000, peak
    ray_block = proj.stats()["ray"]
    assert ray_block["blocks"] >= 8 and ray_block["rows_per_block"] <= 256


def test_stats_json_of_a_ray_run_adds_up_every_workers_counters_in_the_asyncio_engines_shape(
        ray_cluster, make_project, server):  # noqa: F811
    from datafactory.testing.loopback import Fault

    proj = make_project(rows=24, pricing=PRICING, limits={"concurrency": 4})
    server.enqueue(Fault(status=429, headers={"Retry-After": "0.2"}, delay_s=0.0))
    server.enqueue(Fault(status=500, delay_s=0.0))
    proj.augment(engine="ray", workers=2)
    on_ray = proj.stats()
    proj.update(output={"dir": str(proj.run_dir.parent / "asyncio_run")})
    server.enqueue(Fault(status=429, headers={"Retry-After": "0.2"}, delay_s=0.0))
    server.enqueue(Fault(status=500, delay_s=0.0))
    proj.augment()
    on_asyncio = proj.stats()
    assert on_ray["engine"] == "ray" and on_ray["workers"] == 2 and on_ray["ray"]["workers_seen"] == 2
    missing = set(on_asyncio) - set(on_ray) - {"runtime"}  # runtime: the asyncio engine's own event loop
    assert not missing, missing
    for key in ("requests_sent", "retries", "rate_limited_429", "tokens", "written", "rejected"):
        assert on_ray[key] == on_asyncio[key], key
    assert on_ray["rate_limited_429"] == 1 and on_ray["retries"] == 2 and on_ray["requests_sent"] == 26
    assert on_ray["estimated_cost_usd"] > 0
    assert on_ray["estimated_cost_usd"] == pytest.approx(on_asyncio["estimated_cost_usd"])
    assert set(on_ray["steps"]) >= set(on_asyncio["steps"]) - {"ordered_gates"}
    for name in ("request", "parse"):
        assert on_ray["steps"][name]["in"] == on_asyncio["steps"][name]["in"] and on_ray["steps"][name]["seconds"] > 0
    assert on_ray["structured_output"] == on_asyncio["structured_output"]


def test_auto_dedup_stays_on_the_driver_on_one_machine_and_the_shuffle_takes_only_exact_then_near(
        ray_cluster):  # noqa: F811
    from datafactory.engine.ray.driver import dedup_mode
    from datafactory.engine.ray.keys import plan_for
    from datafactory.quality.dedup import ExactDedup, NearDedup

    plan = plan_for([ExactDedup(["question"]), NearDedup(["answer"])])
    assert plan is not None and dedup_mode("auto", plan, 10**8) == "driver"      # one node: measured faster
    assert dedup_mode("shuffle", plan, 10) == "shuffle"
    assert plan_for([NearDedup(["answer"]), ExactDedup(["question"])]) is None   # near first: only the driver
    assert dedup_mode("shuffle", None, 10) == "driver"
