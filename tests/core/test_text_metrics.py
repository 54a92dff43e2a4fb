"""BLEU from scratch against sacrebleu (a test-only dependency), and SQuAD's exact
match / token F1 on cases worked by hand.

BLEU agrees with sacrebleu to a relative 1e-9, and exactly where either is 0: both sum
the same integer n-gram counts and take the logs of the same few ratios in float64
(sacrebleu of 100 m/t, minillm of m/t), so they differ only by a few roundings of ~1e-16
each; any wrong count or smoothing step moves the score by far more than 1e-9. The
inputs go to sacrebleu as space-joined tokens with ``tokenize="none"`` (it then splits on
whitespace, so the n-grams are the same: the drawn tokens have no whitespace)."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm.core.text_metrics import SMOOTHING, corpus_bleu, exact_match, normalize_answer, token_f1

REL = 1e-9          # see the module docstring


def _sacrebleu(hyps, refs, max_n=4, smooth="exp", smooth_value=None):
    """sacrebleu's corpus BLEU of token lists; ``refs[i]`` is the list of references of
    hypothesis i, passed as sacrebleu's reference streams (``None`` where a hypothesis
    has fewer references than the most any has: sacrebleu then drops it)."""
    sacrebleu = pytest.importorskip("sacrebleu")
    streams = [[" ".join(rs[k]) if k < len(rs) else None for rs in refs]
               for k in range(max(len(rs) for rs in refs))]
    bleu = sacrebleu.metrics.BLEU(tokenize="none", smooth_method=smooth,
                                  smooth_value=smooth_value, max_ngram_order=max_n)
    return bleu.corpus_score([" ".join(h) for h in hyps], streams).score


def _agrees(ours, theirs):
    return math.isclose(ours, theirs, rel_tol=REL, abs_tol=0.0)


def _random_corpus(seed, n=30, vocab=8):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab)]
    refs = [list(rng.choice(words, size=int(rng.integers(1, 12)))) for _ in range(n)]
    hyps = []
    for ref in refs:                      # a noisy copy: some words swapped, dropped, added
        hyp = [w if rng.random() > 0.3 else str(rng.choice(words)) for w in ref]
        if rng.random() < 0.3:
            hyp = hyp[:-1]
        if rng.random() < 0.3:
            hyp = hyp + [str(rng.choice(words))]
        hyps.append(hyp)
    return hyps, refs


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("smooth", SMOOTHING)
def test_bleu_matches_sacrebleu(seed, smooth):
    hyps, refs = _random_corpus(seed)
    ours = corpus_bleu(hyps, refs, smooth=smooth)
    assert _agrees(ours, _sacrebleu(hyps, [[r] for r in refs], smooth=smooth))
    assert 0 < ours < 100


# Sentences of 0..6 tokens, so that empty ones and ones shorter than n come up often; the
# hypotheses and references share a 3-word vocabulary (matches of every order happen), or
# the references use their own (nothing matches).
_SHARED, _OTHER = ("a", "b", "c"), ("x", "y")


@st.composite
def _corpora(draw):
    ref_words = draw(st.sampled_from([_SHARED, _SHARED, _SHARED, _OTHER]))
    sentence = st.lists(st.sampled_from(_SHARED), max_size=6)
    hyps = draw(st.lists(sentence, min_size=1, max_size=5))
    refs = [draw(st.lists(st.lists(st.sampled_from(ref_words), max_size=6), min_size=1, max_size=3))
            for _ in hyps]
    return hyps, refs


@st.composite
def _smoothing(draw):
    smooth = draw(st.sampled_from(SMOOTHING))
    value = None
    if smooth in ("floor", "add-k"):     # None: the default (0.1, 1); 0 disables smoothing
        value = draw(st.one_of(st.none(), st.just(0.0), st.floats(1e-3, 3.0)))
    return smooth, value


@given(corpus=_corpora(), smoothing=_smoothing(), max_n=st.integers(1, 5), flat=st.booleans())
def test_bleu_matches_sacrebleu_on_drawn_corpora(corpus, smoothing, max_n, flat):
    hyps, refs = corpus
    smooth, value = smoothing
    theirs = _sacrebleu(hyps, refs, max_n, smooth, value)
    # a lone reference may be given as its token list (``flat``) or as a list of one
    ours = corpus_bleu(hyps, [rs[0] if flat and len(rs) == 1 else rs for rs in refs],
                       max_n=max_n, smooth=smooth, smooth_value=value)
    assert _agrees(ours, theirs), (ours, theirs)
    assert 0.0 <= ours <= 100.0 + 1e-9


@pytest.mark.parametrize("smooth", SMOOTHING)
def test_bleu_is_zero_when_nothing_matches(smooth):
    # issue 17: each was positive (7.99 and 3.99 under "exp") before; sacrebleu gives 0
    hyp, ref = "a b c d".split(), "e f g h".split()
    for n_sentences in (1, 2):
        hyps, refs = [hyp] * n_sentences, [ref] * n_sentences
        assert corpus_bleu(hyps, refs, smooth=smooth) == 0.0
        assert _sacrebleu(hyps, [[r] for r in refs], smooth=smooth) == 0.0
    # an empty hypothesis (alone, or against an empty reference) matches nothing either
    assert corpus_bleu([[]], [["a"]], smooth=smooth) == 0.0
    assert corpus_bleu([[]], [[]], smooth=smooth) == 0.0
    assert corpus_bleu([["a"]], [[]], smooth=smooth) == 0.0


# "a b x c" against "a b y c": p1 = 3/4, p2 = 1/3 ("a b"), no 3- or 4-gram matches
# (t3 = 2, t4 = 1); equal lengths, BP = 1. Each smoothing by hand:
_PARTIAL = {
    "none": 0.0,
    "floor": 100 * (3 / 4 * 1 / 3 * 0.1 / 2 * 0.1 / 1) ** 0.25,
    "add-k": 100 * (3 / 4 * 2 / 4 * 1 / 3 * 1 / 2) ** 0.25,      # (m + 1)/(t + 1) for n >= 2
    "exp": 100 * (3 / 4 * 1 / 3 * 1 / (2 * 2) * 1 / (4 * 1)) ** 0.25,
}


@pytest.mark.parametrize("smooth", SMOOTHING)
def test_bleu_some_orders_match_by_hand(smooth):
    hyp, ref = "a b x c".split(), "a b y c".split()
    ours = corpus_bleu([hyp], [ref], smooth=smooth)
    assert ours == pytest.approx(_PARTIAL[smooth], rel=1e-12)   # float64 rounding only
    assert _agrees(ours, _sacrebleu([hyp], [[ref]], smooth=smooth))


@pytest.mark.parametrize("smooth", SMOOTHING)
def test_bleu_hypotheses_shorter_than_n(smooth):
    # a perfect 2-token hypothesis has no 3- or 4-grams: p3 = 0/0 counts as 0 (sacrebleu
    # likewise), except under add-k, where it is (0 + 1)/(0 + 1) = 1
    short = corpus_bleu([["a", "b"]], [["a", "b"]], smooth=smooth)
    assert short == (100.0 if smooth == "add-k" else 0.0)
    # an empty hypothesis beside a full one adds 2 to r only: c = 2, r = 4, BP = e^(1 - 2)
    hyps, refs = [["a", "b"], []], [["a", "b"], ["c", "d"]]
    ours = corpus_bleu(hyps, refs, smooth=smooth)
    assert ours == pytest.approx(100 * math.exp(-1.0) if smooth == "add-k" else 0.0, rel=1e-12)
    assert _agrees(ours, _sacrebleu(hyps, [[r] for r in refs], smooth=smooth))
    assert corpus_bleu(hyps, refs, max_n=2, smooth=smooth) == pytest.approx(100 * math.exp(-1.0))


def test_bleu_several_references():
    # the brevity penalty takes the closest reference length, the shorter one on a tie:
    # |3 - 2| = |3 - 4|, so r = 2 <= c = 3 and BP = 1 (r = 4 would give e^(1 - 4/3))
    hyps, refs = [["a", "b", "c"]], [[["a", "b"], ["a", "b", "c", "d"]]]
    assert corpus_bleu(hyps, refs, max_n=1) == pytest.approx(100.0)
    assert corpus_bleu(hyps, [[["a", "b", "c", "d"], ["a", "b"]]], max_n=1) == pytest.approx(100.0)
    assert corpus_bleu(hyps, [["a", "b", "c", "d"]], max_n=1) == pytest.approx(
        100 * math.exp(1 - 4 / 3))
    # each n-gram is clipped by the reference where it occurs most: "a" x2 in the second
    hyps, refs = [["a", "a"]], [[["a", "b"], ["a", "a"], ["b"]]]
    assert corpus_bleu(hyps, refs, max_n=1) == pytest.approx(100.0)
    assert corpus_bleu(hyps, [["a", "b"]], max_n=1) == pytest.approx(50.0)
    for smooth in SMOOTHING:
        hyps = [["a", "b", "c"], ["a", "c"]]
        refs = [[["a", "b"], ["a", "b", "c", "d"]], [["c", "a", "x"]]]
        assert _agrees(corpus_bleu(hyps, refs, smooth=smooth), _sacrebleu(hyps, refs, smooth=smooth))


def test_bleu_tokens_are_taken_as_given():
    # no splitting, lower-casing or normalising: "a b" is one token, "A" is not "a"
    assert corpus_bleu([["a b"]], [["a b"]], max_n=1) == pytest.approx(100.0)
    assert corpus_bleu([["a b"]], [["a", "b"]], max_n=1) == 0.0
    assert corpus_bleu([["A"]], [["a"]], max_n=1) == 0.0


def test_bleu_by_hand():
    hyp, ref = ["the", "cat", "the", "cat"], ["the", "cat", "sat", "down"]
    # p1: "the" x2 and "cat" x2 are clipped to the reference's 1 each -> 2/4;
    # p2: "the cat" x2 clipped to 1, "cat the" absent -> 1/3; equal lengths: BP = 1
    assert corpus_bleu([hyp], [ref], max_n=2, smooth="none") == pytest.approx(
        100 * math.sqrt(2 / 4 * 1 / 3))
    assert corpus_bleu([ref], [ref]) == pytest.approx(100.0)
    # shorter hypothesis: brevity penalty e^(1 - r/c)
    assert corpus_bleu([["a", "b"]], [["a", "b", "c", "d"]], max_n=1) == pytest.approx(
        100 * math.exp(1 - 4 / 2))
    # the smoothing values are sacrebleu's defaults (floor 0.1, add-k 1)
    hyp, ref = "a b x c".split(), "a b y c".split()
    assert corpus_bleu([hyp], [ref], smooth="floor") == corpus_bleu(
        [hyp], [ref], smooth="floor", smooth_value=0.1)
    assert corpus_bleu([hyp], [ref], smooth="add-k") == corpus_bleu(
        [hyp], [ref], smooth="add-k", smooth_value=1)


def test_bleu_rejects_bad_input():
    with pytest.raises(ValueError, match="one reference .*per hypothesis"):
        corpus_bleu([["a"]], [])
    with pytest.raises(ValueError, match="list of token lists"):
        corpus_bleu("a b", ["a b"])
    with pytest.raises(ValueError, match="list of token lists"):
        corpus_bleu([["a"]], "a")
    with pytest.raises(ValueError, match="str tokens"):
        corpus_bleu([[1, 2]], [["a"]])
    with pytest.raises(ValueError, match="str tokens"):            # a token beside a list
        corpus_bleu([["a"]], [["a", ["b"]]])
    with pytest.raises(ValueError, match="several references to be a list of tokens"):
        corpus_bleu([["a"]], [[["a"], "b"]])
    with pytest.raises(ValueError, match="smooth"):
        corpus_bleu([["a"]], [["a"]], smooth="nist")
    with pytest.raises(ValueError, match="no smooth_value with smooth='exp'"):
        corpus_bleu([["a"]], [["a"]], smooth_value=0.1)
    for bad in (-0.1, math.inf, math.nan, "0.1", True):
        with pytest.raises(ValueError, match="expected smooth_value in"):
            corpus_bleu([["a"]], [["a"]], smooth="floor", smooth_value=bad)
    for max_n in (0, True, 2.0):                       # a bool is not a count
        with pytest.raises(ValueError, match=r"expected max_n to be an int >= 1, got"):
            corpus_bleu([["a"]], [["a"]], max_n=max_n)


def test_exact_match_and_f1_by_hand():
    assert normalize_answer("The  Red, Cat!") == "red cat"
    assert exact_match("the red cat", "Red cat.") == 1.0
    assert exact_match("red", "red cat") == 0.0
    # P = 1/1, R = 1/2 -> F1 = 2/3
    assert token_f1("red", "red cat") == pytest.approx(2 / 3)
    # multiset: "red red" vs "red cat": common 1, P = 1/2, R = 1/2
    assert token_f1("red red", "red cat") == pytest.approx(0.5)
    assert token_f1("dog", "red cat") == 0.0
    assert token_f1("the", "a") == 1.0          # both empty after normalising
    with pytest.raises(ValueError, match="str"):
        exact_match(3, "a")
