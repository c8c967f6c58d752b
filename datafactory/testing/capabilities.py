"""What the loopback server can be told to be capable of: structured output, a bounded work queue,
reasoning fields. Kept out of ``loopback.py`` (which only calls the three hooks below).

* ``response_format``: ``ignore`` (LLaMA-Factory: the field is dropped, the model writes what it
  writes), ``honour`` (vLLM / llama.cpp: a request with ``response_format`` json_schema/json_object
  gets the *bare* JSON of the inner responder), ``refuse`` (an OpenAI-style 400 ``{"error": ...}``
  naming ``response_format``), ``refuse_fastapi`` (a FastAPI 422 ``{"detail": [{"loc": ["body",
  "response_format"], ...}]}``), ``refuse_json_schema`` (json_schema refused with a 400, json_object
  honoured: servers that only know JSON mode).
* ``max_working``: the server works on at most K requests at once and queues the rest, as vLLM
  does when saturated and LLaMA-Factory does with K = 1 (no 429, the latency grows instead); a
  request whose client gave up is still worked on to its end, as on those servers.
* ``reasoning``: ``content`` (a ``<think>`` block before the answer), ``reasoning_content`` or
  ``reasoning`` (a separate field of the message, as DeepSeek / vLLM send it).

The server's responder is what an unconstrained model writes; :func:`chatty_responder` makes that
realistic (JSON inside prose and fences, a fraction of it broken), so the effect of structured output
on invalid-JSON rejects and re-asks can be measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiohttp import web

from datafactory.record import content_hash
from datafactory.testing.faults import Responder, completion_body, default_responder, error_body, fastapi_error_body

T = TypeVar("T")
RESPONSE_FORMAT_MODES = ("ignore", "honour", "refuse", "refuse_fastapi", "refuse_json_schema")
REASONING_MODES = (None, "content", "reasoning_content", "reasoning")
REASONING_TEXT = "Let me think step by step. The numbers are {\"a\": 1} and so on."


@dataclass
class Capabilities:
    """Knobs of one loopback server (see the module docstring). Counters are read by tests:
    ``working`` / ``max_working`` (requests being worked on, not queued), ``refused`` (requests
    refused for their response_format), ``honoured`` (answered as bare JSON)."""

    response_format: str = "ignore"
    max_working: int | None = None
    reasoning: str | None = None
    reasoning_text: str = REASONING_TEXT
    bare: Responder = default_responder
    working: int = 0
    max_seen_working: int = 0
    refused: int = 0
    honoured: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)
    _working: set[asyncio.Future[Any]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.response_format not in RESPONSE_FORMAT_MODES:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMAT_MODES}, got {self.response_format!r}")
        if self.reasoning not in REASONING_MODES:
            raise ValueError(f"reasoning must be one of {REASONING_MODES}, got {self.reasoning!r}")

    # ------------------------------------------------------------------ hook 1: refuse
    def refusal(self, body: dict[str, Any]) -> tuple[int, bytes] | None:
        """``(status, body)`` when the server refuses this request for its response_format."""
        kind = _format_type(body)
        if kind is None:
            return None
        mode = self.response_format
        refused = (mode in ("refuse", "refuse_fastapi")
                   or (mode == "refuse_json_schema" and kind == "json_schema"))
        if not refused:
            return None
        with self._lock:
            self.refused += 1
        if mode == "refuse_fastapi":
            return 422, fastapi_error_body([{"loc": ["body", "response_format"], "type": "extra_forbidden",
                                             "msg": "Extra inputs are not permitted"}])
        return 400, error_body(400, f"Invalid value for 'response_format': type {kind!r} is not supported "
                                    "by this server")

    async def serve(self, body: dict[str, Any],
                    make: Callable[[], Awaitable[tuple[web.StreamResponse, int]]]) -> tuple[web.StreamResponse, int]:
        """The loopback server's reply to a chat request: a refusal, or ``make()`` in a work slot."""
        refusal = self.refusal(body)
        if refusal is not None:
            return web.Response(status=refusal[0], body=refusal[1], content_type="application/json"), refusal[0]
        return await self.work(make)

    # ------------------------------------------------------------------ hook 2: queue
    async def work(self, make: Callable[[], Awaitable[T]]) -> T:
        """Make the reply in a work slot. A client that gives up (its timeout) does not free the slot:
        like a real server, this one keeps generating the abandoned reply, so queued requests wait on."""
        if self.max_working is None:
            return await make()

        async def in_slot() -> T:
            async with self.slot():
                return await make()

        task = asyncio.ensure_future(in_slot())
        self._working.add(task)
        task.add_done_callback(self._working.discard)
        return await asyncio.shield(task)

    def abandon(self) -> None:
        """The server stops: cancel the replies still being made for clients that gave up."""
        for task in list(self._working):
            task.cancel()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of ``max_working`` work slots (waiting in line for it) while the reply is made."""
        if self.max_working is None:
            yield
            return
        if self._slots is None:  # created in the server's own loop
            self._slots = asyncio.Semaphore(self.max_working)
        async with self._slots:
            with self._lock:
                self.working += 1
                self.max_seen_working = max(self.max_seen_working, self.working)
            try:
                yield
            finally:
                with self._lock:
                    self.working -= 1

    # ------------------------------------------------------------------ hook 3: answer
    def responder_for(self, body: dict[str, Any], responder: Responder) -> Responder:
        """The responder for this request: ``bare`` (the JSON alone) when response_format is honoured."""
        if _format_type(body) is not None and self.response_format != "ignore":
            with self._lock:
                self.honoured += 1
            return self.bare
        return responder

    def completion(self, body: dict[str, Any], index: int, responder: Responder, content: str | None,
                   finish_reason: str) -> bytes:
        """A reply body: bare JSON when response_format is honoured, with the reasoning style added."""
        return self.with_reasoning(completion_body(body, index, self.responder_for(body, responder),
                                                   content=content, finish_reason=finish_reason))

    def with_reasoning(self, payload: bytes) -> bytes:
        """The reply body with the configured reasoning added to every choice's message."""
        if self.reasoning is None:
            return payload
        data = orjson.loads(payload)
        for choice in data.get("choices", []):
            msg = choice.get("message")
            if not isinstance(msg, dict):
                continue
            if self.reasoning == "content":
                msg["content"] = f"<think>{self.reasoning_text}</think>\n{msg.get('content') or ''}"
            else:
                msg[self.reasoning] = self.reasoning_text
        return orjson.dumps(data)


def _format_type(body: dict[str, Any]) -> str | None:
    rf = body.get("response_format")
    kind = rf.get("type") if isinstance(rf, dict) else None
    return kind if kind in ("json_object", "json_schema") else None


def chatty_responder(inner: Responder, broken_rate: float = 0.2, salt: str = "") -> Responder:
    """What a model writes without structured output: ``inner``'s JSON in prose and a ```json fence;
    for a ``broken_rate`` share of requests (drawn from the request's content, so a re-ask draws
    again) the JSON is broken the ways models break it: a trailing comma, single quotes, cut short."""

    def responder(body: dict[str, Any], index: int) -> str:
        text = inner(body, index)
        draw = int(content_hash({"m": body.get("messages"), "i": index, "s": salt})[:8], 16) / 0xFFFFFFFF
        if draw < broken_rate:
            style = int(draw / broken_rate * 3)
            if style == 0:
                text = text[:-1] + ",}"
            elif style == 1:
                text = text.replace('"', "'")
            else:
                text = text[: len(text) * 2 // 3]
        return f"Sure! Here is the rewritten item:\n\n```json\n{text}\n```\n\nLet me know if you need more."

    return responder
