"""Rephrasings of GSM8K questions for the decontamination benchmark (``benchmarks/decontam.py``).

Each transformation is deterministic for a (text, seed) pair, so the benchmark set is the same on
every machine: sentence reorder (the question moved to the front, as in issue 14's example, or all
sentences shuffled), names swapped, numbers changed, synonym paraphrase from a small hand-written
table, and all of them together.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$])")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?![\w])")
_WORD = re.compile(r"[A-Za-z]+")

NAMES = ("Maria", "Oliver", "Priya", "Kenji", "Amara", "Lucas", "Fatima", "Mateo", "Ingrid", "Tariq", "Chloe",
         "Dmitri", "Aisha", "Rafael", "Mei", "Tobias", "Zara", "Hugo", "Leila", "Santiago", "Noor", "Felix",
         "Yara", "Emeka", "Sofia", "Bruno", "Hana", "Viktor", "Imani", "Arjun")
NUMBER_WORDS = {"two": "five", "three": "seven", "four": "nine", "five": "eight", "six": "eleven",
                "seven": "twelve", "eight": "three", "nine": "four", "ten": "fifteen", "twelve": "twenty",
                "twenty": "thirty", "half": "a third", "twice": "three times", "double": "triple"}
# a small synonym table for the words GSM8K questions use most; every occurrence is replaced
SYNONYMS = {
    "buys": "purchases", "bought": "purchased", "buy": "purchase", "has": "owns", "had": "owned",
    "total": "altogether", "each": "apiece", "every": "each",
    "makes": "earns", "make": "earn", "sells": "vends", "sold": "vended", "gets": "receives", "got": "received",
    "gives": "hands", "gave": "handed", "wants": "wishes", "want": "wish", "needs": "requires",
    "need": "require", "costs": "is priced at", "cost": "price", "money": "cash", "spent": "paid out",
    "spends": "pays out", "store": "shop", "more": "additional",
    "left": "remaining", "takes": "requires", "took": "required", "friends": "pals", "friend": "pal",
    "children": "kids", "big": "large", "small": "little", "started": "began", "starts": "begins",
    "finish": "complete", "finished": "completed", "works": "labors", "worked": "labored",
    "hour": "sixty minutes", "week": "seven days", "month": "calendar month", "year": "twelve months",
    "car": "automobile", "house": "home", "school": "academy", "class": "lesson", "students": "pupils",
    "pays": "hands over", "paid": "handed over", "earned": "made", "earns": "brings in",
    "than": "compared with", "with": "along with", "fewer": "less", "plants": "sows", "plant": "sow",
    "eats": "consumes", "ate": "consumed", "uses": "utilizes", "used": "utilized", "walks": "strolls",
    "runs": "jogs", "reads": "peruses", "read": "perused", "pages": "sheets", "book": "volume",
    "also": "as well", "then": "after that", "if": "supposing",
    "find": "determine", "number": "count", "amount": "quantity", "price": "cost", "bag": "sack",
    "box": "carton", "boxes": "cartons", "dollars": "bucks", "minutes": "mins", "mother": "mom",
    "father": "dad", "decides": "chooses", "decided": "chose", "collects": "gathers", "picks": "selects",
}

Transform = Callable[[str, random.Random, frozenset[str]], str]


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if s]


def question_first(text: str, rng: random.Random, names: frozenset[str]) -> str:
    """The last sentence moved to the front (issue 14's example)."""
    parts = sentences(text)
    if len(parts) < 2:
        return f"Consider the following: {text.strip()}"
    return f"{parts[-1]} Consider the following: {' '.join(parts[:-1])}"


def shuffle(text: str, rng: random.Random, names: frozenset[str]) -> str:
    """All sentences in a random order other than the original (when there are two or more)."""
    parts = sentences(text)
    if len(parts) < 2:
        return text
    order = list(range(len(parts)))
    while order == sorted(order):
        rng.shuffle(order)
    return " ".join(parts[i] for i in order)


def swap_names(text: str, rng: random.Random, names: frozenset[str]) -> str:
    """Every person's name replaced by another one, consistently within the text."""
    found = [w for w in dict.fromkeys(_WORD.findall(text)) if w in names]
    pool = [n for n in NAMES if n not in found]
    rng.shuffle(pool)
    table = dict(zip(found, pool, strict=False))  # more names than the pool: the rest stay
    return _WORD.sub(lambda m: table.get(m.group(0), m.group(0)), text)


def change_numbers(text: str, rng: random.Random, names: frozenset[str]) -> str:
    """Every number replaced by a different one of similar size, and common number words swapped."""
    def new(m: re.Match[str]) -> str:
        old = m.group(0).replace(",", "")
        if "." in old:
            return f"{float(old) + rng.randint(1, 9) / 2:.2f}"
        value = int(old)
        return str(value + rng.randint(1, max(3, value // 2)))

    text = _NUMBER.sub(new, text)
    return _WORD.sub(lambda m: _recase(m.group(0), NUMBER_WORDS.get(m.group(0).lower())), text)


def synonyms(text: str, rng: random.Random, names: frozenset[str]) -> str:
    """Every word of the synonym table replaced (case kept for the first letter)."""
    return _WORD.sub(lambda m: _recase(m.group(0), SYNONYMS.get(m.group(0).lower())), text)


def _recase(word: str, new: str | None) -> str:
    if new is None:
        return word
    return new[0].upper() + new[1:] if word[0].isupper() else new


def combined(text: str, rng: random.Random, names: frozenset[str]) -> str:
    """Names, numbers, synonyms and a sentence shuffle together."""
    for step in (swap_names, change_numbers, synonyms, shuffle):
        text = step(text, rng, names)
    return text


TRANSFORMS: dict[str, Transform] = {
    "verbatim": lambda text, rng, names: text,
    "question_first": question_first, "shuffle": shuffle, "names": swap_names, "numbers": change_numbers,
    "synonyms": synonyms, "names+numbers": lambda t, r, n: change_numbers(swap_names(t, r, n), r, n),
    "synonyms+reorder": lambda t, r, n: question_first(synonyms(t, r, n), r, n), "all": combined,
}


def person_names(texts: Iterable[str]) -> frozenset[str]:
    """Capitalised words never written in lower case in ``texts`` and not sentence-initial only: names."""
    lower: set[str] = set()
    inner_caps: set[str] = set()
    for text in texts:
        for sentence in sentences(text):
            words = _WORD.findall(sentence)
            for i, w in enumerate(words):
                if w[0].islower():
                    lower.add(w)
                elif i > 0 and len(w) > 1 and not w.isupper():
                    inner_caps.add(w)
    return frozenset(w for w in inner_caps if w.lower() not in lower)


def transform(name: str, text: str, seed: int, names: frozenset[str]) -> str:
    return TRANSFORMS[name](text, random.Random(int(seed)), names)
