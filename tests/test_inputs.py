"""Malformed and unusual inputs: every row is written or rejected with a reason that names
file:line, bad files fail with a clear message, and nothing prints a traceback."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import assert_no_traceback, make_rows, run_cli

pytestmark = pytest.mark.timeout(60)


def _run(proj, *extra):
    res = run_cli("augment", str(proj.pipeline), "--quiet", *extra)
    assert_no_traceback(res.stderr)
    return res


def test_non_utf8_and_non_json_lines_are_rejected_as_bad_input_naming_file_and_line(make_project, server):
    rows = make_rows(4)
    proj = make_project(rows=rows)
    lines = [json.dumps(r).encode() for r in rows]
    lines.insert(1, b'{"qid": "q9", "question": "caf\xe9 \xff\xfe", "answer": "#### 1"}')  # latin-1 bytes
    lines.insert(3, b"this is not json")
    lines.insert(4, b"[1, 2, 3]")
    proj.input.write_bytes(b"\n".join(lines) + b"\n")
    res = _run(proj)
    assert res.returncode == 0, res.stderr
    assert server.requests == 4
    bad = proj.rejects_by_reason()["bad_input"]
    assert sorted(r["last_error"].split(": ", 1)[0] for r in bad) == [
        f"{proj.input}:2", f"{proj.input}:4", f"{proj.input}:5"]
    by_line = {r["last_error"].split(": ", 1)[0]: r for r in bad}
    assert "not valid JSON" in by_line[f"{proj.input}:4"]["last_error"]
    assert by_line[f"{proj.input}:4"]["raw_output"] == "this is not json"
    assert "expected a JSON object, got list" in by_line[f"{proj.input}:5"]["last_error"]
    assert "caf" in by_line[f"{proj.input}:2"]["raw_output"]
    assert all(r["stage"] == "input" for r in bad)
    assert len(proj.data()) == 4
    proj.assert_accounted(extra_reject_ids=3)


def test_row_missing_a_mapped_field_is_rejected_as_missing_field(make_project, server):
    rows = make_rows(3)
    del rows[1]["answer"]
    rows[2]["question"] = ""
    proj = make_project(rows=rows)
    res = _run(proj)
    assert res.returncode == 0, res.stderr
    assert server.requests == 1
    missing = proj.rejects_by_reason()["missing_field"]
    assert len(missing) == 2
    errors = sorted(r["last_error"] for r in missing)
    assert errors[0].startswith(f"{proj.input}:2: input column 'answer'")
    assert errors[1].startswith(f"{proj.input}:3: input column 'question'")
    proj.assert_accounted()


def test_duplicate_input_rows_are_sent_once_and_the_copies_rejected(make_project, server):
    rows = make_rows(3)
    rows = [rows[0], rows[1], rows[0], rows[2], rows[0]]
    proj = make_project(rows=rows)
    res = _run(proj)
    assert res.returncode == 0, res.stderr
    assert server.requests == 3
    dups = proj.rejects_by_reason()["duplicate_input"]
    assert len(dups) == 2
    assert {r["last_error"].split(": ", 1)[0] for r in dups} == {f"{proj.input}:3", f"{proj.input}:5"}
    assert [r["qid"] for r in proj.data()] == ["q00000", "q00001", "q00002"]
    proj.assert_accounted()
    # a rerun keeps the same accounting (the copies are recognised again, not re-sent)
    server.reset_counters()
    _run(proj)
    assert server.requests == 0
    proj.assert_accounted()


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_input_file_is_a_clear_error_with_exit_1(make_project, server, content):
    proj = make_project(rows=1)
    proj.input.write_bytes(content)
    res = _run(proj)
    assert res.returncode == 1
    assert f"error: {proj.input}: input has no rows" in res.stderr
    assert server.requests == 0


def test_missing_input_file_is_a_clear_error_with_exit_1(make_project, server):
    proj = make_project(rows=1)
    proj.input.unlink()
    res = _run(proj)
    assert res.returncode == 1
    assert f"error: {proj.input}: input file not found" in res.stderr


def test_json_array_input_is_read(make_project, server, tmp_path):
    rows = make_rows(5)
    proj = make_project(rows=rows, input={"path": "rows.json"})
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    res = _run(proj)
    assert res.returncode == 0, res.stderr
    assert [r["qid"] for r in proj.data()] == [r["qid"] for r in rows]
    proj.assert_accounted()


def test_json_object_wrapping_a_list_is_read(make_project, server, tmp_path):
    rows = make_rows(3)
    proj = make_project(rows=rows, input={"path": "rows.json"})
    (tmp_path / "rows.json").write_text(json.dumps({"data": rows}))
    assert _run(proj).returncode == 0
    assert len(proj.data()) == 3


def test_jsonl_saved_as_json_gets_a_hint(make_project, server, tmp_path):
    rows = make_rows(3)
    proj = make_project(rows=rows, input={"path": "rows.json"})
    (tmp_path / "rows.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = _run(proj)
    assert res.returncode == 1
    assert "is it JSON Lines? rename it to .jsonl" in res.stderr
    assert server.requests == 0


def test_csv_input_is_read(make_project, server, tmp_path):
    rows = make_rows(6)
    proj = make_project(rows=rows, input={"path": "rows.csv"})
    with (tmp_path / "rows.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["qid", "question", "answer"])
        writer.writeheader()
        writer.writerows(rows)
    res = _run(proj)
    assert res.returncode == 0, res.stderr
    assert [r["qid"] for r in proj.data()] == [r["qid"] for r in rows]
    # multi-line cells survive: the answers hold a newline before '####'
    assert all("\n#### " in qid_body["messages"][1]["content"] for qid_body in (e.body for e in server.log))
    proj.assert_accounted()


def test_csv_with_non_utf8_bytes_stops_with_a_clear_error(make_project, server, tmp_path):
    proj = make_project(rows=[], input={"path": "rows.csv"})
    path = tmp_path / "rows.csv"
    path.write_bytes(b"qid,question,answer\nq1,What is 1 + 1 here?,#### 2\nq2,caf\xe9 question here,#### 3\n")
    res = _run(proj)
    assert res.returncode == 1
    assert str(path) in res.stderr and "not UTF-8" in res.stderr


def test_parquet_input_is_read(make_project, server, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = make_rows(7)
    proj = make_project(rows=rows, input={"path": "rows.parquet"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    res = _run(proj)
    assert res.returncode == 0, res.stderr
    assert [r["qid"] for r in proj.data()] == [r["qid"] for r in rows]
    proj.assert_accounted()


def test_corrupt_parquet_file_is_a_clear_error(make_project, server, tmp_path):
    proj = make_project(rows=[], input={"path": "rows.parquet"})
    (tmp_path / "rows.parquet").write_bytes(b"PAR1 this is not parquet")
    res = _run(proj)
    assert res.returncode == 1
    assert "not a readable Parquet file" in res.stderr


def _big_rows():
    rows = make_rows(3)
    rows[1]["question"] = "How many words are in this question? " + ("word " * 2_000_000)  # 10 MB
    return rows


class _BigBodyServer:
    """A minimal OpenAI-compatible server that accepts request bodies up to 64 MB (the loopback
    server, like many real ones, stops at 1 MB)."""

    def __init__(self):
        import asyncio
        import threading

        self.bodies = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _main(self):
        import asyncio

        from aiohttp import web

        from datafactory.testing.faults import completion_body, default_responder

        async def chat(request):
            body = await request.json()
            self.bodies.append(body)
            return web.Response(body=completion_body(body, len(self.bodies), default_responder),
                                content_type="application/json")

        async def start():
            app = web.Application(client_max_size=64 << 20)
            app.router.add_post("/v1/chat/completions", chat)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.base_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"
            self._ready.set()

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def stop(self):
        import asyncio

        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_a_10_mb_row_is_sent_and_written_when_the_server_accepts_it(make_project):
    big = _BigBodyServer()
    try:
        rows = _big_rows()
        proj = make_project(rows=rows, provider={"base_url": big.base_url})
        res = _run(proj)
        assert res.returncode == 0, res.stderr
        assert len(res.stderr) < 20_000 and len(res.stdout) < 20_000  # the row is not dumped on the terminal
        assert len(big.bodies) == 3
        assert max(len(b["messages"][1]["content"]) for b in big.bodies) > 10_000_000
        assert [r["qid"] for r in proj.data()] == ["q00000", "q00001", "q00002"]
        proj.assert_accounted()
    finally:
        big.stop()


def test_a_10_mb_row_refused_by_the_server_is_rejected_once_without_hurting_the_others(make_project, server):
    proj = make_project(rows=_big_rows())
    res = _run(proj)
    assert res.returncode == 0, res.stderr
    assert [r["qid"] for r in proj.data()] == ["q00000", "q00002"]
    (rej,) = proj.rejects()
    assert rej["reason"] == "http_413" and rej["attempts"] == 1
    assert len(json.dumps(rej)) < 10_000
    proj.assert_accounted()


def test_limit_counts_bad_rows_too(make_project, server):
    rows = make_rows(5)
    proj = make_project(rows=rows)
    proj.input.write_text("garbage\n" + "".join(json.dumps(r) + "\n" for r in rows))
    res = _run(proj, "--limit", "3")
    assert res.returncode == 0
    assert server.requests == 2
    assert len(proj.data()) + len(proj.rejects()) == 3


def test_crlf_line_endings_and_missing_final_newline_are_fine(make_project, server):
    rows = make_rows(3)
    proj = make_project(rows=rows)
    proj.input.write_bytes(b"\r\n".join(json.dumps(r).encode() for r in rows))
    res = _run(proj)
    assert res.returncode == 0
    assert len(proj.data()) == 3
    proj.assert_accounted()
