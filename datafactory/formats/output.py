"""Model JSON object (+ source row) → output rows in the shapes LLaMA-Factory and ``datasets`` expect.

``output.columns`` maps an output column to a property of the model's object (``question``), to a
mapped input field (``source.question``), or to the reply's reasoning trace (``response.reasoning``: a
reasoning model's chain of thought, for R1-style rows that keep it; empty when the model gave none).
Row-level shapes (alpaca, sharegpt, jsonl) turn one accepted object into one row; preference and KTO
are built from all samples of one input row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datafactory.config.pipeline import OutputConfig
from datafactory.errors import ValidationFailed

# role names → (from/value tag, role/content tag)
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
          "system": "system", "observation": "observation", "tool": "observation",
          "function_call": "function_call", "function": "function_call"}
_FROM = {"user": "human", "assistant": "gpt", "system": "system", "observation": "observation",
         "function_call": "function_call"}
_ROLE = {"user": "user", "assistant": "assistant", "system": "system", "observation": "tool",
         "function_call": "function_call"}


REASONING_REF = "response.reasoning"


def pick(ref: str, obj: dict[str, Any], source: dict[str, Any], reasoning: str | None = None) -> Any:
    if ref.startswith("source."):
        return source.get(ref[len("source."):])
    if ref == REASONING_REF:
        return reasoning or ""
    return obj.get(ref)


def alpaca(cfg: OutputConfig, obj: dict[str, Any], source: dict[str, Any], row_id: str,
           reasoning: str | None = None) -> dict[str, Any]:
    row = {col: pick(ref, obj, source, reasoning) for col, ref in cfg.columns.items()}
    row.setdefault("input", "")
    ordered: dict[str, Any] = {k: row.pop(k) for k in ("instruction", "input", "output") if k in row}
    ordered.update(row)
    return ordered


def jsonl(cfg: OutputConfig, obj: dict[str, Any], source: dict[str, Any], row_id: str,
          reasoning: str | None = None) -> dict[str, Any]:
    if cfg.columns:
        return {"id": row_id, **{col: pick(ref, obj, source, reasoning) for col, ref in cfg.columns.items()}}
    return {"id": row_id, "source": source, "output": obj}


def normalize_turns(turns: Any) -> tuple[str | None, list[tuple[str, str]]]:
    """A model's list of turns in either tag style → (system text, [(role, text)]). Raises
    ValidationFailed(reason='bad_turns') when the structure is not a usable conversation."""
    if not isinstance(turns, list) or not turns:
        raise ValidationFailed("conversation is not a non-empty list of turns", reason="bad_turns")
    system = None
    out: list[tuple[str, str]] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise ValidationFailed(f"turn {i} is not an object", reason="bad_turns")
        who = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        role = _ROLES.get(str(who).lower()) if who is not None else None
        if role is None or not isinstance(text, str) or not text.strip():
            raise ValidationFailed(f"turn {i} needs a known role and non-empty text", reason="bad_turns")
        if role == "system":
            if i != 0:
                raise ValidationFailed("a system turn may only come first", reason="bad_turns")
            system = text
            continue
        out.append((role, text))
    return system, out


def check_alternation(turns: list[tuple[str, str]]) -> None:
    """LLaMA-Factory's rule: user/observation turns at odd positions, assistant/function_call at even
    ones, ending with the assistant; anything else it would drop at training time."""
    for i, (role, _) in enumerate(turns):
        expected = ("user", "observation") if i % 2 == 0 else ("assistant", "function_call")
        if role not in expected:
            raise ValidationFailed(f"turn {i} is '{role}' but should be {' or '.join(expected)} "
                                   "(turns must alternate user/assistant)", reason="bad_turns")
    if len(turns) < 2 or len(turns) % 2:
        raise ValidationFailed("a conversation needs user/assistant pairs and must end with the assistant",
                               reason="bad_turns")


def sharegpt(cfg: OutputConfig, obj: dict[str, Any], source: dict[str, Any], row_id: str,
             reasoning: str | None = None) -> dict[str, Any]:
    system, turns = normalize_turns(obj.get(cfg.conversation))
    check_alternation(turns)
    if cfg.tags == "role_content":
        row: dict[str, Any] = {"messages": [{"role": _ROLE[r], "content": t} for r, t in turns]}
    else:
        row = {"conversations": [{"from": _FROM[r], "value": t} for r, t in turns]}
    if system:
        row["system"] = system
    for col, ref in cfg.columns.items():
        row[col] = pick(ref, obj, source, reasoning)
    return row


# (config, object, source, row id[, reasoning=...]) -> row
ROW_SHAPES: dict[str, Callable[..., dict[str, Any]]] = {
    "alpaca": alpaca, "jsonl": jsonl, "sharegpt": sharegpt,
}


def prompt_text(cfg: OutputConfig, source: dict[str, Any]) -> str:
    ref = cfg.columns.get("instruction", "source.question")
    value = pick(ref, {}, source)
    return "" if value is None else str(value)


def preference(cfg: OutputConfig, prompt: str, chosen: str, rejected: str) -> dict[str, Any]:
    if cfg.style == "sharegpt":
        if cfg.tags == "role_content":
            return {"messages": [{"role": "user", "content": prompt}],
                    "chosen": {"role": "assistant", "content": chosen},
                    "rejected": {"role": "assistant", "content": rejected}}
        return {"conversations": [{"from": "human", "value": prompt}],
                "chosen": {"from": "gpt", "value": chosen}, "rejected": {"from": "gpt", "value": rejected}}
    return {"instruction": prompt, "input": "", "chosen": chosen, "rejected": rejected}


def kto(cfg: OutputConfig, prompt: str, answer: str, good: bool) -> dict[str, Any]:
    if cfg.style == "sharegpt":
        return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                "kto_tag": good}
    return {"instruction": prompt, "input": "", "output": answer, "kto_tag": good}


def row_columns(cfg: OutputConfig) -> frozenset[str]:
    """The columns a row-level shape writes (what a gate reading the row finds there)."""
    if cfg.format == "jsonl":
        return frozenset({"id", *cfg.columns}) if cfg.columns else frozenset({"id", "source", "output"})
    if cfg.format == "sharegpt":
        turns = "messages" if cfg.tags == "role_content" else "conversations"
        return frozenset({turns, "system", *cfg.columns})
    if cfg.format == "alpaca":
        return frozenset({"instruction", "input", "output", *cfg.columns})
    return frozenset(cfg.columns)


def stored_view(cfg: OutputConfig, row: dict[str, Any]) -> dict[str, Any]:
    """What gates saw for a stored row: the row, over the model's object where the row holds it whole
    (``jsonl`` without columns keeps it as ``output``)."""
    if cfg.format == "jsonl" and not cfg.columns and isinstance(row.get("output"), dict):
        return {**row["output"], **row}
    return row
