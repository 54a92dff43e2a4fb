"""The torch backend's speed-ups keep their contract.

- Input checks first recognise the common case cheaply (``_plainly_valid`` in linear.py,
  layer_norm.py, softmax.py, attention.py); only otherwise do the full checks of
  ``minillm/_validate.py`` run. The cheap test must never accept what the full checks
  reject: for near-valid inputs drawn by hypothesis (a size, dtype, mask shape or eps
  off by one), whenever it says "valid", the full checks alone must pass too.
- ``linear`` under autocast: the bf16 product plus the float32 bias is promoted to
  float32, as torch's own ``F.linear`` is not (the explicit path keeps the formula's sum).
"""
import importlib
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minillm.torch_backend as T

linear_mod = importlib.import_module("minillm.torch_backend.linear")
layer_norm_mod = importlib.import_module("minillm.torch_backend.layer_norm")
softmax_mod = importlib.import_module("minillm.torch_backend.softmax")
attention_mod = importlib.import_module("minillm.torch_backend.attention")

DTYPES = (torch.float32, torch.float64, torch.int64)


def _tensor(shape, dtype):
    return torch.zeros(shape, dtype=dtype)


def _full_checks_pass(module, call):
    """Run ``call`` with the module's cheap test switched off: do the full checks pass?"""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(module, "_plainly_valid", lambda *args: False)
        try:
            call()
        except ValueError:
            return False
    return True


sizes = st.integers(1, 4)
small_shapes = st.lists(sizes, min_size=0, max_size=3).map(tuple)
f32, f64, i64 = torch.float32, torch.float64, torch.int64


def _check_the_cheap_test(module, plainly_valid, call, broken):
    """The cheap test accepts the unbroken case, and whatever it accepts the full checks
    accept too (a broken case it rejects is then explained by the full checks)."""
    if broken == "nothing":
        assert plainly_valid, "the common case should pass the cheap test"
    if plainly_valid:
        assert _full_checks_pass(module, call), f"cheap test accepted what the full checks reject ({broken})"


@given(lead=small_shapes, d_in=sizes, d_out=sizes, bias=st.booleans(), dtype=st.sampled_from([f32, f64]),
       broken=st.sampled_from(["nothing", "x int", "W dtype", "b dtype", "d_in", "b size",
                               "W 3-d", "W 1-d", "x 0-d", "W not a tensor"]))
def test_linear_cheap_check_never_accepts_what_the_full_check_rejects(lead, d_in, d_out, bias, dtype, broken):
    other = f64 if dtype == f32 else f32
    x = _tensor(() if broken == "x 0-d" else lead + (d_in,), i64 if broken == "x int" else dtype)
    W_shape = {"W 3-d": (d_in, d_out, 1), "W 1-d": (d_in,)}.get(broken, (d_in + (broken == "d_in"), d_out))
    W = _tensor(W_shape, other if broken == "W dtype" else dtype)
    if broken == "W not a tensor":
        W = np.zeros(W_shape)
    b = _tensor((d_out + (broken == "b size"),), other if broken == "b dtype" else dtype)
    b = b if bias or broken in ("b size", "b dtype") else None
    _check_the_cheap_test(linear_mod, linear_mod._plainly_valid(x, W, b), lambda: T.linear(x, W, b), broken)


@given(lead=small_shapes, C=sizes, dtype=st.sampled_from([f32, f64]),
       broken=st.sampled_from(["nothing", "C = 0", "gamma size", "beta size", "gamma dtype",
                               "x int", "eps 0", "eps -1", "eps inf", "eps nan", "eps int 1", "eps True"]))
def test_layer_norm_cheap_check_never_accepts_what_the_full_check_rejects(lead, C, dtype, broken):
    C = 0 if broken == "C = 0" else C
    x = _tensor(lead + (C,), i64 if broken == "x int" else dtype)
    gamma = _tensor((C + (broken == "gamma size"),), f64 if broken == "gamma dtype" and dtype == f32
                    else (f32 if broken == "gamma dtype" else dtype))
    beta = _tensor((C + (broken == "beta size"),), dtype)
    eps = {"eps 0": 0.0, "eps -1": -1.0, "eps inf": math.inf, "eps nan": math.nan,
           "eps int 1": 1, "eps True": True}.get(broken, 1e-5)
    _check_the_cheap_test(layer_norm_mod, layer_norm_mod._plainly_valid(x, gamma, beta, eps),
                          lambda: T.layer_norm(x, gamma, beta, eps), broken)


@given(shape=st.lists(sizes, min_size=1, max_size=3).map(tuple), dtype=st.sampled_from([f32, f64]),
       broken=st.sampled_from(["nothing", "axis too large", "axis too small", "axis float",
                               "axis bool", "empty axis", "x int", "x 0-d"]))
def test_softmax_cheap_check_never_accepts_what_the_full_check_rejects(shape, dtype, broken):
    axis = {"axis too large": len(shape), "axis too small": -len(shape) - 1, "axis float": -1.0,
            "axis bool": True}.get(broken, -1)
    shape = () if broken == "x 0-d" else shape[:-1] + (0,) if broken == "empty axis" else shape
    x = _tensor(shape, i64 if broken == "x int" else dtype)
    _check_the_cheap_test(softmax_mod, softmax_mod._plainly_valid(x, axis),
                          lambda: T.softmax(x, axis), broken)


@given(lead=small_shapes, T_q=sizes, T_k=sizes, d_k=sizes, dtype=st.sampled_from([f32, f64]),
       mask_kind=st.sampled_from(["none", "full", "keys only", "queries only", "batch of 1"]),
       broken=st.sampled_from(["nothing", "d_k", "T_v", "lead of k", "dtype of v", "mask float",
                               "mask too many dims", "mask T_k", "q 1-d"]))
def test_attention_cheap_check_never_accepts_what_the_full_check_rejects(
        lead, T_q, T_k, d_k, dtype, mask_kind, broken):
    q = _tensor((d_k,) if broken == "q 1-d" else lead + (T_q, d_k), dtype)
    k = _tensor((lead + (5,) if broken == "lead of k" else lead) + (T_k, d_k + (broken == "d_k")), dtype)
    v = _tensor(lead + (T_k + (broken == "T_v"), 2), f32 if broken == "dtype of v" and dtype == f64
                else f64 if broken == "dtype of v" else dtype)
    mask_shape = {"none": None, "full": lead + (T_q, T_k), "keys only": (T_k,),
                  "queries only": (T_q, 1), "batch of 1": (1,) * len(lead) + (T_q, T_k)}[mask_kind]
    if broken == "mask too many dims":
        mask_shape = (2,) + (mask_shape or (T_q, T_k))
        mask_shape = (2,) * (len(lead) + 3 - len(mask_shape)) + mask_shape
    if broken == "mask T_k":
        mask_shape = (mask_shape or (T_q, T_k))[:-1] + (T_k + 1,)
    mask = None if mask_shape is None else torch.ones(
        mask_shape, dtype=torch.float32 if broken == "mask float" else torch.bool)
    _check_the_cheap_test(attention_mod, attention_mod._plainly_valid(q, k, v, mask),
                          lambda: T.scaled_dot_product_attention(q, k, v, mask), broken)


def test_the_cheap_checks_do_accept_the_common_case():
    """Otherwise the speed-up would silently not happen (every call taking the slow path)."""
    x, W, b = torch.zeros(2, 3, 4), torch.zeros(4, 5), torch.zeros(5)
    assert linear_mod._plainly_valid(x, W, b) and linear_mod._plainly_valid(x, W, None)
    assert layer_norm_mod._plainly_valid(x, torch.ones(4), torch.zeros(4), 1e-5)
    assert softmax_mod._plainly_valid(x, -1)
    q = torch.zeros(2, 3, 4, 8).transpose(1, 2)  # (B, H, T, D) from split_heads: a view
    assert attention_mod._plainly_valid(q, q, q, T.causal_mask(3))
    assert attention_mod._plainly_valid(q, q, q, torch.ones(2, 1, 1, 3, dtype=torch.bool))


def test_linear_under_autocast_still_promotes_the_bias_sum():
    x, W, b = torch.randn(3, 4), torch.randn(4, 5), torch.randn(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = T.linear(x, W, b)
    assert y.dtype == torch.float32  # bf16 product + float32 bias, promoted (not in place)
    assert torch.equal(y, (x.bfloat16() @ W.bfloat16()).float() + b)
