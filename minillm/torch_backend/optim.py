r"""Optimizers in PyTorch: SGD with momentum, Adam (chapter section 4.3) and AdamW.

The same formulas as ``minillm.reference.optim``, line for line, written with tensor
ops under ``torch.no_grad()`` (not by wrapping ``torch.optim``; the tests compare both
against ``torch.optim``). Parameters are tensors (``nn.Parameter``) on any device; the
state lives on each parameter's device and dtype.

Two paths, as in the layers (docs/architecture.md): ``opt.foreach = False`` (as built)
runs the explicit step, the reference's lines one parameter at a time; ``opt.foreach =
True`` runs the same update with torch's multi-tensor ``torch._foreach_*`` kernels, a
few kernel launches for all parameters together (what ``torch.optim``'s
``foreach=True`` does). ``minillm.store.runtime.Runtime.prepare_optimizer`` sets it from the
runtime's ``fused``. The choice is an attribute, not a constructor keyword, so the
constructors keep the reference's signatures; neither the state nor ``state_dict()``
depends on it.

Legend: \theta a parameter, g its gradient, t the number of updates this parameter has
received (starting at 1), \alpha = lr, \lambda = weight_decay.

``state_dict()`` returns plain Python plus NumPy arrays with exactly the keys of the
reference (see ``minillm.reference.optim``); ``load_state_dict`` moves the arrays back
onto the parameters' device and dtype. So either backend resumes the other's
checkpoint. Parameter groups (``{"params": [...], "weight_decay": λ}``) as in the
reference; the foreach step runs one multi-tensor decay per group.
"""
from __future__ import annotations

import logging
import numbers

import numpy as np
import torch

from ..core.optim_checks import (
    check_betas, check_clip_arguments, check_decays, check_loaded, check_number, check_total_norm,
    clip_coefficient, materialise,
)
from ..core.param_groups import flatten_groups
from ..core.schedule import warmup_cosine

__all__ = ["SGD", "Adam", "AdamW", "clip_grad_norm", "warmup_cosine"]

logger = logging.getLogger("minillm")


def _is_param(p) -> bool:
    return isinstance(p, torch.Tensor) and p.is_floating_point()


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy copy of a state tensor (bfloat16, which NumPy lacks, as float32)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.cpu().numpy().copy()


def _with_grads(params, states, decays) -> tuple[list, list, list]:
    """The parameters that have a gradient, their states and their weight decays (the
    others are skipped)."""
    live = [(p, s, wd) for p, s, wd in zip(params, states, decays) if p.grad is not None]
    return [p for p, _, _ in live], [s for _, s, _ in live], [wd for _, _, wd in live]


def _by_decay(decays: list) -> list[tuple[float, list[int]]]:
    """``[(λ, indices of the parameters with that λ)]`` for every λ > 0: one multi-tensor
    kernel per parameter group."""
    return [(wd, [i for i, d in enumerate(decays) if d == wd]) for wd in sorted(set(decays)) if wd]


def _grad_of(p: torch.Tensor) -> torch.Tensor:
    if p.grad.shape != p.shape:
        raise ValueError(f"expected a gradient of shape {tuple(p.shape)}, got {tuple(p.grad.shape)}")
    if p.grad.is_sparse:
        raise ValueError("expected a dense gradient, got a sparse one")
    return p.grad.to(p.dtype)


class _Optimizer:
    """What SGD, Adam and AdamW share: the parameter list, ``lr``, ``zero_grad``."""

    _array_keys: tuple[str, ...] = ()

    def __init__(self, params, lr, weight_decay):
        # params: a list of parameters, or of groups {"params": [...], "weight_decay": λ}
        self.params, self.decays = flatten_groups(type(self).__name__, params, weight_decay, _is_param,
                                                  "floating-point torch.Tensor (nn.Parameter)")
        self.foreach = False  # True: the multi-tensor step (see the module's docstring)
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

    def _fresh_state(self, p: torch.Tensor) -> dict:
        return {"step": 0, **{k: torch.zeros_like(p, memory_format=torch.preserve_format).detach()
                              for k in self._array_keys}}

    def state_dict(self) -> dict:
        """Hyper-parameters, the step count and a NumPy copy of every state tensor."""
        state = [{"step": s["step"], **{k: _to_numpy(s[k]) for k in self._array_keys}}
                 for s in self.state]
        return {"type": type(self).__name__, "step": self.steps, "lr": self.lr,
                **self._hyper(), "weight_decays": list(self.decays), "state": state}

    def _array_keys_for(self, sd: dict) -> tuple[str, ...]:
        """The state arrays a loaded state dict must carry."""
        return self._array_keys

    def load_state_dict(self, sd: dict) -> None:
        """Restore what ``state_dict()`` (of either backend) returned: hyper-parameters,
        step counts and arrays (onto each parameter's device and dtype). Everything is
        checked before anything changes."""
        owner = type(self).__name__
        if not isinstance(sd, dict):
            raise ValueError(f"{owner}.load_state_dict: expected a dict, got {type(sd).__name__}")
        keys = self._array_keys_for(sd)
        check_loaded(owner, sd, [tuple(p.shape) for p in self.params], keys)
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
             **{k: torch.as_tensor(np.array(entry[k], copy=True)).to(device=p.device, dtype=p.dtype)
                for k in keys}}
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

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        self.steps += 1
        if self.foreach:
            return self._foreach_step()
        for p, s, wd in zip(self.params, self.state, self.decays):   # wd: this parameter's λ
            if p.grad is None:
                continue
            g = _grad_of(p)
            if wd:
                g = g + wd * p  # L2 penalty \lambda/2 ||θ||² in the gradient
            if self.momentum:
                s["momentum_buffer"][...] = self.momentum * s["momentum_buffer"] + g
                g = s["momentum_buffer"]
            p -= self.lr * g
            s["step"] += 1

    def _foreach_step(self) -> None:
        """The same update, every parameter at once with ``torch._foreach_*`` kernels."""
        params, states, decays = _with_grads(self.params, self.state, self.decays)
        if not params:
            return
        grads = [_grad_of(p) for p in params]
        for wd, group in _by_decay(decays):
            decayed = torch._foreach_add([grads[i] for i in group], [params[i] for i in group], alpha=wd)  # g + λθ
            for i, g in zip(group, decayed):
                grads[i] = g
        if self.momentum:
            bufs = [s["momentum_buffer"] for s in states]
            torch._foreach_mul_(bufs, self.momentum)                             # μ b
            torch._foreach_add_(bufs, grads)                                     # b_t = μ b + g
            grads = bufs
        torch._foreach_add_(params, grads, alpha=-self.lr)                       # θ - α b_t
        for s in states:
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
    Why the bias correction: see ``minillm.reference.optim.Adam``.
    Shapes: m and v have their parameter's shape.
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

    def _decay(self, p: torch.Tensor, g: torch.Tensor, wd: float) -> torch.Tensor:
        """Adam's weight decay: the L2 gradient \\lambda\\theta added to g."""
        return g + wd * p

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        self.steps += 1
        if self.foreach:
            return self._foreach_step()
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
            p -= alpha * m_hat / (torch.sqrt(v_hat) + eps)  # θ_t

    def _foreach_step(self) -> None:
        r"""The same five formulas, every parameter at once with ``torch._foreach_*``
        kernels, in place (as ``torch.optim.Adam(foreach=True)``): m and v are updated
        in place, and :math:`\alpha \hat m_t / (\sqrt{\hat v_t} + \epsilon)` is applied as
        :math:`(\alpha / (1 - \beta_1^t))\, m_t / (\sqrt{v_t / (1 - \beta_2^t)} + \epsilon)`,
        the same value rounded in another order. Each parameter keeps its own t."""
        params, states, decays = _with_grads(self.params, self.state, self.decays)
        if not params:
            return
        beta1, beta2 = self.betas
        grads = [_grad_of(p) for p in params]
        for wd, group in _by_decay(decays):                                # each group's λ
            decayed = self._foreach_decay([params[i] for i in group], [grads[i] for i in group], wd)
            for i, g in zip(group, decayed):
                grads[i] = g
        for s in states:
            s["step"] += 1
        ms, vs = [s["m"] for s in states], [s["v"] for s in states]
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, grads, alpha=1 - beta1)                   # m_t
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)        # v_t
        denom = torch._foreach_div(vs, [1 - beta2 ** s["step"] for s in states])  # \hat v_t
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, self.eps)                              # √v̂ + ε
        step_sizes = [-self.lr / (1 - beta1 ** s["step"]) for s in states]  # -α / (1 - β1^t)
        torch._foreach_addcdiv_(params, ms, denom, step_sizes)            # θ_t

    def _foreach_decay(self, params: list, grads: list, wd: float) -> list:
        """Adam's weight decay for the parameters of one group: g + λθ."""
        return torch._foreach_add(grads, params, alpha=wd)


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

    def _decay(self, p: torch.Tensor, g: torch.Tensor, wd: float) -> torch.Tensor:
        p *= 1 - self.lr * wd  # θ ← θ - αλθ, in place
        return g

    def _foreach_decay(self, params: list, grads: list, wd: float) -> list:
        torch._foreach_mul_(params, 1 - self.lr * wd)  # θ ← θ - αλθ
        return grads


@torch.no_grad()
def clip_grad_norm(params, max_norm, *, error_if_nonfinite=False) -> float:
    r"""Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    .. math::

        \|g\| = \sqrt{\textstyle\sum_p \|g_p\|_2^2}, \qquad
        g_p \leftarrow g_p \cdot \min\!\left(1, \frac{\text{max\_norm}}{\|g\| + 10^{-6}}\right)

    as ``torch.nn.utils.clip_grad_norm_`` (Pascanu et al., 2013, section 3.2); the 1e-6
    keeps the division finite when every gradient is 0. Parameters whose ``.grad`` is
    ``None`` are skipped. Gradients are scaled in place, keeping their dtype.

    Non-finite gradients, as torch (and as ``minillm.reference.optim.clip_grad_norm``,
    which says more): a NaN norm scales every gradient by NaN, an infinite one by 0
    (NaN where a gradient is infinite); ``error_if_nonfinite=True`` raises
    ``RuntimeError`` instead, before any gradient changes. ``error_if_nonfinite`` is
    keyword-only (torch's third positional parameter is ``norm_type``).
    ``max_norm=math.inf`` measures without clipping.

    Returns:
        \|g\| before clipping, a Python float (inf or nan if a gradient is not finite;
        a warning is logged then).
    """
    params = materialise("clip_grad_norm", params, _is_param,
                          "floating-point torch.Tensor (nn.Parameter)")
    max_norm = check_clip_arguments(max_norm, error_if_nonfinite)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    device = grads[0].device
    norms = torch.stack([torch.sqrt(torch.sum(g * g)).to(device) for g in grads])  # ||g_p||
    total = float(torch.sqrt(torch.sum(norms * norms)))                               # ||g||
    check_total_norm(total, error_if_nonfinite)
    clip_coef = clip_coefficient(max_norm, total)
    if clip_coef != 1.0:                                  # True for NaN as well
        for g in grads:
            g.mul_(clip_coef)
    return total
