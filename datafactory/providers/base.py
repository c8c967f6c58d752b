"""The provider interface: one chat call in, text + finish_reason + usage + rate-limit headers out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from datafactory.errors import BadResponse
from datafactory.quality.parse import think_text
from datafactory.secrets import redact

LITELLM_PREFIX = "llm_provider-"
RATE_HEADERS = ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens",
                "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens")


@dataclass(slots=True)
class Choice:
    """One reply. ``reasoning``: a reasoning model's chain of thought (the message's ``reasoning_content`` /
    ``reasoning`` field, or the ``<think>`` blocks of its text), kept for output columns, never parsed."""

    text: str
    finish_reason: str | None
    reasoning: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "finish_reason": self.finish_reason}
        if self.reasoning is not None:  # only when there is some: entries without stay as they were
            out["reasoning"] = self.reasoning
        return out


@dataclass(slots=True)
class Completion:
    """What a provider returns; also what the cache stores (``to_json``/``from_json``)."""

    choices: list[Choice]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"choices": [c.to_json() for c in self.choices],
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "model": self.model}

    @classmethod
    def from_json(cls, data: Any) -> Completion:
        """Rebuild a stored completion; whatever is in the cache, this never raises (a shape it cannot
        read gives no choices, which the row processor rejects as ``bad_response``)."""
        if not isinstance(data, dict):
            return cls(choices=[])
        stored = data.get("choices")
        choices = [Choice(c["text"], _finish(c.get("finish_reason")),
                          c["reasoning"] if isinstance(c.get("reasoning"), str) else None)
                   for c in (stored if isinstance(stored, list) else [])
                   if isinstance(c, dict) and isinstance(c.get("text"), str)]
        model = data.get("model")
        return cls(choices=choices, prompt_tokens=_count(data.get("prompt_tokens")),
                   completion_tokens=_count(data.get("completion_tokens")),
                   model=model if isinstance(model, str) else None)


class Provider(Protocol):
    """An async chat-completion client. Implementations raise only ``datafactory.errors.ProviderError``
    subclasses and never retry by themselves (the engine's retry layer is the only one)."""

    name: str

    async def complete(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        ...

    async def aclose(self) -> None:
        ...


def pick_rate_headers(headers: Any) -> dict[str, str]:
    """The rate-limit headers worth keeping (case-insensitive mapping in, plain dict out).

    litellm's proxy passes the upstream's headers on with an ``llm_provider-`` prefix; they are kept
    under the plain names, so the limiter reads both the same way."""
    out = {}
    for name in RATE_HEADERS:
        value = headers.get(name)
        if value is None:
            value = headers.get(LITELLM_PREFIX + name)
        if value is not None:
            out[name] = str(value)
    return out


def completion_from_openai_json(data: Any, headers: dict[str, str]) -> Completion:
    """Build a Completion from an OpenAI-format chat.completion body (already decoded).

    A body of the wrong shape (``choices`` not a list of objects, ``message`` not an object, content
    neither text nor a list of text parts) is a ``BadResponse``; bad ``usage`` counts are read as 0.
    Texts are redacted here, before anything stores them: some servers echo the request's key."""
    if not isinstance(data, dict):
        raise BadResponse(f"the body is JSON but not an object ({type(data).__name__})", status=200,
                          raw=_start(data))
    raw_choices = data.get("choices")
    if not isinstance(raw_choices, list) or not raw_choices:
        raise BadResponse("response has no choices", status=200, raw=_start(data))
    choices = []
    for ch in raw_choices:
        msg = ch.get("message") if isinstance(ch, dict) else None
        if msg is None and isinstance(ch, dict) and isinstance(ch.get("text"), str):
            msg = {"content": ch["text"]}  # legacy completions shape some proxies still send
        if not isinstance(msg, dict):
            raise BadResponse("a choice has no message object", status=200, raw=_start(data))
        content = _content(msg.get("content"))
        if content is None:
            raise BadResponse(f"message content is a {type(msg.get('content')).__name__}, not text",
                              status=200, raw=_start(data))
        choices.append(Choice(redact(content), _finish(ch.get("finish_reason")), _reasoning(msg, content)))
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    model = data.get("model")
    return Completion(choices=choices, prompt_tokens=_count(usage.get("prompt_tokens")),
                      completion_tokens=_count(usage.get("completion_tokens")),
                      model=model if isinstance(model, str) else None, headers=headers)


def _reasoning(msg: dict[str, Any], content: str) -> str | None:
    """The chain of thought of a reply: vLLM's ``reasoning`` (older: ``reasoning_content``, also DeepSeek's
    and ZhipuAI's field), else the ``<think>`` blocks of the content (redacted, like the text)."""
    for name in ("reasoning_content", "reasoning"):
        value = msg.get(name)
        if isinstance(value, str) and value:
            return redact(value)
    thought = think_text(content) if "<" in content else None
    return redact(thought) if thought else None


def _content(content: Any) -> str | None:
    """Message text: a string, null (a refusal or only tool calls: no text), or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") for p in content if isinstance(p, str | dict)]
        return "".join(p for p in parts if isinstance(p, str))
    return None


def _finish(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int:
    """A token count as the server reported it; anything that is not a non-negative number is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        number = float(value)
    except ValueError:
        return 0
    return int(number) if 0 <= number < 1e15 else 0


def _start(data: Any, limit: int = 4000) -> str:
    """The start of a decoded body for the reject record (redacted before it is cut)."""
    try:
        text = orjson.dumps(data).decode()
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255); repr() could recurse out
        text = f"<a {type(data).__name__} nested too deep to show>"
    return redact(text)[:limit]
