"""Keep API keys out of everything we write or print."""

from __future__ import annotations

_SECRETS: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret so ``redact`` can scrub it from error texts and stored records."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text
