"""Learning-rate schedules: pure Python, shared by both backends.

The trainer asks for the rate of each step and writes it into the optimizer
(``opt.lr = warmup_cosine(step, ...)``), so a schedule is a plain function of the step
number and never touches arrays. Both ``minillm.reference.optim`` and
``minillm.torch_backend.optim`` re-export it.

Legend: s = step number (0 for the first optimizer step), W = warmup_steps,
S = total_steps, \\eta_{max} = max_lr, \\eta_{min} = min_lr.
"""
from __future__ import annotations

import math
import numbers

__all__ = ["warmup_cosine"]


def _require_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"warmup_cosine: expected {name} to be an int >= {minimum}, got {value!r}")
    return int(value)


def _require_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0 \
            or not math.isfinite(value):
        raise ValueError(f"warmup_cosine: expected {name} to be a finite number >= 0, got {value!r}")
    return float(value)


def warmup_cosine(step, *, max_lr, warmup_steps, total_steps, min_lr=0.0) -> float:
    r"""Linear warmup from 0, then a half cosine from ``max_lr`` down to ``min_lr``.

    .. math::

        \eta(s) = \begin{cases}
            \eta_{max} \, \dfrac{s}{W} & 0 \le s < W \\[4pt]
            \eta_{min} + \tfrac12 (\eta_{max} - \eta_{min})
                \left(1 + \cos\!\left(\pi \dfrac{s - W}{S - W}\right)\right) & W \le s \le S \\[4pt]
            \eta_{min} & s > S
        \end{cases}

    So step 0 has rate 0 when there is a warmup (``W > 0``) and ``max_lr`` when there
    is none (``W = 0``); step ``W`` has exactly ``max_lr``; step ``S`` and every later
    step have ``min_lr``. The pieces meet without a jump at ``s = W`` and ``s = S``, and
    after the warmup the rate never increases. Warmup follows Goyal et al. (2017),
    "Accurate, Large Minibatch SGD", section 2.2; the cosine decay is SGDR without
    restarts (Loshchilov & Hutter, 2017, eq. 5).

    Args:
        step: the optimizer step about to be taken, an int >= 0.
        max_lr: the peak rate, >= 0.
        warmup_steps: W, an int >= 0 (0 = no warmup).
        total_steps: S, an int > warmup_steps: the step at which the decay ends.
        min_lr: the floor, 0 <= min_lr <= max_lr.

    Returns:
        The learning rate for ``step``, a Python float.
    """
    s = _require_int("step", step, 0)
    W = _require_int("warmup_steps", warmup_steps, 0)
    S = _require_int("total_steps", total_steps, 1)
    eta_max = _require_rate("max_lr", max_lr)
    eta_min = _require_rate("min_lr", min_lr)
    if not W < S:
        raise ValueError(
            f"warmup_cosine: expected warmup_steps < total_steps, got warmup_steps={W}, "
            f"total_steps={S}"
        )
    if not eta_min <= eta_max:
        raise ValueError(
            f"warmup_cosine: expected min_lr <= max_lr, got min_lr={eta_min!r}, max_lr={eta_max!r}"
        )
    if s < W:
        return eta_max * s / W
    if s > S:
        return eta_min
    progress = (s - W) / (S - W)  # in [0, 1]
    return eta_min + 0.5 * (eta_max - eta_min) * (1.0 + math.cos(math.pi * progress))
