"""Classify one row of a dataset as LLaMA-Factory 0.9.5 would read it (used by ``detect``).

A row's ``RowShape`` says which format it is (family + variant), which file columns fill which
LLaMA-Factory columns, and, for conversations, the message style and role names. Anything that
would make LLaMA-Factory drop or fail on the row raises ``Unfit`` with where it is and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from datafactory.formats.sampling import Unfit

PROMPT_COLUMNS = ("instruction", "prompt", "question")
RESPONSE_COLUMNS = ("output", "response", "answer", "completion")
MESSAGES_COLUMNS = ("conversations", "messages")
MEDIA_COLUMNS = ("images", "videos", "audios")
# role_tag -> content_tag of the two message styles
TAG_STYLES = {"from": "value", "role": "content"}
# the role names LLaMA-Factory's tag slots can take, in the two styles
ROLE_SLOTS: dict[str, tuple[str, ...]] = {
    "user_tag": ("human", "user"),
    "assistant_tag": ("gpt", "assistant"),
    "observation_tag": ("observation", "tool"),
    "function_tag": ("function_call",),
    "system_tag": ("system",),
}
DEFAULT_ROLES: dict[str, dict[str, str]] = {
    "from": {"user_tag": "human", "assistant_tag": "gpt", "observation_tag": "observation",
             "function_tag": "function_call", "system_tag": "system"},
    "role": {"user_tag": "user", "assistant_tag": "assistant", "observation_tag": "tool",
             "function_tag": "function_call", "system_tag": "system"},
}
_ODD = ("user_tag", "observation_tag")
_EVEN = ("assistant_tag", "function_tag")


@dataclass(frozen=True, slots=True)
class RowShape:
    """The format of one row: what ``detect`` needs to compare rows and build the entry."""

    family: str  # alpaca | sharegpt | text
    variant: str  # sft | preference | kto | pt
    columns: tuple[tuple[str, str], ...]  # required logical column -> file column
    style: str | None = None  # sharegpt: "from" or "role"
    optional: frozenset[tuple[str, str]] = frozenset()
    roles: tuple[tuple[str, str], ...] = ()  # sharegpt: (tag slot, role name) seen

    @property
    def signature(self) -> tuple[Any, ...]:
        return self.family, self.variant, self.columns, self.style

    @property
    def format_name(self) -> str:
        """alpaca, sharegpt, alpaca-preference, ..., text."""
        if self.family == "text":
            return "text"
        return self.family if self.variant == "sft" else f"{self.family}-{self.variant}"

    def describe(self) -> str:
        return f"{self.format_name} ({', '.join(c for _, c in self.columns)})"


def row_shape(where: str, row: dict[str, Any]) -> RowShape:
    """The shape of one row; ``where`` (file:line) starts every ``Unfit`` message."""
    lists = [c for c in MESSAGES_COLUMNS if isinstance(row.get(c), list)]
    if len(lists) > 1:
        raise Unfit(f"{where}: both 'conversations' and 'messages' hold message lists; keep one")
    if lists:
        return _sharegpt_shape(where, row, lists[0])
    prompt = _first_key(row, PROMPT_COLUMNS)
    if prompt is not None:
        return _alpaca_shape(where, row, prompt)
    if "text" in row:
        _require_text(where, row, "text")
        return RowShape("text", "pt", (("prompt", "text"),))
    for col in MESSAGES_COLUMNS:
        if col in row:
            raise Unfit(f"{where}: '{col}' is {_kind(row[col])}, expected a list of messages")
    if "input_ids" in row:
        raise Unfit(f"{where}: already tokenized (input_ids); give it to LLaMA-Factory as tokenized_path "
                    "instead of registering it")
    if len(row) == 1:
        key, value = next(iter(row.items()))
        if isinstance(value, list) and value and isinstance(value[0], dict):
            raise Unfit(f"{where}: a JSON object wrapping the rows under '{key}'; LLaMA-Factory reads it as "
                        "a single row - save the list itself (a top-level JSON array) or JSON Lines")
    found = ", ".join(sorted(map(str, row))) or "none"
    raise Unfit(f"{where}: no columns LLaMA-Factory can use (found: {found}); expected instruction + output "
                "(alpaca), instruction + chosen + rejected (preference), conversations or messages "
                "(sharegpt), or text (pretraining)")


def _alpaca_shape(where: str, row: dict[str, Any], prompt: str) -> RowShape:
    _require_text(where, row, prompt)
    columns = {"prompt": prompt}
    if "chosen" in row or "rejected" in row:
        _require_pair(where, row)
        _require_text(where, row, "chosen")
        _require_text(where, row, "rejected")
        columns.update(chosen="chosen", rejected="rejected")
        variant = "preference"
    else:
        response = _first_key(row, RESPONSE_COLUMNS)
        if response is None:
            raise Unfit(f"{where}: has '{prompt}' but no response column ({', '.join(RESPONSE_COLUMNS)}) "
                        "and no chosen/rejected pair")
        _require_text(where, row, response)
        columns["response"] = response
        variant = "sft"
    kto = _kto_column(where, row, variant)
    if kto is not None:
        columns["kto_tag"] = kto
        variant = "kto"
    optional = set()
    if "input" in row:
        _optional_text(where, row, "input")
        optional.add(("query", "input"))
    if "history" in row:
        _check_history(where, row["history"])
        optional.add(("history", "history"))
    optional |= _common_columns(where, row)
    return RowShape("alpaca", variant, tuple(sorted(columns.items())), optional=frozenset(optional))


def _sharegpt_shape(where: str, row: dict[str, Any], col: str) -> RowShape:
    ranking = "chosen" in row or "rejected" in row
    style, roles = _check_conversation(where, row[col], ranking=ranking)
    columns = {"messages": col}
    variant = "sft"
    if ranking:
        _require_pair(where, row)
        for key in ("chosen", "rejected"):
            slot, role = _check_answer(where, row[key], key, style)
            _merge_role(where, roles, slot, role)
        columns.update(chosen="chosen", rejected="rejected")
        variant = "preference"
    kto = _kto_column(where, row, variant)
    if kto is not None:
        columns["kto_tag"] = kto
        variant = "kto"
    return RowShape("sharegpt", variant, tuple(sorted(columns.items())), style=style,
                  optional=frozenset(_common_columns(where, row)), roles=tuple(sorted(roles.items())))


def _check_conversation(where: str, messages: list[Any], *, ranking: bool) -> tuple[str, dict[str, str]]:
    if not messages:
        raise Unfit(f"{where}: empty conversation")
    style: str | None = None
    roles: dict[str, str] = {}
    slots: list[str] = []
    for i, msg in enumerate(messages, start=1):
        if not isinstance(msg, dict):
            raise Unfit(f"{where}: message {i} is {_kind(msg)}, expected an object")
        this = "from" if msg.get("from") is not None else "role" if msg.get("role") is not None else None
        if this is None:
            raise Unfit(f"{where}: message {i} has neither from/value nor role/content keys "
                        f"(has: {', '.join(sorted(map(str, msg)))})")
        if style is not None and this != style:
            raise Unfit(f"{where}: message {i} uses '{this}' but message 1 uses '{style}'; use one style")
        style = this
        if msg.get("tool_calls"):
            raise Unfit(f"{where}: message {i} carries OpenAI tool_calls; LLaMA-Factory's sharegpt format "
                        "ignores them - write the call as a function_call turn (content = the call as JSON)")
        if not isinstance(msg.get(TAG_STYLES[style]), str):
            raise Unfit(f"{where}: message {i} has no text '{TAG_STYLES[style]}' "
                        f"(got {_kind(msg.get(TAG_STYLES[style]))})")
        slot = _slot_of(where, i, msg[style])
        _merge_role(where, roles, slot, msg[style])
        slots.append(slot)
    assert style is not None
    turns = slots[1:] if slots[0] == "system_tag" else slots
    offset = len(slots) - len(turns)
    for i, slot in enumerate(turns):
        want = _ODD if i % 2 == 0 else _EVEN
        if slot not in want:
            what = "a system message can only come first" if slot == "system_tag" else (
                "expected a user (or tool result) turn" if i % 2 == 0 else "expected an assistant turn")
            raise Unfit(f"{where}: message {i + offset + 1} is '{messages[i + offset][style]}': {what}; "
                        "LLaMA-Factory skips conversations whose turns do not alternate")
    if ranking and len(turns) % 2 == 0:
        raise Unfit(f"{where}: a preference conversation must end with a user turn (chosen/rejected "
                    "are the answers to it)")
    if not ranking and (not turns or len(turns) % 2):
        raise Unfit(f"{where}: the conversation must end with an assistant turn")
    return style, roles


def _check_answer(where: str, answer: Any, key: str, style: str) -> tuple[str, str]:
    if not isinstance(answer, dict):
        raise Unfit(f"{where}: '{key}' is {_kind(answer)}; with a conversation it must be one message "
                    f"object like {{\"{style}\": ..., \"{TAG_STYLES[style]}\": ...}}")
    if answer.get(style) is None or not isinstance(answer.get(TAG_STYLES[style]), str):
        raise Unfit(f"{where}: '{key}' must have '{style}' and a text '{TAG_STYLES[style]}'")
    slot = _slot_of(where, 0, answer[style], what=f"'{key}'")
    if slot not in _EVEN:
        raise Unfit(f"{where}: '{key}' comes from '{answer[style]}'; it must be an assistant message")
    return slot, answer[style]


def _slot_of(where: str, index: int, role: Any, *, what: str | None = None) -> str:
    for slot, names in ROLE_SLOTS.items():
        if role in names:
            return slot
    known = ", ".join(n for names in ROLE_SLOTS.values() for n in names)
    raise Unfit(f"{where}: {what or f'message {index}'} has role '{role}', which LLaMA-Factory does not know "
                f"(use one of: {known})")


def _merge_role(where: str, roles: dict[str, str], slot: str, role: str) -> None:
    if roles.setdefault(slot, role) != role:
        raise Unfit(f"{where}: mixes '{roles[slot]}' and '{role}' for the same role; use one spelling")


def _common_columns(where: str, row: dict[str, Any]) -> set[tuple[str, str]]:
    found = set()
    if "system" in row:
        _optional_text(where, row, "system")
        found.add(("system", "system"))
    if "tools" in row:
        tools = row["tools"]
        if tools is not None and not isinstance(tools, str):
            raise Unfit(f"{where}: 'tools' is {_kind(tools)}; LLaMA-Factory expects the tool list as a JSON "
                        "string (json.dumps it)")
        if tools:
            try:
                json.loads(tools)
            except ValueError:
                raise Unfit(f"{where}: 'tools' is not valid JSON") from None
        found.add(("tools", "tools"))
    for col in MEDIA_COLUMNS:  # media paths (relative to LLaMA-Factory's media_dir) for multimodal models
        value = row.get(col)
        if value is not None and not isinstance(value, str | list):
            raise Unfit(f"{where}: '{col}' is {_kind(value)}; expected a list of file paths")
        if value is not None:
            found.add((col, col))
    return found


def _check_history(where: str, history: Any) -> None:
    if history is None:
        return
    ok = isinstance(history, list) and all(
        isinstance(turn, list | tuple) and len(turn) == 2 and all(isinstance(t, str) for t in turn)
        for turn in history)
    if not ok:
        raise Unfit(f"{where}: 'history' must be a list of [instruction, response] string pairs")


def _require_text(where: str, row: dict[str, Any], col: str) -> None:
    value = row.get(col)
    if not isinstance(value, str):
        what = "empty (null)" if value is None else f"{_kind(value)}, not text"
        raise Unfit(f"{where}: '{col}' is {what}; LLaMA-Factory would drop or fail on this row")


def _optional_text(where: str, row: dict[str, Any], col: str) -> None:
    value = row.get(col)
    if value is not None and not isinstance(value, str):
        raise Unfit(f"{where}: '{col}' is {_kind(value)}, not text")


def _require_pair(where: str, row: dict[str, Any]) -> None:
    for have, lack in (("chosen", "rejected"), ("rejected", "chosen")):
        if have in row and lack not in row:
            raise Unfit(f"{where}: has '{have}' but no '{lack}'; a preference row needs both")


def _kto_column(where: str, row: dict[str, Any], variant: str) -> str | None:
    # "kto_tag" is the documented name; LLaMA-Factory's own kto_en_demo uses a boolean "label"
    if "kto_tag" in row:
        col = "kto_tag"
        if not isinstance(row[col], bool):
            raise Unfit(f"{where}: 'kto_tag' is {_kind(row[col])}; it must be true or false")
    elif isinstance(row.get("label"), bool):
        col = "label"
    else:
        return None
    if variant == "preference":
        raise Unfit(f"{where}: has both chosen/rejected and {col}; a row is either preference or KTO data")
    return col


def _first_key(row: dict[str, Any], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in row), None)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {str: "text", bool: "a boolean", int: "a number", float: "a number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)
