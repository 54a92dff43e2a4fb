"""The elementary ops, declared once for the tests: one ``Op`` row per op.

Rows: softmax, log_softmax, one per activation (relu, gelu, gelu_tanh, silu), linear,
embedding, layer_norm, cross_entropy, and the modern decoder's rms_norm,
gated_feed_forward (SwiGLU with the silu gate), repeat_kv (grouped-query attention's
sharing), rope and rope_half (RoPE's two layouts). A row names the op's reference forward
and backward, the torch backend's explicit function and its fused (fast-path) kernel, the
``torch.nn.functional`` oracle, how to draw its inputs, its kinks and its value at the
non-finite points. ``PROPERTY_TESTS`` lists the property tests and which rows each takes
(every row: parity, the oracle, finite differences, integer input, non-finite values
(fixed rows for the one-input ops, planted in a drawn call for the others), the fused
kernel where there is one; the elementwise ones: extremes, kinks, the fused kernel at
+-inf; the others: an all-zero first input, where norms and maxima sit at their bounds);
each is parametrised with ``rows_for(its id)``, so one row enrols an op in all
that apply (tests/ops/test_ops_catalogue.py checks it, and docs/formulas.md's rows name each
test, see tests/docs/test_docs.py). The float32 tolerance and its reason stay in
tests/tolerances.py, under the row's name (a row without one fails
tests/ops/test_ops_catalogue.py). Dropout, attention and the head reshapes have no row yet:
their tests are their own (tests/ops/test_ops_parity.py, test_attention.py), as are
grouped-query attention through the fused kernel and the RoPE layout permutation
(tests/ops/test_modern_ops.py).

The activation rows come from ``minillm.core.config.ACTIVATIONS`` (the names a model
accepts) and each backend's ``ACTIVATIONS`` map: what only a test can know (the oracle,
the kinks, the limits at +-inf) is written in ``ACTIVATION_FACTS``, and an activation
without an entry there stops the collection of every op test with a message saying so.

Adding an activation (CONTRIBUTING.md, "Add an op or an activation"): the two backends'
functions and their ``ACTIVATIONS`` entries, the name in ``core.config.ACTIVATIONS``, one
entry in ``ACTIVATION_FACTS`` (and its float32 tolerance), one row in docs/formulas.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

import minillm.reference as R
import minillm.torch_backend as T
from minillm.core.config import ACTIVATIONS
from minillm.core.init import rotary_tables
from minillm.reference.activations import ACTIVATIONS as REFERENCE_ACTIVATIONS
from minillm.torch_backend.activations import ACTIVATIONS as EXPLICIT_ACTIVATIONS
from minillm.torch_backend.activations import FAST_ACTIVATIONS
from minillm.torch_backend.embedding import fast_embedding
from minillm.torch_backend.feed_forward import fast_gated_feed_forward
from minillm.torch_backend.layer_norm import fast_layer_norm
from minillm.torch_backend.linear import fast_linear
from minillm.torch_backend.losses import fast_cross_entropy
from minillm.torch_backend.rms_norm import fast_rms_norm
from parity import random_array, scales, seeds, shapes

ELEMENTWISE, ROWWISE, MULTI = "elementwise", "rowwise", "multi-input"
PURPOSES = ("parity", "oracle", "gradcheck")


@dataclass(frozen=True)
class Case:
    """One drawn call of an op: its inputs (arrays or None), their names, which get a
    gradient, and its keyword arguments."""
    inputs: tuple
    names: tuple
    differentiable: tuple
    kwargs: dict


@dataclass(frozen=True)
class Op:
    """One op, as every property test sees it.

    - ``forward(x, **kw) -> (out, cache)`` and ``backward(dout, cache) -> dx``: the reference;
    - ``explicit(x, **kw)``: the torch backend's formula (autograd gives the gradient);
    - ``fused(x, **kw)``: the fast path's torch kernel, or None when the op has none;
    - ``oracle(x, **kw)``: torch.nn.functional's, the third opinion at finite points;
    - ``kind``: ``elementwise`` (any shape), ``rowwise`` (along ``axis``, drawn) or
      ``multi-input`` (several inputs: ``draw`` makes them);
    - ``draw(data, dtype, purpose) -> Case``: the input strategy (hypothesis' ``data``),
      for ``purpose`` "parity" (edges included, kinks planted), "oracle" (what a
      torch.nn.functional kernel, the oracle or the fused one, is compared on) or
      "gradcheck" (float64, small, off the kinks); None for a one-input op: ``x`` of a
      drawn shape and scale;
    - ``kinks``: ``{x: the derivative taken there}`` where the op is not differentiable
      (finite differences keep away from them; the parity tests plant them);
    - ``at_infinity``: for an elementwise op, the function whose value and gradient the
      formula's limits at +-inf are (None: the op's own arithmetic, as torch's, decides,
      which docs/architecture.md documents for the row-wise ops);
    - ``fused_departure``: where the fused kernel departs from the formula at a
      non-finite point, and why the tests do not adopt it;
    - ``explicit_nonfinite_upstream``: a known difference of the explicit path under a
      non-finite upstream gradient (tests/ops/test_nonfinite.py marks it xfail, strict);
    - ``nonfinite_gradients``: for an op of several inputs, why its gradients under a
      non-finite input may hold NaN at more places than the oracle's (the same
      non-finite terms grouped otherwise, inf - inf where the oracle sums inf + inf);
      tests/ops/test_nonfinite.py then checks that none is hidden: every non-finite gradient
      of the oracle is non-finite in ours, and the finite ones agree.
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
    nonfinite_gradients: str = ""
    draw: Optional[Callable] = None

    def __repr__(self):
        return self.name

    def case(self, data, dtype, purpose="parity") -> Case:
        """Draw one call of the op (see ``draw``)."""
        assert purpose in PURPOSES, purpose
        if self.draw is not None:
            return self.draw(data, dtype, purpose)
        small = purpose == "gradcheck"
        shape = data.draw(shapes(1, 3 if small else 4, max_side=5 if small else 6), label="shape")
        scale = data.draw(st.sampled_from([0.5, 3.0, 8.0]) if small else scales, label="scale")
        rng = np.random.default_rng(data.draw(seeds, label="seed"))
        x = random_array(rng, shape, dtype, scale)
        if small:
            x = away_from_kinks(self, x)
        else:
            for i, kink in enumerate(self.kinks):   # both backends take the row's derivative there
                x.flat[i % x.size] = kink
        kwargs = {}
        if self.kind == ROWWISE:
            kwargs["axis"] = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
        return Case((x,), ("x",), (True,), kwargs)

    def formula(self, *inputs, **kw):
        """torch: the oracle at finite points and the formula's limits at +-inf (the value
        and the gradient a backend must give there, on every CPU)."""
        if self.at_infinity is None:
            return self.oracle(*inputs, **kw)
        (x,) = inputs
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

_SILU_DEPARTURE = (
    "torch's F.silu computes x * sigmoid(x): NaN at -inf (-inf * 0), and its backward "
    "sigmoid(x) (1 + x (1 - sigmoid(x))) is NaN at +inf and -inf (inf * 0), as that "
    "arithmetic gives in IEEE numbers (seen in float32 and float64, torch 2.14, on an x86 "
    "CPU; the fast-path test accepts NaN or the limit there). The formula's limits are "
    "+inf and 0 with slopes 1 and 0, so the tests compare the backends with those and "
    "torch only at finite x")

_SILU_PRODUCT_UNDER_AUTOGRAD = (
    "the explicit path's SiLU is the product x * sigmoid(x) differentiated by autograd, "
    "which multiplies an infinite upstream gradient by each factor's derivative separately: "
    "at x = 0, inf * (x * sigmoid'(x) = 0) is NaN where the formula (and the reference) give "
    "inf * SiLU'(0) = inf. Only a non-finite upstream gradient shows it")

# What only a test can know about an activation; the names must be core.config.ACTIVATIONS.
ACTIVATION_FACTS = {
    "relu": dict(oracle=F.relu, kinks={0.0: 0.0}, at_infinity=_relu_limit),
    "gelu": dict(oracle=lambda x: F.gelu(x, approximate="none"), at_infinity=_relu_limit,
                 fused_departure=_GELU_DEPARTURE,
                 explicit_nonfinite_upstream=_PRODUCT_UNDER_AUTOGRAD),
    "gelu_tanh": dict(oracle=lambda x: F.gelu(x, approximate="tanh"), at_infinity=_relu_limit,
                      fused_departure=_GELU_DEPARTURE,
                      explicit_nonfinite_upstream=_PRODUCT_UNDER_AUTOGRAD),
    "silu": dict(oracle=F.silu, at_infinity=_relu_limit, fused_departure=_SILU_DEPARTURE,
                 explicit_nonfinite_upstream=_SILU_PRODUCT_UNDER_AUTOGRAD),
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


# ------------------------------------------------------------------ multi-input ops


def _draw_linear(data, dtype, purpose):
    small = purpose == "gradcheck"
    lead = data.draw(shapes(0, 2 if small else 3, max_side=3 if small else 4), label="lead")
    d_in, d_out = (data.draw(st.integers(1, 5 if small else 9), label=n) for n in ("d_in", "d_out"))
    bias = data.draw(st.booleans(), label="bias")
    scale = 1.0 if small else data.draw(scales, label="scale")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    x = random_array(rng, lead + (d_in,), dtype, scale)
    W = random_array(rng, (d_in, d_out), dtype, 1 / math.sqrt(d_in))
    b = random_array(rng, (d_out,), dtype) if bias else None
    return Case((x, W, b), ("x", "W", "b"), (True, True, True), {})


def _draw_embedding(data, dtype, purpose):
    small = purpose == "gradcheck"
    lead = data.draw(shapes(1 if small else 0, 2 if small else 3, max_side=5 if small else 6), label="lead")
    V = data.draw(st.integers(1, 4 if small else 5), label="V")   # small V: repeated ids
    d = data.draw(st.integers(1, 4 if small else 6), label="d")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    ids = rng.integers(0, V, size=lead)
    W = random_array(rng, (V, d), dtype)
    return Case((ids, W), ("ids", "W"), (False, True), {})


def layer_norm_input(rng, shape, dtype, scale):
    """Rows for layer norm. Float32 keeps only ~eps * |mean| / std of precision per row
    (tolerances.py, layer_norm), so in float32 every row gets std = scale and
    |mean| / std = 3 |N(0, 1)|; in float64 a common offset gives |mean| / std up to 1e3."""
    z = random_array(rng, shape, np.float64)
    if dtype == np.float64:
        return (scale * z + rng.standard_normal()).astype(dtype)
    if shape[-1] > 1:
        z = (z - z.mean(-1, keepdims=True)) / np.maximum(z.std(-1, keepdims=True), 1e-12)
    return (scale * (z + 3.0 * rng.standard_normal())).astype(dtype)


def _draw_layer_norm(data, dtype, purpose):
    small = purpose == "gradcheck"
    shape = data.draw(shapes(1, 3, max_side=5 if small else 8), label="shape")
    if purpose == "oracle":
        # C = 1: the exact dx is 0 (x_hat = 0 whatever x is); both our backends give exactly
        # 0 (the parity test), F.layer_norm gives rounding noise of rstd * ulp(dy), ~3e-5
        # in float32 with eps = 1e-5, which no tolerance scaled to the output can judge
        shape = shape[:-1] + (max(shape[-1], 2),)
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    if small:
        x = random_array(rng, shape, dtype, data.draw(st.sampled_from([0.3, 1.0, 5.0]), label="scale"))
        gamma, beta = random_array(rng, shape[-1:], dtype), random_array(rng, shape[-1:], dtype)
        return Case((x, gamma, beta), ("x", "gamma", "beta"), (True, True, True), {"eps": 1e-5})
    x = layer_norm_input(rng, shape, dtype, data.draw(scales, label="scale"))
    gamma = (1.0 + 0.5 * random_array(rng, shape[-1:], np.float64)).astype(dtype)
    beta = random_array(rng, shape[-1:], dtype)
    eps = data.draw(st.sampled_from([1e-5, 1e-3]), label="eps")
    return Case((x, gamma, beta), ("x", "gamma", "beta"), (True, True, True), {"eps": eps})


def _draw_cross_entropy(data, dtype, purpose):
    small = purpose == "gradcheck"
    lead = data.draw(shapes(0, 2 if small else 3, max_side=4 if small else 5), label="lead")
    C = data.draw(st.integers(1, 6 if small else 7), label="C")
    ignore_index = data.draw(st.sampled_from([-100, -1, 0]), label="ignore_index")
    p_ignore = data.draw(st.sampled_from([0.0, 0.4] if small else [0.0, 0.3, 1.0]), label="p_ignore")
    label_smoothing = data.draw(st.sampled_from([0.0, 0.2, 1.0] if small else [0.0, 0.1, 0.37, 1.0]),
                                label="label_smoothing")
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]), label="reduction")
    scale = 3.0 if small else data.draw(scales, label="scale")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    logits = random_array(rng, lead + (C,), dtype, scale)
    targets = np.where(rng.random(lead) < p_ignore, ignore_index, rng.integers(0, C, size=lead))
    kwargs = dict(ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)
    return Case((logits, targets), ("logits", "targets"), (True, False), kwargs)


def _cross_entropy_oracle(logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """F.cross_entropy on (N, C) rows, with the contract's one documented difference
    (docs/architecture.md): a mean over no counted target is 0.0, where torch gives NaN
    (0 / 0); it is then torch's sum over the same (none) counted targets, 0.0 even where
    the ignored logits are NaN, and its gradient torch's too."""
    if reduction == "mean" and not bool((targets != ignore_index).any()):
        reduction = "sum"
    C = logits.shape[-1]
    out = F.cross_entropy(logits.reshape(-1, C), targets.reshape(-1), ignore_index=ignore_index,
                          label_smoothing=label_smoothing, reduction=reduction)
    return out.reshape(targets.shape) if reduction == "none" else out


def _draw_rms_norm(data, dtype, purpose):
    small = purpose == "gradcheck"
    shape = data.draw(shapes(1, 3, max_side=4 if small else 8), label="shape")
    scale = data.draw(st.sampled_from([0.3, 1.0, 5.0]) if small else scales, label="scale")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    x = random_array(rng, shape, dtype, scale)
    gamma = (1.0 + 0.5 * random_array(rng, shape[-1:], np.float64)).astype(dtype)
    eps = data.draw(st.sampled_from([1e-5, 1e-6, 0.1]), label="eps")
    return Case((x, gamma), ("x", "gamma"), (True, True), {"eps": eps})


# The gates a gated feed-forward is drawn with: any activation for the parity of the two
# backends; finite differences keep to the smooth ones (a kink of the gate, ReLU's 0, would
# be straddled); against torch.nn.functional's kernels, SwiGLU's silu, the gate the models
# use (F.gelu's float32 tail is exactly 0 below x ~ -5.5, where erf rounds to -1 and the
# formula is ~-1e-8: harmless as a value, but a non-finite up projection then meets
# 0 * inf = NaN in the oracle where the formula gives +-inf).
_GATES = {"parity": list(ACTIVATIONS),
          "gradcheck": [name for name in ACTIVATIONS if not ACTIVATION_FACTS[name].get("kinks")],
          "oracle": ["silu"]}


def _draw_gated_feed_forward(data, dtype, purpose):
    small = purpose == "gradcheck"
    lead = data.draw(shapes(0, 2, max_side=3 if small else 4), label="lead")
    d_model = data.draw(st.integers(1, 4 if small else 6), label="d_model")
    d_ff = data.draw(st.integers(1, 5 if small else 8), label="d_ff")
    bias = data.draw(st.booleans(), label="bias")
    activation = data.draw(st.sampled_from(_GATES[purpose]), label="activation")
    scale = 1.0 if small else data.draw(scales, label="scale")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    arrays = [random_array(rng, lead + (d_model,), dtype, scale)]
    for d_in, d_out in ((d_model, d_ff), (d_model, d_ff), (d_ff, d_model)):
        arrays += [random_array(rng, (d_in, d_out), dtype, 1 / math.sqrt(d_in)),
                   random_array(rng, (d_out,), dtype, 0.5) if bias else None]
    names = ("x", "W_gate", "b_gate", "W_up", "b_up", "W_down", "b_down")
    return Case(tuple(arrays), names, (True,) * 7, {"activation": activation})


def _gated_feed_forward_oracle(x, W_gate, b_gate, W_up, b_up, W_down, b_down, activation="silu"):
    """torch.nn.functional's: F.linear three times and the gate's oracle (F.silu for SwiGLU)
    at finite points, its formula's limits at +-inf (the activation row's ``formula``)."""
    gate = by_name(activation).formula
    return F.linear(gate(F.linear(x, W_gate.T, b_gate)) * F.linear(x, W_up.T, b_up), W_down.T, b_down)


def _draw_repeat_kv(data, dtype, purpose):
    small = purpose == "gradcheck"
    shape = data.draw(shapes(3, 4, max_side=3 if small else 4), label="shape")   # (..., H_kv, T, D)
    n_rep = data.draw(st.integers(1, 3), label="n_rep")
    scale = 1.0 if small else data.draw(scales, label="scale")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    return Case((random_array(rng, shape, dtype, scale),), ("x",), (True,), {"n_rep": n_rep})


def _repeat_kv_oracle(x, n_rep):
    """The definition, head by head: query head h reads key/value head h // G (torch's
    ``enable_gqa`` and Hugging Face's ``repeat_kv`` order)."""
    return torch.stack([x[..., h // n_rep, :, :] for h in range(x.shape[-3] * n_rep)], dim=-3)


def _draw_rope(data, dtype, purpose):
    """x (..., T, D) and the tables (T, D/2) of a drawn base (``rope_theta``: the paper's
    10000, Llama 3's 500000, Qwen's 1e6, and a small one whose angles wrap often)."""
    small = purpose == "gradcheck"
    lead = data.draw(shapes(0, 2, max_side=3), label="lead")
    T_, half = data.draw(st.integers(1, 6), label="T"), data.draw(st.integers(1, 4), label="D/2")
    base = data.draw(st.sampled_from([10000.0, 500000.0, 1e6, 7.0]), label="base")
    scale = 1.0 if small else data.draw(scales, label="scale")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    x = random_array(rng, lead + (T_, 2 * half), dtype, scale)
    cos, sin = rotary_tables(T_, 2 * half, np.dtype(dtype).name, base)
    return Case((x, cos, sin), ("x", "cos", "sin"), (True, False, False), {})


def _rope_oracle(x, cos, sin):
    """RoPE as the complex product (x_2i + i x_2i+1) e^{i m theta_i} (RoFormer, eq. 12; as
    LLaMA's reference code writes it), in torch's complex arithmetic."""
    z = torch.view_as_complex(x.contiguous().reshape(*x.shape[:-1], -1, 2))   # (..., T, D/2)
    return torch.view_as_real(z * torch.complex(cos, sin)).reshape(x.shape)    # (..., T, D)


def _rope_half_oracle(x, cos, sin):
    """The split-halves layout as the complex product (x_i + i x_{i+D/2}) e^{i m theta_i}:
    the real parts are the first half, the imaginary parts the second."""
    half = x.shape[-1] // 2
    y = torch.complex(x[..., :half], x[..., half:]) * torch.complex(cos, sin)  # (..., T, D/2)
    return torch.cat([y.real, y.imag], dim=-1)                                 # (..., T, D)


OPS = [
    Op("softmax", ROWWISE, R.softmax_forward, R.softmax_backward, T.softmax,
       oracle=lambda x, axis=-1: F.softmax(x, dim=axis)),
    Op("log_softmax", ROWWISE, R.log_softmax_forward, R.log_softmax_backward, T.log_softmax,
       oracle=lambda x, axis=-1: F.log_softmax(x, dim=axis)),
    *(activation_row(name) for name in ACTIVATIONS),
    Op("linear", MULTI, R.linear_forward, R.linear_backward, T.linear,
       oracle=lambda x, W, b: F.linear(x, W.T, b), fused=fast_linear, draw=_draw_linear),
    Op("embedding", MULTI, R.embedding_forward, R.embedding_backward, T.embedding,
       oracle=F.embedding, fused=fast_embedding, draw=_draw_embedding),
    Op("layer_norm", MULTI, R.layer_norm_forward, R.layer_norm_backward, T.layer_norm,
       oracle=lambda x, gamma, beta, eps: F.layer_norm(x, x.shape[-1:], gamma, beta, eps),
       fused=fast_layer_norm, draw=_draw_layer_norm,
       nonfinite_gradients=(
           "dx = rstd (g - mean(g) - x_hat mean(g x_hat)), g = gamma dy: with an infinite "
           "gamma entry the three terms are infinite and F.layer_norm's backward kernel adds "
           "them in another order, so an entry where ours gives -inf can be inf - inf = NaN "
           "in torch's (a row (x0, x1, x2) with gamma_0 = inf: ours (NaN, NaN, -inf), torch's "
           "NaN throughout); both are non-finite there")),
    Op("cross_entropy", MULTI, R.cross_entropy_forward, R.cross_entropy_backward, T.cross_entropy,
       oracle=_cross_entropy_oracle, fused=fast_cross_entropy, draw=_draw_cross_entropy),
    Op("rms_norm", MULTI, R.rms_norm_forward, R.rms_norm_backward, T.rms_norm,
       oracle=lambda x, gamma, eps: F.rms_norm(x, x.shape[-1:], gamma, eps),
       fused=fast_rms_norm, draw=_draw_rms_norm),
    Op("gated_feed_forward", MULTI, R.gated_feed_forward_forward, R.gated_feed_forward_backward,
       T.gated_feed_forward, oracle=_gated_feed_forward_oracle, fused=fast_gated_feed_forward,
       draw=_draw_gated_feed_forward,
       nonfinite_gradients=(
           "an infinite up projection sends the gate an infinite upstream gradient, where the "
           "explicit path's GELU and SiLU, products differentiated by autograd, give NaN "
           "(inf * Phi(h) - inf * |h| phi(h) for h < 0) where the formula gives +-inf (the "
           "activation rows' explicit_nonfinite_upstream); and dx sums the gate's and the up "
           "projection's gradients, infinite both, in another order than autograd's")),
    # the fast path has no kernel of its own for these three: grouped-query attention's is
    # F.scaled_dot_product_attention(enable_gqa=True), which replaces repeat_kv
    # (tests/ops/test_modern_ops.py), and both RoPE layouts run their formula on both paths
    Op("repeat_kv", MULTI, R.repeat_kv_forward, R.repeat_kv_backward, T.repeat_kv,
       oracle=_repeat_kv_oracle, draw=_draw_repeat_kv),
    Op("rope", MULTI, R.rope_forward, R.rope_backward, T.rope, oracle=_rope_oracle, draw=_draw_rope),
    Op("rope_half", MULTI, R.rope_half_forward, R.rope_half_backward, T.rope_half,
       oracle=_rope_half_oracle, draw=_draw_rope),
]
assert set(ACTIVATION_FACTS) == set(ACTIVATIONS), (
    f"tests/ops_catalogue.py ACTIVATION_FACTS names {sorted(ACTIVATION_FACTS)}, "
    f"minillm.core.config.ACTIVATIONS {sorted(ACTIVATIONS)}: expected the same names")


def rows(kind=None, ops=None):
    """The rows of ``kind`` (all if None)."""
    return [op for op in (OPS if ops is None else ops) if kind is None or op.kind == kind]


def by_name(name, ops=None) -> Op:
    return {op.name: op for op in (OPS if ops is None else ops)}[name]


def away_from_kinks(op, x, margin=1e-3):
    """``x`` with every value within ``margin`` of a kink moved ``margin`` away from it
    (finite differences with a step of 1e-6 then never straddle one)."""
    for kink in op.kinks:
        near = np.abs(x - kink) < margin
        x = np.where(near, kink + np.where(x >= kink, margin, -margin), x)
    return x


def _one_input(op):
    return op.kind in (ELEMENTWISE, ROWWISE)


def _fused_one_input(op):
    return op.fused is not None and op.kind == ELEMENTWISE


# The property tests the catalogue drives, "file::function" -> which rows it takes;
# tests/ops/test_ops_catalogue.py checks each is parametrised with exactly those rows, and
# tests/docs/test_docs.py that docs/formulas.md names each in every row's tests.
PROPERTY_TESTS = {
    "tests/ops/test_ops_parity.py::test_op_parity": lambda op: True,
    "tests/ops/test_ops_parity.py::test_op_matches_torch_functional": lambda op: True,
    "tests/ops/test_ops_gradcheck.py::test_op_gradcheck": lambda op: True,
    "tests/ops/test_ops_errors.py::test_op_refuses_integer_input": lambda op: True,
    "tests/ops/test_fast_path.py::test_fused_kernel_matches_the_explicit_path": lambda op: op.fused is not None,
    "tests/ops/test_nonfinite.py::test_op_nonfinite_values": _one_input,
    "tests/ops/test_nonfinite.py::test_multi_input_op_nonfinite_values": lambda op: op.kind == MULTI,
    "tests/ops/test_ops_stability.py::test_op_at_extremes": lambda op: op.kind == ELEMENTWISE,
    "tests/ops/test_bounds.py::test_op_derivative_at_its_kinks_and_at_zero": lambda op: op.kind == ELEMENTWISE,
    "tests/ops/test_bounds.py::test_op_at_a_zero_input": lambda op: op.kind != ELEMENTWISE,
    "tests/ops/test_fast_path.py::test_fused_kernel_at_nonfinite_points": _fused_one_input,
}
# The tests parametrised over the activations (a feed-forward network with each one).
ACTIVATION_TESTS = (
    "tests/ops/test_ops_parity.py::test_feed_forward_parity",
    "tests/ops/test_ops_gradcheck.py::test_feed_forward_gradcheck",
    "tests/ops/test_nonfinite.py::test_feed_forward_matches_torch",
)


def rows_for(test_id, ops=None):
    """The rows the property test ``test_id`` of ``PROPERTY_TESTS`` takes."""
    return [op for op in (OPS if ops is None else ops) if PROPERTY_TESTS[test_id](op)]


def tests_of(op) -> list:
    """Every catalogue-driven test that exercises ``op`` (docs/formulas.md lists them)."""
    names = [t for t in PROPERTY_TESTS if PROPERTY_TESTS[t](op)]
    if op.name in ACTIVATIONS:
        names += ACTIVATION_TESTS
    return names


__all__ = ["Op", "Case", "OPS", "ACTIVATION_FACTS", "ELEMENTWISE", "ROWWISE", "MULTI",
           "PROPERTY_TESTS", "ACTIVATION_TESTS", "activation_row", "rows", "rows_for", "by_name",
           "away_from_kinks", "layer_norm_input", "tests_of"]
