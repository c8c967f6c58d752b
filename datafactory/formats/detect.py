"""Detect which LLaMA-Factory dataset format a file holds, and the ``dataset_info.json`` entry for it.

The entries follow LLaMA-Factory 0.9.5 (``data/README.md`` and ``DatasetAttr`` in
``llamafactory/data/parser.py``). Two rules of that parser shape them: once an entry has a
``columns`` (or ``tags``) object, every key it does not name becomes ``None`` (so entries name every
column they use), and ``ranking: true`` is what makes a dataset a preference dataset.

Formats (``Detection.format``) and the training stage they suit:

=====================  ======  ============================================================
alpaca                 sft     instruction (prompt/question) + output (response/answer/completion),
                               optional input, system, history, tools, images/videos/audios
alpaca-preference      dpo/rm  instruction + chosen + rejected strings            -> ranking
alpaca-kto             kto     instruction + output + kto_tag (bool; or a boolean "label")
sharegpt               sft     conversations/messages: from/value or role/content messages,
                               optional system, tools, images/videos/audios columns
sharegpt-preference    dpo/rm  conversations + chosen/rejected message objects   -> ranking
sharegpt-kto           kto     conversations + kto_tag (bool; or a boolean "label")
text                   pt      text
=====================  ======  ============================================================

Rows are classified one by one (the first ``sample_rows``); rows of different shapes, rows that
LLaMA-Factory would drop (a conversation that does not alternate, a null response) and files it
could not load give a reason instead of an entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datafactory.formats.rows import DEFAULT_ROLES, TAG_STYLES, RowShape, row_shape
from datafactory.formats.sampling import Unfit, is_save_to_disk_dir, read_sample, save_to_disk_data_file

SAMPLE_ROWS = 200
STAGES = {"alpaca": "sft", "sharegpt": "sft", "alpaca-preference": "dpo", "sharegpt-preference": "dpo",
          "alpaca-kto": "kto", "sharegpt-kto": "kto", "text": "pt"}


@dataclass(frozen=True, slots=True)
class Detection:
    """What a dataset file holds: a format and its entry, or the reason it could not be classified.

    ``entry`` is the ``dataset_info.json`` entry without ``file_name``; ``data_file`` is the file the
    entry must point to (the .arrow file for a ``save_to_disk`` folder); ``tag_slots_seen`` are the
    sharegpt tag slots whose roles occur in the sampled rows.
    """

    path: Path
    format: str | None = None
    entry: dict[str, Any] | None = None
    rows: int | None = None
    reason: str | None = None
    data_file: Path | None = None
    warnings: tuple[str, ...] = ()
    tag_slots_seen: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        """True when the file was classified."""
        return self.entry is not None

    @property
    def stage(self) -> str | None:
        """The LLaMA-Factory ``stage`` this data is for (sft, dpo, kto, pt; dpo data also serves rm)."""
        return STAGES.get(self.format or "")


def detect_file(path: str | Path, *, sample_rows: int = SAMPLE_ROWS) -> Detection:
    """Classify a dataset file (or ``save_to_disk`` folder) from its first ``sample_rows`` rows."""
    path = Path(path)
    try:
        if path.is_dir() and not is_save_to_disk_dir(path):
            raise Unfit(f"{path}: a folder, but not one written by datasets' save_to_disk")
        data_file = save_to_disk_data_file(path) if path.is_dir() else path
        sample = read_sample(data_file, sample_rows, label=str(path))
        if sample.source == "csv" and "kto_tag" in sample.rows[0][1]:
            raise Unfit(f"{path}: kto_tag must be a boolean, which CSV cannot hold reliably - use JSON Lines "
                        "or Parquet")
        shape, optional, roles = classify_rows(sample.rows)
        fmt, entry = _entry(shape, optional, roles)
        text_columns = [c for k, c in [*shape.columns, *optional]
                        if k not in ("kto_tag", "history", "messages")]
        numeric = sorted(set(text_columns) & sample.numeric_columns)
        if numeric:
            raise Unfit(f"{path}: column '{numeric[0]}' holds only numbers, which LLaMA-Factory's CSV loader "
                        "(pandas) reads as numbers, not text - save the data as JSON Lines or Parquet")
        warnings = list(sample.warnings)
    except Unfit as exc:
        return Detection(path=path, reason=str(exc))
    return Detection(path=path, format=fmt, entry=entry, rows=sample.total, data_file=data_file,
                     warnings=tuple(warnings), tag_slots_seen=frozenset(s for s, _ in roles))


def classify_rows(rows: list[tuple[str, dict[str, Any]]]
                  ) -> tuple[RowShape, frozenset[tuple[str, str]], tuple[tuple[str, str], ...]]:
    """The one shape all ``(where, row)`` rows share, the optional columns and the roles seen.

    Raises ``Unfit`` naming the first row that does not fit, or two rows of different shapes.
    """
    first: tuple[str, RowShape] | None = None
    optional: set[tuple[str, str]] = set()
    roles: dict[str, tuple[str, str]] = {}  # slot -> (role, where)
    for where, row in rows:
        shape = row_shape(where, row)
        if first is None:
            first = (where, shape)
        elif shape.signature != first[1].signature:
            raise Unfit(f"mixed formats: {first[0]} is {first[1].describe()} but {where} is "
                        f"{shape.describe()}; a LLaMA-Factory dataset has one format - split the file")
        optional |= shape.optional
        for slot, role in shape.roles:
            seen = roles.setdefault(slot, (role, where))
            if seen[0] != role:
                raise Unfit(f"mixed role names: {seen[1]} uses '{seen[0]}' and {where} uses '{role}' for the "
                            f"same role; LLaMA-Factory's {slot} takes one name - use one spelling")
    if first is None:
        raise Unfit("no rows")
    return first[1], frozenset(optional), tuple(sorted((s, r) for s, (r, _) in roles.items()))


def _entry(shape: RowShape, optional: frozenset[tuple[str, str]],
           roles: tuple[tuple[str, str], ...]) -> tuple[str, dict[str, Any]]:
    columns = dict(shape.columns) | dict(optional)
    entry: dict[str, Any] = {"formatting": "sharegpt" if shape.family == "sharegpt" else "alpaca",
                             "columns": dict(sorted(columns.items()))}
    if shape.variant == "preference":
        entry["ranking"] = True
    if shape.style is not None:
        entry["tags"] = {"role_tag": shape.style, "content_tag": TAG_STYLES[shape.style],
                         **DEFAULT_ROLES[shape.style], **dict(roles)}
    return shape.format_name, entry

