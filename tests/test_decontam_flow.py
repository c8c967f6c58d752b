"""Decontamination in a run (issue 14): inputs checked before any request, the LLM judge asked through
the run's requester (cached and counted), and the config keys checked up front."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import SENTINEL_KEY, run_cli

from datafactory import load_pipeline
from datafactory.engine.cache import Cache
from datafactory.engine.plan import plan
from datafactory.engine.ratelimit import Limits
from datafactory.engine.requester import Requester, expected_completion_tokens
from datafactory.engine.stats import Stats
from datafactory.errors import ConfigError
from datafactory.providers.registry import create_provider
from datafactory.quality.decontam import builtin_eval_set
from datafactory.quality.decontam_gate import DecontamGate
from datafactory.record import Record
from datafactory.testing.faults import default_responder

# close to a test item in story and wording ("A train has 172 people traveling on it. At the first stop
# 47 people get off ..."), but scoring below the lexical threshold: the judge's case
BORDERLINE = ("A train leaves the station with 120 passengers. At the first stop 35 get off and 18 get on. "
              "How many passengers are on the train now?")
NEAREST = "A train has 172 people traveling on it."


def test_the_borderline_example_is_kept_by_the_lexical_methods_and_in_the_judges_band():
    gate = DecontamGate(fields="question", judge=True)
    assert gate.check(Record(id="r", source={}, fields={"question": BORDERLINE})) is None
    (item, score), *_ = gate.candidates(BORDERLINE)
    assert gate.judge_above <= score < gate.threshold and gate.texts[item].startswith(NEAREST)


def gsm8k_question(index: int) -> str:
    return str(json.loads(builtin_eval_set("gsm8k").read_text(encoding="utf-8").splitlines()[index])["question"])


def test_a_test_question_given_as_input_costs_no_request_and_is_rejected_naming_the_item(make_project, server):
    rows = [{"qid": "q0", "question": "Sam has 4 apples and buys 3 more. How many apples does Sam have now?",
             "answer": "#### 7"},
            {"qid": "q1", "question": gsm8k_question(222), "answer": "#### 140"},
            {"qid": "q2", "question": "Tom buys 4 pencils for $3 each and pays with a $20 bill. What is his change?",
             "answer": "#### 8"}]
    proj = make_project(rows, quality={"decontaminate": {"fields": ["question"], "inputs": ["question"]}})
    stats = proj.augment()
    assert server.requests == 2
    assert all(gsm8k_question(222)[:30] not in json.dumps(e.body) for e in server.log)
    (rejected,) = proj.rejects()
    assert (rejected["stage"], rejected["reason"]) == ("input", "contaminated")
    assert "gsm8k-test:222 ngram13 1.00" in rejected["last_error"]
    assert stats.rejected["contaminated"] == 1 and stats.written == 2
    proj.assert_accounted()


def test_dry_run_counts_a_test_question_given_as_input_as_unusable_and_prices_only_the_rest(make_project, server):
    clean = "Sam has 4 apples and buys 3 more. How many apples does Sam have now?"
    rows = [{"qid": "q0", "question": clean, "answer": "#### 7"},
            {"qid": "q1", "question": gsm8k_question(222), "answer": "#### 140"}]
    proj = make_project(rows, quality={"decontaminate": {"fields": ["question"], "inputs": ["question"]}})
    dry = plan(proj.pipeline)
    assert (dry.rows, dry.requests, dry.bad_rows, dry.unusable) == (1, 1, 1, {"contaminated": 1})
    assert "gsm8k-test:222 ngram13 1.00" in dry.unusable_examples["contaminated"]
    assert ":2:" in dry.unusable_examples["contaminated"]  # file:line of the row
    res = run_cli("augment", str(proj.pipeline), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "rows: 1 (+1 unusable)" in res.stdout and "unusable, contaminated: 1 rows" in res.stdout
    assert server.requests == 0
    alone = make_project(rows[:1], quality={"decontaminate": {"fields": ["question"], "inputs": ["question"]}})
    assert plan(alone.pipeline).prompt_tokens == dry.prompt_tokens  # the rejected row is not priced


def test_unmapped_input_variable_or_unknown_method_is_a_config_error_naming_the_key(make_project):
    proj = make_project(2, quality={"decontaminate": {"fields": ["question"], "inputs": ["questoin"]}})
    with pytest.raises(ConfigError, match=r"quality\.decontaminate\.inputs\[0\].*'questoin' is not a mapped input"):
        load_pipeline(proj.pipeline)
    proj.update(quality={"decontaminate": {"fields": ["question"], "methods": ["ngram", "embeddings"]}})
    with pytest.raises(ConfigError, match=r"quality\.decontaminate\.methods"):
        load_pipeline(proj.pipeline)


def judge_responder(body: dict[str, Any], k: int) -> str:
    user = next((m["content"] for m in body["messages"] if m["role"] == "user"), "")
    if "Test item:" not in user:
        return default_responder(body, k)
    item = user.split("Test item:", 1)[1]
    return "Yes." if NEAREST in item else "No"


def requester_for(proj: Any, run: Path) -> tuple[Requester, Stats, Cache]:
    pipe = load_pipeline(proj.pipeline)
    provider = create_provider(pipe.provider, api_key=SENTINEL_KEY, timeout_s=10, concurrency=2)
    cache, stats = Cache(run / "cache.sqlite"), Stats()
    limits = Limits(None, None, max_completion=expected_completion_tokens(pipe))
    return Requester(pipe, provider, cache, limits, stats), stats, cache


def test_judge_asks_the_runs_provider_about_a_borderline_record_once_and_caches_it(make_project, server, tmp_path):
    server.responder = judge_responder
    proj = make_project(1)
    gate = DecontamGate(fields="question", judge=True, judge_top_k=2)
    record = Record(id="r", source={}, fields={"question": BORDERLINE})
    assert gate.check(record) is None  # below the lexical threshold

    async def judged() -> tuple[Any, Stats]:
        requester, stats, cache = requester_for(proj, tmp_path)
        try:
            return await gate.acheck(record, requester.ask), stats
        finally:
            await requester.provider.aclose()
            cache.close()

    verdict, stats = asyncio.run(judged())
    assert verdict is not None and verdict.reason == "contaminated"
    item, method = verdict.detail.split(" ")[:2]
    assert method == "llm_judge" and gate.texts[gate.ids.index(item)].startswith(NEAREST)
    assert server.requests == 1 and stats.requests_sent == 1 and stats.completion_tokens > 0  # the nearest: a yes
    assert "Test item:" in server.user_messages()[0] and BORDERLINE in server.user_messages()[0]
    verdict_again, stats_again = asyncio.run(judged())  # a rerun: the judge's request is a cache hit
    assert verdict_again == verdict and server.requests == 1
    assert stats_again.cache_hits == 1 and stats_again.requests_sent == 0
    assert gate.counters()["judge"] == {"asked": 2, "cached": 1, "same": 2}
    assert gate.counters()["eval_sets"]["gsm8k-test"]["output_llm_judge"] == 2


def test_judge_off_never_asks(make_project, server, tmp_path):
    proj = make_project(1)
    gate = DecontamGate(fields="question")

    async def judged() -> Any:
        requester, _, cache = requester_for(proj, tmp_path)
        try:
            return await gate.acheck(Record(id="r", source={}, fields={"question": BORDERLINE}), requester.ask)
        finally:
            await requester.provider.aclose()
            cache.close()

    assert asyncio.run(judged()) is None and server.requests == 0


def test_judge_in_a_run_is_one_more_request_counted_in_stats_and_cost_and_none_on_rerun(make_project, server):
    def responder(body: dict[str, Any], k: int) -> str:
        if "Test item:" in json.dumps(body):
            return judge_responder(body, k)
        return json.dumps({"question": BORDERLINE, "answer": "120 - 35 + 18 = 103\n#### 103"})

    server.responder = responder
    proj = make_project(1)
    stats = proj.augment()
    assert stats.written == 1 and server.requests == 1 and stats.cost_usd is not None  # judge off by default
    cost_without = stats.cost_usd
    proj.update(quality={"decontaminate": {"fields": ["question"], "judge": True}},
                output={"dir": str(proj.root / "run2")})
    stats = proj.augment()
    assert server.requests == 1 + 2  # the rephrase again (new run dir) and one judge question
    assert stats.requests_sent == 2 and stats.cost_usd is not None and stats.cost_usd > cost_without
    (rejected,) = proj.rejects()
    assert rejected["reason"] == "contaminated" and " llm_judge " in rejected["last_error"]
    assert rejected["last_error"].startswith("gsm8k-test:")
    again = proj.augment()
    assert server.requests == 3 and again.requests_sent == 0  # judge answers come from the cache too


def test_stats_json_counts_contaminated_rows_per_eval_set(make_project, server):
    rows = [{"qid": "q0", "question": "Sam has 4 apples and buys 3 more. How many apples does Sam have now?",
             "answer": "#### 7"},
            {"qid": "q1", "question": gsm8k_question(222), "answer": "#### 140"}]
    proj = make_project(rows, quality={"decontaminate": {"fields": ["question"], "inputs": ["question"]}})
    proj.augment()
    block = proj.stats()["decontamination"]
    assert block["eval_sets"]["gsm8k-test"] == {"items": 1319, "rejected": 1, "input_ngram": 1}
    assert block["inputs"] == ["question"]
