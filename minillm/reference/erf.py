r"""The error function, vectorised in NumPy (for the exact GELU of :mod:`.activations`).

NumPy has no ``erf``, and SciPy is not a dependency, so this module computes the error
function itself (:func:`erf`, :func:`erfc`), vectorised, with the rational Chebyshev
approximations of W. J. Cody, "Rational Chebyshev approximations for the error
function", Mathematics of Computation 23 (1969) 631-637 (the coefficient sets of his
netlib SPECFUN routine CALERF), piecewise on :math:`y = |z|`:

- :math:`y \le 0.46875`: :math:`\mathrm{erf}(z) = z\,R_1(z^2)`, :math:`R_1` of degree (4, 4);
- :math:`0.46875 < y \le 4`: :math:`\mathrm{erfc}(y) = e^{-y^2} R_2(y)`, degree (8, 8);
- :math:`y > 4`: :math:`\mathrm{erfc}(y) = \frac{e^{-y^2}}{y}\big(\frac{1}{\sqrt\pi}
  - y^{-2} R_3(y^{-2})\big)`, degree (5, 5) — the asymptotic regime;

and :math:`\mathrm{erfc}(-y) = 2 - \mathrm{erfc}(y)`, :math:`\mathrm{erf} = 1 - \mathrm{erfc}`.
:math:`e^{-y^2}` is computed as :math:`e^{-s^2} e^{-(y-s)(y+s)}` with :math:`s` = ``y``
truncated to a multiple of 1/16, so that :math:`s^2` is exact (Cody's own trick): a plain
``np.exp(-y * y)`` loses up to 1e-13 relative precision for large ``y`` from the rounding
of ``y * y`` alone.

Precision, checked against ``math.erf`` / ``math.erfc`` in tests/ops/test_ops_parity.py
(which asks for 2e-15): measured 4.3e-16 relative for erf on [-8, 8], 7e-16 for erfc on
[-8, 26] including its far tail (what GELU needs for very negative x). The functions
work in the input's dtype: float64 in float64, float32 in float32, so no float64 creeps
into a float32 run. In float32, :func:`erfc` (GELU's) uses one Chebyshev fit instead,
Numerical Recipes' ``erfcc`` (Press et al. 1992, section 6.2): relative error below
1.2e-7 in exact arithmetic, measured 6.4e-7 (5.4 ulps) in float32 arithmetic on
[-8, 10.5], where Cody's intervals measured 6.0e-7; half the passes over the array
(tests/ops/test_ops_parity.py checks both dtypes).

This replaced a power series plus a 60-level continued fraction, which cost ~75% of a
reference GPT training step with the exact GELU (benchmarks/README.md has the numbers).

This file is the one in ``minillm/reference/`` without a twin in ``minillm/torch_backend/``:
torch has ``torch.erf``. It is a numerical tool, not a formula of the lesson, so its
names are not exported by ``minillm.reference`` (whose public names the API-mirror test
compares with the torch backend's); import them from here.
"""
import math

import numpy as np

__all__ = ["erf", "erfc"]

# Cody (1969), as in CALERF; numerators and denominators highest degree first (Horner).
_SMALL, _MID = 0.46875, 4.0
_ERF_P = (1.85777706184603153e-1, 3.16112374387056560e0, 1.13864154151050156e2,
          3.77485237685302021e2, 3.20937758913846947e3)
_ERF_Q = (1.0, 2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3,
          2.84423683343917062e3)
_ERFC_P = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e0,
           6.61191906371416295e1, 2.98635138197400131e2, 8.81952221241769090e2,
           1.71204761263407058e3, 2.05107837782607147e3, 1.23033935479799725e3)
_ERFC_Q = (1.0, 1.57449261107098347e1, 1.17693950891312499e2, 5.37181101862009858e2,
           1.62138957456669019e3, 3.29079923573345963e3, 4.36261909014324716e3,
           3.43936767414372164e3, 1.23033935480374942e3)
_ASYM_P = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
           1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4)
_ASYM_Q = (1.0, 2.56852019228982242e0, 1.87295284992346047e0, 5.27905102951428412e-1,
           6.05183413124413191e-2, 2.33520497626869185e-3)
# float32's erfc (Press et al., Numerical Recipes in C, 2nd ed., section 6.2, "erfcc"): one
# Chebyshev fit, erfc(y) = t exp(-y^2 + P(t)), t = 1 / (1 + y/2), relative error below
# 1.2e-7 for every y >= 0 (about one float32 ulp); P of degree 9, highest degree first
_ERFC32_P = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806,
             0.09678418, 0.37409196, 1.00002368, -1.26551223)
_BLOCK_BYTES = 120_000   # per block: cache-sized, under glibc's 128 kiB mmap threshold
_ERFC_ZERO_FROM = {np.dtype(np.float64): 26.543, np.dtype(np.float32): 10.05}  # erfc < tiny


# The helpers below work in place on the few arrays they create (``acc *= t``, ``out=``):
# each fresh temporary the size of the FFN's hidden layer costs page faults that, on the
# benchmark model, took longer than the arithmetic (benchmarks/README.md, "profile").


def _horner(coefficients, t):
    """sum_i c_i t^(n-i), highest degree first, in place on one new array of t's dtype."""
    acc = t * coefficients[0]
    acc += coefficients[1]
    for c in coefficients[2:]:
        acc *= t
        acc += c
    return acc


def _exp_neg_square(y):
    """exp(-y^2) = exp(-s^2) exp(-(y - s)(y + s)), s = y truncated to 1/16: s^2 is exact."""
    s = np.trunc(y * 16.0)
    s /= 16.0
    d = y - s
    d *= y + s                                                  # (y - s)(y + s)
    s *= s
    np.negative(s, out=s)
    np.negative(d, out=d)
    s = np.exp(s, out=s)
    s *= np.exp(d, out=d)
    return s


def _select(condition, a, b):
    """``np.where(condition, a, b)`` for finite a, b, as arithmetic: m a + (1 - m) b with
    m in {0, 1} is exact (one product is exactly 0, the other exactly the value) and runs
    several times faster than ``np.where`` with an unpredictable condition. Overwrites a
    and b."""
    m = condition.astype(a.dtype)
    a *= m
    np.subtract(1.0, m, out=m)
    b *= m
    a += b
    return a


def _erf_small(z):
    """erf(z) = z R_1(z^2), accurate for |z| <= 0.46875 (Cody's first interval)."""
    z2 = z * z
    num = _horner(_ERF_P, z2)
    num /= _horner(_ERF_Q, z2)
    num *= z
    return num


def _erfc_of_abs(y):
    """erfc(y) for y = |z| >= 0.46875 (Cody's second and third intervals).

    Every element goes through the second interval's formula (with y clipped into it)
    and the few beyond 4 are then overwritten: whole-array arithmetic, rather than
    boolean indexing, which costs more than the formula itself.
    """
    ym = np.clip(y, _SMALL, _MID)
    out = _horner(_ERFC_P, ym)
    out /= _horner(_ERFC_Q, ym)
    out *= _exp_neg_square(ym)
    flat_y, flat_out = y.reshape(-1), out.reshape(-1)           # flat_out: a view of out
    far = np.flatnonzero(flat_y > _MID)
    if far.size:
        zero_from = _ERFC_ZERO_FROM[y.dtype]                    # beyond it erfc underflows
        yf = np.minimum(flat_y[far], zero_from)
        t = 1.0 / (yf * yf)
        tail = t * _horner(_ASYM_P, t) / _horner(_ASYM_Q, t)
        value = _exp_neg_square(yf) * (1.0 / math.sqrt(math.pi) - tail) / yf
        flat_out[far] = np.where(flat_y[far] < zero_from, value, 0.0)
    return out


def _blockwise(f, z):
    """f applied to z in blocks of _BLOCK_BYTES (z's float dtype, float64 for others):
    each block's ~40 passes of arithmetic then stay in the CPU cache, and its temporaries
    are small enough to be recycled by the allocator without new page faults."""
    z = np.asarray(z)
    z = z if z.dtype in (np.float32, np.float64) else z.astype(np.float64)
    flat = np.ascontiguousarray(z).reshape(-1)
    block = _BLOCK_BYTES // flat.itemsize
    if flat.size <= block:                                      # one block: no copy into out
        return f(flat).reshape(z.shape)
    out = np.empty_like(flat)
    for start in range(0, flat.size, block):
        out[start:start + block] = f(flat[start:start + block])
    return out.reshape(z.shape)


def _erfc32_block(z):
    """erfc in float32 from one fit (``_ERFC32_P``): half the passes of Cody's three
    intervals, whose double-precision accuracy float32 cannot hold anyway; erfc(-y) =
    2 - erfc(y)."""
    y = np.minimum(np.abs(z), 11.0)             # e^{-121} is 0 in float32: erfc(inf) = 0, as beyond ~10.2
    t = y * 0.5
    t += 1.0
    np.reciprocal(t, out=t)                                     # t = 1 / (1 + y/2)
    out = np.exp(_horner(_ERFC32_P, t))
    out *= t
    out *= _exp_neg_square(y)                                   # e^{-y^2}, y^2 without rounding
    return np.where(z < 0, 2.0 - out, out)


def _erfc_block(z):
    y = np.abs(z)
    small = _erf_small(np.clip(z, -_SMALL, _SMALL))
    np.subtract(1.0, small, out=small)                          # 1 - erf(z)
    tail = _erfc_of_abs(y)
    return _select(y <= _SMALL, small, _select(z > 0, tail, 2.0 - tail))


def _erf_block(z):
    y = np.abs(z)
    small = _erf_small(np.clip(z, -_SMALL, _SMALL))
    large = np.subtract(1.0, _erfc_of_abs(y))
    large *= np.sign(z)
    return _select(y <= _SMALL, small, large)


def erfc(z):
    """Complementary error function, elementwise, in z's float dtype (float64 for others);
    accurate relatively in the tail z >> 0, where 1 - erf(z) would cancel: Cody's
    intervals in float64, one fit of float32's precision in float32."""
    z = np.asarray(z)
    return _blockwise(_erfc32_block if z.dtype == np.float32 else _erfc_block, z)


def erf(z):
    """Error function, elementwise, in z's float dtype (float64 for others)."""
    return _blockwise(_erf_block, z)
