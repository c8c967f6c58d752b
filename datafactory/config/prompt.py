"""Prompt templates: a YAML file with ``system`` and ``user`` texts and ``{{ field }}`` placeholders.

``{{ }}`` rather than ``str.format`` braces, so templates can show JSON examples verbatim.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from datafactory.config.spec import Key, check_section
from datafactory.config.yamlio import load_yaml
from datafactory.record import content_hash

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
TEMPLATE_KEYS = {"system": Key((str, type(None)), None), "user": Key(str)}


@dataclass(frozen=True)
class PromptTemplate:
    path: str
    system: str | None
    user: str

    @property
    def variables(self) -> list[str]:
        seen: list[str] = []
        for text in (self.system or "", self.user):
            for m in _VAR.finditer(text):
                if m.group(1) not in seen:
                    seen.append(m.group(1))
        return seen

    @property
    def fingerprint(self) -> str:
        return content_hash({"system": self.system, "user": self.user})

    def render(self, values: dict[str, Any]) -> list[dict[str, str]]:
        """Chat messages with every placeholder replaced by ``str(values[name])``."""

        def sub(text: str) -> str:
            return _VAR.sub(lambda m: _text(values[m.group(1)]), text)

        messages = []
        if self.system:
            messages.append({"role": "system", "content": sub(self.system)})
        messages.append({"role": "user", "content": sub(self.user)})
        return messages


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        # structured fields (a seed dialogue) go into the prompt as readable JSON, not a Python repr
        return json.dumps(value, ensure_ascii=False, indent=1)
    return str(value)


def load_template(path: str) -> PromptTemplate:
    loc = load_yaml(path)
    data = check_section(loc, loc.data, "", TEMPLATE_KEYS)
    return PromptTemplate(path=path, system=data["system"], user=data["user"])
