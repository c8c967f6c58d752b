"""What a newcomer sees after a run: rows done by earlier runs, "nothing to do" on a finished rerun,
and the top reject reasons with one example message each; every exit code in --help."""

from __future__ import annotations

from conftest import run_cli

from datafactory.testing.loopback import Fault


def test_full_run_after_a_limited_one_shows_the_rows_done_earlier_and_a_finished_rerun_says_nothing_to_do(
        make_project, server):
    proj = make_project(rows=12)
    res = run_cli("augment", str(proj.pipeline), "--quiet", "--limit", "5")
    assert res.returncode == 0, res.stderr
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "written: 7  rejected: 0" in res.stdout
    assert "done earlier: 5 rows" in res.stdout and "the run dir now holds 12 written, 0 rejected" in res.stdout
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "nothing to do: all 12 input rows were done by earlier runs (12 written, 0 rejected" in res.stdout
    assert "written: 0" not in res.stdout


def test_summary_lists_the_top_reject_reasons_with_an_example_message(make_project, server):
    proj = make_project(rows=10, quality={"reask": 0})

    def fn(index, body):
        qid = int(body["messages"][-1]["content"][2:7])
        if qid in (1, 2, 3):
            return Fault(kind="content", content="no JSON, sorry")
        if qid == 7:
            return Fault(status=400, message="context length exceeded: 9000 tokens")
        return None

    server.set_fault_fn(fn)
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    top = lines[lines.index("top reject reasons:") + 1:]
    assert top[0].startswith("  invalid_json ×3  e.g. ")
    assert top[1] == "  http_400 ×1  e.g. HTTP 400: context length exceeded: 9000 tokens"


def test_help_documents_every_exit_code():
    res = run_cli("--help")
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130", "143"):
        assert f"\n  {code}" in res.stdout
    assert "--max-cost" in run_cli("augment", "--help").stdout
