r"""Cross-entropy from logits, with ignored targets and label smoothing, written with
tensor ops (not ``F.cross_entropy``; the tests use that as a third opinion).

Dimension legend: ``C`` classes on the LAST axis; ``...`` any leading dimensions.
logits ``(..., C)``, targets ``(...)``.

Semantics follow ``torch.nn.functional.cross_entropy`` (with the class axis last instead
of second), except that a batch with no counted target gives 0.0 instead of NaN.
"""
import torch
import torch.nn.functional as F

from ..core import _validate as v

__all__ = ["cross_entropy"]

REDUCTIONS = ("mean", "sum", "none")


def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    r"""Cross-entropy of the targets under softmax(logits) (chapter, section 4.3).

    .. math::
        \ell_n = (1 - \varepsilon)\,\big(-\log p_{n, y_n}\big)
                 + \varepsilon\,\frac{1}{C}\sum_{c=1}^{C} \big(-\log p_{n, c}\big),
        \qquad
        L_{\text{mean}} = \frac{1}{N} \sum_{n\ \text{counted}} \ell_n

    with :math:`-\log p_{n,c} = \log \sum_j e^{x_{n,j} - m_n} - (x_{n,c} - m_n)`,
    :math:`m_n = \max_j x_{n,j}` (log-sum-exp), and :math:`N` the number of targets not
    equal to ``ignore_index`` (ignored ones give :math:`\ell_n = 0`; :math:`N = 0` gives 0.0).
    Shapes: logits (..., C), targets (...) int -> loss () for "mean"/"sum", (...) for "none".
    """
    if v.checking():
        _check(logits, targets, ignore_index, label_smoothing, reduction)
    C = logits.shape[-1]
    counted = targets != ignore_index                           # (...) bool
    safe_targets = torch.where(counted, targets, 0)             # (...) an index even if ignored
    shifted = logits - logits.amax(dim=-1, keepdim=True).detach()  # (..., C), see softmax.py
    log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))  # (..., C)
    nll = -log_probs.gather(-1, safe_targets[..., None].long())[..., 0]  # (...)
    if label_smoothing:
        smooth = -log_probs.sum(dim=-1) / C                     # (...)
        per_target = (1.0 - label_smoothing) * nll + label_smoothing * smooth  # (...)
    else:  # not 0 * smooth: a -inf logit makes smooth inf, and 0 * inf is NaN
        per_target = nll                                        # (...)
    per_target = torch.where(counted, per_target, 0.0)          # (...)
    n_counted = counted.sum()                                   # () int: no gradient flows
    if reduction == "none":
        return per_target                                       # (...)
    if reduction == "sum":
        return per_target.sum()                                 # ()
    # max(N, 1) on the integer count (a tensor, so a GPU run does not wait for it)
    return per_target.sum() / torch.clamp(n_counted, min=1)     # (), no gradient in N


def _check(logits, targets, ignore_index, label_smoothing, reduction):
    v.require_tensor("logits", logits)
    v.require_tensor("targets", targets)
    v.require_float("logits", logits)
    v.require_ndim_at_least("logits", logits, 1)
    v.require_nonempty_axis("logits", logits, -1)
    v.require_integer("targets", targets)
    v.require_shape("targets", targets, tuple(logits.shape[:-1]),
                    f"logits {tuple(logits.shape)} without its class axis")
    v.require_choice("reduction", reduction, REDUCTIONS)
    v.require_number_in("label_smoothing", label_smoothing, 0.0, 1.0)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"expected ignore_index to be an int, got {ignore_index!r}")
    C = logits.shape[-1]
    v.require_index_range("targets", targets, C, ignore=ignore_index, what=f"C={C} classes")


def fast_cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """The fast path's :func:`cross_entropy`: ``torch.nn.functional.cross_entropy``
    (one log-softmax kernel and its fused backward), with this module's contract kept:
    the class axis last (flattened to (N, C) for torch, which wants it second), and a
    "mean" over no counted target gives 0.0, not torch's NaN: the "sum" reduction
    divided by max(N, 1), N an integer count without gradient. Torch's label smoothing
    is the formula above (ignored targets add nothing to either term). Not exported:
    the models call it when ``fused``. Shapes: as :func:`cross_entropy`.
    """
    if v.checking():
        _check(logits, targets, ignore_index, label_smoothing, reduction)
    C = logits.shape[-1]
    flat = F.cross_entropy(logits.reshape(-1, C), targets.reshape(-1).long(), ignore_index=ignore_index,
                           label_smoothing=label_smoothing,
                           reduction="none" if reduction == "none" else "sum")  # (N,) or ()
    if reduction == "none":
        return flat.reshape(targets.shape)                      # (...)
    if reduction == "sum":
        return flat                                             # ()
    n_counted = (targets != ignore_index).sum()                 # () int: no gradient flows
    return flat / torch.clamp(n_counted, min=1)                 # (), no gradient in N
