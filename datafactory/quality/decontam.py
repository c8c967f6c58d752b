"""Decontamination: reject records that share a word n-gram with an evaluation set.

Synthetic data made from (or by a model that memorised) benchmark questions inflates the scores
of the model trained on it, so a record that shares any normalised 13-word run with an eval item
is dropped (n = 13 as in the GPT-3 paper's contamination analysis). Both sides are normalised by
:mod:`datafactory.quality.normalize`, so case, punctuation and spacing changes do not hide a copy.

Eval items shorter than n words are matched whole: a record containing the whole item as a run of
words is contaminated. A record shorter than n words can only match such short items.

Each n-gram is stored as the xxh3_64 of its text in a dict to the first eval item that has it:
~80 bytes per n-gram, so the GSM8K test split (45k n-grams) costs ~4 MB and a check is a few
dozen dict look-ups. The GSM8K test split (MIT, see ``datafactory/data/gsm8k/LICENSE``) ships with
the package: :func:`builtin_eval_set`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson
import xxhash

from datafactory.errors import InputError, UnknownName
from datafactory.quality.gate import FieldSpec, Reject, field_names, field_text, value_text
from datafactory.quality.normalize import normalize_words
from datafactory.record import Record

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BUILTIN_EVAL_SETS: dict[str, tuple[str, ...]] = {"gsm8k": ("gsm8k", "test.jsonl")}

EvalSpec = str | os.PathLike[str]


def builtin_eval_set(name: str) -> Path:
    """Path of an evaluation set shipped with datafactory (``"gsm8k"``: the GSM8K test split)."""
    try:
        parts = BUILTIN_EVAL_SETS[name]
    except KeyError:
        choices = ", ".join(sorted(BUILTIN_EVAL_SETS))
        raise UnknownName(f"unknown built-in eval set {name!r}; choices: {choices}") from None
    return DATA_DIR.joinpath(*parts)


def eval_set_path(spec: EvalSpec) -> Path:
    """A file path as given, or a built-in set's path when ``spec`` is a built-in name."""
    if isinstance(spec, str) and spec in BUILTIN_EVAL_SETS and not Path(spec).exists():
        return builtin_eval_set(spec)
    return Path(spec)


def eval_set_name(path: Path) -> str:
    """How eval ids from ``path`` are prefixed: ``<folder>-<stem>``, e.g. ``gsm8k-test``."""
    return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem


def load_eval_set(path: Path, text_field: str = "question", name: str | None = None) -> list[tuple[str, str]]:
    """(eval id, text) for each row of a JSONL file; the id is ``name:index`` with the 0-based
    index of the row among the file's non-blank lines (the same as a datasets row index)."""
    prefix = name or eval_set_name(path)
    items: list[tuple[str, str]] = []
    try:
        with path.open("rb") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise InputError(f"not JSON: {exc}", file=str(path), line=line_no) from None
                if not isinstance(row, dict) or text_field not in row:
                    raise InputError(f"no {text_field!r} field in this row", file=str(path), line=line_no)
                items.append((f"{prefix}:{len(items)}", value_text(row[text_field])))
    except OSError as exc:
        raise InputError(f"cannot read eval set: {exc.strerror or exc}", file=str(path)) from None
    return items


def _gram_hash(words: Sequence[str]) -> int:
    return xxhash.xxh3_64_intdigest(" ".join(words).encode())


class Decontaminator:
    """Rejects a record sharing a normalised word ``ngram`` with an eval item (reason
    ``contaminated``; detail: the eval id, e.g. ``gsm8k-test:123``, and the shared words).

    ``eval_sets`` are JSONL paths or built-in names (``"gsm8k"``); ``text_field`` is the field
    read from each eval row. ``fields`` are the record's output fields checked, joined by newlines.
    """

    name = "decontam"

    def __init__(self, ngram: int = 13, fields: FieldSpec = ("question",),
                 eval_sets: Sequence[EvalSpec] = ("gsm8k",), text_field: str = "question") -> None:
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}")
        self.ngram = ngram
        self.fields = field_names(fields)
        self._grams: dict[int, str] = {}
        self._lengths = {ngram}  # n-gram sizes to try on a record: ngram plus short items' lengths
        self.items = 0
        for spec in eval_sets:
            self.add_eval_set(spec, text_field)

    def __len__(self) -> int:
        """Number of distinct n-grams held."""
        return len(self._grams)

    def add_eval_set(self, spec: EvalSpec, text_field: str = "question", name: str | None = None) -> int:
        """Load one JSONL eval set (a path or a built-in name); returns how many items it had."""
        items = load_eval_set(eval_set_path(spec), text_field, name)
        self.add_items(items)
        return len(items)

    def add_items(self, items: Iterable[tuple[str, str]]) -> None:
        """Add (eval id, text) pairs from any source; the first item to own an n-gram names it."""
        n = self.ngram
        for eval_id, text in items:
            words = normalize_words(text)
            self.items += 1
            if not words:
                continue
            if len(words) < n:
                self._lengths.add(len(words))
                self._grams.setdefault(_gram_hash(words), eval_id)
                continue
            for i in range(len(words) - n + 1):
                self._grams.setdefault(_gram_hash(words[i : i + n]), eval_id)

    def check(self, record: Record) -> Reject | None:
        return self.check_text(field_text(record, self.fields))

    def check_text(self, text: str) -> Reject | None:
        """Judge any text (an input row before it is sent, say) the way ``check`` judges a record."""
        words = normalize_words(text)
        grams = self._grams
        # longest first, so the detail shows the most telling overlap
        for n in sorted(self._lengths, reverse=True):
            for i in range(len(words) - n + 1):
                eval_id = grams.get(_gram_hash(words[i : i + n]))
                if eval_id is not None:
                    return Reject("contaminated", f'{eval_id} shares "{" ".join(words[i : i + n])}"')
        return None
