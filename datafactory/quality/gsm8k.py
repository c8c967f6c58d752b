"""GSM8K final answers: extract them, compare them, and a gate that drops wrong ones.

GSM8K solutions end in ``#### <number>``; models asked for LaTeX write ``\\boxed{<number>}``. A
synthetic solution whose final answer differs from the source row's answer teaches the model a
wrong result, so :class:`AnswerCheck` rejects it (``answer_mismatch``) or, with no final answer
found, ``no_answer``.

Why not math-verify: it parses LaTeX into SymPy through latex2sympy2_extended and an ANTLR runtime
(sympy alone is tens of MB and a second to import) and bounds each call with a signal-based
timeout that only works on the main thread, while the engine checks records from worker code.
GSM8K answers are plain numbers (integers in all 1,319 test items), which a regex and exact
``fractions.Fraction`` arithmetic compare without any of that. Symbolic answers (``\\sqrt{2}``,
intervals) are out of scope: they come out as ``no_answer``.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal, localcontext
from fractions import Fraction

from datafactory.quality.gate import Reject, value_text
from datafactory.record import Record

_NUMBER = re.compile(
    r"""(?<![\w.])-?\s?                         # a sign, but not part of a word or a decimal
        (?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?    # 1,234,567.89 or 1234.5
        (?:\s?/\s?\d+(?:\.\d+)?)?               # an optional /denominator
        |(?<![\w.])-?\.\d+                      # .5
    """,
    re.VERBOSE,
)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
# LaTeX inside a number (1{,}000 and 1\,000 are thousands separators) and LaTeX around one
_LATEX_GLUE = re.compile(r"\{,\}|\\[,;:!]")
_LATEX_NOISE = re.compile(r"\\(?:text|mathrm|textbf)\s*\{[^{}]*\}|\\left|\\right|[{}]|\\\$|\\%")
# a whole text that is just a number, give or take a currency sign, unit word or full stop
_BARE = re.compile(r"^\s*[$€£¥]?\s*(?P<n>[-−]?[\d.,/ ]+?)\s*(?:%|[A-Za-z ]{0,20})?\.?\s*$")


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, braces balanced."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    depth, start = 1, starts[-1]
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return None


def _clean(text: str) -> str:
    text = text.replace("\u2212", "-")  # U+2212 MINUS SIGN, common in model output
    text = _FRAC.sub(r"(\1)/(\2)", _LATEX_GLUE.sub("", text))
    return _LATEX_NOISE.sub(" ", text).replace("(", "").replace(")", "")


def parse_number(text: str) -> Fraction | None:
    """The first number in ``text`` as an exact fraction (thousands commas, ``$``, ``%``,
    ``\\frac{a}{b}`` and trailing units or full stops are tolerated), or None."""
    match = _NUMBER.search(_clean(text))
    if match is None:
        return None
    token = match.group(0).replace(",", "").replace(" ", "")
    try:
        if "/" in token:
            numerator, denominator = token.split("/")
            return Fraction(numerator) / Fraction(denominator) if Fraction(denominator) else None
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def canonical(value: Fraction) -> str:
    """``18``, ``0.75``, ``-2.5`` for terminating decimals; ``1/3`` otherwise."""
    if value.denominator == 1:
        return str(value.numerator)
    rest = value.denominator
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    if rest != 1:
        return f"{value.numerator}/{value.denominator}"
    with localcontext() as ctx:
        ctx.prec = 60
        text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return text.rstrip("0").rstrip(".")


def _final(text: str) -> tuple[str, Fraction] | None:
    """(the text the final answer was read from, its value)."""
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
    elif (boxed := _last_boxed(text)) is not None:
        tail = boxed
    elif len(text) <= 64 and (bare := _BARE.match(text)) is not None:  # short: no regex blow-up
        tail = bare.group("n")
    else:
        return None
    value = parse_number(tail)
    return None if value is None else (tail, value)


def extract_answer(text: str) -> str | None:
    """The final answer of a solution as a canonical numeric string, or None.

    Read from after the last ``####``; failing that from the last ``\\boxed{...}``; failing that
    the whole text when it is just a number (``"18"``, ``"$1,000."``). ``"#### $1,234.50 dollars."``
    gives ``"1234.5"``.
    """
    found = _final(text)
    return None if found is None else canonical(found[1])


def _decimals(text: str) -> int | None:
    """Digits after the point when ``text`` holds a plain decimal like ``0.33``."""
    match = _NUMBER.search(_clean(text))
    if match is None or "/" in match.group(0) or "." not in match.group(0):
        return None
    return len(match.group(0).rsplit(".", 1)[1])


@functools.lru_cache(maxsize=4096)  # a pure function; the answers compared are mostly the same few numbers
def _value(text: str) -> tuple[str, Fraction] | None:
    found = _final(text)
    if found is None and (value := parse_number(text)) is not None:
        found = (text, value)
    return found


def answers_match(a: str, b: str) -> bool:
    """Whether two answers (or whole solutions) state the same number.

    Exact rational comparison, so ``"18" == "18.0" == "$18" == "18.00"`` and ``"0.75" == "3/4"``.
    A decimal written with k >= 2 places also matches a fraction that has no exact decimal when
    it is that fraction rounded to k places (``"0.33" == "1/3"``), since a solution cannot write
    1/3 out in full.
    """
    left, right = _value(a), _value(b)
    if left is None or right is None:
        return False
    if left[1] == right[1]:
        return True
    for (text, written), (_, exact) in ((left, right), (right, left)):
        places = _decimals(text)
        if places and places >= 2 and "/" in canonical(exact):
            return abs(written - exact) <= Fraction(1, 2 * 10**places)
    return False


class AnswerCheck:
    """Rejects a record whose final answer differs from the source row's (``answer_mismatch``,
    detail ``"expected 18, got 20"``), or that states none (``no_answer``).

    The reference comes from ``record.source[source_field]`` (GSM8K rows: ``"... #### 18"``), the
    candidate from ``record.fields[output_field]``. A source row without a readable answer gives
    ``no_reference``: the check cannot vouch for the record, and a silent pass would hide a
    pipeline pointed at the wrong field.
    """

    name = "answer_check"

    def __init__(self, output_field: str = "answer", source_field: str = "answer") -> None:
        self.output_field, self.source_field = output_field, source_field

    def check(self, record: Record) -> Reject | None:
        expected = extract_answer(value_text(record.source.get(self.source_field)))
        if expected is None:
            return Reject("no_reference", f"no final answer in the source's {self.source_field!r}")
        got = extract_answer(value_text(record.fields.get(self.output_field)))
        if got is None:
            return Reject("no_answer", f"no final answer ('#### N' or \\boxed{{N}}) in {self.output_field!r}")
        if not answers_match(expected, got):
            return Reject("answer_mismatch", f"expected {expected}, got {got}")
        return None
