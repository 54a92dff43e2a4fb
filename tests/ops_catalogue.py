"""The elementary ops, declared once for the tests: one ``Op`` row per op.

A row names the op's reference forward and backward, the torch backend's explicit
function and its fused (fast-path) kernel, the ``torch.nn.functional`` oracle, how to
draw its inputs, its kinks and its value at the non-finite points. The property tests
are parametrised over ``OPS`` (or the rows of one kind), so one row enrols an op in every
one of them; ``PROPERTY_TESTS`` lists them (tests/test_ops_catalogue.py checks each one's
parametrisation is the catalogue, and docs/formulas.md's rows name each, see
tests/test_docs.py). The float32 tolerance and its reason stay in tests/tolerances.py,
under the row's name (a row without one fails tests/test_ops_catalogue.py).

The activation rows come from ``minillm.core.config.ACTIVATIONS`` (the names a model
accepts) and each backend's ``ACTIVATIONS`` map: what only a test can know (the oracle,
the kinks, the limits at +-inf) is written in ``ACTIVATION_FACTS``, and an activation
without an entry there stops the collection of every op test with a message saying so.

Adding an activation (CONTRIBUTING.md, "Add an op or an activation"): the two backends'
functions and their ``ACTIVATIONS`` entries, the name in ``core.config.ACTIVATIONS``, one
entry in ``ACTIVATION_FACTS`` (and its float32 tolerance), one row in docs/formulas.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

import minillm.reference as R
import minillm.torch_backend as T
from minillm.core.config import ACTIVATIONS
from minillm.reference.activations import ACTIVATIONS as REFERENCE_ACTIVATIONS
from minillm.torch_backend.activations import ACTIVATIONS as EXPLICIT_ACTIVATIONS
from minillm.torch_backend.activations import FAST_ACTIVATIONS

ELEMENTWISE, ROWWISE = "elementwise", "rowwise"


@dataclass(frozen=True)
class Op:
    """One op, as every property test sees it.

    - ``forward(x, **kw) -> (out, cache)`` and ``backward(dout, cache) -> dx``: the reference;
    - ``explicit(x, **kw)``: the torch backend's formula (autograd gives the gradient);
    - ``fused(x, **kw)``: the fast path's torch kernel, or None when the op has none;
    - ``oracle(x, **kw)``: torch.nn.functional's, the third opinion at finite points;
    - ``kind``: ``elementwise`` (any shape) or ``rowwise`` (along ``axis``, drawn);
    - ``kinks``: ``{x: the derivative taken there}`` where the op is not differentiable
      (finite differences keep away from them; the parity tests plant them);
    - ``at_infinity``: for an elementwise op, the function whose value and gradient the
      formula's limits at +-inf are (None: the op's own arithmetic, as torch's, decides,
      which docs/architecture.md documents for the row-wise ops);
    - ``fused_departure``: where the fused kernel departs from the formula at a
      non-finite point, and why the tests do not adopt it;
    - ``explicit_nonfinite_upstream``: a known difference of the explicit path under a
      non-finite upstream gradient (tests/test_nonfinite.py marks it xfail, strict).
    """
    name: str
    kind: str
    forward: Callable
    backward: Callable
    explicit: Callable
    oracle: Callable
    fused: Optional[Callable] = None
    kinks: dict = field(default_factory=dict)
    at_infinity: Optional[Callable] = None
    fused_departure: str = ""
    explicit_nonfinite_upstream: str = ""

    def __repr__(self):
        return self.name

    def kwargs(self, data, ndim):
        """The keyword arguments a test draws for one call (the axis of a row-wise op)."""
        if self.kind == ROWWISE:
            return {"axis": data.draw(st.integers(-ndim, ndim - 1), label="axis")}
        return {}

    def formula(self, x, **kw):
        """torch: the oracle at finite points and the formula's limits at +-inf (the value
        and the gradient a backend must give there, on every CPU)."""
        if self.at_infinity is None:
            return self.oracle(x, **kw)
        inf = torch.isinf(x)
        return torch.where(inf, self.at_infinity(x), self.oracle(torch.where(inf, 0.0, x), **kw))


def _relu_limit(x):
    r"""ReLU's value and gradient, the limits at +-inf of every activation here:
    :math:`f(x) \to x` and :math:`f'(x) \to 1` as :math:`x \to +\infty`, :math:`f \to 0`,
    :math:`f' \to 0` as :math:`x \to -\infty` (F.relu's backward selects, so an infinite
    upstream gradient at -inf gives 0, as the backends' ``where`` does)."""
    return F.relu(x)


_GELU_DEPARTURE = (
    "torch's F.gelu is NaN at -inf (x * Phi(x) as -inf * 0), and in float32 on AVX-512 CPUs "
    "it is NaN at +inf too, for tensors of more than one element (torch 2.13 and 2.14): "
    "float32 GELU runs oneDNN's eltwise kernel, whose AVX-512 code gives NaN there while its "
    "AVX2 and SSE4.1 code (ONEDNN_MAX_CPU_ISA=AVX2), a single element and float64 give inf; "
    "ATEN_CPU_CAPABILITY does not change it. The formula's limits are +inf and 0, so the "
    "tests compare the backends with those and torch only at finite x")

_PRODUCT_UNDER_AUTOGRAD = (
    "the explicit path's GELU is a product differentiated by autograd, which multiplies an "
    "infinite upstream gradient by each factor's derivative separately: at x = 0, "
    "inf * (x * Phi'(x) = 0) is NaN where the formula (and the reference) give "
    "inf * GELU'(0) = inf. Only a non-finite upstream gradient shows it")

# What only a test can know about an activation; the names must be core.config.ACTIVATIONS.
ACTIVATION_FACTS = {
    "relu": dict(oracle=F.relu, kinks={0.0: 0.0}, at_infinity=_relu_limit),
    "gelu": dict(oracle=lambda x: F.gelu(x, approximate="none"), at_infinity=_relu_limit,
                 fused_departure=_GELU_DEPARTURE,
                 explicit_nonfinite_upstream=_PRODUCT_UNDER_AUTOGRAD),
    "gelu_tanh": dict(oracle=lambda x: F.gelu(x, approximate="tanh"), at_infinity=_relu_limit,
                      fused_departure=_GELU_DEPARTURE,
                      explicit_nonfinite_upstream=_PRODUCT_UNDER_AUTOGRAD),
}


def activation_row(name, facts=None) -> Op:
    """The row of activation ``name``: its functions from each backend's ACTIVATIONS map,
    the rest from ``facts`` (default ``ACTIVATION_FACTS[name]``)."""
    if facts is None:
        if name not in ACTIVATION_FACTS:
            raise KeyError(f"activation {name!r} is in minillm.core.config.ACTIVATIONS but has no "
                           f"entry in tests/ops_catalogue.py ACTIVATION_FACTS (expected one of "
                           f"{sorted(ACTIVATION_FACTS)}): add its oracle, kinks and limits there")
        facts = ACTIVATION_FACTS[name]
    forward, backward = REFERENCE_ACTIVATIONS[name]
    return Op(name, ELEMENTWISE, forward, backward, EXPLICIT_ACTIVATIONS[name],
              fused=FAST_ACTIVATIONS[name], **facts)


OPS = [
    Op("softmax", ROWWISE, R.softmax_forward, R.softmax_backward, T.softmax,
       oracle=lambda x, axis=-1: F.softmax(x, dim=axis)),
    Op("log_softmax", ROWWISE, R.log_softmax_forward, R.log_softmax_backward, T.log_softmax,
       oracle=lambda x, axis=-1: F.log_softmax(x, dim=axis)),
    *(activation_row(name) for name in ACTIVATIONS),
]
assert set(ACTIVATION_FACTS) == set(ACTIVATIONS), (
    f"tests/ops_catalogue.py ACTIVATION_FACTS names {sorted(ACTIVATION_FACTS)}, "
    f"minillm.core.config.ACTIVATIONS {sorted(ACTIVATIONS)}: expected the same names")


def rows(kind=None, ops=None, fused=None):
    """The rows of ``kind`` (all if None); ``fused=True``: only rows with a fused kernel."""
    return [op for op in (OPS if ops is None else ops)
            if (kind is None or op.kind == kind) and (fused is None or (op.fused is not None) == fused)]


def by_name(name, ops=None) -> Op:
    return {op.name: op for op in (OPS if ops is None else ops)}[name]


def away_from_kinks(op, x, margin=1e-3):
    """``x`` with every value within ``margin`` of a kink moved ``margin`` away from it
    (finite differences with a step of 1e-6 then never straddle one)."""
    for kink in op.kinks:
        near = np.abs(x - kink) < margin
        x = np.where(near, kink + np.where(x >= kink, margin, -margin), x)
    return x


# The property tests the catalogue drives, "file::function" -> the kind of rows it takes
# (None: every row); tests/test_ops_catalogue.py checks each is parametrised with exactly
# those rows, and tests/test_docs.py that docs/formulas.md names each in every row's tests.
PROPERTY_TESTS = {
    "tests/test_ops_parity.py::test_op_parity": None,
    "tests/test_ops_parity.py::test_op_matches_torch_functional": None,
    "tests/test_ops_gradcheck.py::test_op_gradcheck": None,
    "tests/test_nonfinite.py::test_op_nonfinite_values": None,
    "tests/test_ops_stability.py::test_op_at_extremes": ELEMENTWISE,
    "tests/test_ops_errors.py::test_op_refuses_integer_input": None,
    "tests/test_bounds.py::test_op_derivative_at_its_kinks_and_at_zero": ELEMENTWISE,
    "tests/test_fast_path.py::test_fused_kernel_matches_the_explicit_path": "fused",
    "tests/test_fast_path.py::test_fused_kernel_at_nonfinite_points": "fused",
}
# The tests parametrised over the activations (a feed-forward network with each one).
ACTIVATION_TESTS = (
    "tests/test_ops_parity.py::test_feed_forward_parity",
    "tests/test_ops_gradcheck.py::test_feed_forward_gradcheck",
    "tests/test_nonfinite.py::test_feed_forward_matches_torch",
)


def rows_for(kind, ops=None):
    """The rows a property test of ``PROPERTY_TESTS`` kind ``kind`` takes."""
    if kind == "fused":
        return rows(fused=True, ops=ops)
    return rows(kind, ops=ops)


def tests_of(op) -> list:
    """Every catalogue-driven test that exercises ``op`` (docs/formulas.md lists them)."""
    names = [t for t, kind in PROPERTY_TESTS.items() if op in rows_for(kind)]
    if op.name in ACTIVATIONS:
        names += ACTIVATION_TESTS
    return names


__all__ = ["Op", "OPS", "ACTIVATION_FACTS", "ELEMENTWISE", "ROWWISE", "PROPERTY_TESTS",
           "ACTIVATION_TESTS", "activation_row", "rows", "rows_for", "by_name",
           "away_from_kinks", "tests_of"]
