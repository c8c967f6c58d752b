"""Reading a finished batch's output and error files back: each line → its custom_id (the cache key) and
either a Completion or the ProviderError the online flow would have got for the same answer."""

from __future__ import annotations

from typing import Any

import orjson

from datafactory.errors import BadResponse, ProviderError, ServerError
from datafactory.providers.base import Completion, completion_from_openai_json
from datafactory.providers.status import error_for_status, error_message

LineResult = Completion | ProviderError


def read_lines(data: bytes) -> dict[str, LineResult]:
    """custom_id → result for every line of an output or error file (a line without a custom_id is skipped:
    nothing can be mapped back from it). A later line for the same id wins over an earlier error."""
    out: dict[str, LineResult] = {}
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            continue
        key = line["custom_id"]
        result = line_result(line)
        if key not in out or isinstance(out[key], ProviderError):
            out[key] = result
    return out


def line_result(line: dict[str, Any]) -> LineResult:
    """One line: ``response.status_code`` 200 with a chat completion body → Completion (a body of the wrong
    shape is a BadResponse, as online); another status → the error that status means online; no response
    but an ``error`` (e.g. ``batch_expired``) → a retryable ServerError."""
    resp = line.get("response")
    if isinstance(resp, dict) and resp.get("status_code") is not None:
        status = resp.get("status_code")
        body = resp.get("body")
        if status == 200:
            try:
                return completion_from_openai_json(body, {})
            except BadResponse as exc:
                return exc
        code = int(status) if isinstance(status, int) else 500
        return error_for_status(code, error_message(orjson.dumps(body) if body is not None else b""))
    err = line.get("error")
    if isinstance(err, dict):
        text = f"{err.get('code') or 'error'}: {err.get('message') or ''}".strip()
        return ServerError(f"batch line failed: {text}", status=None)
    return BadResponse("a batch output line has neither a response nor an error", status=None,
                       raw=orjson.dumps(line).decode()[:4000])
