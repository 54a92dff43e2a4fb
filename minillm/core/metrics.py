"""Evaluation metrics: classification scores and language-model loss, done right.

The chapter (section 3.5) names accuracy, precision, recall and F1 but its code
(section 5.5) never computes them; and its validation loss divides the SUM of per-batch
MEAN losses by the number of tokens, which is neither the mean loss per token nor
anything else with a meaning. This module gives both, backend-agnostic (NumPy only).

Dimension legend:
    N   number of labelled examples
    C   number of classes (labels are integers 0 .. C-1)

Classification follows scikit-learn's definitions, with ``zero_division=0``: a
precision, recall or F1 whose denominator is zero (a class never predicted, or never
present) counts as 0.0, silently.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "accuracy",
    "confusion_matrix",
    "precision",
    "recall",
    "f1",
    "precision_recall_f1",
    "classification_metrics",
    "TokenLoss",
    "perplexity",
    "bits_per_token",
]

AVERAGES = ("binary", "macro", "micro", "weighted")

# ---------------------------------------------------------------------------------------
# input checks


def _labels(y, name: str) -> np.ndarray:
    """``y`` as a flat int64 array of non-negative class ids; ValueError otherwise."""
    y = np.asarray(y)
    if y.size == 0:
        raise ValueError(f"{name} is empty; expected at least one label (got shape {y.shape})")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {y.dtype}")
    if y.min() < 0:
        raise ValueError(f"{name} must hold class ids >= 0, got {int(y.min())}")
    return y.astype(np.int64).ravel()


def _pair(y_true, y_pred, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Checked ``(y_true (N,), y_pred (N,), C)``; ``C`` defaults to the largest id + 1."""
    shape_true, shape_pred = np.shape(y_true), np.shape(y_pred)
    if shape_true != shape_pred:
        raise ValueError(
            f"y_true and y_pred must have the same shape, got {shape_true} and {shape_pred}"
        )
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    largest = int(max(y_true.max(), y_pred.max()))
    if n_classes is None:
        n_classes = largest + 1
    elif isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    elif largest >= n_classes:
        raise ValueError(
            f"labels must lie in 0..{n_classes - 1} for n_classes={n_classes}, got label {largest}"
        )
    return y_true, y_pred, int(n_classes)


# ---------------------------------------------------------------------------------------
# classification


def accuracy(y_true, y_pred) -> float:
    r"""Fraction of exact matches (chapter section 3.5).

    .. math:: \mathrm{acc} = \frac{1}{N} \sum_{i=1}^{N} [\hat y_i = y_i]

    Shapes: y_true (N,), y_pred (N,) -> float.
    """
    y_true, y_pred, _ = _pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    r"""Counts of (true class, predicted class) pairs: rows are true, columns predicted.

    .. math:: M_{ij} = \#\{ n : y_n = i,\ \hat y_n = j \}

    Row ``i`` is class id ``i``; without ``n_classes`` there are ``max id + 1`` rows, so a
    class id that occurs nowhere still has its (all-zero) row and column.

    Shapes: y_true (N,), y_pred (N,) -> (C, C) int64.
    """
    y_true, y_pred, n_classes = _pair(y_true, y_pred, n_classes)
    M = np.zeros((n_classes, n_classes), dtype=np.int64)  # (C, C)
    np.add.at(M, (y_true, y_pred), 1)
    return M


class Scores(NamedTuple):
    """Precision, recall, F1 (floats, or (C,) arrays for ``average=None``) and support."""

    precision: float | np.ndarray
    recall: float | np.ndarray
    f1: float | np.ndarray
    support: int | np.ndarray


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, with 0.0 where den == 0 (scikit-learn's ``zero_division=0``)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def precision_recall_f1(y_true, y_pred, *, average: str | None = "macro",
                        n_classes: int | None = None, pos_label: int = 1) -> Scores:
    r"""Precision, recall and F1 from the confusion matrix ``M`` (chapter section 3.5).

    Per class ``c``: :math:`TP_c = M_{cc}`, :math:`FP_c = \sum_i M_{ic} - TP_c`,
    :math:`FN_c = \sum_j M_{cj} - TP_c`, and

    .. math::
        P_c = \frac{TP_c}{TP_c + FP_c}, \quad R_c = \frac{TP_c}{TP_c + FN_c}, \quad
        F1_c = \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}

    (``F1_c`` is the harmonic mean of ``P_c`` and ``R_c``; a zero denominator gives 0.0).

    ``average``:
      - ``"binary"``: the scores of class ``pos_label``; labels must be 0 or 1.
      - ``"macro"``: the unweighted mean over classes.
      - ``"weighted"``: the mean over classes weighted by support (true count).
      - ``"micro"``: scores from the summed counts :math:`\sum_c TP_c`, ... (for
        single-label data over all classes this equals the accuracy).
      - ``None``: per-class arrays, one entry per counted class in id order (pass
        ``n_classes`` to get exactly one entry per id ``0 .. C-1``).

    Which classes count: ``0 .. n_classes-1`` when ``n_classes`` is given; otherwise the
    ids that occur in ``y_true`` or ``y_pred`` (scikit-learn's default), so an id that
    occurs nowhere does not pull the macro average down.

    Shapes: y_true (N,), y_pred (N,) -> floats, or (C,) arrays for ``average=None``.
    """
    if average is not None and average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES} or None, got {average!r}")
    y_true, y_pred, C = _pair(y_true, y_pred, n_classes)
    M = confusion_matrix(y_true, y_pred, C)  # (C, C)
    if average == "binary":
        if C > 2:
            raise ValueError(
                f"average='binary' needs labels in {{0, 1}}, got {C} classes (ids 0..{C - 1}); "
                "use average='macro', 'micro' or 'weighted' for more classes"
            )
        if pos_label not in (0, 1):
            raise ValueError(f"pos_label must be 0 or 1 for average='binary', got {pos_label!r}")
        M = confusion_matrix(y_true, y_pred, 2)  # (2, 2)
    tp = np.diag(M).astype(np.float64)  # (C,)
    fp = M.sum(axis=0) - tp  # (C,) predicted c but was not
    fn = M.sum(axis=1) - tp  # (C,) was c but not predicted
    support = M.sum(axis=1)  # (C,)
    if n_classes is None and average != "binary":
        present = (M.sum(axis=0) + support) > 0  # (C,) ids seen in y_true or y_pred
        tp, fp, fn, support = tp[present], fp[present], fn[present], support[present]

    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    P = _safe_divide(tp, tp + fp)
    R = _safe_divide(tp, tp + fn)
    F = _safe_divide(2 * tp, 2 * tp + fp + fn)
    if average is None:
        return Scores(P, R, F, support)
    if average == "binary":
        return Scores(float(P[pos_label]), float(R[pos_label]), float(F[pos_label]),
                      int(support[pos_label]))
    if average == "micro":
        return Scores(float(P), float(R), float(F), int(support.sum()))
    weights = support if average == "weighted" else np.ones_like(P)  # (C,)
    total = float(weights.sum())
    mean = (lambda s: float(np.dot(weights, s) / total)) if total > 0 else (lambda s: 0.0)
    return Scores(mean(P), mean(R), mean(F), int(support.sum()))


def precision(y_true, y_pred, *, average: str = "binary", n_classes: int | None = None,
              pos_label: int = 1) -> float:
    r""":math:`P = TP / (TP + FP)`, averaged as in :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, average=average, n_classes=n_classes,
                               pos_label=pos_label).precision


def recall(y_true, y_pred, *, average: str = "binary", n_classes: int | None = None,
           pos_label: int = 1) -> float:
    r""":math:`R = TP / (TP + FN)`, averaged as in :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, average=average, n_classes=n_classes,
                               pos_label=pos_label).recall


def f1(y_true, y_pred, *, average: str = "binary", n_classes: int | None = None,
       pos_label: int = 1) -> float:
    r""":math:`F1 = 2PR / (P + R) = 2TP / (2TP + FP + FN)`, averaged as in
    :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, average=average, n_classes=n_classes,
                               pos_label=pos_label).f1


def classification_metrics(y_true, y_pred, *, average: str = "macro",
                           n_classes: int | None = None,
                           label_names: list[str] | None = None) -> dict:
    """A report in plain Python types (ready for ``json.dump``)::

        {"n": N, "average": average, "accuracy": ..., "precision": ..., "recall": ...,
         "f1": ..., "confusion_matrix": [[...], ...],
         "per_class": {name: {"precision", "recall", "f1", "support"}, ...}}

    ``per_class`` covers every class id ``0 .. C-1`` of the confusion matrix, named by
    ``label_names`` when given (else by the id as a string).
    """
    y_true, y_pred, C = _pair(y_true, y_pred, n_classes)
    if label_names is not None and len(label_names) != C:
        raise ValueError(f"label_names has {len(label_names)} names, expected {C} (one per class)")
    names = list(label_names) if label_names is not None else [str(c) for c in range(C)]
    avg = precision_recall_f1(y_true, y_pred, average=average, n_classes=n_classes)
    per = precision_recall_f1(y_true, y_pred, average=None, n_classes=C)
    return {
        "n": int(y_true.size),
        "average": average,
        "accuracy": accuracy(y_true, y_pred),
        "precision": avg.precision,
        "recall": avg.recall,
        "f1": avg.f1,
        "confusion_matrix": confusion_matrix(y_true, y_pred, C).tolist(),
        "per_class": {
            names[c]: {"precision": float(per.precision[c]), "recall": float(per.recall[c]),
                       "f1": float(per.f1[c]), "support": int(per.support[c])}
            for c in range(C)
        },
    }


# ---------------------------------------------------------------------------------------
# language modelling

_LN2 = math.log(2.0)


def _finite_non_negative(x, name: str) -> float:
    x = float(x)  # also takes NumPy scalars and 0-d torch tensors
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (nats), got {x}")
    return x


def perplexity(mean_nats: float) -> float:
    r"""Perplexity from the mean cross-entropy per token in nats.

    .. math:: \mathrm{PPL} = \exp\Big(\frac{1}{N}\sum_{t=1}^{N} -\log p(x_t \mid x_{<t})\Big)

    A model that guesses uniformly over ``V`` tokens has perplexity ``V``. Returns
    ``inf`` where ``exp`` overflows (a mean above about 709.78 nats).
    """
    mean_nats = _finite_non_negative(mean_nats, "mean_nats")
    return math.exp(mean_nats) if mean_nats < 709.78 else math.inf


def bits_per_token(mean_nats: float) -> float:
    r"""Mean cross-entropy in bits: :math:`\mathrm{bpt} = \bar\ell / \ln 2`."""
    return _finite_non_negative(mean_nats, "mean_nats") / _LN2


class TokenLoss:
    r"""Accumulates a language model's loss over batches, weighted by tokens.

    .. math:: \bar\ell = \frac{\sum_b S_b}{\sum_b n_b}, \qquad
              S_b = \sum_{t \in b} -\log p(x_t \mid x_{<t}) = n_b \cdot \bar\ell_b

    where batch ``b`` has ``n_b`` counted target tokens (ignored targets excluded),
    summed loss ``S_b`` and mean loss :math:`\bar\ell_b`. The chapter's section 5.5
    computes :math:`\sum_b \bar\ell_b / N_{\text{words}}` instead, which is not a mean
    of anything: it shrinks as the validation file grows.

    Usage::

        acc = TokenLoss()
        for x, y in batches:
            _, loss = model(x, y)                       # mean over counted tokens
            acc.add_mean(loss, n_tokens=int((y != -100).sum()))
        acc.mean, acc.perplexity, acc.bits_per_token
    """

    def __init__(self) -> None:
        self.sum_nats = 0.0
        self.n_tokens = 0

    def add(self, sum_loss: float, n_tokens: int) -> "TokenLoss":
        """Adds a batch given its SUMMED loss (nats) and its number of counted tokens."""
        sum_loss = _finite_non_negative(sum_loss, "sum_loss")
        if isinstance(n_tokens, bool) or not isinstance(n_tokens, (int, np.integer)) or n_tokens < 0:
            raise ValueError(f"n_tokens must be an integer >= 0, got {n_tokens!r}")
        if n_tokens == 0 and sum_loss != 0.0:
            raise ValueError(f"a batch with n_tokens=0 must have sum_loss 0.0, got {sum_loss}")
        self.sum_nats += sum_loss
        self.n_tokens += int(n_tokens)
        return self

    def add_mean(self, mean_loss: float, n_tokens: int) -> "TokenLoss":
        """Adds a batch given its MEAN loss per counted token (what ``cross_entropy``
        returns with ``reduction="mean"``); it is weighted by ``n_tokens``."""
        mean_loss = _finite_non_negative(mean_loss, "mean_loss")
        if isinstance(n_tokens, bool) or not isinstance(n_tokens, (int, np.integer)) or n_tokens < 0:
            raise ValueError(f"n_tokens must be an integer >= 0, got {n_tokens!r}")
        return self.add(mean_loss * int(n_tokens), n_tokens)

    @property
    def mean(self) -> float:
        """Mean loss per token in nats; ValueError before any token was added."""
        if self.n_tokens == 0:
            raise ValueError("TokenLoss has no tokens yet: expected at least one add() with n_tokens > 0")
        return self.sum_nats / self.n_tokens

    @property
    def perplexity(self) -> float:
        return perplexity(self.mean)

    @property
    def bits_per_token(self) -> float:
        return bits_per_token(self.mean)

    def reset(self) -> None:
        self.sum_nats, self.n_tokens = 0.0, 0

    def __repr__(self) -> str:
        mean = f"{self.mean:.6g}" if self.n_tokens else "n/a"
        return f"TokenLoss(n_tokens={self.n_tokens}, mean={mean} nats)"
