"""Every tolerance the parity tests use, in one place, each with its reason.

A comparison passes when ``|ours - theirs| <= atol + rtol * |theirs|`` elementwise
(``tests/parity.py:assert_close``). Look one up with ``tolerance(op, dtype)``.

float64: the parity contract (docs/architecture.md) fixes rtol 1e-7, atol 1e-9 for every op. Both backends compute the
same formula in double precision, so they differ only by rounding (~1e-16 relative per
operation); 1e-7 leaves nine orders of magnitude for accumulation and still fails on
any real formula error (a wrong sign, a missing term, a transposed matrix).

float32: each op computes in single precision in both backends, but with different
kernels (NumPy's pairwise sums and SIMD exp versus torch's vectorised ones), so results
differ by a few units in the last place (eps = 1.2e-7), times the condition number of the
op. Inputs in the tests are O(1e-3) to O(30) (tests/parity.py ``scales``). In float32 the
``atol`` is relative to the largest magnitude in the expected tensor (at least 1), see
``limits``: a rounding error is a few ulps of the terms that were added up, not of a
result that happens to cancel to ~0, and the terms are at most as large as the largest
entry (layer norm's gradients scale with 1/sigma, a cross-entropy sum with the batch).
"""
from typing import NamedTuple

import numpy as np


class Tolerance(NamedTuple):
    rtol: float
    atol: float
    reason: str


FLOAT64 = Tolerance(1e-7, 1e-9, "docs/architecture.md, the parity contract: the two backends agree in double precision")

FLOAT32 = {
    "softmax": Tolerance(
        1e-5, 1e-6,
        "exp of the shifted logits and one sum over C: a few ulps of relative error per "
        "probability; the backward's sum over C of dy*y adds a few more. Near-zero "
        "probabilities are judged by atol."),
    "log_softmax": Tolerance(
        1e-5, 1e-5,
        "x - max - log(sum exp): the subtraction of two O(scale) numbers leaves an "
        "absolute error of a few ulps of the larger (scale 30 -> ~1e-5)."),
    "relu": Tolerance(0.0, 0.0, "exact: a comparison and a copy, no rounding"),
    "gelu": Tolerance(
        1e-5, 1e-6,
        "both evaluate erfc in float32 (the reference one Chebyshev fit, <= 5.4 ulps "
        "measured; torch its own kernel, a few ulps), then x * Phi rounds again"),
    "gelu_tanh": Tolerance(
        1e-5, 1e-5,
        "tanh of a cubic: the cubic's rounding (a few ulps) passes through tanh' <= 1. "
        "The backward's 1 - t^2 is quantised to eps = 1.2e-7 once t is near 1, then "
        "multiplied by x/2 * sqrt(2/pi)(1 + 3c x^2), up to ~5 for |x| < 5: "
        "absolute error up to ~5 ulps of 1, i.e. ~6e-7; 1e-5 leaves margin"),
    "silu": Tolerance(
        1e-5, 1e-6,
        "x * sigmoid(x), sigmoid from one exp of -|x| in float32 in both libraries (a few "
        "ulps each), then one product; the backward s (1 + x (1 - s)) multiplies the "
        "rounding of 1 - s (up to eps = 1.2e-7 absolute once s is near 1) by |x| <= ~30: "
        "absolute error ~4e-6 at most there, where the slope is ~1 and the scaled atol "
        "(1e-6 times the largest magnitude, >= 30 then) covers it"),
    "cross_entropy": Tolerance(
        1e-5, 1e-5,
        "log-sum-exp over C, then a sum or mean over up to ~200 targets: each "
        "per-target loss carries a few ulps of the O(scale) logits; the gradient is "
        "softmax - target, with softmax's error"),
    "linear": Tolerance(
        1e-4, 1e-5,
        "a dot product of d_in terms in a different summation order (BLAS vs torch "
        "kernels): error ~ d_in * eps * sum|x_i W_ij|, which is relative to the "
        "terms, not to a result that may cancel to ~0, hence the atol"),
    "embedding": Tolerance(
        1e-6, 1e-6,
        "a copy forward (exact); the backward adds up the gradients of repeated ids, "
        "in a different order in each backend"),
    "layer_norm": Tolerance(
        1e-4, 1e-5,
        "mean and variance over C in float32, then the backward's mean(g * x_hat) "
        "cancels against g: the gradient's error is a few ulps of |g| * rstd (the "
        "scale of the largest entry, which atol follows). Float32 layer norm also "
        "loses eps * |mean| / std relative precision when a row's mean dwarfs its "
        "spread (a row (4.43, 4.45) loses 3e-4 in both backends against float64): "
        "the float32 tests give rows |mean| / std = 3|N(0,1)|, float64 ones up to 1e3"),
    "feed_forward": Tolerance(
        1e-4, 1e-4,
        "two linear maps in a row (each 1e-4 relative, see linear) and an activation; "
        "the hidden pre-activation error moves the ReLU/GELU output by the same amount"),
    "rms_norm": Tolerance(
        1e-4, 1e-5,
        "the mean of squares over C in float32 (a different summation order in each "
        "library) and one rsqrt: a few ulps of the output; no mean is subtracted, so unlike "
        "layer norm nothing cancels in the forward. The backward's mean(g * x_hat) cancels "
        "against g: a few ulps of |g| * rstd, the scale of the largest entry, which atol follows"),
    "gated_feed_forward": Tolerance(
        1e-4, 1e-4,
        "three linear maps (each 1e-4 relative, see linear), the gate's activation and the "
        "product of the gate with the up projection: the two factors' errors add up "
        "relatively, then W_down sums d_ff of them; atol scales with the largest entry"),
    "repeat_kv": Tolerance(
        1e-6, 1e-6,
        "a copy forward (exact); the backward adds up the G gradients of a shared head, in "
        "a different order in each backend (a few ulps of the largest)"),
    "rope_half": Tolerance(
        1e-6, 1e-6,
        "as 'rope' (below): two products and a sum per output, each rounded once, ~2 ulps "
        "of the largest |x| (atol scales with it); no reduction whose order could differ"),
    "lora": Tolerance(
        1e-4, 1e-5,
        "three dot products (x W over d_in, x A over d_in, h B over r) in a different "
        "summation order in each library, then a scaled sum: as 'linear', an error of "
        "~d_in eps of the terms, not of a result that may cancel, hence the scaled atol"),
    "dpo_loss": Tolerance(
        1e-5, 1e-5,
        "the margin z = beta (pc - rc) - beta (pr - rr) is the same four roundings in both "
        "libraries (and in the oracle); log sigmoid is numpy's logaddexp against torch's "
        "log_sigmoid (or its binary cross-entropy), a few ulps each, and the gradient's "
        "sigmoid(-z) likewise; atol scales with the largest loss"),
    "sequence_logps": Tolerance(
        1e-5, 1e-5,
        "a log-softmax over V per position (as 'cross_entropy': a few ulps of the O(scale) "
        "logits), then a sum over up to T = 6 positions in another order; the gradient is "
        "the mask times one-hot minus softmax, with softmax's error"),
    "dropout": Tolerance(
        1e-6, 0.0,
        "the same mask in both; x * mask * (1/(1-p)) is the same two roundings"),
}

# Finite differences (tests/ops/test_ops_gradcheck.py), float64 only: central differences
# with step h have truncation error O(h^2 f''') ~ 1e-12 and rounding error
# O(eps_64 * |f| / h) ~ 1e-16 * |f| / 1e-6 = 1e-10 * |f|, where f = sum(out * dout) is
# O(10) for the small arrays used; 1e-6 relative / 1e-7 absolute is ~100x that.
FD_STEP = 1e-6
FD = Tolerance(1e-6, 1e-7, "central differences, step 1e-6, in float64 (see above)")


def limits(op: str, dtype, expected) -> tuple:
    """``(rtol, atol)`` for comparing against ``expected``: the fixed float64 pair, or in
    float32 the op's pair with atol scaled by ``max(1, max |expected|)`` (see above)."""
    tol = tolerance(op, dtype)
    if tol is FLOAT64:
        return tol.rtol, tol.atol
    values = expected.detach().cpu().numpy() if hasattr(expected, "detach") else expected
    magnitude = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return tol.rtol, tol.atol * max(1.0, magnitude)


def tolerance(op: str, dtype) -> Tolerance:
    """The tolerance for comparing ``op``'s outputs and gradients in ``dtype``."""
    name = getattr(dtype, "__name__", str(dtype)).replace("torch.", "")
    if name == "float64":
        return FLOAT64
    if name == "float32":
        return FLOAT32[op]
    raise KeyError(f"no tolerance for dtype {name}")


# ----------------------------------------------------------------------------------
# attention (tests/ops/test_attention.py), appended by H1b. Measured with the dev profile
# (300 examples per test, shapes up to (3, 3, 5, 6), scale up to 3): largest float32
# differences 2.4e-6 absolute (dk), 6e-7 on the output; the atol below leaves ~4x.
FLOAT32["attention"] = Tolerance(
    1e-4, 1e-5,
    "scores are dot products over d_k (different summation order in each backend), "
    "O(scale^2 * sqrt(d_k)) up to ~20 in the tests, so a few ulps of 20 ~ 5e-6 absolute "
    "enter the softmax; the output sums T_k weighted values; the backward's "
    "dA - sum(dA * A) cancels, so small gradients are judged by atol")
FLOAT32["fused_attention"] = Tolerance(
    1e-4, 1e-5,
    "torch's fused CPU kernel against the explicit path: the softmax is accumulated "
    "block by block (online max and sum) instead of in one pass, so the same ulps as "
    "'attention' arrive in another order")
FLOAT32["heads"] = Tolerance(
    0.0, 0.0,
    "split_heads / merge_heads are reshapes and transposes: no rounding in any dtype, "
    "so the tests use this exact bound for float64 too")

# ----------------------------------------------------------------------------------
# RoPE (tests/ops/test_rope.py). Each output is x_a cos - x_b sin (or x_a sin + x_b cos):
# two products and one sum, each rounded once, with the same elementwise operations in
# the same order in both backends (no reduction whose order could differ). The error is
# at most ~2 ulps of max(|x_a|, |x_b|), since |cos|, |sin| <= 1; the backward is the
# same expression with the rotation transposed. Measured (dev profile, scales up to 30):
# 0.0, the two backends round identically; the bound leaves room for a kernel that
# fuses a multiply-add, and any formula error (a sign, the wrong pair) is O(1).
FLOAT32["rope"] = Tolerance(
    1e-6, 1e-6,
    "two products and a sum per output, each rounded once: ~2 ulps (eps = 1.2e-7) of the "
    "largest |x| (atol scales with it); no reduction, so no summation order differs")

# ----------------------------------------------------------------------------------
# The torch backend's fast path (tests/ops/test_fast_path.py): torch's kernels (F.linear,
# F.embedding, F.layer_norm, F.gelu, fused attention, F.cross_entropy, the foreach Adam
# step) against the explicit path (the formulas) and the reference.
#
# float64, fast vs explicit, whole models (logits, loss, every gradient): both paths
# compute the same functions in double precision; the kernels differ only in where they
# round (F.linear's addmm adds the bias inside the product, F.layer_norm's one-pass
# moments, the fused softmax's online max and sum, cross-entropy's fused log-softmax
# backward), ~1e-16 relative per operation. Measured on the drawn configurations:
# <= 4.4e-16 absolute on O(1) values; 1e-10 leaves a million times that and still
# fails on any formula that differs (a missing eps, tanh-GELU for exact GELU: ~1e-4).
FAST_PATH_FLOAT64 = Tolerance(
    1e-10, 1e-12,
    "the same functions in double precision through different kernels: rounding only "
    "(measured <= 4.4e-16 on O(1) values)")
# float32, fast vs explicit, whole models: single-precision rounding in different kernels,
# measured <= 4.8e-7 absolute on the drawn models; the models' float32 tolerance
# (tests/model_helpers.py: rtol 1e-4, atol 1e-5 times the largest magnitude) applies,
# for the reasons written there (chains of ~10 reductions, doubled by the backward).
FLOAT32["fast_path"] = Tolerance(
    1e-4, 1e-5,
    "a Transformer forward and backward in float32 through other kernels (addmm, fused "
    "layer norm and softmax): a few ulps per reduction along ~20 chained reductions; "
    "atol scales with the tensor's largest magnitude (limits())")
# The foreach optimizer step against the explicit one and torch.optim, 300 steps: the
# same update rounded in another order (in place, alpha/(1 - beta1^t) folded into one
# scalar, v divided before the square root). Adam's update is normalised by sqrt(v), so
# rounding does not compound; measured after 300 steps: float64 <= 4.1e-16 and float32
# <= 2.2e-7, relative to the largest parameter.
OPTIM_FOREACH = {
    "float64": Tolerance(1e-12, 1e-12, "rounding order only, double precision (measured 4e-16)"),
    "float32": Tolerance(1e-5, 1e-5, "rounding order only, single precision: ~2 ulps per step "
                                     "of O(1) parameters, not compounding (measured 2.2e-7)"),
}
# bf16 autocast on the CPU, fast path against the float32 model's loss: bf16 keeps 8
# bits of mantissa (eps 7.8e-3); the logits pass through ~6 bf16 matrix products, so the
# loss (O(log V) ~ 3.4) moves by ~1% (measured 0.7%); 5% flags a broken cast, not noise.
AUTOCAST_BF16_LOSS_RTOL = 5e-2
