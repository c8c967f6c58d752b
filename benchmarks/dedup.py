"""Exact + MinHash near-duplicate dedup throughput, recall and memory on one core.

    .venv/bin/python benchmarks/dedup.py [--rows N] [--batch B] [--subset S] [--seed K]

Rows are GSM8K-like questions of 40-80 words drawn from a word-bigram model of the shipped GSM8K
test split (so common phrases repeat the way they do in real synthetic data), deterministic for a
seed. About 10% of rows are near copies of an earlier row made by 1-4 small word edits (replace,
drop, insert, swap) and 2% are exact copies with case/spacing/punctuation changes. Only the gate's
``check_batch`` calls are timed; generating rows is not.

Reported: rows/s by this process's CPU time (what one core buys, steady on a shared box) and by
the wall clock; recall = share of near copies whose true word-3-gram Jaccard with their source
is >= 0.8 that were rejected; false positives = share of original rows rejected although their
true Jaccard with the row named in the reject detail is < 0.8; peak RSS (getrusage) and the bytes
the gate holds. Then the first ``--subset`` rows again through datasketch's plain per-row path
(MinHash.update per shingle, MinHashLSH 16x8 query+insert, a Python set for exact) and through
ours, for the ratio.

This is the gates' batch path on large batches (1024 rows): their recall and memory at scale. What
the gates cost on the engine path — the shipped pipeline's gate objects fed micro-batches of 64 through
the engine's own classes — is ``benchmarks/engine_gates.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, whatever numpy links against

import numpy as np
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datafactory.quality.decontam import builtin_eval_set  # noqa: E402
from datafactory.quality.dedup import Dedup  # noqa: E402
from datafactory.quality.gate import Reject  # noqa: E402
from datafactory.quality.normalize import normalize_words  # noqa: E402
from datafactory.record import Record  # noqa: E402

THRESHOLD = 0.8


class Generator:
    """Streams rows; keeps only a window of recent originals, so memory stays the gate's."""

    def __init__(self, seed: int, window: int = 20_000) -> None:
        self.rng = np.random.default_rng(seed)
        questions = [json.loads(line)["question"] for line in builtin_eval_set("gsm8k").open()]
        vocab: dict[str, int] = {}
        pairs: list[tuple[int, int]] = []
        firsts: list[int] = []
        for q in questions:
            ids = [vocab.setdefault(w, len(vocab)) for w in q.split()]
            firsts.append(ids[0])
            pairs += zip(ids, ids[1:], strict=False)
        self.words = np.array(list(vocab), dtype=object)
        pair_arr = np.array(sorted(pairs), np.int64)
        self.succ = pair_arr[:, 1]
        self.succ_start = np.searchsorted(pair_arr[:, 0], np.arange(len(vocab) + 1))
        self.unigram = pair_arr[:, 1]  # successor list doubles as a frequency-weighted unigram bag
        self.firsts = np.array(firsts, np.int64)
        self.recent: deque[tuple[int, list[str]]] = deque(maxlen=window)

    def originals(self, n: int) -> list[list[str]]:
        lengths = self.rng.integers(40, 81, n)
        state = self.rng.choice(self.firsts, n)
        out = np.empty((n, 80), np.int64)
        for step in range(80):
            out[:, step] = state
            count = self.succ_start[state + 1] - self.succ_start[state]
            pick = (self.rng.random(n) * np.maximum(count, 1)).astype(np.int64)
            follow = self.succ[self.succ_start[state] + pick]
            # half the steps jump to a frequency-weighted random word, so rows do not copy long
            # stretches of the same GSM8K question (that would make "originals" near copies)
            jump = (self.rng.random(n) < 0.5) | (count == 0)
            state = np.where(jump, self.unigram[self.rng.integers(0, len(self.unigram), n)], follow)
        return [list(self.words[row[:length]]) for row, length in zip(out, lengths, strict=True)]

    def near_copy(self, words: list[str]) -> list[str]:
        words = list(words)
        for _ in range(int(self.rng.integers(1, 5))):
            i = int(self.rng.integers(0, len(words)))
            op = int(self.rng.integers(0, 4))
            new = str(self.words[self.unigram[self.rng.integers(0, len(self.unigram))]])
            if op == 0:
                words[i] = new
            elif op == 1 and len(words) > 5:
                del words[i]
            elif op == 2:
                words.insert(i, new)
            elif i + 1 < len(words):
                words[i], words[i + 1] = words[i + 1], words[i]
        return words

    def batch(self, start: int, n: int) -> tuple[list[str], list[tuple[int, str, int]]]:
        """n texts, plus (row, kind, source row) for every copy among them."""
        originals = self.originals(n)
        texts: list[str] = []
        copies: list[tuple[int, str, int]] = []
        for i in range(n):
            row, roll = start + i, self.rng.random()
            if self.recent and roll < 0.12:
                src_row, src = self.recent[int(self.rng.integers(0, len(self.recent)))]
                if roll < 0.02:
                    words, kind = [w.upper() if k % 7 == 0 else w for k, w in enumerate(src)], "exact"
                    texts.append("  ".join(words) + " .")
                else:
                    words, kind = self.near_copy(src), "near"
                    texts.append(" ".join(words))
                copies.append((row, kind, src_row))
            else:
                self.recent.append((row, originals[i]))
                texts.append(" ".join(originals[i]))
        return texts, copies


class TextStore:
    """All generated texts in one bytearray, so scoring can look any row up without a list of
    100k+ str objects inflating the RSS we report."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.ends = [0]

    def extend(self, texts: list[str]) -> None:
        for text in texts:
            self.blob += text.encode()
            self.ends.append(len(self.blob))

    def __getitem__(self, row: int) -> str:
        return self.blob[self.ends[row] : self.ends[row + 1]].decode()

    @property
    def nbytes(self) -> int:
        return len(self.blob) + 8 * len(self.ends)


def shingles(text: str, k: int = 3) -> set[str]:
    words = normalize_words(text)
    return {" ".join(words[i : i + k]) for i in range(max(len(words) - k + 1, 1))}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / max(len(sa | sb), 1)


@dataclass
class Tally:
    seconds: float = 0.0  # wall clock
    cpu: float = 0.0  # this process's CPU time: what "one core" buys, whatever else runs on the box
    rejected: dict[int, Reject] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        self.seconds += other.seconds
        self.cpu += other.cpu
        self.rejected.update(other.rejected)


def run_ours(texts_batches: list[tuple[int, list[str]]], gate: Dedup) -> Tally:
    tally = Tally()
    for start, texts in texts_batches:
        records = [Record(id=f"row:{start + i}", source={}, fields={"question": t})
                   for i, t in enumerate(texts)]
        t0, c0 = time.perf_counter(), time.process_time()
        verdicts = gate.check_batch(records)
        tally.seconds += time.perf_counter() - t0
        tally.cpu += time.process_time() - c0
        tally.rejected.update((start + i, v) for i, v in enumerate(verdicts) if v is not None)
    return tally


def run_datasketch(texts: list[str]) -> Tally:
    from datasketch import MinHash, MinHashLSH

    tally, seen, lsh = Tally(), set(), MinHashLSH(threshold=THRESHOLD, num_perm=128, params=(16, 8))
    t0, c0 = time.perf_counter(), time.process_time()
    for row, text in enumerate(texts):
        words = normalize_words(text)
        key = xxhash.xxh3_64_intdigest(" ".join(words).encode())
        if key in seen:
            tally.rejected[row] = Reject("duplicate")
            continue
        m = MinHash(num_perm=128, seed=1)
        for i in range(max(len(words) - 2, 1)):
            m.update(" ".join(words[i : i + 3]).encode())
        found = lsh.query(m)
        if found:
            tally.rejected[row] = Reject("near_duplicate", f"similar to row:{found[0]}")
            continue
        seen.add(key)
        lsh.insert(str(row), m)
    tally.seconds, tally.cpu = time.perf_counter() - t0, time.process_time() - c0
    return tally


def score(tally: Tally, texts: TextStore, copies: list[tuple[int, str, int]], n: int) -> dict[str, float]:
    copy_rows = {row for row, _, _ in copies}
    near = [(row, src) for row, kind, src in copies if kind == "near" and row < n]
    high = [(row, src) for row, src in near if jaccard(texts[row], texts[src]) >= THRESHOLD]
    exact = [row for row, kind, _ in copies if kind == "exact" and row < n]
    false_pos = 0
    for row, verdict in tally.rejected.items():
        if row in copy_rows or row >= n:
            continue
        by = int(verdict.detail.rsplit(":", 1)[-1]) if "row:" in verdict.detail else -1
        if by < 0 or jaccard(texts[row], texts[by]) < THRESHOLD:
            false_pos += 1
    originals = n - len([r for r in copy_rows if r < n])
    return {
        "rows_per_s": n / tally.seconds,
        "rows_per_cpu_s": n / tally.cpu,
        "recall": sum(row in tally.rejected for row, _ in high) / max(len(high), 1),
        "exact_recall": sum(row in tally.rejected for row in exact) / max(len(exact), 1),
        "fp_rate": false_pos / max(originals, 1),
        "near_copies": len(high),
    }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--subset", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-datasketch", action="store_true")
    args = parser.parse_args(argv)

    gen = Generator(args.seed)
    store = TextStore()
    copies: list[tuple[int, str, int]] = []
    gate = Dedup("question", threshold=THRESHOLD)
    baseline = peak_rss_mib()
    tally = Tally()
    for start in range(0, args.rows, args.batch):
        texts, batch_copies = gen.batch(start, min(args.batch, args.rows - start))
        copies += batch_copies
        tally.add(run_ours([(start, texts)], gate))
        store.extend(texts)
    peak = peak_rss_mib()
    full = score(tally, store, copies, args.rows)
    subset = [store[i] for i in range(min(args.subset, args.rows))]

    name = "datafactory Dedup (numpy MinHash + own LSH table)"
    table: list[tuple[str, int, dict[str, float], str, str]] = [
        (name, args.rows, full, f"{peak:.0f}", f"{gate.nbytes / 2**20:.1f}")
    ]
    if not args.skip_datasketch:
        batches = [(s, subset[s : s + args.batch]) for s in range(0, len(subset), args.batch)]
        small = run_ours(batches, Dedup("question", threshold=THRESHOLD))
        table.append(("datafactory Dedup, same subset", len(subset), score(small, store, copies, len(subset)),
                      "-", "-"))
        ds = run_datasketch(subset)
        table.append(("datasketch MinHash.update + MinHashLSH(16x8)", len(subset),
                      score(ds, store, copies, len(subset)), "-", "-"))

    print(f"\nrows={args.rows} batch={args.batch} seed={args.seed} near copies (J>=0.8)={full['near_copies']}"
          f" baseline RSS={baseline:.0f} MiB\n")
    print("| method | rows | rows/s (CPU) | rows/s (wall) | near-copy recall (J>=0.8) | exact-copy recall "
          "| false-positive rate | peak RSS MiB | gate MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, n, s, rss, held in table:
        print(f"| {name} | {n} | {s['rows_per_cpu_s']:,.0f} | {s['rows_per_s']:,.0f} | {s['recall']:.3f} "
              f"| {s['exact_recall']:.3f} | {s['fp_rate']:.4f} | {rss} | {held} |")
    if not args.skip_datasketch:
        ratio = table[1][2]["rows_per_cpu_s"] / table[2][2]["rows_per_cpu_s"]
        print(f"\nspeed-up over datasketch's per-row path, same {len(subset)} rows, CPU time: {ratio:.1f}x")
    growth = max(peak - baseline - store.nbytes / 2**20, 0.0)
    scale = 1e6 / args.rows
    note = "" if args.rows == 1_000_000 else f" (scaled from {args.rows} rows; tables grow by 1.5x)"
    print(f"memory per 1M rows{note}: gate holds {gate.nbytes * scale / 2**20:.0f} MiB; peak RSS growth "
          f"less the stored benchmark texts {growth * scale:.0f} MiB")


if __name__ == "__main__":
    main()
