r"""Cross-entropy from logits, with ignored targets and label smoothing.

Dimension legend: ``C`` classes (the vocabulary for a language model), on the LAST axis;
``...`` any leading dimensions, e.g. ``(B, T)``. logits ``(..., C)``, targets ``(...)``.

Semantics follow ``torch.nn.functional.cross_entropy`` (with the class axis last instead
of second), except that a batch with no counted target gives 0.0 instead of NaN.
Non-finite logits too (tests/ops/test_nonfinite.py): a row with NaN or +inf gives a NaN
loss, a -inf logit at the target an infinite one, a -inf logit elsewhere a finite one
(infinite with label smoothing, whose mean over classes includes it); an ignored row's
NaN does not reach the "mean" or "sum".
"""
from typing import NamedTuple

import numpy as np

from ..core import _validate as v

__all__ = ["cross_entropy", "cross_entropy_forward", "cross_entropy_backward"]

REDUCTIONS = ("mean", "sum", "none")


class CrossEntropyCache(NamedTuple):
    probs: np.ndarray          # softmax(logits), (..., C)
    safe_targets: np.ndarray   # targets with ignored entries replaced by 0, (...)
    counted: np.ndarray        # targets != ignore_index, bool (...)
    label_smoothing: float
    reduction: str
    n_counted: int


def _check(logits, targets, ignore_index, label_smoothing, reduction):
    logits, targets = np.asarray(logits), np.asarray(targets)
    v.require_float("logits", logits)
    v.require_ndim_at_least("logits", logits, 1)
    v.require_nonempty_axis("logits", logits, -1)
    v.require_integer("targets", targets)
    v.require_shape("targets", targets, logits.shape[:-1],
                    f"logits {logits.shape} without its class axis")
    v.require_choice("reduction", reduction, REDUCTIONS)
    v.require_number_in("label_smoothing", label_smoothing, 0.0, 1.0)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise ValueError(f"expected ignore_index to be an int, got {ignore_index!r}")
    v.require_index_range("targets", targets, logits.shape[-1], ignore=ignore_index,
                          what=f"C={logits.shape[-1]} classes")
    return logits, targets


def cross_entropy_forward(logits, targets, ignore_index=-100, label_smoothing=0.0,
                          reduction="mean"):
    r"""Cross-entropy of the targets under softmax(logits) (chapter, section 4.3).

    With :math:`\log p = \mathrm{log\_softmax}(z)` computed by log-sum-exp, smoothing
    :math:`\varepsilon` and :math:`N` = the number of targets not equal to ``ignore_index``:

    .. math::
        \ell_n = (1 - \varepsilon)\,\big(-\log p_{n, y_n}\big)
                 + \varepsilon\,\frac{1}{C}\sum_{c=1}^{C} \big(-\log p_{n, c}\big),
        \qquad
        L_{\text{mean}} = \frac{1}{N} \sum_{n\ \text{counted}} \ell_n

    This is the chapter's :math:`-\sum_i y_i \log \hat y_i` with the smoothed target
    :math:`y = (1-\varepsilon)\,\mathrm{onehot} + \varepsilon / C`. Ignored targets give
    :math:`\ell_n = 0`; ``"sum"`` adds the :math:`\ell_n`, ``"none"`` returns them; with
    :math:`N = 0`, the mean is 0.0.

    Shapes: logits (..., C), targets (...) int -> loss () for "mean"/"sum", (...) for
    "none". Returns ``(loss, CrossEntropyCache)``.
    """
    if v.checking():
        logits, targets = _check(logits, targets, ignore_index, label_smoothing, reduction)
    C = logits.shape[-1]
    counted = targets != ignore_index                           # (...) bool
    safe_targets = np.where(counted, targets, 0)                # (...) an index even if ignored
    shifted = logits - logits.max(axis=-1, keepdims=True)       # (..., C)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (..., C)
    nll = -np.take_along_axis(log_probs, safe_targets[..., None], axis=-1)[..., 0]  # (...)
    if label_smoothing:
        smooth = -log_probs.sum(axis=-1) / C                    # (...)
        per_target = (1.0 - label_smoothing) * nll + label_smoothing * smooth  # (...)
    else:  # not 0 * smooth: a -inf logit makes smooth inf, and 0 * inf is NaN
        per_target = nll                                        # (...)
    per_target = np.where(counted, per_target, np.zeros_like(per_target))  # (...)
    n_counted = int(counted.sum())
    if reduction == "none":
        loss = per_target                                       # (...)
    elif reduction == "sum":
        loss = np.asarray(per_target.sum(), dtype=logits.dtype)  # ()
    else:
        loss = np.asarray(per_target.sum() / max(n_counted, 1), dtype=logits.dtype)  # ()
    cache = CrossEntropyCache(np.exp(log_probs), safe_targets, counted,
                              float(label_smoothing), reduction, n_counted)
    return loss, cache


def cross_entropy_backward(dloss, cache: CrossEntropyCache):
    r"""Gradient with respect to the logits, fused (no softmax Jacobian is formed):

    .. math::
        \frac{\partial L}{\partial z_{n,c}} = g_n \Big( p_{n,c}
            - (1 - \varepsilon)\,[c = y_n] - \frac{\varepsilon}{C} \Big)

    where :math:`g_n` is the upstream gradient of :math:`\ell_n`: ``dloss[n]`` for
    "none", ``dloss`` for "sum", ``dloss / N`` for "mean"; and 0 for an ignored target.
    The targets get no gradient. Shapes: dloss () or (...) -> dlogits (..., C).
    """
    probs, safe_targets, counted, eps, reduction, n_counted = cache
    C = probs.shape[-1]
    if v.checking():
        dloss = np.asarray(dloss)
        expected = counted.shape if reduction == "none" else ()
        v.require_shape("dloss", dloss, expected, f"the shape of the {reduction!r} loss")
    if reduction == "mean":
        dloss = dloss / max(n_counted, 1)
    g = np.where(counted, dloss, 0.0).astype(probs.dtype)        # (...), 0 if ignored
    one_hot = np.zeros_like(probs)                              # (..., C)
    np.put_along_axis(one_hot, safe_targets[..., None], 1.0, axis=-1)
    target_dist = (1.0 - eps) * one_hot + eps / C               # (..., C) smoothed y
    return (probs - target_dist) * g[..., None]                 # (..., C)


def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """Cross-entropy from logits; see :func:`cross_entropy_forward`."""
    return cross_entropy_forward(logits, targets, ignore_index, label_smoothing, reduction)[0]
