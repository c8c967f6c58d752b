"""Decontamination's ``ngram`` method: reject records that share a word n-gram with an evaluation set
(the gate that combines it with the rephrase score is :mod:`datafactory.quality.decontam_gate`).

Synthetic data made from (or by a model that memorised) benchmark questions inflates the scores
of the model trained on it, so a record that shares any normalised 13-word run with an eval item
is dropped (n = 13 as in the GPT-3 paper's contamination analysis). Both sides are normalised by
:mod:`datafactory.quality.normalize`, so case, punctuation and spacing changes do not hide a copy.

Eval items shorter than n words are matched whole: a record containing the whole item as a run of
words is contaminated. A record shorter than n words can only match such short items.

Each n-gram is stored as a 64-bit hash of its words' hashes
(:class:`~datafactory.quality.shingle.WordRuns`) in one sorted numpy array, beside the index of
the first eval item that has it: 12 bytes per n-gram, so the GSM8K test split (45k n-grams) costs
~0.5 MB, and a batch of records is judged by one tokenisation (shared with the dedup gates, see
:func:`~datafactory.quality.normalize.tokens_for`), one rolling hash pass per n-gram size and one
``searchsorted``, with no Python loop over words. The GSM8K test split (MIT, see
``datafactory/data/gsm8k/LICENSE``) ships with the package: :func:`builtin_eval_set`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import orjson

from datafactory.errors import InputError, UnknownName
from datafactory.quality.gate import FieldSpec, Reject, field_names, field_texts, value_text
from datafactory.quality.normalize import I64, U64, TokenBatch, tokenize_batch, tokens_for
from datafactory.quality.shingle import WordRuns
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


BATCH = 1024  # eval items per tokenisation pass when loading


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
        self._keys: U64 = np.zeros(0, np.uint64)  # sorted n-gram hashes
        self._owners: I64 = np.zeros(0, np.int64)  # index into _ids of the first item with each
        self._ids: list[str] = []
        self._shift, self._filter = np.uint64(48), np.zeros(1 << 16, np.bool_)
        self._lengths = {ngram}  # n-gram sizes to try on a record: ngram plus short items' lengths
        self.items = 0
        for spec in eval_sets:
            self.add_eval_set(spec, text_field)

    def __len__(self) -> int:
        """Number of distinct n-grams held."""
        return len(self._keys)

    def add_eval_set(self, spec: EvalSpec, text_field: str = "question", name: str | None = None) -> int:
        """Load one JSONL eval set (a path or a built-in name); returns how many items it had."""
        items = load_eval_set(eval_set_path(spec), text_field, name)
        self.add_items(items)
        return len(items)

    def add_items(self, items: Iterable[tuple[str, str]]) -> None:
        """Add (eval id, text) pairs from any source; the first item to own an n-gram names it."""
        keys, owners = [self._keys], [self._owners]
        pairs = list(items)
        for lo in range(0, len(pairs), BATCH):
            chunk = pairs[lo : lo + BATCH]
            tokens = tokenize_batch([text for _, text in chunk])
            runs, counts = WordRuns(tokens), tokens.word_counts()
            grams, rows, _ = runs.ngrams(self.ngram)
            # an item shorter than n words is one gram of all its words
            short = np.flatnonzero((counts > 0) & (counts < self.ngram))
            self._lengths.update(counts[short].tolist())
            whole = runs.hashes(tokens.word_offsets[short], counts[short])
            order = np.argsort(np.concatenate([rows, short]), kind="stable")  # back into item order
            keys.append(np.concatenate([grams, whole])[order])
            owners.append(np.concatenate([rows, short])[order] + len(self._ids))
            self._ids.extend(eval_id for eval_id, _ in chunk)
        self.items += len(pairs)
        # np.unique keeps each key's first occurrence: held keys first, then items in order
        merged = np.concatenate(keys)
        self._keys, first = np.unique(merged, return_index=True)
        self._owners = np.concatenate(owners)[first]
        # a bitmap of the keys' top bits (~16 slots per key, <= 6% false hits) answers most
        # look-ups in one gather; only its hits pay for a binary search in the 45k+ sorted keys
        self._shift = np.uint64(64 - max(16, (len(self._keys) * 16).bit_length()))
        self._filter = np.zeros(1 << (64 - int(self._shift)), np.bool_)
        self._filter[self._keys >> self._shift] = True

    def check(self, record: Record) -> Reject | None:
        return self.check_batch([record])[0]

    def check_batch(self, records: Sequence[Record]) -> list[Reject | None]:
        """Equal to ``[check(r) for r in records]``, in one numpy pass."""
        return self.check_texts(field_texts(records, self.fields))

    def check_text(self, text: str) -> Reject | None:
        """Judge any text (an input row before it is sent, say) the way ``check`` judges a record."""
        return self.check_texts([text])[0]

    def check_texts(self, texts: Sequence[str]) -> list[Reject | None]:
        """Judge many texts; see :meth:`check_tokens`."""
        return self.check_tokens(tokens_for(texts))

    def check_tokens(self, tokens: TokenBatch) -> list[Reject | None]:
        """Per row: the first hit of the longest n-gram size that hits (the most telling overlap)."""
        return [None if hit is None else Reject("contaminated", f'{self._ids[hit[0]]} shares "{hit[1]}"')
                for hit in self.hits(tokens)]

    def hits(self, tokens: TokenBatch) -> list[tuple[int, str] | None]:
        """Per row: (index of the eval item, in the order added, and the shared words) or None."""
        out: list[tuple[int, str] | None] = [None] * len(tokens)
        if not len(self._keys) or not len(tokens):
            return out
        runs, counts = WordRuns(tokens), tokens.word_counts()
        open_rows = np.arange(len(tokens))
        for n in sorted(self._lengths, reverse=True):
            long_enough = open_rows[counts[open_rows] >= n]
            if not len(long_enough):
                continue
            grams, rows, starts = runs.ngrams(n, long_enough)
            maybe = np.flatnonzero(self._filter[grams >> self._shift])
            at = np.zeros(len(grams), np.int64)
            at[maybe] = np.minimum(np.searchsorted(self._keys, grams[maybe]), len(self._keys) - 1)
            hit = maybe[self._keys[at[maybe]] == grams[maybe]]
            if not len(hit):
                continue
            hit_rows, first = np.unique(rows[hit], return_index=True)  # grams come in position order
            for row, j in zip(hit_rows.tolist(), hit[first].tolist(), strict=True):
                begin = int(starts[j] - tokens.word_offsets[row])
                words = tokens.row_text(row).split(" ")[begin : begin + n]
                out[row] = (int(self._owners[at[j]]), " ".join(words))
            open_rows = np.setdiff1d(open_rows, hit_rows, assume_unique=True)
        return out
