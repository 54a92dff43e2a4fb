"""An embedded, seeded parallel corpus for translation, and the tokenizer it uses.

The "languages": English dates written in words, in three orders, and the ISO 8601
form in digits (chapter section 6.2 names machine translation as an application)::

    "the twenty-third of march , nineteen ninety-four"   ->  "1994-03-23"
    "march twenty-third , nineteen ninety-four"          ->  "1994-03-23"
    "nineteen ninety-four , march the twenty-third"      ->  "1994-03-23"

Translating needs real sequence-to-sequence learning: the year's words become four
digits that depend on several words at once ("nineteen ninety-four" -> 1 9 9 4), the
ordinal becomes two digits, the month name a number, and the order changes with the
source's form. The corpus is a pure function of its seed; the held-out split holds
dates whose source sentence never appears in the training split.

:class:`PieceTokenizer` splits text into words, single digits and single punctuation
marks (``twenty-third`` -> ``twenty - third``; ``1994`` -> ``1 9 9 4``) over a closed
vocabulary whose first ids are minillm's special tokens.
"""
from __future__ import annotations

import re

import numpy as np

from ..core._validate import require_int_at_least
from .vocab import SPECIAL_TOKENS

__all__ = ["PieceTokenizer", "dates_corpus", "DATE_FORMATS", "DATE_TEMPLATES", "date_format_problem",
           "template_pattern"]

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
ONES = ("", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
ORDINAL_ONES = ("", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
                "ninth", "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth",
                "sixteenth", "seventeenth", "eighteenth", "nineteenth")
ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}
YEARS = range(1900, 2100)
# form -> the source sentence, its slots filled with words (_ordinal, MONTHS, _year)
DATE_TEMPLATES = {"day_of_month": "the {day} of {month} , {year}",
                  "month_day": "{month} {day} , {year}",
                  "year_first": "{year} , {month} the {day}"}
DATE_FORMATS = tuple(DATE_TEMPLATES)
_PIECE = re.compile(r"[a-z]+|\d|[^\sa-z\d]")


def _cardinal(n: int) -> str:
    """0 < n < 100 in words: 42 -> "forty-two"."""
    if n < 20:
        return ONES[n]
    return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])


def _ordinal(n: int) -> str:
    """1 <= n <= 31 as an ordinal: 23 -> "twenty-third"."""
    if n < 20:
        return ORDINAL_ONES[n]
    if n % 10 == 0:
        return ORDINAL_TENS[n]
    return TENS[n // 10] + "-" + ORDINAL_ONES[n % 10]


def _year(y: int) -> str:
    """1900..2099 as read aloud: 1994 -> "nineteen ninety-four", 2007 -> "two thousand seven"."""
    hi, lo = divmod(y, 100)
    if hi == 20 and lo < 10:
        return "two thousand" + ("" if lo == 0 else " " + ONES[lo])
    rest = "hundred" if lo == 0 else ("oh " + ONES[lo] if lo < 10 else _cardinal(lo))
    return _cardinal(hi) + " " + rest


def _valid_date(y: int, m: int, d: int) -> bool:
    """Whether day ``d`` exists in month ``m`` of year ``y`` (Gregorian leap years)."""
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return 1 <= d <= DAYS_IN_MONTH[m - 1] and not (m == 2 and d == 29 and not leap)


def _date_text(y: int, m: int, d: int, form: str) -> str:
    return DATE_TEMPLATES[form].format(day=_ordinal(d), month=MONTHS[m - 1], year=_year(y))


def template_pattern(template: str, slots: dict) -> re.Pattern:
    """A regex for the pieces of ``template`` joined by single spaces (the form
    :meth:`PieceTokenizer.pieces` gives a text, see :func:`_joined`), where each
    ``{name}`` is one of ``slots[name]`` (texts, compared by their pieces too) and is
    captured by a group of that name. ``.fullmatch`` it against ``_joined(text)``."""
    out = []
    for k, part in enumerate(re.split(r"\{(\w+)\}", template)):
        if k % 2:
            values = sorted({_joined(v) for v in slots[part]}, key=len, reverse=True)
            out.append(f"(?P<{part}>" + "|".join(map(re.escape, values)) + ")")
        else:
            out += [re.escape(p) for p in PieceTokenizer.pieces(part)]
    return re.compile(" ".join(out))


def _joined(text: str) -> str:
    return " ".join(PieceTokenizer.pieces(text))


_DATE_CHECK = None


def _date_check():
    """(form -> pattern, slot -> {joined words: number}), built once from the generator."""
    global _DATE_CHECK
    if _DATE_CHECK is None:
        numbers = {"day": {_joined(_ordinal(d)): d for d in range(1, 32)},
                   "month": {_joined(m): i + 1 for i, m in enumerate(MONTHS)},
                   "year": {_joined(_year(y)): y for y in YEARS}}
        _DATE_CHECK = ({form: template_pattern(t, numbers) for form, t in DATE_TEMPLATES.items()}, numbers)
    return _DATE_CHECK


def date_format_problem(text: str) -> str | None:
    """``None`` when ``text``'s pieces are those of a source sentence :func:`dates_corpus`
    can draw (one of :data:`DATE_TEMPLATES`, a year of :data:`YEARS` and a day that
    exists), else what is wrong with it, as a phrase for a warning. Case and spacing
    are free: the model sees pieces (``"May 1st"`` is not one: ``1st`` is no ordinal of
    the corpus)."""
    patterns, numbers = _date_check()
    joined = _joined(text)
    for pattern in patterns.values():
        m = pattern.fullmatch(joined)
        if m:
            y, mo, d = (numbers[k][m.group(k)] for k in ("year", "month", "day"))
            if _valid_date(y, mo, d):
                return None
            return "the text names a day that does not exist"
    examples = " or ".join(repr(_date_text(2001, 3, 5, form).replace(" ,", ",")) for form in DATE_TEMPLATES)
    return (f"the text is not a date written in words in one of the forms it was trained on "
            f"(as {examples})")


def dates_corpus(n_train: int = 4000, n_test: int = 400, seed: int = 0):
    """``(train, test)``: lists of ``(source words, ISO date)`` pairs, years 1900-2099.

    Every pair is drawn from ``numpy.random.default_rng(seed)``; no test source sentence
    occurs in the training split. Raises ``ValueError`` for sizes below 1.
    """
    require_int_at_least("n_train", n_train, 1)
    require_int_at_least("n_test", n_test, 1)
    rng = np.random.default_rng(seed)
    seen, pairs = set(), []
    while len(pairs) < n_train + n_test:
        y = int(rng.integers(YEARS.start, YEARS.stop))
        m = int(rng.integers(1, 13))
        d = int(rng.integers(1, DAYS_IN_MONTH[m - 1] + 1))
        if not _valid_date(y, m, d):
            continue
        src = _date_text(y, m, d, DATE_FORMATS[int(rng.integers(len(DATE_FORMATS)))])
        if src in seen:
            continue
        seen.add(src)
        pairs.append((src, f"{y:04d}-{m:02d}-{d:02d}"))
    return pairs[:n_train], pairs[n_train:]


class PieceTokenizer:
    """Words, single digits and single punctuation marks over a closed vocabulary.

    ``tokens``: the vocabulary after the special tokens (``<pad>`` = 0, ``<unk>`` = 1,
    ``<bos>`` = 2, ``<eos>`` = 3, ``<mask>``, ``<cls>``, ``<sep>``); an unknown piece
    encodes as ``<unk>``. ``decode`` puts a space only between two word pieces and after
    a punctuation mark other than ``-``, so ``decode(encode("1994-03-23")) == "1994-03-23"``.
    """

    kind = "piece"
    special_tokens = SPECIAL_TOKENS

    def __init__(self, tokens):
        tokens = list(tokens)
        self.itos = list(SPECIAL_TOKENS) + [t for t in tokens if t not in SPECIAL_TOKENS]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = 0, 1, 2, 3
        self.cls_id, self.sep_id = 5, 6

    @classmethod
    def train(cls, texts) -> "PieceTokenizer":
        """The sorted pieces of ``texts`` (deterministic: the same texts, the same ids)."""
        return cls(sorted({p for t in texts for p in cls.pieces(t)}))

    @staticmethod
    def pieces(text: str) -> list[str]:
        if not isinstance(text, str):
            raise ValueError(f"expected text as a str, got {type(text).__name__}")
        return _PIECE.findall(text.lower())

    @staticmethod
    def piece_spans(text: str) -> list[tuple[int, int]] | None:
        """``(start, end)`` of each of :meth:`pieces` in ``text`` itself (its own characters,
        its own case); ``None`` where lowercasing changes the text's length (a few non-ASCII
        letters, e.g. "İ"), as the offsets of the lowered text then are not ``text``'s."""
        lowered = text.lower()
        if len(lowered) != len(text):
            return None
        return [m.span() for m in _PIECE.finditer(lowered)]

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(p, self.unk_id) for p in self.pieces(text)]

    def decode(self, ids) -> str:
        """Text of ``ids`` with the special tokens left out (``<unk>`` kept)."""
        out = ""
        prev = None
        for i in ids:
            i = int(i)
            if i < len(SPECIAL_TOKENS) and i != self.unk_id:
                continue
            piece = self.itos[i] if 0 <= i < len(self.itos) else "<unk>"
            word = piece.isalpha() or piece == "<unk>"
            if prev is not None and ((word and prev[1]) or prev[0] in ",.?!;:"):
                out += " "
            out += piece
            prev = (piece, word)
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokens": self.itos[len(SPECIAL_TOKENS):]}

    @classmethod
    def from_dict(cls, data: dict) -> "PieceTokenizer":
        if not isinstance(data, dict) or data.get("kind") != cls.kind:
            raise ValueError(f"expected a dict with kind={cls.kind!r}, got {data!r:.80}")
        return cls(data["tokens"])
