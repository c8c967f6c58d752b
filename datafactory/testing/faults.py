"""Fault descriptions, canned responders and reply-body builders for the loopback fake API.

These are the pieces of :mod:`datafactory.testing.loopback` that do not touch the network:
the :class:`Fault` a test queues to make one request misbehave, the responders that
produce the assistant text of a normal reply, and the functions that render
OpenAI-compatible ``chat.completion`` / error JSON bodies (as ``bytes``, via orjson).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "Responder",
    "FaultFn",
    "default_responder",
    "think_responder",
    "fenced_responder",
    "transient_fault_fn",
    "last_user_message",
    "completion_body",
    "error_body",
    "chat_body",
    "nested_json",
    "fastapi_error_body",
]

#: A responder maps (request JSON body, choice index) to the assistant message content.
Responder = Callable[[dict[str, Any], int], str]
#: A fault function maps (request index starting at 0, request JSON body) to a Fault or None.
FaultFn = Callable[[int, dict[str, Any]], "Fault | None"]

FAULT_KINDS = frozenset({"status", "drop", "drop_mid", "hang", "html", "empty", "truncated_json", "content",
                         "body", "trickle"})

HTML_BODY = b"<html><body>Bad Gateway</body></html>"


@dataclass
class Fault:
    """How the loopback server should misbehave for one request.

    kind:
      ``status``         reply with ``status`` and an OpenAI-style error JSON body
                         (``status == 200`` means a normal completion);
      ``drop``           read the request, then close the TCP connection without any response;
      ``drop_mid``       send status 200, headers and half of the JSON body, then close the connection;
      ``hang``           do not answer for ``hang_s`` seconds (the client must time out);
      ``html``           status 200, ``text/html`` body ``<html><body>Bad Gateway</body></html>``;
      ``empty``          status 200, ``application/json``, empty body;
      ``truncated_json`` status 200, ``application/json``, a valid completion body cut in half;
      ``content``        status 200 normal completion whose message content is ``content``
                         (the responder's output when None) and finish reason ``finish_reason``;
      ``body``           reply ``status`` with ``body`` verbatim as ``application/json`` (wrong shapes,
                         bodies nested 100k deep, FastAPI ``{"detail": ...}`` errors: see the builders below);
      ``trickle``        status 200 and a normal completion, sent one byte every ``trickle_s`` seconds.
    ``headers`` are added to the response (e.g. ``{"Retry-After": "2"}``); ``delay_s`` overrides
    the server latency for this request; ``message`` replaces the default text of a ``status``
    error body (what a real server says: ``"presence_penalty: Input should be a valid number"``).
    """

    kind: str = "status"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content: str | None = None
    finish_reason: str = "stop"
    delay_s: float | None = None
    hang_s: float = 3600.0
    body: bytes | None = None
    trickle_s: float = 1.0
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")


def _content_text(content: Any) -> str:
    """Text of a message ``content`` (a string, or a list of multimodal parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = body.get("messages")
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def last_user_message(body: dict[str, Any]) -> str:
    """Content of the last ``user`` message of a chat request body ('' if none)."""
    for m in reversed(_messages(body)):
        if m.get("role") == "user":
            return _content_text(m.get("content"))
    return ""


_ANSWER_RE = re.compile(r"####\s*(-?[\d,]*\.?\d+)")


def default_responder(body: dict[str, Any], index: int) -> str:
    """A GSM8K-style rephrasing: JSON text with ``question`` and ``answer`` (``#### N``).

    N is the number after the last ``####`` of the last user message (commas removed), else 42.
    """
    user = last_user_message(body)
    question = " ".join(user.split())[:300]
    answer = "42"
    if "####" in user:
        tail = user[user.rindex("####") :]
        m = _ANSWER_RE.match(tail)
        if m:
            answer = m.group(1).replace(",", "") or "42"
    return orjson.dumps(
        {
            "question": f"Rephrased: {question} (variant {index})",
            "answer": f"Step 1: think. Step 2: compute. #### {answer}",
        }
    ).decode()


def think_responder(inner: Responder) -> Responder:
    """Wrap ``inner`` so its output is prefixed by a ``<think>`` block containing non-JSON braces."""

    def responder(body: dict[str, Any], index: int) -> str:
        return '<think>some reasoning {"not": "json"}</think>\n' + inner(body, index)

    return responder


def fenced_responder(inner: Responder) -> Responder:
    """Wrap ``inner`` so its output sits in a ```json fenced block with prose around it."""

    def responder(body: dict[str, Any], index: int) -> str:
        return (
            "Sure! Here is the rewritten item:\n\n```json\n"
            + inner(body, index)
            + "\n```\n\nLet me know if you need more variants."
        )

    return responder


def transient_fault_fn(rate: float, seed: int | None = None) -> FaultFn:
    """Fault function giving each request, with probability ``rate``, a random transient fault.

    The faults are: 429 with ``Retry-After: 0.2``, 500, 503, or a dropped connection.
    """
    rng = random.Random(seed)

    def fn(index: int, body: dict[str, Any]) -> Fault | None:
        if rate <= 0 or rng.random() >= rate:
            return None
        pick = rng.randrange(4)
        if pick == 0:
            return Fault(status=429, headers={"Retry-After": "0.2"})
        if pick == 1:
            return Fault(status=500)
        if pick == 2:
            return Fault(status=503)
        return Fault(kind="drop")

    return fn


_ERROR_KINDS: dict[int, tuple[str, str, str]] = {
    400: ("Bad request", "invalid_request_error", "bad_request"),
    401: ("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
    403: ("Forbidden", "invalid_request_error", "forbidden"),
    404: ("Not found", "invalid_request_error", "not_found"),
    429: ("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request", "server_error", "internal_error"),
    502: ("Bad gateway", "server_error", "bad_gateway"),
    503: ("The engine is currently overloaded, please try again later", "server_error", "overloaded"),
    504: ("Gateway timeout", "server_error", "timeout"),
}


def error_body(status: int, message: str | None = None) -> bytes:
    """OpenAI-style error JSON ``{"error": {"message", "type", "code"}}`` for ``status``."""
    default_msg, kind, code = _ERROR_KINDS.get(
        status,
        ("Simulated error", "server_error" if status >= 500 else "invalid_request_error", str(status)),
    )
    return orjson.dumps({"error": {"message": message or default_msg, "type": kind, "code": code}})


def completion_body(
    body: dict[str, Any],
    request_index: int,
    responder: Responder,
    *,
    content: str | None = None,
    finish_reason: str = "stop",
) -> bytes:
    """A ``chat.completion`` JSON body answering ``body``, one choice per ``n``."""
    n = body.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        n = 1
    choices = []
    completion_chars = 0
    for i in range(n):
        text = responder(body, i) if content is None else content
        completion_chars += len(text)
        choices.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        )
    prompt_chars = sum(len(_content_text(m.get("content"))) for m in _messages(body))
    prompt_tokens = max(1, prompt_chars // 4)
    completion_tokens = max(1, completion_chars // 4)
    model = body.get("model")
    return orjson.dumps(
        {
            "id": f"chatcmpl-loopback-{request_index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model if isinstance(model, str) else "loopback",
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


# --------------------------------------------------------------------- hostile bodies (kind="body")
def chat_body(choices: Any, *, usage: Any = None, **extra: Any) -> bytes:
    """A ``chat.completion`` body with ``choices`` (and ``usage``) exactly as given, right or wrong."""
    return orjson.dumps({"id": "chatcmpl-hostile", "object": "chat.completion", "model": "loopback",
                         "choices": choices, "usage": usage, **extra})


def nested_json(depth: int, opener: str = "[") -> str:
    """``{"a": [[[[...`` ``depth`` levels deep and never closed (what RecursionError is made of)."""
    return '{"a":' + opener * depth


def fastapi_error_body(detail: Any) -> bytes:
    """A FastAPI error body as LLaMA-Factory and vLLM send it: ``{"detail": "..."}`` or
    ``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}``."""
    return orjson.dumps({"detail": detail})
