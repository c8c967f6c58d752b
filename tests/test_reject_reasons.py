"""Reject reasons: every code the engine can write is classed, and a rerun asks setup rejects again.

The guard test reads the code base (AST, no imports of private names): a new ``Reject("...")``, a
``ValidationFailed(reason=...)`` or a ``reject(row, stage, "...")`` call with a code missing from
``engine/reasons.py`` fails here, so a rerun can never silently treat it as final or as retryable.
"""

from __future__ import annotations

import ast
import contextlib
from pathlib import Path

import pytest
from conftest import qid_of

from datafactory.engine.reasons import REASONS
from datafactory.errors import DatafactoryError
from datafactory.testing.loopback import Fault

pytestmark = pytest.mark.timeout(60)

PACKAGE = Path(__file__).resolve().parents[1] / "datafactory"


def _strings(node: ast.AST) -> tuple[set[str], list[ast.JoinedStr]]:
    """String constants and f-strings an expression can evaluate to (through if/else and or)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}, []
    if isinstance(node, ast.JoinedStr):
        return set(), [node]
    if isinstance(node, ast.IfExp):
        a, fa = _strings(node.body)
        b, fb = _strings(node.orelse)
        return a | b, fa + fb
    if isinstance(node, ast.BoolOp):
        out: set[str] = set()
        fs: list[ast.JoinedStr] = []
        for v in node.values:
            s, f = _strings(v)
            out |= s
            fs += f
        return out, fs
    return set(), []


def produced_reasons() -> tuple[dict[str, str], list[str]]:
    """``{code: where}`` for every literal reject reason in the package, plus f-string prefixes."""
    codes: dict[str, str] = {}
    dynamic: list[str] = []

    def add(expr: ast.AST, where: str) -> None:
        found, fstrings = _strings(expr)
        for code in found:
            codes.setdefault(code, where)
        for f in fstrings:
            head = f.values[0]
            dynamic.append(head.value if isinstance(head, ast.Constant) else f"<dynamic at {where}>")

    for path in sorted(PACKAGE.rglob("*.py")):
        if "testing" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if name == "Reject" and node.args:
                    add(node.args[0], where)
                elif name in ("reject", "rejected") and len(node.args) >= 3:
                    add(node.args[2], where)
                for kw in node.keywords:
                    if kw.arg == "reason" and name in ("ValidationFailed", "reject"):
                        add(kw.value, where)
            # the request and pair steps pick a reject's code into a local ``reason`` first
            elif isinstance(node, ast.Assign) and path.parent.name in ("engine", "steps") and any(
                    isinstance(t, ast.Name) and t.id == "reason" for t in node.targets):
                add(node.value, where)
    return codes, dynamic


def test_every_reject_reason_the_code_base_produces_is_classed():
    codes, dynamic = produced_reasons()
    # the scan must really see the codes (a vacuous scan would pass anything)
    assert {"bad_input", "missing_field", "rate_limited", "invalid_json", "schema_invalid", "bad_turns",
            "too_short", "duplicate", "answer_mismatch", "no_wrong_sample", "truncated"} <= set(codes)
    unclassed = {code: where for code, where in codes.items() if code not in REASONS}
    assert not unclassed, f"reject reasons missing from engine/reasons.py: {unclassed}"
    # the only computed codes are http_<status>, which kind_of classes by status
    assert dynamic and set(dynamic) == {"http_"}, dynamic


@pytest.mark.parametrize("status", [404, 400, 403, 422])
def test_rows_rejected_for_a_setup_status_are_asked_again_once_the_setup_is_fixed(make_project, server, status):
    proj = make_project(rows=4)
    server.set_fault_fn(lambda i, body: Fault(status=status))
    with contextlib.suppress(DatafactoryError):   # a run-level stop is fine; what matters is the rerun
        proj.augment()
    assert {r["reason"] for r in proj.rejects()} == {f"http_{status}"} and len(proj.rejects()) == 4
    assert proj.data() == []

    server.set_fault_fn(None)      # the user fixed the model name / URL / parameter
    server.reset_counters()
    stats = proj.augment()
    assert server.requests == 4
    assert stats.written == 4 and proj.rejects() == []
    assert len(proj.data()) == 4
    proj.assert_accounted()


def test_content_rejects_stay_while_setup_rejects_of_the_same_run_are_asked_again(make_project, server):
    proj = make_project(rows=4, quality={"reask": 0})

    def faults(i, body):
        qid = qid_of(body)
        if qid == "q00000":
            return Fault(kind="content", content="no JSON here")
        return Fault(status=404) if qid == "q00001" else None

    server.set_fault_fn(faults)
    proj.augment()
    assert sorted(r["reason"] for r in proj.rejects()) == ["http_404", "invalid_json"]
    server.set_fault_fn(lambda i, body: Fault(kind="content", content="no JSON here")
                        if qid_of(body) == "q00000" else None)
    server.reset_counters()
    proj.augment()
    assert [qid_of(e.body) for e in server.log] == ["q00001"]
    assert [r["reason"] for r in proj.rejects()] == ["invalid_json"]
    assert len(proj.data()) == 3
    proj.assert_accounted()
