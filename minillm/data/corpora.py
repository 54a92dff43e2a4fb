"""Corpora that need no download: CPython's own documentation, synthetic languages whose
entropy rate is known exactly, and a labelled sentiment set where word order matters.

Dimensions: K alphabet size, k Markov order, S = K^k context states.
"""
from __future__ import annotations

import bisect
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .loaders import LabelledTexts, Splits, _split_sizes


def python_docs() -> str:
    """The English documentation shipped with CPython (``pydoc_data.topics``, about 465 kB).

    The topics are joined in sorted order, separated by a blank line. The text is the
    same on every run, but differs a little between Python versions.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError as e:         # some Linux distributions split it into another package
        raise RuntimeError(
            "python_docs() needs pydoc_data, which this Python installation lacks "
            "(on Debian/Ubuntu it comes with the python3-doc / libpython3-stdlib packages); "
            "use synthetic_language() or load_text(path) instead"
        ) from e
    return "\n\n".join(topics[key].strip() for key in sorted(topics))


# --- synthetic Markov languages ---------------------------------------------------

def markov_stationary(transition: np.ndarray, order: int) -> np.ndarray:
    """Stationary distribution over the S = K^k contexts of an order-k chain.

    A context s = (x_{t-k}, ..., x_{t-1}) is the base-K number with the oldest symbol
    as the most significant digit; emitting x moves it to (s K + x) mod S. Solves
    :math:`\\pi M = \\pi,\\ \\sum_s \\pi_s = 1` with :math:`M_{s, (sK+x) \\bmod S} = P(x \\mid s)`.

    Shapes: transition (S, K) -> pi (S,).
    """
    S, K = transition.shape
    M = np.zeros((S, S))                                           # (S, S)
    nxt = (np.arange(S)[:, None] * K + np.arange(K)) % S           # (S, K)
    np.add.at(M, (np.repeat(np.arange(S), K), nxt.ravel()), transition.ravel())
    A = M.T - np.eye(S)                                            # (S, S)
    A[-1, :] = 1.0                                                 # replace one equation by sum(pi) = 1
    b = np.zeros(S)
    b[-1] = 1.0
    pi = np.linalg.solve(A, b)                                     # (S,)
    return np.clip(pi, 0.0, None) / np.clip(pi, 0.0, None).sum()


def markov_entropy_rate(transition: np.ndarray, stationary: np.ndarray) -> float:
    """Entropy rate in nats per token:

    .. math::  H = -\\sum_s \\pi(s) \\sum_x P(x \\mid s) \\log P(x \\mid s)

    (Cover & Thomas, *Elements of Information Theory*, theorem 4.2.4). No model that
    predicts token t from the tokens before it can have a lower expected loss.
    """
    P = np.asarray(transition, dtype=np.float64)
    plogp = np.where(P > 0, P * np.log(np.where(P > 0, P, 1.0)), 0.0)   # (S, K)
    return float(-(stationary @ plogp.sum(axis=1)))


@dataclass(frozen=True)
class SyntheticLanguage:
    """A sample of an order-k Markov chain and the exact numbers that describe it.

    ``ids`` (N,) int64 in [0, K); ``text`` the same sample written with ``alphabet``;
    ``entropy_rate`` in nats per token (``entropy_rate_bits`` in bits), the floor of the
    cross-entropy loss of any model given at least k tokens of context.
    """

    ids: np.ndarray
    text: str
    alphabet: str
    order: int
    transition: np.ndarray      # (S, K): P(x | context s)
    stationary: np.ndarray      # (S,)
    entropy_rate: float

    @property
    def entropy_rate_bits(self) -> float:
        return self.entropy_rate / np.log(2.0)

    def loss_floor(self, block_size: int) -> float:
        """The lowest mean loss over a window of ``block_size`` positions (nats/token).

        Position t sees only t earlier tokens; for t < k its floor is
        :math:`H(X_t \\mid X_{0..t-1}) = H_{t+1} - H_t` with :math:`H_j` the entropy of j
        consecutive symbols under the stationary law; for t >= k it is the entropy rate.
        """
        K, k = len(self.alphabet), self.order
        joint = self.stationary.reshape((K,) * k) if k else np.ones(())   # axis 0: oldest symbol
        H = [0.0]
        for j in range(1, k + 1):
            marginal = joint.sum(axis=tuple(range(k - j))).ravel()        # the last j symbols
            H.append(float(-(marginal[marginal > 0] * np.log(marginal[marginal > 0])).sum()))
        per_position = [H[t + 1] - H[t] if t < k else self.entropy_rate for t in range(block_size)]
        return float(np.mean(per_position))


def synthetic_language(length: int = 100_000, *, order: int = 2, alphabet_size: int = 8,
                       concentration: float = 0.2, seed: int = 0,
                       alphabet: str | None = None) -> SyntheticLanguage:
    """Sample a seeded order-k Markov language and report its exact entropy rate.

    Each context's next-symbol distribution is drawn from Dirichlet(``concentration``):
    small values give peaked distributions (low entropy, a floor a small model can
    reach), large ones near-uniform ones (entropy near log K). Each row is mixed with
    0.1 % of the uniform distribution, so every transition is possible, the chain is
    irreducible and aperiodic, and its stationary distribution unique. The first k
    symbols are drawn from the stationary law, so the whole sample is stationary.
    """
    if order < 0 or alphabet_size < 2 or length < 1 or concentration <= 0:
        raise ValueError(f"need order >= 0, alphabet_size >= 2, length >= 1, concentration > 0; "
                         f"got order={order}, alphabet_size={alphabet_size}, length={length}, "
                         f"concentration={concentration}")
    K, S = alphabet_size, alphabet_size ** order
    if S > 4096:
        raise ValueError(f"alphabet_size**order = {S} contexts; at most 4096 are supported")
    if alphabet is None:
        if K > 26:
            raise ValueError(f"alphabet_size={K} > 26: pass alphabet= with {K} distinct characters")
        alphabet = string.ascii_lowercase[:K]
    if len(alphabet) != K or len(set(alphabet)) != K:
        raise ValueError(f"alphabet must have {K} distinct characters, got {alphabet!r}")
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(K, concentration), size=S)           # (S, K)
    P = 0.999 * P + 0.001 / K                                      # (S, K), every entry > 0
    pi = markov_stationary(P, order)                               # (S,)

    cum = np.cumsum(P, axis=1)                                     # (S, K)
    cum[:, -1] = 1.0
    cum_rows = cum.tolist()
    state = int(rng.choice(S, p=pi))
    ids = [(state // K ** (order - 1 - i)) % K for i in range(order)][:length]
    u = rng.random(max(length - len(ids), 0)).tolist()
    for r in u:
        x = bisect.bisect_right(cum_rows[state], r)
        ids.append(x)
        state = (state * K + x) % S
    ids_arr = np.asarray(ids, dtype=np.int64)                      # (N,)
    return SyntheticLanguage(ids=ids_arr, text="".join(alphabet[i] for i in ids), alphabet=alphabet,
                             order=order, transition=P, stationary=pi,
                             entropy_rate=markov_entropy_rate(P, pi))


# --- a labelled sentiment set where order matters ---------------------------------

_SUBJECTS = ("film", "movie", "plot", "story", "acting", "cast", "music", "script",
             "ending", "dialogue", "pacing", "soundtrack", "director", "camera work")
_POSITIVE = ("good", "great", "excellent", "wonderful", "brilliant", "enjoyable",
             "charming", "moving", "clever", "fun")
_NEGATIVE = ("bad", "terrible", "awful", "boring", "dull", "weak", "clumsy",
             "tedious", "predictable", "disappointing")
_VERBS = (("was", "was not"), ("is", "is not"), ("felt", "did not feel"),
          ("seemed", "never seemed"), ("was", "was never"))
_INTENSIFIERS = ("", "very ", "really ", "quite ", "truly ", "rather ")


def _clause(rng: np.random.Generator, polarity: int, negated: bool) -> str:
    """'the <subject> <verb> <adjective>' whose meaning has the given polarity."""
    subject = _SUBJECTS[rng.integers(len(_SUBJECTS))]
    plain, negative_form = _VERBS[rng.integers(len(_VERBS))]
    adjective_polarity = polarity ^ int(negated)          # "not good" is negative
    words = _POSITIVE if adjective_polarity else _NEGATIVE
    adjective = words[rng.integers(len(words))]
    intensifier = _INTENSIFIERS[rng.integers(len(_INTENSIFIERS))]
    return f"the {subject} {negative_form if negated else plain} {intensifier}{adjective}"


def sentiment(n: int = 2000, *, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1),
              contrast: float = 0.5, negation: float = 0.5) -> Splits:
    """A seeded sentiment set (label 1 positive, 0 negative) whose labels depend on context.

    Sentences are "the plot was not good." (a negation flips the adjective) or, with
    probability ``contrast``, "the acting was good, but the plot was bad." (the clause
    after "but" decides). Each contrast sentence comes with its mirror, the same two
    clauses in the other order, which has the same bag of words and, when the clauses
    disagree, the opposite label; both land in the same split. So no bag-of-words
    classifier can be right on both (see :func:`bag_of_words_ceiling`), while a model that
    reads word order can reach 100 %: the label is a function of the text.

    Returns ``Splits(train, validation, test)`` of :class:`LabelledTexts`.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    groups: list[list[tuple[str, int]]] = []
    count = 0
    while count < n:
        label = int(rng.integers(2))
        if rng.random() < contrast and count + 2 <= n:
            first = _clause(rng, 1 - label, rng.random() < negation)      # the conceded clause
            second = _clause(rng, label, rng.random() < negation)         # the one that counts
            groups.append([(f"{first}, but {second}.", label), (f"{second}, but {first}.", 1 - label)])
        else:
            groups.append([(f"{_clause(rng, label, rng.random() < negation)}.", label)])
        count += len(groups[-1])
    # split whole groups (a mirror pair stays together); fill validation, then test, to
    # their target sizes in a seeded order, so each size is off by at most one
    _, n_val, n_test = _split_sizes(count, fractions)
    parts: tuple[list, list, list] = ([], [], [])
    filled = [0, 0]
    for g in np.random.default_rng([seed, 1]).permutation(len(groups)).tolist():
        k = 1 if filled[0] < n_val else 2 if filled[1] < n_test else 0
        parts[k].append(groups[g])
        if k:
            filled[k - 1] += len(groups[g])
    names = ("negative", "positive")
    return Splits(*(LabelledTexts([t for g in p for t, _ in g], [y for g in p for _, y in g], names)
                    for p in parts))


def _words_and_punctuation(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text)


def bag_of_words_ceiling(texts: Sequence[str], labels: Sequence[int],
                         tokenize: Callable[[str], list[str]] = _words_and_punctuation) -> float:
    """The best accuracy any classifier that sees only the bag of words can reach on
    (texts, labels): texts with the same multiset of words get the same prediction, so
    each such group contributes at most the count of its most common label."""
    groups: dict[frozenset, Counter] = {}
    for text, y in zip(texts, labels):
        bag = frozenset(Counter(tokenize(text)).items())
        groups.setdefault(bag, Counter())[y] += 1
    return sum(c.most_common(1)[0][1] for c in groups.values()) / max(len(texts), 1)
