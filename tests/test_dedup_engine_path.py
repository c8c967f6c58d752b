"""The dedup gates as the engine runs them: exact then near dedup fused into one pass, the tokens of a
text reused across the batches of different gates, and the bucketed hash table with its spill."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from datafactory.engine.ordered import OrderedGates
from datafactory.quality import token_cache
from datafactory.quality.decontam import builtin_eval_set
from datafactory.quality.dedup import ExactDedup, NearDedup, fuse
from datafactory.quality.gate import check_all
from datafactory.quality.hashtable import HashTable
from datafactory.quality.normalize import mix64, tokenize_batch, tokens_for
from datafactory.record import Record


@pytest.fixture(scope="module")
def questions() -> list[str]:
    return [json.loads(line)["question"] for line in builtin_eval_set("gsm8k").open()]


def rec(i: int | str, text: str) -> Record:
    return Record(id=f"r{i}", source={}, fields={"q": text}, meta={"seq": i} if isinstance(i, int) else {})


def feed(step: OrderedGates, texts: list[str]) -> None:
    """Every text as one row with one record, rows entered in order first (as the scheduler does), then closed."""
    for i in range(1, len(texts) + 1):
        step.enter(i)
    for i, text in enumerate(texts, 1):
        r = rec(i, text)
        step.submit(r, [r])
    step.close()


def mixed_texts(questions: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        q = rng.choice(questions[:120])
        roll = rng.random()
        if roll < 0.3:
            words = q.split()
            words[rng.randrange(len(words))] = "banana"
            q = " ".join(words)
        elif roll < 0.45:
            q = q.upper() + "  !"
        out.append(q)
    return [*out, "", "tiny", "tiny."]


def test_fused_exact_then_near_gives_the_verdicts_of_the_two_gates_in_turn(questions: list[str]) -> None:
    texts = mixed_texts(questions, 600, seed=3)
    records = [rec(i, t) for i, t in enumerate(texts)]
    apart, together = [ExactDedup("q"), NearDedup("q")], fuse([ExactDedup("q"), NearDedup("q")])
    assert len(together) == 1 and together[0].name == "exact_dedup+near_dedup"
    for lo in range(0, len(records), 64):
        batch = records[lo : lo + 64]
        want: list = [None] * len(batch)
        alive = list(range(len(batch)))
        for gate in apart:
            verdicts = check_all(gate, [batch[i] for i in alive])
            for i, v in zip(alive, verdicts, strict=True):
                want[i] = v
            alive = [i for i, v in zip(alive, verdicts, strict=True) if v is None]
        assert check_all(together[0], batch) == want
    reasons = {v.reason for v in want if v is not None}
    assert reasons  # the last batch alone has rejects of some kind; the run had both kinds
    # gates on other fields, or another order, are left as they are
    assert len(fuse([ExactDedup("q"), NearDedup("a")])) == 2
    assert len(fuse([NearDedup("q"), ExactDedup("q")])) == 2


def test_ordered_step_runs_exact_and_near_as_one_pass_with_the_same_outcomes(questions: list[str]) -> None:
    texts = mixed_texts(questions, 300, seed=4)

    def outcomes(gates: list) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        step = OrderedGates(gates, lambda row, outs: out.extend((r.id, r.meta.get("reason")) for r in outs),
                            max_wait_s=0, max_size=64)
        feed(step, texts)
        return out

    fused = outcomes([ExactDedup("q"), NearDedup("q")])
    assert {reason for _, reason in fused} >= {None, "duplicate", "near_duplicate"}
    # one gate per step run: exact alone, then near alone over exact's survivors, must agree
    exact_only = dict(outcomes([ExactDedup("q")]))
    survivors = [t for i, t in enumerate(texts, 1) if exact_only[f"r{i}"] is None]
    assert [reason for _, reason in fused if reason == "duplicate"] == [
        reason for reason in exact_only.values() if reason == "duplicate"]
    near_alone = NearDedup("q").check_batch([rec(f"s{i}", t) for i, t in enumerate(survivors)])
    assert sum(v is not None for v in near_alone) == sum(reason == "near_duplicate" for _, reason in fused)


def test_tokens_of_texts_seen_in_earlier_batches_are_gathered_not_tokenised_again(questions: list[str],
                                                                                   monkeypatch) -> None:
    calls: list[int] = []
    real = token_cache.tokenize_batch

    def counting(texts):  # counts what is tokenised; the tokens are the real ones
        calls.append(len(texts))
        return real(texts)

    monkeypatch.setattr(token_cache, "tokenize_batch", counting)
    pool = [*questions[:300], "Ünïcode — text’s “quotes”", ""]
    for lo in range(0, len(pool), 64):  # decontamination's batches, arrival order
        tokens_for(pool[lo : lo + 64])
    tokenised = sum(calls)
    rng = random.Random(1)
    for _ in range(20):  # the dedup gates' batches: other rows, other order, repeats
        texts = rng.sample(pool, 50) + [pool[3], pool[-2]]
        got, want = tokens_for(texts), real(texts)
        assert got.text == want.text
        for name in ("text_offsets", "word_hashes", "word_offsets"):
            assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert sum(calls) == tokenised  # every text was gathered
    got = tokens_for(["never seen", pool[0], "never seen"])  # only the new text is tokenised
    assert calls[-1] == 1 and got.row_text(0) == got.row_text(2) == "never seen"


def test_token_cache_forgets_old_texts_and_stays_exact_past_its_bound(monkeypatch) -> None:
    monkeypatch.setattr(token_cache._Recent, "KEEP", 50)
    monkeypatch.setattr(token_cache, "_RECENT", token_cache._Recent())
    texts = [f"text number {i} with some words {i % 7}" for i in range(400)]
    for lo in range(0, 400, 30):
        part = texts[lo : lo + 30] + texts[max(lo - 20, 0) : lo]
        got, want = tokens_for(part), tokenize_batch(part)
        assert got.text == want.text and np.array_equal(got.word_hashes, want.word_hashes)
    recent = token_cache._RECENT
    assert len(recent.texts) <= 100 and len(recent.row_of) == len(recent.texts)


def test_hash_table_spills_full_buckets_and_lists_every_key() -> None:
    table = HashTable(buckets=8)
    # twenty keys with one home bucket (same top 32 bits): eight fit, twelve spill
    crowded = (np.uint64(7) << np.uint64(40)) + np.arange(1, 21, dtype=np.uint64)
    spread = mix64(np.arange(1, 6, dtype=np.uint64))
    table.place(crowded[:10], np.arange(10))
    table.place(np.concatenate([crowded[10:], spread]), np.arange(10, 25))
    assert table.buckets == 8 and len(table.spill) >= 12  # (a spread key may share the bucket)
    keys = np.concatenate([crowded, spread])
    assert np.array_equal(table.probe(keys), np.arange(25))
    assert (table.probe(keys + np.uint64(1 << 20)) == -1).all()
    stored, ordinals = table.items()
    assert dict(zip(stored.tolist(), ordinals.tolist(), strict=True)) == dict(
        zip(keys.tolist(), range(25), strict=True))
    more = mix64(np.arange(100, 200, dtype=np.uint64))
    table.place(more, np.arange(25, 125))  # grows: bucket keys rehashed in place, spilled ones re-homed
    assert table.buckets > 8 and table.size == 125
    assert np.array_equal(table.probe(np.concatenate([keys, more])), np.arange(125))
    assert len(table.items()[0]) == 125


def test_dedup_gates_expose_the_keys_they_probe_with_and_what_they_kept(questions: list[str]) -> None:
    texts = questions[:30]
    for gate in (ExactDedup("q"), NearDedup("q")):
        gate.check_batch([rec(f"k{i}", t) for i, t in enumerate(texts)])
        rows, keys = gate.keys(tokenize_batch(texts))
        assert rows.tolist() == list(range(30))
        stored, ordinals = gate.memory()
        assert sorted(stored.tolist()) == sorted(set(keys.ravel().tolist()))
        kept = dict(zip(stored.tolist(), ordinals.tolist(), strict=True))
        assert gate.label(kept[int(keys.reshape(30, -1)[7, 0])]) == "rk7"


def test_shingles_summed_over_the_whole_batch_equal_shingles_gathered_word_by_word() -> None:
    from datafactory.quality.shingle import _shingle_hashes_gathered, shingle_hashes

    rng = random.Random(2)
    vocab = ["a", "bb", "ccc", "the", "of", "seven", "x"]
    for _ in range(100):
        texts = [" ".join(rng.choice(vocab) for _ in range(rng.choice([0, 3, 5, rng.randint(3, 60)])))
                 for _ in range(rng.randint(1, 70))]
        tokens = tokenize_batch(texts)
        for k in (1, 2, 3, 5):
            if any(0 < n < k for n in np.diff(tokens.word_offsets)):
                continue  # rows shorter than k take the gathered path anyway
            fast, slow = shingle_hashes(tokens, k), _shingle_hashes_gathered(tokens, k)
            assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def test_a_run_of_known_size_sizes_the_dedup_memory_once_and_never_rehashes(questions: list[str]) -> None:
    exact, near = ExactDedup("q"), NearDedup("q")
    step = OrderedGates([exact, near], lambda row, outs: None, max_wait_s=0, expected_rows=1000)
    sizes = (exact._table.buckets, near._table.buckets)
    assert near._table.buckets * HashTable.SLOTS * HashTable.MAX_LOAD >= 1000 * near.bands
    texts = questions[:900] + mixed_texts(questions, 94, seed=5)
    feed(step, texts)
    assert near._table.size > 500 * near.bands  # it filled up...
    assert (exact._table.buckets, near._table.buckets) == sizes  # ...without growing
    unsized = NearDedup("q")
    assert unsized._table.buckets < sizes[1]

