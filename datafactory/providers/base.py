"""The provider interface: one chat call in, text + finish_reason + usage + rate-limit headers out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

RATE_HEADERS = ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens",
                "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens")


@dataclass(slots=True)
class Choice:
    text: str
    finish_reason: str | None


@dataclass(slots=True)
class Completion:
    """What a provider returns; also what the cache stores (``to_json``/``from_json``)."""

    choices: list[Choice]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"choices": [{"text": c.text, "finish_reason": c.finish_reason} for c in self.choices],
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "model": self.model}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Completion:
        return cls(choices=[Choice(c["text"], c.get("finish_reason")) for c in data["choices"]],
                   prompt_tokens=int(data.get("prompt_tokens") or 0),
                   completion_tokens=int(data.get("completion_tokens") or 0), model=data.get("model"))


class Provider(Protocol):
    """An async chat-completion client. Implementations raise only ``datafactory.errors.ProviderError``
    subclasses and never retry by themselves (the engine's retry layer is the only one)."""

    name: str

    async def complete(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        ...

    async def aclose(self) -> None:
        ...


def pick_rate_headers(headers: Any) -> dict[str, str]:
    """The rate-limit headers worth keeping (case-insensitive mapping in, plain dict out)."""
    out = {}
    for name in RATE_HEADERS:
        value = headers.get(name)
        if value is not None:
            out[name] = str(value)
    return out


def completion_from_openai_json(data: Any, headers: dict[str, str]) -> Completion:
    """Build a Completion from an OpenAI-format chat.completion body (already decoded)."""
    from datafactory.errors import BadResponse

    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise BadResponse("response has no choices", status=200)
    choices = []
    for ch in data["choices"]:
        msg = ch.get("message") or {}
        content = msg.get("content")
        choices.append(Choice(content if isinstance(content, str) else "", ch.get("finish_reason")))
    usage = data.get("usage") or {}
    return Completion(choices=choices, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                      completion_tokens=int(usage.get("completion_tokens") or 0),
                      model=data.get("model"), headers=headers)
