"""The money limit: ``limits.max_cost_usd`` / ``--max-cost`` stops the run before the spend (priced from
the usage the server reported) could pass it, says so, exits 4, and a rerun with a higher budget
continues without paying twice. ``--dry-run`` shows the budget against the estimate."""

from __future__ import annotations

import pytest
from conftest import assert_no_traceback, run_cli

from datafactory.errors import BudgetExhausted

pytestmark = pytest.mark.timeout(90)

# $1 per 1k tokens: one loopback request costs ≈ $0.1, its worst case (max_tokens 256) ≈ $0.33
PRICING = {"input_per_1m": 1000.0, "output_per_1m": 1000.0}


def test_budget_stops_the_run_before_the_spend_passes_it_and_a_higher_budget_resumes(make_project, server):
    proj = make_project(rows=30, pricing=PRICING, limits={"concurrency": 4})
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--max-cost", "2")
    assert res.returncode == 4, res.stderr[-2000:]
    assert_no_traceback(res.stderr)
    assert "budget reached" in res.stderr and "--max-cost" in res.stderr
    resume = next(line for line in res.stderr.splitlines() if line.startswith("Resume with a higher budget:"))
    assert "--max-cost 4" in resume
    stats = proj.stats()
    assert stats["stopped"] == "BudgetExhausted"
    assert 0 < stats["spent_usd"] <= 2.0
    assert stats["spent_usd"] == pytest.approx(stats["estimated_cost_usd"])
    done = proj.data()
    assert 0 < len(done) < 30
    spent = stats["spent_usd"]
    # the same budget again: the spend of the first run counts (it is in the cache), so at most what
    # still fits is sent and the total stays within the budget
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--max-cost", "2")
    assert res.returncode == 4
    assert server.requests - len(done) <= (2.0 - spent) / 0.1
    assert spent <= proj.stats()["spent_usd"] <= 2.0
    # a higher budget finishes the job, asking only what was not answered yet
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--max-cost", "100")
    assert res.returncode == 0, res.stderr[-2000:]
    assert server.requests == 30
    proj.assert_accounted()
    assert proj.stats()["spent_usd"] > 2.0


def test_budget_from_the_pipeline_yaml_counts_requests_in_flight(make_project, server):
    server.latency_s = 0.2  # many requests in flight at once
    proj = make_project(rows=60, pricing=PRICING, limits={"concurrency": 16, "max_cost_usd": 1.5})
    with pytest.raises(BudgetExhausted) as info:
        proj.augment()
    stats = info.value.stats
    assert stats.spent_usd <= 1.5
    assert server.requests <= 1.5 / 0.1


def test_budget_without_a_price_for_the_model_is_refused_before_any_request(make_project, server):
    proj = make_project(rows=5, provider={"model": "my-local-model"})
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--max-cost", "1")
    assert res.returncode == 1
    assert "needs a price for model 'my-local-model'" in res.stderr
    assert server.requests == 0


def test_dry_run_shows_the_budget_against_the_estimate(make_project, server):
    proj = make_project(rows=30, pricing=PRICING)
    res = run_cli("augment", str(proj.pipeline), "--dry-run", "--max-cost", "2")
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("budget: $2.0000"))
    assert "over it" in line and "of 30 rows" in line
    res = run_cli("augment", str(proj.pipeline), "--dry-run", "--max-cost", "1000")
    assert "the estimate fits" in res.stdout
    assert server.requests == 0
