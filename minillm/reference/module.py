"""Module: the small part of ``torch.nn.Module`` the reference layers need, and ``Loss``.

A ``Module`` registers the ``Parameter`` and ``Module`` attributes assigned to it, in
assignment order, exactly as torch does, so ``named_parameters()`` yields the same
names in the same order in both backends (``blocks.0.attn.W_Q``, ...).

Each layer's ``forward`` keeps ONE cache of its last call (``self._cache``, overwritten
on every call) and its ``backward(dout)`` adds the parameter gradients into
``Parameter.grad`` and returns the gradient of its input. A model's ``forward`` returns
a :class:`Loss`, a ``float`` whose ``backward()`` runs the model's hand-written backward
pass, so a training step reads as it does in torch.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..core import _validate as v
from .parameter import Parameter

__all__ = []  # internal base classes; the public layers live in layers.py / models.py


class Module:
    """Base class: parameter registry, train/eval mode, state dicts."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- parameters -------------------------------------------------------------------
    def named_parameters(self, prefix: str = ""):
        """Yield ``(name, Parameter)``: own parameters first, then each child's, in the
        order they were assigned (torch's order). A shared parameter appears once."""
        seen = set()
        for name, p in self._named_parameters_all(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _named_parameters_all(self, prefix):
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, m in self._modules.items():
            yield from m._named_parameters_all(prefix + name + ".")

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def modules(self):
        yield self
        for m in self._modules.values():
            yield from m.modules()

    def zero_grad(self) -> None:
        """Forget the gradients (``grad = None``, torch's ``set_to_none=True``)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # -- state dicts ------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """A copy of every parameter, by name, in ``named_parameters()`` order."""
        return OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy ``state`` into the parameters after checking names, shapes and dtypes.

        Accepts NumPy arrays or anything with ``.detach().cpu().numpy()`` / ``np.asarray``
        (a torch state dict works). A checkpoint of another configuration raises
        ``ValueError`` naming the first mismatch.
        """
        from ..core.state import as_numpy_state, check_model_state

        state = as_numpy_state(state)
        params = OrderedDict(self.named_parameters())
        check_model_state(params, state, type(self).__name__, strict=strict)
        for name, p in params.items():
            if name in state:
                p.data[...] = state[name]


class ModuleList(Module):
    """An indexable list of modules named ``0``, ``1``, ... (``torch.nn.ModuleList``)."""

    def __init__(self, modules=()):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]


class Loss(float):
    """A scalar loss that knows how to differentiate the model that produced it.

    ``float(loss)`` and ``loss.item()`` give the value; ``loss.backward()`` runs the
    hand-written backward pass of the forward call that produced it, starting from
    :math:`\\partial L / \\partial L = 1`. Like torch, it may run once, and only while
    that forward's caches are still the layer's latest.
    """

    def __new__(cls, value, backward_fn, owner, forward_id):
        obj = super().__new__(cls, float(value))
        obj._backward_fn = backward_fn
        obj._owner = owner
        obj._forward_id = forward_id
        obj._done = False
        return obj

    def item(self) -> float:
        return float(self)

    def backward(self) -> None:
        if self._done:
            raise RuntimeError("loss.backward() was already called for this loss; run the "
                               "forward again to get a new loss")
        if self._owner._forward_id != self._forward_id:
            raise RuntimeError("the model ran another forward after this loss was computed; "
                               "its caches now belong to the newer call, so this loss can no "
                               "longer be differentiated")
        self._done = True
        with v.trusted():   # the forward checked the model's inputs; its caches are its own
            self._backward_fn()

    def __repr__(self) -> str:
        return f"Loss({float(self)!r})"
