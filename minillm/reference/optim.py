r"""Optimizers in NumPy: SGD with momentum, Adam (chapter section 4.3) and AdamW.

Each optimizer holds a list of ``Parameter`` objects and updates their ``.data`` in
place from their ``.grad``; a parameter whose ``.grad`` is ``None`` is skipped (it took
no part in the forward pass), as in torch. The update keeps the parameter's dtype: a
float32 run stays float32.

Legend: \theta a parameter, g its gradient, t the number of updates this parameter has
received (starting at 1), \alpha = lr, \lambda = weight_decay.

``state_dict()`` is plain Python plus NumPy arrays, with the same keys in both backends
(``minillm.torch_backend.optim`` writes the same dict), so a checkpoint written by one
backend resumes in the other::

    {"type": "Adam", "step": 3, "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
     "weight_decay": 0.0, "weight_decays": [0.0, ...],
     "state": [{"step": 3, "m": array, "v": array}, ...]}

Parameter groups, as ``torch.optim``: ``params`` may be a list of dicts
``{"params": [...], "weight_decay": λ}`` (:mod:`minillm.core.param_groups`); each
parameter then has its own λ (``"weight_decays"``, in parameter order), and the trainer
decays only the tensors of two or more dimensions (``TrainConfig.decayed``).

``"step"`` counts calls to ``step()``; each ``state`` entry, in parameter order, has its
own ``"step"`` (the t of the formulas), which stops while the parameter has no gradient.
"""
from __future__ import annotations

import logging
import numbers

import numpy as np

from ..core.optim_checks import (
    check_betas, check_clip_arguments, check_decays, check_loaded, check_number, check_total_norm,
    clip_coefficient, materialise,
)
from ..core.param_groups import flatten_groups
from ..core.schedule import warmup_cosine
from .parameter import Parameter

__all__ = ["SGD", "Adam", "AdamW", "clip_grad_norm", "warmup_cosine"]

logger = logging.getLogger("minillm")


def _grad_of(p: Parameter) -> np.ndarray:
    """The gradient in the parameter's dtype (a float64 gradient must not turn a
    float32 parameter into float64)."""
    if p.grad.shape != p.data.shape:
        raise ValueError(f"expected a gradient of shape {p.data.shape}, got {p.grad.shape}")
    return np.asarray(p.grad, dtype=p.data.dtype)


# ----------------------------------------------------------------------------------

class _Optimizer:
    """What SGD, Adam and AdamW share: the parameter list, ``lr``, ``zero_grad``."""

    _array_keys: tuple[str, ...] = ()

    def __init__(self, params, lr, weight_decay):
        # params: a list of parameters, or of groups {"params": [...], "weight_decay": λ}
        self.params, self.decays = flatten_groups(type(self).__name__, params, weight_decay,
                                                  lambda p: isinstance(p, Parameter), "minillm.reference.Parameter")
        self.lr = lr
        self.steps = 0  # calls to step()
        self.state = [self._fresh_state(p) for p in self.params]

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:  # the trainer sets it each step from the schedule
        self._lr = check_number(type(self).__name__, "lr", value, 0.0)

    def zero_grad(self) -> None:
        """Forget the gradients (``.grad = None``, torch's default)."""
        for p in self.params:
            p.grad = None

    def _fresh_state(self, p: Parameter) -> dict:
        return {"step": 0, **{k: np.zeros_like(p.data) for k in self._array_keys}}

    def state_dict(self) -> dict:
        """Hyper-parameters, the step count and a copy of every state array."""
        state = [{"step": s["step"], **{k: s[k].copy() for k in self._array_keys}}
                 for s in self.state]
        return {"type": type(self).__name__, "step": self.steps, "lr": self.lr,
                **self._hyper(), "weight_decays": list(self.decays), "state": state}

    def _array_keys_for(self, sd: dict) -> tuple[str, ...]:
        """The state arrays a loaded state dict must carry."""
        return self._array_keys

    def load_state_dict(self, sd: dict) -> None:
        """Restore what ``state_dict()`` (of either backend) returned: hyper-parameters,
        step counts and arrays (copied, in the parameters' dtype). Everything is
        checked before anything changes."""
        owner = type(self).__name__
        if not isinstance(sd, dict):
            raise ValueError(f"{owner}.load_state_dict: expected a dict, got {type(sd).__name__}")
        keys = self._array_keys_for(sd)
        check_loaded(owner, sd, [p.data.shape for p in self.params], keys)
        hyper = self._parse_hyper(sd)
        lr = check_number(owner, "lr", sd.get("lr"), 0.0)
        steps = sd.get("step")
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise ValueError(f"{owner}.load_state_dict: expected step >= 0, got {steps!r}")
        decays = check_decays(owner, sd, len(self.params), hyper["weight_decay"])
        for name, value in hyper.items():
            setattr(self, name, value)
        self._array_keys = keys
        self.lr, self.steps, self.decays = lr, int(steps), decays
        self.state = [
            {"step": int(entry["step"]),
             **{k: np.array(entry[k], dtype=p.data.dtype, copy=True) for k in keys}}
            for entry, p in zip(sd["state"], self.params)
        ]


class SGD(_Optimizer):
    r"""Stochastic gradient descent with (heavy-ball) momentum, as ``torch.optim.SGD``.

    .. math::

        g_t \leftarrow g_t + \lambda \theta_{t-1}, \qquad
        b_t = \mu\, b_{t-1} + g_t \;(b_0 = 0), \qquad
        \theta_t = \theta_{t-1} - \alpha\, b_t

    With ``momentum`` \mu = 0 this is plain \theta_t = \theta_{t-1} - \alpha g_t (Robbins &
    Monro, 1951; momentum: Polyak, 1964). Shapes: each buffer b has its parameter's shape.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.momentum = check_number("SGD", "momentum", momentum, 0.0, 1.0)
        self.weight_decay = check_number("SGD", "weight_decay", weight_decay, 0.0)
        self._array_keys = ("momentum_buffer",) if self.momentum else ()
        super().__init__(params, lr, self.weight_decay)

    def _hyper(self) -> dict:
        return {"momentum": self.momentum, "weight_decay": self.weight_decay}

    def _parse_hyper(self, sd: dict) -> dict:
        return {"momentum": check_number("SGD", "momentum", sd.get("momentum"), 0.0, 1.0),
                "weight_decay": check_number("SGD", "weight_decay", sd.get("weight_decay"), 0.0)}

    def _array_keys_for(self, sd: dict) -> tuple[str, ...]:
        # a momentum buffer exists only when the loaded momentum is not 0
        return ("momentum_buffer",) if sd.get("momentum") else ()

    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        self.steps += 1
        for p, s, wd in zip(self.params, self.state, self.decays):   # wd: this parameter's λ
            if p.grad is None:
                continue
            g = _grad_of(p)
            if wd:
                g = g + wd * p.data  # L2 penalty \lambda/2 ||θ||² in the gradient
            if self.momentum:
                s["momentum_buffer"][...] = self.momentum * s["momentum_buffer"] + g
                g = s["momentum_buffer"]
            p.data -= self.lr * g
            s["step"] += 1


class Adam(_Optimizer):
    r"""Adam, written as the chapter's five formulas (section 4.3; Kingma & Ba, 2015,
    Algorithm 1):

    .. math::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \hat m_t = \frac{m_t}{1 - \beta_1^t} \\
        \hat v_t = \frac{v_t}{1 - \beta_2^t} \\
        \theta_t = \theta_{t-1} - \alpha \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    with m_0 = v_0 = 0. ``weight_decay`` \lambda > 0 adds the L2 term to the gradient
    first, g_t \leftarrow g_t + \lambda\theta_{t-1}, as ``torch.optim.Adam`` does.

    Why the bias correction: m and v start at 0, so after one step m_1 = (1-\beta_1) g_1
    and v_1 = (1-\beta_2) g_1^2 are far from g_1 and g_1^2; dividing by 1-\beta^t undoes
    that, and the first update is \alpha\, g_1 / (\lvert g_1 \rvert + \epsilon) \approx \alpha
    elementwise. Shapes: m and v have their parameter's shape.
    """

    _array_keys = ("m", "v")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        owner = type(self).__name__
        self.betas = check_betas(owner, betas)
        self.eps = check_number(owner, "eps", eps, 0.0, low_open=True)
        self.weight_decay = check_number(owner, "weight_decay", weight_decay, 0.0)
        super().__init__(params, lr, self.weight_decay)

    def _hyper(self) -> dict:
        return {"betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay}

    def _parse_hyper(self, sd: dict) -> dict:
        owner = type(self).__name__
        return {"betas": check_betas(owner, sd.get("betas")),
                "eps": check_number(owner, "eps", sd.get("eps"), 0.0, low_open=True),
                "weight_decay": check_number(owner, "weight_decay", sd.get("weight_decay"), 0.0)}

    def _decay(self, p: Parameter, g: np.ndarray, wd: float) -> np.ndarray:
        """Adam's weight decay: the L2 gradient \\lambda\\theta added to g."""
        return g + wd * p.data

    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        self.steps += 1
        beta1, beta2 = self.betas
        alpha, eps = self.lr, self.eps
        for p, s, wd in zip(self.params, self.state, self.decays):   # wd: this parameter's λ
            if p.grad is None:
                continue
            g = _grad_of(p)
            if wd:
                g = self._decay(p, g, wd)
            s["step"] += 1
            t = s["step"]
            m, v = s["m"], s["v"]
            m[...] = beta1 * m + (1 - beta1) * g            # m_t
            v[...] = beta2 * v + (1 - beta2) * g * g        # v_t
            m_hat = m / (1 - beta1 ** t)                    # \hat m_t
            v_hat = v / (1 - beta2 ** t)                    # \hat v_t
            p.data -= alpha * m_hat / (np.sqrt(v_hat) + eps)  # θ_t


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019, Algorithm 2), as
    ``torch.optim.AdamW``: the parameter shrinks before the Adam update, and the decay
    never enters m or v:

    .. math::

        \theta_{t-1} \leftarrow \theta_{t-1} - \alpha \lambda \theta_{t-1},
        \qquad \text{then Adam's five formulas on } g_t.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _decay(self, p: Parameter, g: np.ndarray, wd: float) -> np.ndarray:
        p.data *= 1 - self.lr * wd  # θ ← θ - αλθ, in place
        return g


def clip_grad_norm(params, max_norm, *, error_if_nonfinite=False) -> float:
    r"""Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    .. math::

        \|g\| = \sqrt{\textstyle\sum_p \|g_p\|_2^2}, \qquad
        g_p \leftarrow g_p \cdot \min\!\left(1, \frac{\text{max\_norm}}{\|g\| + 10^{-6}}\right)

    as ``torch.nn.utils.clip_grad_norm_`` (Pascanu et al., 2013, section 3.2); the 1e-6
    keeps the division finite when every gradient is 0. Parameters whose ``.grad`` is
    ``None`` are skipped. Gradients are scaled in place, keeping their dtype.

    Non-finite gradients, as torch: the min is written so that a NaN coefficient stays
    NaN (Python's ``min(1.0, nan)`` would be 1.0). A NaN anywhere makes \|g\| NaN and
    every gradient is multiplied by NaN; an infinite entry makes \|g\| = inf, the
    coefficient 0, and the gradients 0 where finite and NaN where infinite (inf * 0).
    With ``error_if_nonfinite=True`` a non-finite \|g\| raises ``RuntimeError`` (torch's
    type: the arguments are valid, the gradients are not) before any gradient changes.
    ``error_if_nonfinite`` is keyword-only: torch's third positional parameter is
    ``norm_type``, which this function does not have. ``max_norm=math.inf`` measures
    without clipping (the trainer's ``grad_clip=None``); with an infinite \|g\| the
    coefficient is then inf/inf = NaN, as in torch.

    Returns:
        \|g\| before clipping, a Python float (inf or nan if a gradient is not finite;
        a warning is logged then).
    """
    params = materialise("clip_grad_norm", params, lambda p: isinstance(p, Parameter),
                          "minillm.reference.Parameter")
    max_norm = check_clip_arguments(max_norm, error_if_nonfinite)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norms = [np.sqrt(np.sum(g * g)) for g in grads]       # ||g_p|| per parameter
    total = float(np.sqrt(np.sum(np.square(norms))))      # ||g||
    check_total_norm(total, error_if_nonfinite)
    clip_coef = clip_coefficient(max_norm, total)
    if clip_coef != 1.0:                                  # True for NaN as well
        for g in grads:
            g *= clip_coef
    return total
