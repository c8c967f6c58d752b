"""Synonym classes for the decontamination gate: each word read as its WordNet class word.

A rephrasing swaps words for synonyms ("buys" -> "purchases", "children" -> "kids", "has" -> "owns"),
which breaks the masked word n-grams the rephrase score counts. So before n-grams are made, every word
of the table ``datafactory/data/decontam/synonyms.txt`` is replaced by its class word — on the eval
items and on the texts alike — and inflections go with it ("bought" and "purchased" are both "buy").
The table (WordNet 3.0, Princeton licence, ``datafactory/data/decontam/LICENSE``) is built by
``benchmarks/decontam_wordnet.py`` from the most frequent sense of each word of the GSM8K questions and
its synonyms' inflections; a word not in it (names, numbers, function words) is itself.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from datafactory.quality.decontam_index import KeyTable
from datafactory.quality.normalize import U64, tokenize_batch

TABLE = Path(__file__).resolve().parent.parent / "data" / "decontam" / "synonyms.txt"


class SynonymMap:
    """Word hash -> class word hash, for whole batches (one :class:`KeyTable` look-up)."""

    def __init__(self, lines: list[str]) -> None:
        heads, forms = [], []
        for line in lines:
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            heads.extend([words[0]] * (len(words) - 1))
            forms.extend(words[1:])
        if forms:
            tokens = tokenize_batch([" ".join(forms), " ".join(heads)])
            cut = int(tokens.word_offsets[1])
            form_hashes, head_hashes = tokens.word_hashes[:cut], tokens.word_hashes[cut:]
        else:
            form_hashes = head_hashes = np.zeros(0, np.uint64)
        keys, first = np.unique(form_hashes, return_index=True)
        self.forms: U64 = keys  # the table's words, sorted
        self.table = KeyTable(keys)
        self.heads: U64 = head_hashes[first]
        self.size = len(keys)

    def __len__(self) -> int:
        return self.size

    def map(self, hashes: U64) -> U64:
        """Each word hash replaced by its class word's hash (itself when not in the table)."""
        at = self.table.find(hashes)
        return np.where(at >= 0, self.heads[np.maximum(at, 0)], hashes) if self.size else hashes


@functools.lru_cache(maxsize=4)
def synonym_map(path: Path = TABLE) -> SynonymMap:
    """The shipped table, read once per process."""
    return SynonymMap(path.read_text(encoding="utf-8").splitlines())
