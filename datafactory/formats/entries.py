"""Each output format's LLaMA-Factory ``dataset_info.json`` entry, from the configuration alone.

The augment engine knows the shape of every row it writes (``formats/output.py``), so it does not
re-detect the file it just wrote: the format that shaped the rows says how LLaMA-Factory reads them.
The one thing a configuration cannot know is whether a conversation had a system turn, so the
writers report which of a format's :attr:`FormatEntry.maybe` columns occur in the rows.
``formats/detect.py`` stays for ``build-info`` and, in the tests, as the cross-check that each
format's entry is what detection finds in the written file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datafactory.errors import DatasetNotRegistered
from datafactory.formats.rows import DEFAULT_ROLES, MEDIA_COLUMNS, TAG_STYLES

if TYPE_CHECKING:  # config.pipeline takes its output.format choices from this registry
    from datafactory.config.pipeline import OutputConfig

# optional LLaMA-Factory columns an output column may fill under its own name
_COMMON = ("system", "tools", *MEDIA_COLUMNS)


@dataclass(frozen=True, slots=True)
class FormatEntry:
    """``entry(cfg, present)`` -> the entry without ``file_name`` (None: not a LLaMA-Factory format);
    ``maybe(cfg)`` -> top-level columns that only some rows may hold (``present`` says which did)."""

    entry: Callable[[OutputConfig, frozenset[str]], dict[str, Any] | None]
    maybe: Callable[[OutputConfig], tuple[str, ...]] = lambda cfg: ()


def _alpaca(columns: dict[str, str], *, ranking: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"formatting": "alpaca", "columns": dict(sorted(columns.items()))}
    if ranking:
        entry["ranking"] = True
    return entry


def _sharegpt(messages: str, style: str, columns: dict[str, str], *, ranking: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"formatting": "sharegpt",
                             "columns": dict(sorted({"messages": messages, **columns}.items()))}
    if ranking:
        entry["ranking"] = True
    entry["tags"] = {"role_tag": style, "content_tag": TAG_STYLES[style], **DEFAULT_ROLES[style]}
    return entry


def _style(cfg: OutputConfig) -> tuple[str, str]:
    """(messages column, tag style) of the sharegpt rows ``cfg`` makes."""
    return ("messages", "role") if cfg.tags == "role_content" else ("conversations", "from")


def _named(cfg: OutputConfig, present: frozenset[str] = frozenset()) -> dict[str, str]:
    return {c: c for c in _COMMON if c in cfg.columns or c in present}


def alpaca_entry(cfg: OutputConfig, present: frozenset[str]) -> dict[str, Any]:
    extra = {"history": "history"} if "history" in cfg.columns else {}
    return _alpaca({"prompt": "instruction", "query": "input", "response": "output", **extra, **_named(cfg)})


def sharegpt_entry(cfg: OutputConfig, present: frozenset[str]) -> dict[str, Any]:
    messages, style = _style(cfg)
    return _sharegpt(messages, style, _named(cfg, present))


def preference_entry(cfg: OutputConfig, present: frozenset[str]) -> dict[str, Any]:
    pair = {"chosen": "chosen", "rejected": "rejected"}
    if cfg.style == "sharegpt":
        messages, style = _style(cfg)
        return _sharegpt(messages, style, pair, ranking=True)
    return _alpaca({"prompt": "instruction", "query": "input", **pair}, ranking=True)


def kto_entry(cfg: OutputConfig, present: frozenset[str]) -> dict[str, Any]:
    if cfg.style == "sharegpt":  # KTO conversations are always written role/content
        return _sharegpt("messages", "role", {"kto_tag": "kto_tag"})
    return _alpaca({"prompt": "instruction", "query": "input", "response": "output", "kto_tag": "kto_tag"})


def no_entry(cfg: OutputConfig, present: frozenset[str]) -> None:
    """Plain JSONL rows (id, source, output) are for any tool, not a LLaMA-Factory format."""
    return None


FORMAT_ENTRIES: dict[str, FormatEntry] = {
    "alpaca": FormatEntry(alpaca_entry),
    "sharegpt": FormatEntry(sharegpt_entry, maybe=lambda cfg: ("system",)),
    "preference": FormatEntry(preference_entry),
    "kto": FormatEntry(kto_entry),
    "jsonl": FormatEntry(no_entry),
}


def dataset_entry(cfg: OutputConfig, present: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """The entry (without ``file_name``) for datasets written under ``cfg``; None for jsonl."""
    try:
        spec = FORMAT_ENTRIES[cfg.format]
    except KeyError:
        raise DatasetNotRegistered(f"output format '{cfg.format}' has no dataset_info entry",
                                   dataset=cfg.name, format=cfg.format) from None
    return spec.entry(cfg, present)
