"""BLEU from scratch against sacrebleu (a test-only dependency), and SQuAD's exact
match / token F1 on cases worked by hand. BLEU agrees with sacrebleu to 1e-9 (both sum
the same integer counts and take the same logs; only float rounding differs)."""
import math

import numpy as np
import pytest

from minillm.text_metrics import corpus_bleu, exact_match, normalize_answer, token_f1


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
@pytest.mark.parametrize("smooth", ["none", "exp"])
def test_bleu_matches_sacrebleu(seed, smooth):
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, refs = _random_corpus(seed)
    ours = corpus_bleu(hyps, refs, smooth=smooth)
    theirs = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]],
                                   tokenize="none", smooth_method=smooth).score
    assert ours == pytest.approx(theirs, abs=1e-9)
    assert 0 < ours < 100


@pytest.mark.parametrize("smooth", ["none", "exp"])
def test_bleu_is_zero_when_nothing_matches(smooth):
    # issue 17: 7.99 (one sentence) and 3.99 (two) under "exp" before; sacrebleu gives 0
    sacrebleu = pytest.importorskip("sacrebleu")
    for n_sentences in (1, 2):
        assert corpus_bleu([["a", "b", "c", "d"]] * n_sentences, [["e", "f", "g", "h"]] * n_sentences,
                           smooth=smooth) == 0.0
        assert sacrebleu.corpus_bleu(["a b c d"] * n_sentences, [["e f g h"] * n_sentences],
                                     tokenize="none", smooth_method=smooth).score == 0.0


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


def test_bleu_rejects_bad_input():
    with pytest.raises(ValueError, match="one reference per hypothesis"):
        corpus_bleu([["a"]], [])
    with pytest.raises(ValueError, match="list of token lists"):
        corpus_bleu("a b", ["a b"])
    with pytest.raises(ValueError, match="smooth"):
        corpus_bleu([["a"]], [["a"]], smooth="add-k")
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
