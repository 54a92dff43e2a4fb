r"""What both backends' LoRA share: the scale, the rank check and A's initialisation.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3)
adds to a frozen affine map :math:`xW + b` the low-rank term
:math:`\frac{\alpha}{r}\, x A B`, A (d_in, r), B (r, d_out). B starts at zero, so the
adapted layer computes exactly the base layer until training moves B; A starts random
so that B's first gradient, :math:`s\,(xA)^\top \partial L/\partial y`, is not zero.
Rank-stabilised LoRA (Kalajdzievski 2023, rsLoRA) divides by :math:`\sqrt r` instead of
r, so the update's size does not shrink as the rank grows.

Dimension legend: d_in, d_out the wrapped map's features, r the rank.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import require_number_in

__all__ = ["lora_scale", "check_rank", "init_lora_A", "LoRAConfig"]


def check_rank(r, d_in: int, d_out: int, where: str = "LoRA") -> int:
    """``r`` as an int, checked to lie in 1..min(d_in, d_out): a rank above that adds no
    freedom (A B of shape (d_in, d_out) has rank at most min(d_in, d_out))."""
    high = min(d_in, d_out)
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 1 <= r <= high:
        raise ValueError(f"{where}: expected the rank r to be an int in 1..min(d_in, d_out) = "
                         f"1..{high} (d_in={d_in}, d_out={d_out}), got r={r!r}")
    return int(r)


def lora_scale(r: int, alpha: float, rank_stabilised: bool = False) -> float:
    r""":math:`s = \alpha / r`, or :math:`\alpha / \sqrt r` with ``rank_stabilised``
    (rsLoRA; PEFT's ``use_rslora``)."""
    require_number_in("alpha", alpha, 0.0, math.inf, low_open=True)
    return float(alpha) / (math.sqrt(r) if rank_stabilised else r)


def init_lora_A(d_in: int, r: int, rng: np.random.Generator, dtype="float32") -> np.ndarray:
    r"""A (d_in, r) drawn from :math:`\mathcal U(-1/\sqrt{d_{in}},\ 1/\sqrt{d_{in}})`,
    PEFT's default (``kaiming_uniform_(a=sqrt(5))`` on its (r, d_in) ``lora_A.weight``:
    gain :math:`\sqrt{2/(1+5)}`, bound :math:`\sqrt 3 \cdot \text{gain}/\sqrt{d_{in}}`).
    Drawn in float64 from the given generator, then cast, as :mod:`minillm.core.init`
    does, so both backends get the same bits from the same generator state."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"expected rng to be a numpy.random.Generator, got {type(rng).__name__}")
    bound = 1.0 / math.sqrt(d_in)
    return rng.uniform(-bound, bound, size=(d_in, r)).astype(dtype)     # (d_in, r)


@dataclass(frozen=True)
class LoRAConfig:
    r"""What a training run adapts with LoRA: the rank ``r``, ``alpha`` (the scale is
    :math:`\alpha / r`) and the ``targets`` (projection names or patterns,
    :func:`minillm.store.lora_adapters.add_lora`). Written on the command line and in a
    run's record as ``"r,alpha,target,target..."`` (:meth:`parse`, ``str()``); the rank
    is checked against each chosen projection when the adapters are attached."""

    r: int
    alpha: float
    targets: tuple

    def __post_init__(self):
        if isinstance(self.r, bool) or not isinstance(self.r, (int, np.integer)) or self.r < 1:
            raise ValueError(f"LoRA: expected the rank r to be an int >= 1, got {self.r!r}")
        require_number_in("alpha", self.alpha, 0.0, math.inf, low_open=True)
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        if not targets or not all(isinstance(t, str) and t.strip() == t and t for t in targets):
            raise ValueError(f"LoRA: expected at least one target, each a projection name or pattern "
                             f"(e.g. W_Q), got {self.targets!r}")
        object.__setattr__(self, "r", int(self.r))
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "targets", targets)

    @classmethod
    def parse(cls, text: str) -> "LoRAConfig":
        """``"8,16,W_Q,W_V"``: the rank, alpha, then one target or more."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) < 3 or not all(parts):
            raise ValueError(f"expected r,alpha,targets (e.g. 8,16,W_Q,W_V: the rank, alpha, then the "
                             f"projections to adapt), got {text!r}")
        try:
            r = int(parts[0])
        except ValueError:
            raise ValueError(f"expected r,alpha,targets with the rank r an integer, got r={parts[0]!r} "
                             f"in {text!r}") from None
        try:
            alpha = float(parts[1])
        except ValueError:
            raise ValueError(f"expected r,alpha,targets with alpha a number, got alpha={parts[1]!r} "
                             f"in {text!r}") from None
        if not math.isfinite(alpha):
            raise ValueError(f"expected r,alpha,targets with alpha a finite number > 0, got {parts[1]!r}")
        return cls(r, alpha, tuple(parts[2:]))

    def __str__(self) -> str:
        return ",".join([str(self.r), f"{self.alpha:g}", *self.targets])
