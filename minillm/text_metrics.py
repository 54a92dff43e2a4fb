r"""Metrics of generated and extracted text: BLEU (translation), exact match and token F1
(extractive question answering), written from their definitions, NumPy-free.

BLEU (Papineni et al. 2002, section 2): modified n-gram precisions :math:`p_n` (each
hypothesis n-gram counted at most as often as it occurs in the reference), summed over
the corpus before dividing, their geometric mean for :math:`n = 1..N`, times a brevity
penalty from the corpus's total lengths :math:`c` (hypotheses) and :math:`r` (references):

.. math::
    \mathrm{BLEU} = \mathrm{BP}\cdot\exp\Big(\frac1N\sum_{n=1}^{N}\log p_n\Big),\qquad
    \mathrm{BP} = \begin{cases}1 & c > r\\ e^{1 - r/c} & c \le r\end{cases}

reported in [0, 100] like sacrebleu. ``smooth="exp"`` is sacrebleu's default smoothing
(Chen and Cherry 2014, method 3): the k-th n-gram order with zero matches counts
:math:`1/2^k` matches instead of 0. The inputs are token lists: tokenisation is the
caller's (sacrebleu with ``tokenize="none"`` on space-joined tokens gives the same
number; the tests check it).

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

from ._validate import require_int_at_least

__all__ = ["ngram_counts", "corpus_bleu", "normalize_answer", "exact_match", "token_f1"]

SMOOTHING = ("none", "exp")


def _check_token_lists(name, seqs):
    if isinstance(seqs, str) or not isinstance(seqs, Sequence):
        raise ValueError(f"expected {name} as a list of token lists, got {type(seqs).__name__}")
    for s in seqs:
        if isinstance(s, str) or not isinstance(s, Sequence):
            raise ValueError(f"expected each of {name} to be a list of tokens, got {s!r:.60}")


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    """The n-grams of ``tokens`` with their counts: ``("a", "b")`` -> 1, ..."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses, references, max_n: int = 4, smooth: str = "exp") -> float:
    """Corpus BLEU in [0, 100] of token lists against one reference each.

    Shapes: hypotheses, references: N lists of tokens. Raises ``ValueError`` when the
    counts differ or ``smooth`` is not one of ``"none"``, ``"exp"``.
    """
    _check_token_lists("hypotheses", hypotheses)
    _check_token_lists("references", references)
    if len(hypotheses) != len(references):
        raise ValueError(f"expected one reference per hypothesis, got {len(hypotheses)} "
                         f"hypotheses and {len(references)} references")
    if smooth not in SMOOTHING:
        raise ValueError(f"expected smooth in {SMOOTHING}, got {smooth!r}")
    require_int_at_least("max_n", max_n, 1)
    matches, totals = [0] * max_n, [0] * max_n
    c = r = 0
    for hyp, ref in zip(hypotheses, references):
        c, r = c + len(hyp), r + len(ref)
        for n in range(1, max_n + 1):
            h, g = ngram_counts(hyp, n), ngram_counts(ref, n)
            matches[n - 1] += sum(min(k, g[ng]) for ng, k in h.items())   # clipped counts
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if matches[0] == 0:      # nothing matches (an empty corpus included): 0, as sacrebleu,
        return 0.0           # whatever the smoothing; a matching n-gram's tokens match too
    log_p, k = 0.0, 1
    for m, t in zip(matches, totals):
        if t == 0:        # no n-gram of this order in any hypothesis: as sacrebleu, p = 0
            return 0.0
        if m == 0:
            if smooth == "none":
                return 0.0
            k *= 2
            m = 1.0 / k                                      # 1/2, 1/4, ... matches
        log_p += math.log(m / t)
    bp = 1.0 if c > r else math.exp(1.0 - r / c)
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
