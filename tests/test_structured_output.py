"""Structured output (``provider.structured_output``): response_format from the pipeline's schema, the
fallback when a server refuses it, and what it does to invalid-JSON rejects and re-asks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import SCHEMA, SENTINEL_KEY

from datafactory.errors import ConfigError
from datafactory.providers.openai_http import OpenAIHTTPProvider
from datafactory.providers.structured import StructuredOutput, formats_for, strict_schema
from datafactory.testing.capabilities import Capabilities, chatty_responder
from datafactory.testing.faults import default_responder
from datafactory.testing.loopback import LoopbackServer

pytestmark = pytest.mark.timeout(60)


def _formats(server: LoopbackServer) -> list[Any]:
    return [entry.body.get("response_format") for entry in server.log]


def test_auto_sends_a_strict_json_schema_built_from_the_pipeline_schema(make_project, server):
    server.capabilities = Capabilities(response_format="honour")
    proj = make_project(rows=6)
    assert proj.augment().written == 6
    sent = _formats(server)
    assert len(sent) == 6 and all(f == sent[0] for f in sent)
    fmt = sent[0]
    assert fmt["type"] == "json_schema"
    spec = fmt["json_schema"]
    assert spec["strict"] is True and spec["name"] == "GSM8K_rephrasing"
    schema = spec["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["question", "answer"]
    assert "minLength" not in schema["properties"]["question"]       # strict mode has no minLength ...
    assert "pattern" in schema["properties"]["answer"]                # ... but keeps pattern
    assert server.capabilities.honoured == 6
    assert proj.stats()["structured_output"] == {"sent": "json_schema (strict)", "refused_requests": 0,
                                                 "fallbacks": []}


@pytest.mark.parametrize("mode,status", [("refuse", 400), ("refuse_fastapi", 422)])
def test_a_server_refusing_response_format_costs_one_refused_request_per_step_not_one_per_row(
        make_project, server, mode, status):
    server.capabilities = Capabilities(response_format=mode)
    server.latency_s = 0.02
    proj = make_project(rows=40, limits={"concurrency": 8})
    stats = proj.augment()
    assert stats.written == 40
    assert server.capabilities.refused == 2           # json_schema once, json_object once
    assert server.statuses[status] == 2 and server.statuses[200] == 40
    block = proj.stats()["structured_output"]
    assert block["sent"] == "prompt_only" and block["refused_requests"] == 2
    assert [(f["from"], f["to"], f["status"]) for f in block["fallbacks"]] == [
        ("json_schema (strict)", "json_object", status), ("json_object", "prompt_only", status)]
    assert stats.failed_requests == 0 and not proj.rejects()


def test_a_server_that_knows_only_json_mode_steps_down_to_json_object_and_stays_there(make_project, server):
    server.capabilities = Capabilities(response_format="refuse_json_schema")
    proj = make_project(rows=10)
    assert proj.augment().written == 10
    assert server.capabilities.refused == 1
    assert _formats(server)[1:] == [{"type": "json_object"}] * 10
    assert proj.stats()["structured_output"]["sent"] == "json_object"


def test_requests_in_flight_when_the_refusal_arrives_step_down_once_not_each(server):
    """All 20 requests go out before any verdict (no probe wait): each is refused, but the run steps down
    one step per format, and every request ends with an answer."""
    server.capabilities = Capabilities(response_format="refuse")
    server.latency_s = 0.0

    async def main() -> dict[str, Any]:
        inner = OpenAIHTTPProvider(api_key=SENTINEL_KEY, base_url=server.base_url, timeout_s=10, concurrency=32)
        report: dict[str, Any] = {}
        so = StructuredOutput(inner, formats_for("auto", "openai", {"type": "object"}, "t"), report)
        so.probe_wait_s = 0.0
        msgs = [[{"role": "user", "content": f"[q{i}] hi"}] for i in range(20)]
        comps = await asyncio.gather(*(so.complete("m", m, {}) for m in msgs))
        await inner.aclose()
        assert all(c.choices for c in comps)
        return report

    report = asyncio.run(main())
    assert len(report["fallbacks"]) == 2 and report["sent"] == "prompt_only"
    assert server.statuses[200] == 20
    assert report["refused_requests"] == server.capabilities.refused <= 40


def test_zhipuai_gets_json_object(make_project, server):
    proj = make_project(rows=3, provider={"kind": "zhipuai", "model": "glm-4-flash",
                                          "base_url": server.zhipu_base_url})
    assert proj.augment().written == 3
    assert _formats(server) == [{"type": "json_object"}] * 3


def test_off_sends_no_response_format_and_the_pipelines_own_response_format_wins(make_project, server):
    proj = make_project(rows=3, provider={"structured_output": "off"})
    assert proj.augment().written == 3
    assert _formats(server) == [None] * 3
    assert proj.stats()["structured_output"]["sent"] == "off"
    server.reset_counters()
    proj = make_project(rows=3, provider={"params": {"response_format": {"type": "json_object"}}},
                        output={"dir": str(proj.root / "run2")})
    assert proj.augment().written == 3
    assert _formats(server) == [{"type": "json_object"}] * 3


def test_changing_structured_output_redoes_no_finished_row_and_sends_nothing(make_project, server):
    proj = make_project(rows=5)
    assert proj.augment().written == 5
    sent = server.requests
    proj.update(provider={"structured_output": "off"})
    stats = proj.augment()
    assert server.requests == sent and stats.requests_sent == 0 and stats.rows_skipped_done == 5


def test_an_unknown_structured_output_mode_is_a_config_error_with_a_suggestion(make_project):
    proj = make_project(rows=1, provider={"structured_output": "json_shema"})
    with pytest.raises(ConfigError, match="provider.structured_output.*did you mean 'json_schema'"):
        proj.augment()


def test_strict_mode_closes_objects_but_leaves_optional_properties_and_maps_unstrict():
    schema, strict = strict_schema(json.loads(SCHEMA.read_text()))
    assert strict and schema["additionalProperties"] is False and "$schema" not in schema
    nested = {"type": "object", "required": ["a"], "properties": {"a": {"type": "array", "items": {
        "type": "object", "required": ["b"], "properties": {"b": {"type": "string", "maxLength": 3}}}}}}
    sent, strict = strict_schema(nested)
    assert strict and sent["properties"]["a"]["items"]["additionalProperties"] is False
    assert "maxLength" not in sent["properties"]["a"]["items"]["properties"]["b"]
    assert nested["properties"]["a"]["items"].get("additionalProperties") is None  # the original is untouched
    optional = {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    assert strict_schema(optional) == (optional, False)
    mapping = {"type": "object", "required": [], "properties": {}, "additionalProperties": {"type": "integer"}}
    assert strict_schema(mapping) == (mapping, False)


# ---------------------------------------------------------------------- the measurement
def _run_chatty(make_project, server, mode: str, rows: int = 60) -> dict[str, Any]:
    server.capabilities = Capabilities(response_format=mode)
    server.responder = chatty_responder(default_responder, broken_rate=0.3)
    proj = make_project(rows=rows, limits={"concurrency": 8})
    proj.augment()
    stats = proj.stats()
    return {"reasks": stats["reasks"], "invalid_json": stats["rejected"].get("invalid_json", 0),
            "written": stats["written"]}


def test_honoured_structured_output_removes_invalid_json_rejects_and_reasks(make_project, server):
    honoured = _run_chatty(make_project, server, "honour")
    assert honoured == {"reasks": 0, "invalid_json": 0, "written": 60}


def test_without_structured_output_a_chatty_model_costs_reasks_and_rejects(make_project, server):
    ignored = _run_chatty(make_project, server, "ignore")
    assert ignored["reasks"] >= 8                    # ~30 % of 60 rows broken at the first try
    assert ignored["written"] + ignored["invalid_json"] == 60
