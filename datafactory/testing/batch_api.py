"""Files + Batches endpoints of the loopback server, for OpenAI (``/v1``) and ZhipuAI (``/api/paas/v4``).

Each input line is answered by the server's own responder (the same text a chat request would get).
Knobs a test sets on ``api_for(server)``:

* ``delays``: seconds a step waits *after* doing its work and before answering (``upload``, ``create``,
  ``retrieve``, ``content``, ``list``, ``cancel``): a kill -9 then lands between the provider's action
  and the client recording it;
* ``process_s``: how long a batch takes from creation to its end; ``hold``: batches do not end while set;
* ``line_error(custom_id, body) -> status | None``: that line goes to the error file with this status;
* ``expire_after``: the next ``expire_batches`` batches answer this many lines, then expire (the rest are
  missing, or in the error file with ``batch_expired`` when ``expired_to_error_file``);
* ``faults[step]``: statuses the next calls of a step answer *instead of* doing it; ``fail_after[step]``:
  statuses they answer *after* doing it (a create that reached the provider but whose answer was lost);
* ``fail_batches``: the next N batches created fail validation (no output at all); ``token_limit_batches``:
  the next N fail with ``token_limit_exceeded`` (OpenAI's enqueued-token cap);
* ``forget()``: the server no longer knows any batch (another key or project): ids answer 404.

``submitted`` counts how many created batches held each custom_id (a duplicate submission shows as 2).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from datafactory.testing.faults import completion_body, error_body

_ROUTE = re.compile(r"^/(?:v1|api/paas/v4)/(files|batches)(?:/([^/]+))?(?:/(content|cancel))?/?$")
_JSON = "application/json"
MAX_UPLOAD = 256 * 1024 * 1024


def is_batch_route(path: str) -> bool:
    return _ROUTE.match(path) is not None


def api_for(server: Any) -> BatchAPI:
    """The server's BatchAPI (made on first use)."""
    api = getattr(server, "_batch_api", None)
    if api is None:
        api = BatchAPI(server)
        server._batch_api = api
    return api


class BatchAPI:
    def __init__(self, server: Any) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.delays: dict[str, float] = {}
        self.process_s = 0.0
        self.hold = False
        self.line_error: Callable[[str, dict[str, Any]], int | None] | None = None
        self.expire_after: int | None = None
        self.expire_batches = 1
        self.faults: dict[str, list[int]] = {}
        self.fail_after: dict[str, list[int]] = {}
        self.expired_to_error_file = False
        self.fail_batches = 0
        self.token_limit_batches = 0
        self.calls: collections.Counter[str] = collections.Counter()
        self.submitted: collections.Counter[str] = collections.Counter()
        self.lines_answered = 0

    # ------------------------------------------------------------------ test helpers
    def forget(self) -> None:
        with self._lock:
            self.batches.clear()

    def batch_sizes(self) -> list[int]:
        """Requests per created batch, in creation order."""
        with self._lock:
            return [b["request_counts"]["total"] for b in self.batches.values()]

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"

    # ------------------------------------------------------------------ routing
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        m = _ROUTE.match(request.path)
        assert m is not None
        kind, ident, action = m.groups()
        key = self.server.expected_api_key
        if key is not None and request.headers.get("Authorization") != f"Bearer {key}":
            return _json(401, orjson.loads(error_body(401)))
        method = request.method
        step = {("files", "POST"): "upload", ("batches", "POST"): "create"}.get((kind, method), "")
        if ident is not None:
            step = "cancel" if action == "cancel" else ("content" if action == "content" else "retrieve")
        elif kind == "batches" and method == "GET":
            step = "list"
        refused = self._fault(step)
        if refused is not None:
            return refused
        if kind == "files" and ident is None and method == "POST":
            step, resp = "upload", await self._upload(request)
        elif kind == "files" and ident is not None and action == "content" and method == "GET":
            step, resp = "content", self._content(ident)
        elif kind == "batches" and ident is None and method == "POST":
            step, resp = "create", await self._create(request)
        elif kind == "batches" and ident is None and method == "GET":
            step, resp = "list", self._list(request)
        elif kind == "batches" and ident is not None and action == "cancel" and method == "POST":
            step, resp = "cancel", self._cancel(ident)
        elif kind == "batches" and ident is not None and action is None and method == "GET":
            step, resp = "retrieve", self._retrieve(ident)
        else:
            return _json(404, orjson.loads(error_body(404, f"No route for {method} {request.path}")))
        with self._lock:
            self.calls[step] += 1
            after = self.fail_after.get(step)
            status = after.pop(0) if after else None
        delay = self.delays.get(step, 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if status is not None:
            return _json(status, orjson.loads(error_body(status)))
        return resp

    def _fault(self, step: str) -> web.Response | None:
        with self._lock:
            queued = self.faults.get(step)
            status = queued.pop(0) if queued else None
            if status is not None:
                self.calls[f"{step}_refused"] += 1
        return _json(status, orjson.loads(error_body(status))) if status is not None else None

    # ------------------------------------------------------------------ files
    async def _upload(self, request: web.BaseRequest) -> web.Response:
        # aiohttp refuses bodies over 1 MB by default; batch input files reach 200 MB
        data: bytes | None = None
        filename, purpose = "", ""
        reader = await request.clone(client_max_size=MAX_UPLOAD).multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                filename, data = part.filename or "", bytes(await part.read())
            elif part.name == "purpose":
                purpose = await part.text()
        if data is None:
            return _json(400, orjson.loads(error_body(400, "file is required")))
        fid = self._new_id("file")
        with self._lock:
            self.files[fid] = {"data": data, "filename": filename, "purpose": purpose}
        return _json(200, {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                           "filename": filename, "purpose": purpose, "status": "processed"})

    def _content(self, fid: str) -> web.Response:
        with self._lock:
            entry = self.files.get(fid)
        if entry is None:
            return _json(404, orjson.loads(error_body(404, f"No such File object: {fid}")))
        return web.Response(status=200, body=entry["data"], content_type="application/octet-stream")

    # ------------------------------------------------------------------ batches
    async def _create(self, request: web.BaseRequest) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return _json(400, orjson.loads(error_body(400, "body is not a JSON object")))
        fid = body.get("input_file_id")
        with self._lock:
            entry = self.files.get(fid) if isinstance(fid, str) else None
            if entry is None:
                return _json(400, orjson.loads(error_body(400, f"No such input file: {fid}")))
            lines = [orjson.loads(x) for x in entry["data"].splitlines() if x.strip()]
            fail: str | bool = self.fail_batches > 0
            if fail:
                self.fail_batches -= 1
            elif self.token_limit_batches > 0:
                self.token_limit_batches -= 1
                fail = "token_limit_exceeded"
            expire = self.expire_after is not None and self.expire_batches > 0
            if expire:
                self.expire_batches -= 1
            for line in lines:
                self.submitted[str(line.get("custom_id"))] += 1
            bid = self._new_id("batch")
            now = time.time()
            # created_at is a whole second, as the real APIs give it; a list lookup must allow for that
            self.batches[bid] = {
                "id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
                "input_file_id": fid, "completion_window": body.get("completion_window"),
                "status": "validating", "output_file_id": None, "error_file_id": None,
                "created_at": int(now), "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "metadata": body.get("metadata") or {}, "_t0": now, "_lines": lines, "_fail": fail, "_expire": expire,
                "_cancel": False}
            return _json(200, self._public(self.batches[bid]))

    def _retrieve(self, bid: str) -> web.Response:
        with self._lock:
            batch = self.batches.get(bid)
            if batch is None:
                return _json(404, orjson.loads(error_body(404, f"No batch found with id '{bid}'")))
            self._advance(batch)
            return _json(200, self._public(batch))

    def _cancel(self, bid: str) -> web.Response:
        with self._lock:
            batch = self.batches.get(bid)
            if batch is None:
                return _json(404, orjson.loads(error_body(404, f"No batch found with id '{bid}'")))
            if batch["status"] not in ("completed", "failed", "expired", "cancelled"):
                batch["_cancel"] = True
                batch["status"] = "cancelling"
            return _json(200, self._public(batch))

    def _list(self, request: web.BaseRequest) -> web.Response:
        limit = int(request.query.get("limit", "20"))
        after = request.query.get("after")
        with self._lock:
            ordered = list(reversed(self.batches.values()))  # newest first
            if after:
                ids = [b["id"] for b in ordered]
                ordered = ordered[ids.index(after) + 1:] if after in ids else []
            page = ordered[:limit]
            for b in page:
                self._advance(b)
            data = [self._public(b) for b in page]
        return _json(200, {"object": "list", "data": data, "has_more": len(ordered) > limit,
                           "first_id": data[0]["id"] if data else None,
                           "last_id": data[-1]["id"] if data else None})

    # ------------------------------------------------------------------ processing
    def _advance(self, batch: dict[str, Any]) -> None:
        """Bring a batch to where its clock says it is (under the lock)."""
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return
        if batch["_fail"]:
            batch["status"] = "failed"
            capped = batch["_fail"] == "token_limit_exceeded"
            batch["errors"] = {"object": "list", "data": [
                {"code": "token_limit_exceeded", "line": None, "param": None,
                 "message": "Enqueued token limit reached for the model. Please try again once some in_progress "
                            "batches have been completed."} if capped else
                {"code": "invalid_request", "line": 1, "param": "body", "message": "simulated validation failure"}]}
            batch["failed_at"] = int(time.time())
            return
        if batch["_cancel"]:
            batch["status"] = "cancelled"
            batch["cancelled_at"] = int(time.time())
            return
        if self.hold or time.time() - batch["_t0"] < self.process_s:
            batch["status"] = "in_progress"
            return
        out, err = [], []
        lines = batch["_lines"]
        expire = batch["_expire"] and self.expire_after is not None
        answered = lines[:self.expire_after] if expire else lines
        for i, line in enumerate(answered):
            cid = str(line.get("custom_id"))
            body = line.get("body") or {}
            status = self.line_error(cid, body) if self.line_error is not None else None
            rid = f"req-{batch['id']}-{i}"
            caps = getattr(self.server, "capabilities", None)
            refusal = caps.refusal(body) if caps is not None else None  # response_format refused, as online
            if refusal is not None:
                err.append({"id": rid, "custom_id": cid, "error": None, "response": {
                    "status_code": refusal[0], "request_id": rid, "body": orjson.loads(refusal[1])}})
                continue
            if status is not None:
                err.append({"id": rid, "custom_id": cid, "error": None, "response": {
                    "status_code": status, "request_id": rid, "body": orjson.loads(error_body(status))}})
                continue
            self.lines_answered += 1
            payload = orjson.loads(completion_body(body, i, self.server.responder))
            out.append({"id": rid, "custom_id": cid, "error": None,
                        "response": {"status_code": 200, "request_id": rid, "body": payload}})
        if expire and self.expired_to_error_file:
            for line in lines[len(answered):]:
                err.append({"id": "", "custom_id": str(line.get("custom_id")), "response": None, "error": {
                    "code": "batch_expired", "message": "This request could not be executed before the "
                                                        "completion window expired."}})
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        batch["output_file_id"] = self._file(out)
        batch["error_file_id"] = self._file(err)
        batch["status"] = "expired" if expire else "completed"
        batch["completed_at"] = int(time.time())

    def _file(self, rows: list[dict[str, Any]]) -> str | None:
        if not rows:
            return None
        fid = self._new_id("file")
        self.files[fid] = {"data": b"".join(orjson.dumps(r) + b"\n" for r in rows), "filename": f"{fid}.jsonl",
                           "purpose": "batch_output"}
        return fid

    @staticmethod
    def _public(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if not k.startswith("_")}


def _json(status: int, data: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type=_JSON)
