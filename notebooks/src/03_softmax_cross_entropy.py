# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Softmax cross-entropy
#
# A language model outputs one score (logit) $z_c$ per vocabulary entry; softmax turns the
# scores into probabilities and the loss is the cross-entropy with the true next token
# (chapter section 4.3):
#
# $$\hat y_c = \mathrm{softmax}(z)_c = \frac{e^{z_c}}{\sum_j e^{z_j}}, \qquad
# \mathcal{L} = -\sum_{c=1}^{C} y_c \log \hat y_c = -\log \hat y_{t}\quad(y = \text{one-hot of the target } t)$$
#
# Written naively, both formulas break on ordinary floating-point numbers. This notebook
# shows where, how the log-sum-exp trick fixes it, derives the famous gradient
# $\partial\mathcal{L}/\partial z = \hat y - y$ and confirms it by finite differences.
#
# Dimensions: `N` rows (positions), `C` classes (the vocabulary).

# %%
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.notebook import assert_parity, show

np.set_printoptions(precision=4, suppress=True)


# %% [markdown]
# ## Why naive softmax overflows
#
# $e^{z}$ overflows float64 above $z \approx 709.8$ (float32: $88.7$). Logits of a few hundred
# are rare but possible, and then $e^{z}/\sum e^{z} = \infty/\infty = \mathrm{NaN}$. In the
# other direction, very negative logits underflow to 0 and $\log 0 = -\infty$.

# %%
def naive_softmax(z):                        # the formula as written, for comparison only
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)

print(f"exp overflows above: float64 {np.log(np.finfo(np.float64).max):.2f}, "
      f"float32 {np.log(np.finfo(np.float32).max):.2f}")
z = np.array([1000.0, 999.0, 990.0])
with np.errstate(over="ignore", invalid="ignore"):
    naive = naive_softmax(z)
    naive32 = naive_softmax(np.array([100.0, 99.0], dtype=np.float32))
with np.errstate(divide="ignore"):
    naive_log = np.log(naive_softmax(np.array([0.0, -800.0])))
print("naive softmax of", z, "->", naive)
print("minillm softmax          ->", ref.softmax(z))
print("float32 already overflows at 100:", naive32)
print("naive log(softmax) of [0, -800]:", naive_log)
print("log_softmax of [0, -800]       :", ref.log_softmax(np.array([0.0, -800.0])))

assert abs(np.log(np.finfo(np.float64).max) - 709.8) < 0.05 and abs(np.log(np.finfo(np.float32).max) - 88.7) < 0.05
assert np.isnan(naive).all() and np.isnan(naive32).all()                 # inf / inf
np.testing.assert_allclose(ref.softmax(z).sum(), 1.0, rtol=1e-15)
assert naive_log[1] == -np.inf and ref.log_softmax(np.array([0.0, -800.0]))[1] == -800.0

# %% [markdown]
# ## The fix: subtract the maximum, and log-sum-exp
#
# Softmax does not change when a constant is added to every logit
# ($e^{z_c - m} / \sum_j e^{z_j - m}$, the $e^{-m}$ cancels). With $m = \max_j z_j$ the largest
# exponent is $e^0 = 1$: no overflow, and the sum is at least 1, so no division by 0. For
# the logarithm, the same shift gives the **log-sum-exp**:
#
# $$\log \sum_j e^{z_j} = m + \log \sum_j e^{z_j - m},\qquad
# \log \hat y_c = z_c - m - \log \sum_j e^{z_j - m}$$
#
# which never takes the log of an underflowed 0. The reference writes exactly that:

# %%
show(ref.softmax_forward)
show(ref.log_softmax_forward)

# %% [markdown]
# ## The loss
#
# With the log-probabilities in hand, the cross-entropy of row $n$ is $-\log \hat y_{n, t_n}$,
# and the batch loss is the mean over the rows (minillm follows `torch`: `ignore_index`
# rows do not count, `label_smoothing` mixes the one-hot target with the uniform one).

# %%
show(ref.cross_entropy_forward)

# %%
rng = np.random.default_rng(0)
N, C = 4, 6
logits = 3.0 * rng.standard_normal((N, C))          # (N, C)
targets = rng.integers(0, C, N)                      # (N,)
log_p = ref.log_softmax(logits)                      # (N, C)
by_hand = -log_p[np.arange(N), targets].mean()       # mean of -log p(target)
one_hot = np.eye(C)[targets]                         # (N, C) y
chapter_form = -(one_hot * log_p).sum(axis=-1).mean()  # -sum_i y_i log yhat_i
print(f"by hand {by_hand:.12f}\nchapter {chapter_form:.12f}\nminillm {float(ref.cross_entropy(logits, targets)):.12f}")
np.testing.assert_allclose(ref.cross_entropy(logits, targets), by_hand, rtol=1e-13)
print("huge logits stay finite:", float(ref.cross_entropy(1e4 * logits, targets)))
assert np.isfinite(ref.cross_entropy(1e4 * logits, targets))

# %% [markdown]
# ## The gradient: softmax minus one-hot
#
# For one row, $\mathcal{L} = -\log \hat y_t = -z_t + \log \sum_j e^{z_j}$. Differentiate
# with respect to $z_c$:
#
# $$\frac{\partial \mathcal{L}}{\partial z_c}
# = -[c = t] + \frac{e^{z_c}}{\sum_j e^{z_j}} = \hat y_c - y_c .$$
#
# No softmax Jacobian is ever formed: the $C \times C$ matrix
# $\partial \hat y / \partial z = \mathrm{diag}(\hat y) - \hat y \hat y^\top$ collapses, once
# multiplied by $\partial \mathcal{L}/\partial \hat y = -y / \hat y$, to the vector
# $\hat y - y$. For the mean over $N$ rows every row's gradient is divided by $N$. The
# reference's hand-written backward is that line (with label smoothing, $y$ is the smoothed
# target):

# %%
show(ref.cross_entropy_backward)

# %%
loss, cache = ref.cross_entropy_forward(logits, targets)
dlogits = ref.cross_entropy_backward(np.ones(()), cache)       # (N, C)
p = ref.softmax(logits)                                        # (N, C)
np.testing.assert_allclose(dlogits, (p - one_hot) / N, rtol=1e-12, atol=1e-15)
print("dL/dz = (softmax - one_hot) / N:\n", dlogits)
print("each row sums to 0:", dlogits.sum(axis=-1))
np.testing.assert_allclose(dlogits.sum(axis=-1), 0.0, atol=1e-15)   # sum(p) - 1 = 0 up to rounding

# %% [markdown]
# ## Confirmed by finite differences
#
# Central differences, $\frac{f(z + h e_i) - f(z - h e_i)}{2h}$ with $h = 10^{-6}$, have an
# error of order $h^2$ (truncation, about $10^{-12}$) plus $\epsilon\,|f|/h$ (rounding, with
# $\epsilon \approx 10^{-16}$ and $|f|$ a few units here, about $10^{-9}$): the cell asserts
# the largest difference is below $10^{-8}$. We
# differentiate $\sum_n g_n \ell_n$ for a **random** upstream gradient $g$ (per-row losses,
# `reduction="none"`), so a gradient that lands in the wrong row or column cannot pass.

# %%
g = rng.standard_normal(N)                                     # random upstream gradient (N,)
_, cache = ref.cross_entropy_forward(logits, targets, reduction="none")
analytic = ref.cross_entropy_backward(g, cache)                # (N, C)

def objective(z):
    return float((ref.cross_entropy(z, targets, reduction="none") * g).sum())

h = 1e-6
numeric = np.zeros_like(logits)
for idx in np.ndindex(*logits.shape):
    plus, minus = logits.copy(), logits.copy()
    plus[idx] += h
    minus[idx] -= h
    numeric[idx] = (objective(plus) - objective(minus)) / (2 * h)
print(f"|f| = {abs(objective(logits)):.2f}; largest |analytic - finite differences| = "
      f"{np.abs(analytic - numeric).max():.1e}")
assert np.abs(analytic - numeric).max() < 1e-8

# %% [markdown]
# ## Parity check: the NumPy reference against PyTorch
#
# Float64, random upstream gradient, the edges included: logits of $\pm 10^4$, an ignored
# target, label smoothing. Tolerances: the float64 parity contract of
# `docs/architecture.md`, rtol $10^{-7}$, atol $10^{-9}$.

# %%
PARITY = dict(rtol=1e-7, atol=1e-9)                             # the float64 parity contract

z = rng.standard_normal((6, 10))
z[0] *= 1e4                                                    # huge logits
z[1] *= -1e4
t = rng.integers(0, 10, 6)
t[2] = -100                                                    # an ignored target
for smoothing in (0.0, 0.1):
    for reduction in ("mean", "none"):
        dloss = rng.standard_normal(() if reduction == "mean" else (6,))
        loss_r, cache = ref.cross_entropy_forward(z, t, label_smoothing=smoothing, reduction=reduction)
        dz_r = ref.cross_entropy_backward(dloss, cache)
        zt = torch.tensor(z, requires_grad=True)
        loss_t = tb.cross_entropy(zt, torch.from_numpy(t), label_smoothing=smoothing, reduction=reduction)
        (loss_t * torch.from_numpy(np.asarray(dloss))).sum().backward()
        assert_parity(f"loss (smoothing={smoothing}, {reduction})", loss_r, loss_t, **PARITY)
        assert_parity(f"dlogits (smoothing={smoothing}, {reduction})", dz_r, zt.grad, **PARITY)

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "ops" / "test_ops_parity.py") + "::test_op_parity[softmax]",
                        str(TESTS / "ops" / "test_ops_parity.py") + "::test_op_parity[log_softmax]",
                        str(TESTS / "ops" / "test_ops_parity.py") + "::test_op_parity[cross_entropy]",
                        str(TESTS / "ops" / "test_ops_gradcheck.py") + "::test_op_gradcheck[cross_entropy]"])
    assert code == 0, f"the softmax / cross-entropy parity tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the checks above are the parity check")
