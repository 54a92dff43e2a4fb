r"""Metrics of generated and extracted text: BLEU (translation), exact match and token F1
(extractive question answering), written from their definitions, NumPy-free.

BLEU (Papineni et al. 2002, section 2): modified n-gram precisions
:math:`p_n = m_n / t_n`, where :math:`t_n` counts the hypotheses' n-grams and :math:`m_n`
those that match, each hypothesis n-gram counted at most as often as it occurs in the
reference (with several references: in the reference where it occurs most). Both are
summed over the corpus before dividing. BLEU is their geometric mean for
:math:`n = 1..N` (uniform weights :math:`1/N`) times a brevity penalty from the corpus's
total lengths :math:`c` (hypotheses) and :math:`r` (references; with several, each
hypothesis takes the reference closest to it in length, the shorter one on a tie):

.. math::
    \mathrm{BLEU} = \mathrm{BP}\cdot\exp\Big(\frac1N\sum_{n=1}^{N}\log p_n\Big),\qquad
    \mathrm{BP} = \begin{cases}1 & c \ge r\\ e^{1 - r/c} & c < r\end{cases}

reported in [0, 100] like sacrebleu, whose corpus BLEU (without its ``effective_order``,
off by default) this follows in every case below; the tests compare the two on drawn
corpora and on each edge.

- **No match at all** (no hypothesis token occurs in its references, so no n-gram of any
  order matches; a corpus of empty hypotheses is a case of it): 0, whatever the
  smoothing.
- **Smoothing** of the orders with :math:`m_n = 0` (Chen and Cherry 2014) is ``smooth``:

  - ``"none"``: :math:`p_n = 0`, so BLEU = 0.
  - ``"floor"`` (their method 1): :math:`p_n = \epsilon / t_n`, ``smooth_value`` =
    :math:`\epsilon`, 0.1 by default.
  - ``"add-k"`` (their method 2, from Lin and Och 2004): every order :math:`n \ge 2`,
    matched or not, takes :math:`p_n = (m_n + k)/(t_n + k)`, ``smooth_value`` = :math:`k`,
    1 by default (so an order with no hypothesis n-gram at all counts :math:`k/k = 1`).
  - ``"exp"`` (their method 3, NIST's geometric smoothing; sacrebleu's default and
    minillm's): the j-th order with :math:`m_n = 0`, counting from the lowest, counts
    :math:`1/2^j` matches, :math:`p_n = 1/(2^j t_n)`.

- **Hypotheses shorter than n**: an order with :math:`t_n = 0` (no hypothesis has n
  tokens) has :math:`p_n = 0` and BLEU is 0, except under ``"add-k"`` as above.
- **Empty reference**: it contributes length 0 to :math:`r` and matches nothing.

Tokenisation is the caller's: the inputs are lists of string tokens and are compared as
they are (case-sensitive, nothing split or normalised). sacrebleu's ``tokenize="none"``
splits each line on whitespace, so on the tokens joined by single spaces it counts the
same n-grams, and gives the same BLEU, whenever no token is empty or contains whitespace.

Exact match and token F1 follow SQuAD (Rajpurkar et al. 2016, section 6): answers are
normalised (lower case, punctuation and the articles a/an/the removed, whitespace
collapsed); F1 is the harmonic mean of precision and recall of the shared tokens
(a multiset intersection).
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Sequence

from ._validate import require_int_at_least, require_number_in

__all__ = ["ngram_counts", "corpus_bleu", "normalize_answer", "exact_match", "token_f1"]

SMOOTHING = ("none", "floor", "add-k", "exp")
SMOOTH_VALUE_DEFAULTS = {"floor": 0.1, "add-k": 1.0}   # Chen and Cherry's, as sacrebleu's


def _check_token_lists(name, seqs):
    if isinstance(seqs, str) or not isinstance(seqs, Sequence):
        raise ValueError(f"expected {name} as a list of token lists, got {type(seqs).__name__}")
    for s in seqs:
        _check_tokens(f"each of {name}", s)


def _check_tokens(what, tokens):
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise ValueError(f"expected {what} to be a list of tokens, got {tokens!r:.60}")
    for t in tokens:
        if not isinstance(t, str):
            raise ValueError(f"expected {what} to hold str tokens, got {t!r:.60} "
                             f"({type(t).__name__}) in {tokens!r:.60}")


def _reference_sets(references):
    """Each entry as a list of references: a token list is one reference, a list of
    token lists several (an empty list is one empty reference)."""
    if isinstance(references, str) or not isinstance(references, Sequence):
        raise ValueError(f"expected references as a list of token lists (or of lists of "
                         f"token lists), got {type(references).__name__}")
    sets = []
    for entry in references:
        if (not isinstance(entry, str) and isinstance(entry, Sequence) and len(entry) > 0
                and isinstance(entry[0], Sequence) and not isinstance(entry[0], str)):
            for ref in entry:
                _check_tokens("each of several references", ref)
            sets.append(list(entry))
        else:
            _check_tokens("each of references", entry)
            sets.append([entry])
    return sets


def _closest_length(hyp_len: int, ref_lens) -> int:
    """The reference length closest to the hypothesis's; the shorter one on a tie."""
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    """The n-grams of ``tokens`` with their counts: ``("a", "b")`` -> 1, ..."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses, references, max_n: int = 4, smooth: str = "exp",
                smooth_value: float | None = None) -> float:
    r"""Corpus BLEU in [0, 100] of token lists against their references (the module's
    docstring gives the formula, the smoothing methods and every edge case).

    Shapes: hypotheses: N lists of str tokens; references: N entries, each one list of
    tokens (one reference) or a non-empty list of token lists (several references for
    that hypothesis; the counts may differ between hypotheses). ``smooth`` is one of
    ``"none"``, ``"floor"``, ``"add-k"``, ``"exp"``; ``smooth_value`` is the floor's
    :math:`\epsilon` or add-k's :math:`k` (``None``: 0.1 and 1, as sacrebleu) and must
    be left ``None`` for the other two. Raises ``ValueError`` on anything else.
    """
    _check_token_lists("hypotheses", hypotheses)
    ref_sets = _reference_sets(references)
    if len(hypotheses) != len(ref_sets):
        raise ValueError(f"expected one reference (or list of references) per hypothesis, "
                         f"got {len(hypotheses)} hypotheses and {len(ref_sets)} references")
    if smooth not in SMOOTHING:
        raise ValueError(f"expected smooth in {SMOOTHING}, got {smooth!r}")
    if smooth in SMOOTH_VALUE_DEFAULTS:
        if smooth_value is None:
            smooth_value = SMOOTH_VALUE_DEFAULTS[smooth]
        require_number_in("smooth_value", smooth_value, 0.0, math.inf)
    elif smooth_value is not None:
        raise ValueError(f"expected no smooth_value with smooth={smooth!r} (only "
                         f"'floor' and 'add-k' take one), got {smooth_value!r}")
    max_n = require_int_at_least("max_n", max_n, 1)
    matches, totals = [0] * max_n, [0] * max_n
    c = r = 0
    for hyp, refs in zip(hypotheses, ref_sets):
        c += len(hyp)
        r += _closest_length(len(hyp), [len(ref) for ref in refs])
        for n in range(1, max_n + 1):
            h, clip = ngram_counts(hyp, n), Counter()
            for ref in refs:                           # Counter | Counter: the larger count
                clip |= ngram_counts(ref, n)
            matches[n - 1] += sum(min(k, clip[ng]) for ng, k in h.items())   # clipped counts
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if matches[0] == 0:      # nothing matches (every matching n-gram's tokens match too)
        return 0.0
    log_p, exp_denominator = 0.0, 1
    for n, (m, t) in enumerate(zip(matches, totals), start=1):
        if smooth == "add-k" and n > 1:
            m, t = m + smooth_value, t + smooth_value
        if t == 0:           # no hypothesis has n tokens: p_n = 0 (add-k with k > 0 aside)
            return 0.0
        if m == 0:
            if smooth == "exp":
                exp_denominator *= 2
                m = 1.0 / exp_denominator               # 1/2, 1/4, ... matches
            elif smooth == "floor":
                m = smooth_value
        p = m / t
        if p == 0.0:         # "none", or a smooth_value of 0: p_n = 0 (log p_n = -inf)
            return 0.0
        log_p += math.log(p)
    bp = 1.0 if c >= r else math.exp(1.0 - r / c)      # c > 0: a token matched
    return 100.0 * bp * math.exp(log_p / max_n)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    if not isinstance(text, str):
        raise ValueError(f"expected an answer as a str, got {type(text).__name__}")
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, truth: str) -> float:
    """1.0 when the normalised answers are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(truth))


def token_f1(prediction: str, truth: str) -> float:
    r""":math:`F_1 = 2PR/(P+R)`, :math:`P = |p \cap g|/|p|`, :math:`R = |p \cap g|/|g|`
    over the normalised tokens (multiset intersection); 1.0 when both are empty."""
    p, g = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)
