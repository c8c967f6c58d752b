"""What each gate reads, decided once at config time — and the same thing again on a resume.

A gate names fields; a name is an output column (what ``data/`` holds) or a property of the model's
object. During a run gates see the shaped row over the model's object (``{**obj, **row}``: a column wins
over a property of the same name); a resume seeds dedup memory from the stored rows only. So every
name that a column carries is resolved to that column (``fields: [question]`` with ``columns:
{instruction: question}`` reads ``instruction``), and both paths read the same value. A name that no
column carries is read from the model's object; the stored ``jsonl`` row without columns holds that
object whole (its ``output``); for other shapes the values such a gate with memory read are stored beside
the written row (``engine/commit.py``, ``gate_reads`` in the cache), and a resume seeds from those.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datafactory.formats.output import row_columns, stored_view

if TYPE_CHECKING:
    from datafactory.config.pipeline import OutputConfig


@dataclass(frozen=True, slots=True)
class GateContext:
    """What building a gate needs from the rest of the pipeline."""

    output: OutputConfig
    paired: bool  # preference/KTO: the answer check tags samples; gates see samples and pairs (steps/pair.py)

    def reads(self, names: str | Iterable[str]) -> tuple[str, ...]:
        """The fields a gate reads, each name resolved to the output column that carries it."""
        names = (names,) if isinstance(names, str) else tuple(names)
        if self.paired:
            return names
        columns = row_columns(self.output)
        carried: dict[str, str] = {}
        for col, ref in self.output.columns.items():
            if not ref.startswith("source."):
                carried.setdefault(ref, col)
        return tuple(n if n in columns or n not in carried else carried[n] for n in names)

    def needs_object(self, fields: Iterable[str]) -> bool:
        """Whether a gate reading ``fields`` needs the model's object beside the shaped row."""
        if self.paired:
            return False
        columns = row_columns(self.output)
        return any(name not in columns for name in fields)

    def stored(self, row: dict[str, Any]) -> dict[str, Any]:
        """What a gate saw for a row read back from the commit log (resume seeding)."""
        return stored_view(self.output, row)
