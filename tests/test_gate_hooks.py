"""The flow's generic gate hooks: a gate with ``check_source`` decides on the mapped input fields before
any request (stage ``input``); a gate with ``acheck`` decides on the survivors of the batch gates and
may ask the model through the run's requester (cached, counted). The gates here are defined for the test
only; the pipeline gets them as one more step config next to those from the YAML."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from datafactory import augment
from datafactory.config.pipeline import load_pipeline
from datafactory.quality.gate import Reject
from datafactory.record import Record


def _qid(text: str) -> int:
    return int(re.search(r"\[q(\d+)\]", text).group(1))


class BannedInputs:
    """Rejects input rows whose qid is banned, looking only at the mapped input fields."""

    name = "banned_inputs"

    def __init__(self, banned: set[str]) -> None:
        self.banned = banned

    def check_source(self, source: dict[str, Any]) -> Reject | None:
        if source["qid"] in self.banned:
            return Reject("contaminated", f"{source['qid']} is an eval item")
        return None


class Judge:
    """Asks the model whether a record is an eval item; a reply containing JUDGED-YES rejects it."""

    name = "judge"
    fields = ("question",)

    def check(self, record: Record) -> Reject | None:  # the batch path: nothing to say
        return None

    async def acheck(self, record: Record, ask: Any) -> Reject | None:
        answer = await ask([{"role": "user", "content": f"JUDGE [{record.fields['qid']}] {record.fields['question']}"}],
                           {"max_tokens": 8})
        if "JUDGED-YES" in answer.completion.choices[0].text:
            return Reject("contaminated", "the judge says it is an eval item")
        return None


@dataclass(frozen=True)
class GateStep:
    gate: Any

    def build(self, ctx: Any) -> Any:
        return self.gate


def _with_gate(proj, gate: Any):
    pipe = load_pipeline(proj.pipeline)
    quality = dataclasses.replace(pipe.quality, steps={**pipe.quality.steps, gate.name: GateStep(gate)})
    return dataclasses.replace(pipe, quality=quality)


def test_a_source_gate_rejects_input_rows_before_any_request_is_sent(make_project, server):
    proj = make_project(rows=6)
    stats = augment(_with_gate(proj, BannedInputs({"q00002", "q00004"})))
    assert server.requests == 4
    assert stats.written == 4 and dict(stats.rejected) == {"contaminated": 2}
    rejects = proj.rejects()
    assert {r["stage"] for r in rejects} == {"input"}
    assert sorted(r["id"] for r in rejects) == sorted(proj.expected_keys()[i] for i in (2, 4))
    assert "q00002 is an eval item" in " ".join(r["last_error"] for r in rejects)
    proj.assert_accounted()


def test_an_async_gate_asks_through_the_runs_requester_for_the_batch_gates_survivors(make_project, server):
    def responder(body: dict[str, Any], k: int) -> str:
        user = body["messages"][-1]["content"]
        if user.startswith("JUDGE"):
            return "JUDGED-YES" if _qid(user) == 3 else "JUDGED-NO"
        i = _qid(user)
        return json.dumps({"question": "Short question?" if i == 1 else f"Rephrased problem {i}, how many now?",
                           "answer": f"Add.\n#### {i + 3}"})

    server.responder = responder
    proj = make_project(rows=5, quality={"reask": 0, "length": {"fields": ["question"], "min_chars": 25}})
    stats = augment(_with_gate(proj, Judge()))
    judged = [e for e in server.log if e.body["messages"][-1]["content"].startswith("JUDGE")]
    assert len(judged) == 4                      # row 1 was rejected by the length gate first
    assert stats.requests_sent == 9              # the judge's requests count like every request
    assert dict(stats.rejected) == {"too_short": 1, "contaminated": 1}
    assert proj.rejects_by_reason()["contaminated"][0]["stage"] == "gate"
    proj.assert_accounted()
    db = sqlite3.connect(proj.run_dir / "cache.sqlite")  # forget the outcomes, keep the stored responses
    with db:
        db.execute("DELETE FROM outcomes")
    db.close()
    server.log.clear()
    again = augment(_with_gate(proj, Judge()))
    assert server.log == [] and dict(again.rejected) == {"too_short": 1, "contaminated": 1}
