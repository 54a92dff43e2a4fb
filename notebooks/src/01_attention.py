# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Self-attention, step by step
#
# The chapter's section 4.1 defines attention as
#
# $$Q = XW_Q,\quad K = XW_K,\quad V = XW_V,\qquad
# \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right)V$$
#
# This notebook computes it by hand on a five-token sentence, then shows that
# `minillm.reference.scaled_dot_product_attention` (NumPy, hand-written backward) computes
# exactly that, why the scores are divided by $\sqrt{d_k}$, how masks work, what multi-head
# attention adds, and why attention costs $O(T^2)$. It ends with the parity check against
# the PyTorch backend.
#
# Dimension names used below: `T` tokens, `C` model width (`d_model`), `d_k` the size of a
# query/key vector, `H` heads, `D = C / H` the size of one head.

# %%
import time
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref          # NumPy: forward + hand-written backward
import minillm.torch_backend as tb       # PyTorch: same names, autograd
from minillm.core.init import init_parameters
from minillm.core.plots import plot_attention, plot_attention_cost
from minillm.notebook import assert_parity, show, show_image

OUT = Path("runs") / "notebooks" / "01_attention"   # figures land here
OUT.mkdir(parents=True, exist_ok=True)
np.set_printoptions(precision=3, suppress=True)

# %% [markdown]
# ## The reference code beside the formula
#
# The forward returns the output *and* a cache of what the backward will need; the
# docstring carries the formula. Read it once before we recompute it by hand.

# %%
show(ref.scaled_dot_product_attention_forward)

# %% [markdown]
# ## Q, K and V from the token vectors
#
# Five tokens, each a vector of width $C = 8$ (in a model these come from the embedding
# table). Three weight matrices, stored the way the formula writes them, $W \in
# \mathbb{R}^{C \times d_k}$, project every token to a query, a key and a value.

# %%
tokens = ["the", "cat", "sat", "on", "mats"]
T, C, d_k = len(tokens), 8, 4
rng = np.random.default_rng(0)
X = rng.standard_normal((T, C))             # (T, C) one row per token
W_Q = rng.standard_normal((C, d_k)) / np.sqrt(C)  # (C, d_k)
W_K = rng.standard_normal((C, d_k)) / np.sqrt(C)  # (C, d_k)
W_V = rng.standard_normal((C, d_k)) / np.sqrt(C)  # (C, d_k)

Q = X @ W_Q                                 # (T, d_k)  Q = X W_Q
K = X @ W_K                                 # (T, d_k)  K = X W_K
V = X @ W_V                                 # (T, d_k)  V = X W_V
print("Q =\n", Q)

# %% [markdown]
# ## Scores, softmax, weighted sum
#
# Row $i$ of $QK^\top$ says how well query $i$ matches each key. Softmax turns each row
# into a probability distribution (the attention weights), and the output of token $i$ is
# the weighted average of the value vectors.

# %%
scores = Q @ K.T / np.sqrt(d_k)             # (T, T)   Q K^T / sqrt(d_k)
weights = ref.softmax(scores, axis=-1)      # (T, T)   each row sums to 1
out = weights @ V                           # (T, d_k) softmax(...) V
print("weights (row = query, column = key):\n", weights)
print("row sums:", weights.sum(axis=-1))
np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-12)   # float64 rounding of a 5-term sum

out_lib, weights_lib = ref.scaled_dot_product_attention(Q, K, V)
np.testing.assert_allclose(out_lib, out, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(weights_lib, weights, rtol=1e-12, atol=1e-12)
print("minillm.reference.scaled_dot_product_attention computes the same (to 1e-12)")

# %%
show_image(plot_attention(weights, tokens, OUT / "weights.png",
                                          title="softmax(QK^T / sqrt(d_k)), no mask"))

# %% [markdown]
# ## Why divide by $\sqrt{d_k}$?
#
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1, then
# $q \cdot k = \sum_{j=1}^{d_k} q_j k_j$ has variance $d_k$: its standard deviation grows like
# $\sqrt{d_k}$. Large scores push softmax into saturation (one weight near 1, the rest near 0),
# where its gradient vanishes. Dividing by $\sqrt{d_k}$ brings the variance back to 1 whatever
# the width. Measured:

# %%
print(f"{'d_k':>5} {'std(q.k)':>10} {'std(q.k)/sqrt(d_k)':>20} {'max weight unscaled':>20} {'scaled':>8}")
widths = (4, 16, 64, 256, 1024)
ratio, max_unscaled, max_scaled = [], [], []
for d in widths:
    q = rng.standard_normal((2000, d))      # (N, d_k)
    k = rng.standard_normal((2000, d))      # (N, d_k)
    dots = (q * k).sum(axis=-1)             # (N,)
    s = rng.standard_normal((200, 16, d)) @ rng.standard_normal((200, d, 1))  # (200, 16, 1)
    s = s[..., 0]                           # (200, 16) scores of one query over 16 keys
    unscaled = ref.softmax(s, axis=-1).max(axis=-1).mean()
    scaled = ref.softmax(s / np.sqrt(d), axis=-1).max(axis=-1).mean()
    print(f"{d:>5} {dots.std():>10.2f} {dots.std() / np.sqrt(d):>20.2f} {unscaled:>20.2f} {scaled:>8.2f}")
    ratio.append(dots.std() / np.sqrt(d))
    max_unscaled.append(unscaled)
    max_scaled.append(scaled)

# std(q.k) = sqrt(d_k): 2000 samples estimate a std to ~2% (heavier tails at d_k = 4: ~3%); 10% is > 3 sigma
np.testing.assert_allclose(ratio, 1.0, atol=0.1)
assert (np.diff(max_unscaled) > 0).all() and max_unscaled[-1] > 0.9, max_unscaled   # unscaled: towards 1
# scaled: a mean over 200 rows of a max weight near 0.25 (std ~0.1 per row, so ~0.007 for the mean)
assert max(max_scaled) - min(max_scaled) < 0.05, max_scaled

# %% [markdown]
# Unscaled, the largest weight of a row grows towards 1 as $d_k$ grows (above 0.9 at
# $d_k = 1024$: softmax becomes an argmax); scaled, it stays the same at every width (about
# 0.25 for 16 keys). The cell checks both.
#
# ## Masking
#
# A mask says which keys each query may look at (`True` = may attend). A GPT may not look
# at the future: position $i$ attends to $j \le i$ only — `causal_mask`. Masked scores are
# set to $-\infty$ before softmax, so their weights are exactly 0. A row with nothing to
# attend to gives zero weights and zero output, not NaN.

# %%
show(ref.causal_mask)
mask = ref.causal_mask(T)                    # (T, T) bool, lower triangle True
print(mask.astype(int))
out_causal, w_causal = ref.scaled_dot_product_attention(Q, K, V, mask)
print("weights above the diagonal:", w_causal[~mask].max())
assert (w_causal[~mask] == 0).all()                          # exactly 0, not just small
show_image(plot_attention(w_causal, tokens, OUT / "weights_causal.png",
                                          title="causal mask: no looking ahead"))

# %%
padding = np.array([True, True, True, False, False])   # the last two tokens are padding
_, w_pad = ref.scaled_dot_product_attention(Q, K, V, padding[None, :])  # (T, T)
print("weight on padding keys:", w_pad[:, ~padding].max())
assert (w_pad[:, ~padding] == 0).all()
nobody = np.zeros((T, T), dtype=bool)
out_none, w_none = ref.scaled_dot_product_attention(Q, K, V, nobody)
print("fully masked: weights", w_none.max(), "output", out_none.max(), "(zeros, no NaN)")
assert (w_none == 0).all() and (out_none == 0).all()           # == 0 is False for NaN, so no NaN either

# %% [markdown]
# ## Multi-head attention
#
# $H$ heads each attend in their own $D = C/H$-dimensional subspace, and their outputs are
# concatenated and mixed by $W_O$:
#
# $$\mathrm{head}_h = \mathrm{softmax}\!\left(\frac{Q_h K_h^\top}{\sqrt{D}}\right)V_h,\qquad
# Y = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_H)\,W_O + b_O$$
#
# `split_heads` reshapes $(B, T, C) \to (B, H, T, D)$; the same attention function then runs
# on every head at once (the head axis is one more leading axis). The layer
# `MultiHeadAttention` chains these steps:

# %%
show(ref.MultiHeadAttention.forward)

# %%
H = 2
mha = ref.MultiHeadAttention(C, H, dtype="float64")
# minillm's seeded initialisation: the same seed gives the same weights in both backends
values = init_parameters([(n, p.shape) for n, p in mha.named_parameters()], seed=0, dtype="float64")
mha.load_state_dict(values)
x = X[None]                                              # (B=1, T, C)
y_layer = mha(x, ref.causal_mask(T))                     # (1, T, C)

# the same by hand, head by head
q = ref.split_heads(x @ values["W_Q"] + values["b_Q"], H)   # (1, H, T, D)
k = ref.split_heads(x @ values["W_K"] + values["b_K"], H)   # (1, H, T, D)
v = ref.split_heads(x @ values["W_V"] + values["b_V"], H)   # (1, H, T, D)
heads, head_weights = ref.scaled_dot_product_attention(q, k, v, ref.causal_mask(T))  # (1, H, T, D)
y_hand = ref.merge_heads(heads) @ values["W_O"] + values["b_O"]  # (1, T, C)
np.testing.assert_allclose(y_layer, y_hand, rtol=1e-12, atol=1e-14)
assert q.shape == (1, H, T, C // H) and y_hand.shape == (1, T, C)
print("q per head:", q.shape, "-> output", y_hand.shape, "; layer == hand computation")
for h in range(H):
    plot_attention(head_weights[0, h], tokens, OUT / f"head{h}.png", title=f"head {h}")
    show_image(OUT / f"head{h}.png")


# %% [markdown]
# ## The $O(T^2)$ cost
#
# $QK^\top$ is a $T \times T$ matrix: doubling the sequence length quadruples the work
# (the two matrix products, $QK^\top$ and $AV$, take $2 \cdot T^2 d_k$ floating-point
# operations each) and the memory of the weights. Timing both backends (forward only,
# $d_k = 32$). A timing is at the mercy of whatever else runs on the machine, so each is
# the *minimum* of 15 runs after one warm-up run (the run least disturbed), printed beside
# its FLOP count, which does not depend on the machine at all.

# %%
def best_time(fn, repeat=15):
    """The minimum wall time of `repeat` calls of fn, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)

Ts = [64, 128, 256, 512, 1024]
seconds = {"numpy reference": [], "torch backend": []}
flops, mib = [], []
for n in Ts:
    a = rng.standard_normal((1, n, 32)).astype(np.float32)     # (1, T, d_k)
    at = torch.from_numpy(a)
    seconds["numpy reference"].append(best_time(lambda: ref.scaled_dot_product_attention(a, a, a)))
    with torch.no_grad():
        seconds["torch backend"].append(best_time(lambda: tb.scaled_dot_product_attention(at, at, at)))
    flops.append(2 * (2 * n * n * 32))                          # QK^T and A V: 2 T^2 d_k each
    mib.append(n * n * 4 / 2**20)                               # the (T, T) weights in float32
    print(f"T={n:5d}: {flops[-1] / 1e6:7.1f} MFLOP, weights {mib[-1]:6.2f} MiB; min time "
          f"numpy {seconds['numpy reference'][-1] * 1e3:7.3f} ms, torch {seconds['torch backend'][-1] * 1e3:7.3f} ms")
show_image(plot_attention_cost(Ts, seconds, OUT / "cost.png"))
for name, s in seconds.items():
    slopes = np.diff(np.log(s)) / np.diff(np.log(Ts))
    print(f"{name}: log-log slope between successive T {slopes.round(1)}; "
          f"time(1024) / time(64) = {s[-1] / s[0]:.0f} (FLOPs: {flops[-1] / flops[0]:.0f})")

# %%
# machine-independent: the work and the memory grow exactly as T^2 (x4 per doubling)
np.testing.assert_array_equal(np.array(flops[1:]) / flops[:-1], 4)
np.testing.assert_array_equal(np.array(mib[1:]) / mib[:-1], 4)
# timings: only what load cannot undo. 256 times the FLOPs must take more than 10 times as
# long (measured ~100-500x on a busy 2-core machine); a busier machine slows the short runs
# and the long ones alike, and the minimum of 15 runs discards most of the disturbance.
for name, s in seconds.items():
    assert s[-1] / s[0] > 10, f"{name}: time(T=1024) / time(T=64) = {s[-1] / s[0]:.1f}, expected > 10"

# %% [markdown]
# On a log-log plot a slope of 2 is $O(T^2)$. Where the slopes printed above are far
# from 2, something else than the arithmetic dominates: fixed costs (Python, allocating
# arrays, launching kernels) at small $T$, memory traffic once the $T \times T$ matrices
# outgrow the CPU's caches. Both depend on the machine and its load; the $T^2$ in the
# FLOP count does not.
# This quadratic term is what FlashAttention and sliding-window attention attack.
#
# ## Parity check: the NumPy reference against PyTorch
#
# Same inputs, float64, a causal mask with a fully masked row, and a random upstream
# gradient (an all-ones gradient would hide a transposed matrix). The reference's
# hand-written backward must match autograd within the float64 parity contract of
# `docs/architecture.md`, rtol $10^{-7}$, atol $10^{-9}$.

# %%
PARITY = dict(rtol=1e-7, atol=1e-9)                             # the float64 parity contract

rng = np.random.default_rng(1)
q, k, v = (rng.standard_normal((2, 3, 6, 4)) for _ in range(3))   # (B, H, T, d_k)
mask = ref.causal_mask(6).copy()
mask[2] = False                                                 # a row with nothing to attend to
dout = rng.standard_normal((2, 3, 6, 4))                        # random upstream gradient

(out_r, w_r), cache = ref.scaled_dot_product_attention_forward(q, k, v, mask)
dq_r, dk_r, dv_r = ref.scaled_dot_product_attention_backward(dout, cache)

qt, kt, vt = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
out_t, w_t = tb.scaled_dot_product_attention(qt, kt, vt, torch.from_numpy(mask))
(out_t * torch.from_numpy(dout)).sum().backward()
for name, ours, theirs in [("out", out_r, out_t), ("weights", w_r, w_t),
                           ("dq", dq_r, qt.grad), ("dk", dk_r, kt.grad), ("dv", dv_r, vt.grad)]:
    assert_parity(name, ours, theirs, **PARITY)

# %% [markdown]
# And the project's own parity tests for this file (hypothesis draws shapes, masks and
# dtypes; see `docs/formulas.md`), run from here when the repository's `tests/` folder is
# next to the package:

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "ops" / "test_attention.py") + "::test_attention_parity",
                        str(TESTS / "ops" / "test_attention.py") + "::test_attention_backward_matches_finite_differences"])
    assert code == 0, f"the attention parity tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the check above is the parity check")
