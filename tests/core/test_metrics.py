"""minillm.core.metrics against scikit-learn, and the token-weighted language-model loss.

Tolerance 1e-12 (absolute) against scikit-learn: both compute the same ratios of
integer counts in float64, so they differ at most by rounding of a few operations
(the averages sum at most ~10 terms, error ~1e-15); 1e-12 leaves room without hiding a
wrong formula (the smallest real difference a bug makes is 1/N >= 1/60 here).
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn import metrics as skm

from minillm.core import metrics as M

TOL = 1e-12


@st.composite
def label_pairs(draw, max_classes=6):
    """(y_true, y_pred, C): random labels, often with classes absent from y_pred."""
    C = draw(st.integers(1, max_classes))
    n = draw(st.integers(1, 60))
    y_true = np.array(draw(st.lists(st.integers(0, C - 1), min_size=n, max_size=n)))
    # predictions restricted to a random subset, so some classes are never predicted
    allowed = draw(st.lists(st.integers(0, C - 1), min_size=1, max_size=C, unique=True))
    y_pred = np.array(draw(st.lists(st.sampled_from(allowed), min_size=n, max_size=n)))
    return y_true, y_pred, C


# sklearn warns about a single label even when `labels` is given; the check is ours
@pytest.mark.filterwarnings("ignore:A single label was found")
@given(label_pairs())
def test_accuracy_and_confusion_matrix_match_sklearn(data):
    y_true, y_pred, C = data
    assert abs(M.accuracy(y_true, y_pred) - skm.accuracy_score(y_true, y_pred)) <= TOL
    ours = M.confusion_matrix(y_true, y_pred, n_classes=C)
    theirs = skm.confusion_matrix(y_true, y_pred, labels=list(range(C)))
    np.testing.assert_array_equal(ours, theirs)
    # without n_classes: max id + 1 rows, row i is class i
    inferred = M.confusion_matrix(y_true, y_pred)
    k = inferred.shape[0]
    assert k == max(y_true.max(), y_pred.max()) + 1
    np.testing.assert_array_equal(inferred, theirs[:k, :k])


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
@pytest.mark.parametrize("give_n_classes", [True, False])
@given(data=label_pairs())
def test_precision_recall_f1_match_sklearn(average, give_n_classes, data):
    y_true, y_pred, C = data
    ours = M.precision_recall_f1(y_true, y_pred, average=average,
                                 n_classes=C if give_n_classes else None)
    labels = list(range(C)) if give_n_classes else None
    P, R, F, S = skm.precision_recall_fscore_support(
        y_true, y_pred, average=average, labels=labels, zero_division=0)
    for name, a, b in [("precision", ours.precision, P), ("recall", ours.recall, R),
                       ("f1", ours.f1, F)]:
        diff = np.max(np.abs(np.asarray(a) - np.asarray(b)))
        assert diff <= TOL, f"{name} ({average}): ours {a} vs sklearn {b}, diff {diff}"
    if average is None:
        np.testing.assert_array_equal(ours.support, S)
    assert M.precision(y_true, y_pred, average=average or "macro") == pytest.approx(
        skm.precision_score(y_true, y_pred, average=average or "macro", zero_division=0), abs=TOL)


@given(label_pairs(max_classes=2), st.sampled_from([0, 1]))
def test_binary_matches_sklearn(data, pos_label):
    y_true, y_pred, _ = data
    kw = dict(average="binary", pos_label=pos_label, zero_division=0)
    got = (M.precision(y_true, y_pred, pos_label=pos_label),
           M.recall(y_true, y_pred, pos_label=pos_label),
           M.f1(y_true, y_pred, pos_label=pos_label))
    want = (skm.precision_score(y_true, y_pred, labels=[0, 1], **kw),
            skm.recall_score(y_true, y_pred, labels=[0, 1], **kw),
            skm.f1_score(y_true, y_pred, labels=[0, 1], **kw))
    assert np.max(np.abs(np.subtract(got, want))) <= TOL, (got, want)


def test_zero_division_gives_zero_and_hand_computed_example():
    # class 2 is never predicted -> its precision is 0/0 -> 0.0 (zero_division=0)
    y_true, y_pred = [0, 1, 2, 2], [0, 1, 1, 0]
    s = M.precision_recall_f1(y_true, y_pred, average=None)
    np.testing.assert_allclose(s.precision, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(s.recall, [1.0, 1.0, 0.0])
    np.testing.assert_allclose(s.f1, [2 / 3, 2 / 3, 0.0])
    assert M.f1(y_true, y_pred, average="macro") == pytest.approx(4 / 9)
    # micro over all classes of single-label data is the accuracy
    assert M.f1(y_true, y_pred, average="micro") == pytest.approx(0.5)


def test_classification_metrics_report():
    y_true, y_pred = [0, 1, 2, 2, 1], [0, 2, 2, 2, 1]
    r = M.classification_metrics(y_true, y_pred, average="weighted",
                                 label_names=["neg", "neu", "pos"])
    assert r["n"] == 5 and r["average"] == "weighted"
    assert r["accuracy"] == pytest.approx(0.8)
    assert r["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert r["per_class"]["neu"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
                                     "support": 2}
    assert r["per_class"]["pos"]["precision"] == pytest.approx(2 / 3)
    P, R, F, _ = skm.precision_recall_fscore_support(y_true, y_pred, average="weighted")
    assert (r["precision"], r["recall"], r["f1"]) == pytest.approx((P, R, F), abs=TOL)
    import json
    json.dumps(r)  # plain Python types only


@pytest.mark.parametrize("call, match", [
    (lambda: M.accuracy([0, 1, 1], [0, 1]), r"same shape, got \(3,\) and \(2,\)"),
    (lambda: M.accuracy([], []), "y_true is empty"),
    (lambda: M.accuracy([0, -1], [0, 1]), "class ids >= 0, got -1"),
    (lambda: M.accuracy([0.5, 1.0], [0, 1]), "integer class ids, got dtype float64"),
    (lambda: M.confusion_matrix([0, 3], [0, 1], n_classes=3), r"0\.\.2 for n_classes=3, got label 3"),
    (lambda: M.confusion_matrix([0, 1], [0, 1], n_classes=0), "positive integer, got 0"),
    (lambda: M.f1([0, 1], [0, 1], average="mean"), "average must be one of .* got 'mean'"),
    (lambda: M.f1([0, 2], [0, 1]), r"needs labels in \{0, 1\}, got 3 classes"),
    (lambda: M.f1([0, 1], [0, 1], pos_label=2), "pos_label must be 0 or 1 .*got 2"),
    (lambda: M.classification_metrics([0, 1], [0, 1], label_names=["a"]), "1 names, expected 2"),
])
def test_bad_classification_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------
# language-model loss


def _token_nll(rng, n_tokens, V=11):
    """Per-token negative log-likelihoods of random logits (a stable log-softmax)."""
    logits = rng.normal(size=(n_tokens, V)) * 2.0
    targets = rng.integers(0, V, size=n_tokens)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_p[np.arange(n_tokens), targets]  # (n_tokens,)


def test_token_weighted_mean_equals_one_big_batch_and_chapter_formula_differs():
    rng = np.random.default_rng(0)
    sizes = [64, 7, 130, 1, 33]  # unequal token counts (a short last batch, ignored targets)
    batches = [_token_nll(rng, n) for n in sizes]
    everything = np.concatenate(batches)

    by_sum, by_mean = M.TokenLoss(), M.TokenLoss()
    for nll in batches:
        by_sum.add(nll.sum(), nll.size)
        by_mean.add_mean(nll.mean(), nll.size)   # what a mean-reduced loss gives
    big = M.TokenLoss().add(everything.sum(), everything.size)

    # float64 sums of ~235 terms of size ~2: rounding error ~1e-13 relative; 1e-12 bound
    assert by_sum.mean == pytest.approx(everything.mean(), rel=1e-12)
    assert by_mean.mean == pytest.approx(big.mean, rel=1e-12)
    assert by_mean.perplexity == pytest.approx(math.exp(everything.mean()), rel=1e-12)
    assert by_mean.bits_per_token == pytest.approx(everything.mean() / math.log(2), rel=1e-12)

    # the chapter (5.5): sum of per-batch means / number of tokens -- a different number
    chapter = sum(nll.mean() for nll in batches) / everything.size
    assert abs(chapter - big.mean) > 0.5 * big.mean, (chapter, big.mean)
    # even its "fixed" variant, a plain mean of batch means, is wrong for unequal batches
    mean_of_means = np.mean([nll.mean() for nll in batches])
    assert abs(mean_of_means - big.mean) > 1e-3


def test_uniform_model_has_perplexity_V():
    V = 50
    acc = M.TokenLoss().add_mean(math.log(V), 1000)
    assert acc.perplexity == pytest.approx(V, rel=1e-12)
    assert acc.bits_per_token == pytest.approx(math.log2(V), rel=1e-12)
    assert M.perplexity(0.0) == 1.0 and M.bits_per_token(math.log(2)) == pytest.approx(1.0)
    assert M.perplexity(1000.0) == math.inf


def test_batch_with_no_counted_token_changes_nothing():
    acc = M.TokenLoss().add(12.0, 4).add_mean(0.0, 0)  # a fully ignored batch
    assert (acc.mean, acc.n_tokens) == (3.0, 4)
    acc.reset()
    assert acc.n_tokens == 0


@pytest.mark.parametrize("call, match", [
    (lambda: M.TokenLoss().mean, "no tokens yet"),
    (lambda: M.TokenLoss().add(1.0, -2), "integer >= 0, got -2"),
    (lambda: M.TokenLoss().add(1.0, 2.5), "integer >= 0, got 2.5"),
    (lambda: M.TokenLoss().add(1.0, 0), "n_tokens=0 must have sum_loss 0.0, got 1.0"),
    (lambda: M.TokenLoss().add(float("nan"), 3), "sum_loss must be a finite number >= 0.*got nan"),
    (lambda: M.TokenLoss().add_mean(-0.5, 3), "mean_loss must be .* got -0.5"),
    (lambda: M.perplexity(float("inf")), "mean_nats must be .* got inf"),
])
def test_bad_loss_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
