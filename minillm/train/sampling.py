"""Choosing the next token from a language model's logits (chapter section 6.1).

Both backends hand this module a NumPy array of the last position's logits, so the
same ``np.random.Generator`` state gives the same tokens whichever backend produced
them. Everything is computed in float64.

Dimension legend:
    B   batch (any number of leading dimensions, written ``...``)
    V   vocabulary size

Order of operations (the one Hugging Face's generation and nanoGPT use):

1. temperature: :math:`z = \\ell / \\tau` (``temperature=0`` means greedy: argmax);
2. top-k: keep the ``k`` largest of ``z`` (``k = 0`` or None: off, as ``top_k=0`` in
   ``transformers``);
3. top-p (nucleus): keep the smallest set of most likely tokens whose probability
   reaches ``p`` (``p = 1`` or None: off);
4. sample from :math:`\\mathrm{softmax}(z)` restricted to the kept tokens.

Ties are broken towards the lower token id everywhere (argmax, top-k, top-p), so the
result never depends on a sort's whims. A logit of ``-inf`` means "never this token"
(it is what the filters produce and what a ban list would set); NaN and ``+inf`` are
errors, and so is a row with no finite logit.
"""
from __future__ import annotations

import math

import numpy as np

from ..reference.softmax import softmax

__all__ = ["top_k_filter", "top_p_filter", "filter_logits", "next_token_probs", "sample_next"]

# ---------------------------------------------------------------------------------------
# input checks


def _check_logits(logits) -> np.ndarray:
    """``logits`` as float64 (..., V); ValueError on NaN, +inf or a row of only -inf."""
    x = np.asarray(logits)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"logits must have shape (..., V) with V >= 1, got shape {x.shape}")
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"logits must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    bad = np.isnan(x) | (x == np.inf)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"logits must be finite or -inf, got {x[where]} at index {where} "
            f"({int(bad.sum())} bad value(s) in shape {x.shape})"
        )
    dead = ~np.isfinite(x).any(axis=-1)  # (...)
    if dead.any():
        where = tuple(int(i) for i in np.argwhere(dead)[0]) if dead.ndim else ()
        raise ValueError(f"logits row {where} is all -inf: expected at least one finite logit")
    return x


def _check_temperature(temperature) -> float:
    t = float(temperature)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    return t


def _check_top_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 or None: off), got {k!r}")
    return int(k)


def _check_top_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) \
            or not 0.0 < float(p) <= 1.0:
        raise ValueError(f"top_p must be a number in (0, 1] (1 or None: off), got {p!r}")
    return float(p)


def _check_options(temperature, top_k, top_p) -> tuple[float, int | None, float | None]:
    """Checked ``(temperature, top_k, top_p)``; the filters are checked even when greedy."""
    return (_check_temperature(temperature),
            None if top_k is None else _check_top_k(top_k),
            None if top_p is None else _check_top_p(top_p))


def _order(z: np.ndarray) -> np.ndarray:
    """Indices sorting each row by decreasing ``z``, ties by increasing id: (..., V)."""
    return np.argsort(-z, axis=-1, kind="stable")


# ---------------------------------------------------------------------------------------
# filters


def top_k_filter(logits, k: int) -> np.ndarray:
    r"""Keeps the ``k`` largest logits of each row, sets the rest to ``-inf``.

    .. math:: \tilde z_i = z_i \text{ if } i \in \mathrm{top}_k(z) \text{ else } -\infty

    (Fan, Lewis & Dauphin 2018, "Hierarchical Neural Story Generation".) Exactly
    ``min(k, V)`` tokens are kept: among equal logits the lower ids win, so ``k=1``
    keeps the argmax; ``k=0`` keeps every token (the filter is off). Shapes: logits (..., V) -> (..., V) float64.
    """
    z = _check_logits(logits)
    k = _check_top_k(k)
    V = z.shape[-1]
    if k == 0 or k >= V:
        return z
    drop = _order(z)[..., k:]  # (..., V - k) ids ranked below k
    out = z.copy()
    np.put_along_axis(out, drop, -np.inf, axis=-1)
    return out


def top_p_filter(logits, p: float) -> np.ndarray:
    r"""Nucleus filter: keeps the smallest set of most likely tokens whose probability
    reaches ``p``; the rest become ``-inf``.

    With the probabilities sorted :math:`\pi_{(1)} \ge \pi_{(2)} \ge \dots`, token
    :math:`(j)` is kept iff :math:`\sum_{i<j} \pi_{(i)} < p` — so the first is always
    kept, and the kept mass is the first partial sum :math:`\ge p`.
    (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration", eq. 2.)
    ``p = 1`` keeps every token. Shapes: logits (..., V) -> (..., V) float64.
    """
    z = _check_logits(logits)
    p = _check_top_p(p)
    if p == 1.0:
        return z
    order = _order(z)  # (..., V)
    pi_sorted = np.take_along_axis(softmax(z), order, axis=-1)  # (..., V)
    mass_before = np.cumsum(pi_sorted, axis=-1) - pi_sorted  # (..., V) exclusive sums
    keep_sorted = mass_before < p  # (..., V); position 0 has mass_before = 0 < p
    keep_sorted[..., 0] = True
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)  # back to token order
    return np.where(keep, z, -np.inf)


def filter_logits(logits, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> np.ndarray:
    r"""Temperature, then top-k, then top-p: the logits ``sample_next`` draws from.

    .. math:: z = (\ell - \max \ell) / \tau

    (subtracting the max first changes no probability and keeps a tiny :math:`\tau`
    from overflowing). Needs ``temperature > 0``. Shapes: (..., V) -> (..., V) float64.
    """
    x = _check_logits(logits)
    t, k, p = _check_options(temperature, top_k, top_p)
    if t == 0:
        raise ValueError("filter_logits needs temperature > 0, got 0 (0 means greedy: use argmax)")
    with np.errstate(over="ignore"):  # a tiny temperature sends far logits to -inf: fine
        z = (x - x.max(axis=-1, keepdims=True)) / t  # (..., V), max is exactly 0
    if k is not None:
        z = top_k_filter(z, k)
    if p is not None:
        z = top_p_filter(z, p)
    return z


def next_token_probs(logits, *, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> np.ndarray:
    r"""The distribution ``sample_next`` draws from, :math:`\mathrm{softmax}(\tilde z)`;
    for ``temperature=0`` a one-hot at the argmax (lowest id among ties).

    Shapes: logits (..., V) -> (..., V) float64, rows sum to 1.
    """
    x = _check_logits(logits)
    if _check_options(temperature, top_k, top_p)[0] == 0:
        one_hot = np.zeros_like(x)  # (..., V)
        np.put_along_axis(one_hot, np.argmax(x, axis=-1)[..., None], 1.0, axis=-1)
        return one_hot
    return softmax(filter_logits(x, temperature=temperature, top_k=top_k, top_p=top_p))


def sample_next(logits, *, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    r"""Draws one next token per row of ``logits``.

    .. math:: x_{t+1} \sim \mathrm{softmax}(\tilde z), \quad
              \tilde z = \mathrm{top\_p}(\mathrm{top\_k}(\ell / \tau))

    ``temperature=0`` is greedy decoding: :math:`\arg\max_i \ell_i`, ties to the lowest
    id, no randomness used. Otherwise ``rng`` (a ``numpy.random.Generator``) is required
    and exactly one ``rng.random(batch_shape)`` call is made, by inverse-CDF sampling:
    the token is the first ``i`` with :math:`\sum_{j \le i} \pi_j > u \sum_j \pi_j`, which
    is never a token of probability 0. For logits (B, V), ``rng`` may also be a list of B
    generators, one per row: row ``b`` draws its ``u`` with one ``rng[b].random()``, the
    number it draws alone (logits (1, V) and ``rng[b]``), so rows decoded together
    (:class:`~minillm.train.generation.DecodeBatch`) are sampled in one call.

    Shapes: logits (..., V) -> (...) int64 (a 0-d array for logits (V,)).
    """
    x = _check_logits(logits)
    t, top_k, top_p = _check_options(temperature, top_k, top_p)
    if t == 0:
        return np.asarray(np.argmax(x, axis=-1), dtype=np.int64)  # (...)
    if isinstance(rng, (list, tuple)):
        if x.ndim != 2 or len(rng) != x.shape[0] or not all(isinstance(g, np.random.Generator) for g in rng):
            raise ValueError(f"a list of rngs needs logits (B, V) and B numpy.random.Generators, got {len(rng)} "
                             f"for logits of shape {x.shape}")
        draw = np.asarray([g.random() for g in rng])  # (B,) each row's own draw
    elif isinstance(rng, np.random.Generator):
        draw = rng.random(x.shape[:-1])  # (...)
    else:
        raise ValueError(
            f"rng must be a numpy.random.Generator when temperature > 0, got {type(rng).__name__}; "
            "pass rng=np.random.default_rng(seed)"
        )
    pi = next_token_probs(x, temperature=t, top_k=top_k, top_p=top_p)  # (..., V)
    cdf = np.cumsum(pi, axis=-1)  # (..., V)
    u = draw[..., None] * cdf[..., -1:]  # (..., 1)
    idx = np.sum(cdf <= u, axis=-1)  # (...) first i with cdf_i > u
    # u * total can round up to total itself: fall back to the last token with pi > 0
    V = x.shape[-1]
    last_nonzero = V - 1 - np.argmax((pi > 0)[..., ::-1], axis=-1)  # (...)
    return np.asarray(np.minimum(idx, last_nonzero), dtype=np.int64)  # (...)
