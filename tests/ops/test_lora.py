"""LoRA (Hu et al. 2021) beyond its catalogue row (tests/ops_catalogue.py, ``lora``: parity
of the reference with both torch paths and torch.nn.functional, finite differences,
non-finite values, a zero input, integer input refused): the frozen backward, dropout's
mask on every path, the layer (B zero at the start, frozen base, merge/unmerge), the
rank and shape errors. Wrapping a model by name and PEFT's file layout: tests/store/test_lora_adapters.py."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minillm.reference as ref
from minillm.core.lora import check_rank, init_lora_A, lora_scale
from minillm.reference.lora import lora_backward, lora_forward
from parity import assert_close, check_grad, random_array, seeds
from tolerances import FD, FD_STEP, FLOAT64

torch = pytest.importorskip("torch")
import minillm.torch_backend as tb  # noqa: E402
from minillm.torch_backend.lora import fast_lora  # noqa: E402


def _inputs(seed, lead, d_in, d_out, r, bias=True):
    rng = np.random.default_rng(seed)
    x = random_array(rng, lead + (d_in,))
    W = random_array(rng, (d_in, d_out))
    b = random_array(rng, (d_out,)) if bias else None
    A = random_array(rng, (d_in, r))
    B = random_array(rng, (r, d_out))          # not zero: a zero B hides dA
    dy = random_array(rng, lead + (d_out,))    # a random upstream gradient
    return x, W, b, A, B, dy


def test_frozen_backward_skips_the_base_gradients_only():
    x, W, b, A, B, dy = _inputs(3, (2, 3), 4, 5, 2)
    _, cache = lora_forward(x, W, b, A, B, 0.5)
    full, frozen = lora_backward(dy, cache), lora_backward(dy, cache, frozen=True)
    assert frozen[1] is None and frozen[2] is None
    for name, a, c in zip(("dx", "dA", "dB"), (full[0], full[3], full[4]),
                          (frozen[0], frozen[3], frozen[4])):
        np.testing.assert_array_equal(c, a, err_msg=name)


def test_backward_with_dropout_matches_finite_differences():
    # the same mask in every evaluation: a fresh generator of the same seed each time
    x, W, b, A, B, dy = _inputs(7, (2, 3), 4, 5, 2)
    f = lambda x, W, b, A, B: lora_forward(  # noqa: E731
        x, W, b, A, B, 0.7, 0.3, True, np.random.default_rng(1))[0]
    _, cache = lora_forward(x, W, b, A, B, 0.7, 0.3, True, np.random.default_rng(1))
    assert cache.drop.keep is not None and not cache.drop.keep.all()
    grads = lora_backward(dy, cache)
    check_grad(f, [x, W, b, A, B], dy, list(grads), ["dx", "dW", "db", "dA", "dB"],
               FD_STEP, FD.rtol, FD.atol)


@given(seed=seeds, lead=st.sampled_from([(3,), (2, 3), (1, 2, 2)]), d_in=st.integers(1, 6),
       d_out=st.integers(1, 6), bias=st.booleans())
def test_dropout_mask_is_the_same_on_the_reference_and_both_torch_paths_float64(
        seed, lead, d_in, d_out, bias):
    """With dropout (p = 0.25), generators of the same seed give every path the same mask:
    the reference, the explicit and the fused torch paths agree, output and gradients (the
    catalogue's rows run without dropout, tests/ops_catalogue.py ``_draw_lora``)."""
    r = 1 + seed % min(d_in, d_out)
    x, W, b, A, B, dy = _inputs(seed, lead, d_in, d_out, r, bias)
    scale, p = 1.5, 0.25
    y, cache = lora_forward(x, W, b, A, B, scale, p, True, np.random.default_rng(seed))
    expected = dict(zip(("x", "W", "b", "A", "B"), lora_backward(dy, cache)))
    for op in (tb.lora, fast_lora):
        ts = {k: None if a is None else torch.tensor(a, requires_grad=True)
              for k, a in zip(("x", "W", "b", "A", "B"), (x, W, b, A, B))}
        out = op(ts["x"], ts["W"], ts["b"], ts["A"], ts["B"], scale, p, True,
                 np.random.default_rng(seed))
        assert_close(f"{op.__name__} y", out, y, FLOAT64.rtol, FLOAT64.atol)
        out.backward(torch.tensor(dy))
        for k, t in ts.items():
            if t is not None:
                assert_close(f"{op.__name__} d{k}", t.grad, expected[k], FLOAT64.rtol, FLOAT64.atol)


def test_b_zero_at_init_gives_the_base_map_and_a_gradient_only_for_B():
    layer = ref.LoRALinear(4, 3, r=2, alpha=4.0, rng=np.random.default_rng(0), dtype="float64")
    rng = np.random.default_rng(1)
    layer.W.data[...] = random_array(rng, (4, 3))
    layer.b.data[...] = random_array(rng, (3,))
    x, dy = random_array(rng, (2, 5, 4)), random_array(rng, (2, 5, 3))
    np.testing.assert_array_equal(layer(x), ref.linear(x, layer.W.data, layer.b.data))
    layer.backward(dy)
    assert not layer.lora.A.grad.any()        # dA = u^T (s g B^T) = 0 while B = 0
    assert np.abs(layer.lora.B.grad).max() > 0
    assert layer.W.grad is None and layer.b.grad is None    # the base is frozen


def test_both_backends_draw_the_same_A_and_the_same_dropout_masks():
    kwargs = dict(r=3, alpha=6.0, dropout=0.5, dtype="float64")
    a = ref.LoRALinear(5, 4, rng=np.random.default_rng(3), **kwargs)
    t = tb.LoRALinear(5, 4, rng=np.random.default_rng(3), **kwargs)
    np.testing.assert_array_equal(a.lora.A.data, t.lora.A.detach().numpy())
    bound = 1 / np.sqrt(5)
    assert np.abs(a.lora.A.data).max() <= bound and a.lora.B.data.shape == (3, 4)
    rng = np.random.default_rng(4)
    B = random_array(rng, (3, 4))
    a.lora.B.data[...] = B
    with torch.no_grad():
        t.lora.B.copy_(torch.tensor(B))
    x = random_array(rng, (2, 3, 5))
    assert_close("y with dropout", t(torch.tensor(x)), a(x), FLOAT64.rtol, FLOAT64.atol)


def test_scale_and_rank_stabilised_scale():
    assert lora_scale(8, 16.0) == 2.0
    assert lora_scale(16, 8.0, rank_stabilised=True) == 2.0
    assert ref.LoRALinear(16, 16, r=4, alpha=8.0, rank_stabilised=True).lora.scale == 4.0


@pytest.mark.parametrize("backend", [ref, tb], ids=["numpy", "torch"])
@pytest.mark.parametrize("r", [0, 5, -1, 2.0, True])
def test_rank_outside_range_is_an_error_naming_it(backend, r):
    with pytest.raises(ValueError, match=rf"1\.\.4 .*got r={r!r}"):
        backend.LoRALinear(4, 6, r=r)


def test_op_rejects_mismatched_A_and_B():
    x, W, b, A, B, _ = _inputs(0, (2,), 4, 3, 2)
    with pytest.raises(ValueError, match="B"):
        lora_forward(x, W, b, A, B[:1], 1.0)
    with pytest.raises(ValueError, match="1..3"):
        lora_forward(x, W, b, random_array(np.random.default_rng(0), (4, 4)),
                     random_array(np.random.default_rng(0), (4, 3)), 1.0)
    assert check_rank(np.int64(2), 3, 3) == 2
    with pytest.raises(ValueError, match="Generator"):
        init_lora_A(3, 2, 0)


@pytest.mark.parametrize("backend", [ref, tb], ids=["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_merge_folds_the_update_and_unmerge_restores_W(backend, dtype):
    layer = backend.LoRALinear(6, 5, r=2, alpha=3.0, rng=np.random.default_rng(0), dtype=dtype)
    rng = np.random.default_rng(1)
    W0, B = random_array(rng, (6, 5), dtype), random_array(rng, (2, 5), dtype)
    x = random_array(rng, (3, 6), dtype)
    data = (lambda p: p.data) if backend is ref else (lambda p: p.detach().numpy())
    data(layer.W)[...] = W0
    data(layer.lora.B)[...] = B
    xx = x if backend is ref else torch.tensor(x)
    before = np.array(data(layer(xx)) if backend is ref else layer(xx).detach().numpy())
    layer.merge()
    assert layer.lora.merged and not np.array_equal(data(layer.W), W0)
    after = layer(xx) if backend is ref else layer(xx).detach().numpy()
    # x (W + sAB) against xW + s(xA)B: the same sums in another order
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(after, before, rtol=tol, atol=tol)
    layer.unmerge()
    # (W + D) - D returns W within one rounding of W + D: |error| <= ulp(|W| + |D|)
    D = np.abs(layer.lora.scale * (data(layer.lora.A) @ B))
    ulp = np.finfo(dtype).eps * (np.abs(W0) + D)
    assert (np.abs(data(layer.W) - W0) <= ulp).all()
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()
