r"""Token embedding: a lookup of rows of a table; autograd scatter-adds the gradient.

Dimension legend: ``V`` rows (vocabulary size), ``d`` embedding width, ``...`` the shape
of the ids. ids ``(...)`` int, W ``(V, d)``, out ``(..., d)``.
"""
import torch.nn.functional as F

from ..core import _validate as v

__all__ = ["embedding"]


def embedding(ids, W):
    r"""Row lookup, :math:`\mathrm{out}_{\ldots} = W_{\mathrm{ids}_{\ldots},\,:}`.

    Its gradient (autograd's ``index_select`` backward, an ``index_add``) adds the
    upstream gradient of every position into the row it looked up, so repeated ids add
    up, as the reference's ``np.add.at``. ``index_select`` rather than ``W[ids]``: the
    latter's backward (an accumulating ``index_put_``) adds repeated rows in an order that
    varies from run to run with two or more threads, so two identical training runs
    drifted apart (tests/train/test_determinism.py); ``index_select``'s is deterministic, and
    measured several times faster here.
    Shapes: ids (...) int, W (V, d) -> out (..., d).
    """
    if v.checking():
        _check(ids, W)
    rows = W.index_select(0, ids.reshape(-1).long())            # (N, d), N = ids.numel()
    return rows.reshape(*ids.shape, W.shape[1])                 # (..., d)


def _check(ids, W):
    v.require_tensor("ids", ids)
    v.require_tensor("W", W)
    v.require_integer("ids", ids)
    v.require_float("W", W)
    v.require_ndim("W", W, 2)
    v.require_index_range("ids", ids, W.shape[0], what=f"V={W.shape[0]} rows of W")


def fast_embedding(ids, W):
    """The fast path's row lookup: ``torch.nn.functional.embedding(ids, W)``, whose
    backward is torch's embedding-dense kernel (the same scatter-add of repeated ids).
    Not exported: :class:`~minillm.torch_backend.Embedding` calls it when ``fused``.
    Shapes: as :func:`embedding`."""
    if v.checking():
        _check(ids, W)
    return F.embedding(ids.long(), W)                           # (..., d)
