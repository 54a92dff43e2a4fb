# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. The feed-forward network and the encoder block
#
# After attention has mixed information *between* positions, every position goes through
# the same small two-layer network on its own (chapter section 4.2):
#
# $$\mathrm{FFN}(x) = \mathrm{ReLU}(xW_1 + b_1)\,W_2 + b_2,
# \qquad W_1 \in \mathbb{R}^{C \times F},\ W_2 \in \mathbb{R}^{F \times C}$$
#
# An encoder block wraps attention and the FFN with **residual connections** and
# **layer normalisation**. Where the normalisation sits — before each sub-layer (pre-norm,
# GPT-2) or after the residual sum (post-norm, the original Transformer and BERT) — changes
# how signals and gradients travel through a deep stack. This notebook builds each piece,
# checks it against `minillm.reference`, and measures the difference.
#
# Dimensions: `B` batch, `T` positions, `C` model width, `F` feed-forward width (4C by default).

# %%
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.core.config import ModelConfig
from minillm.core.init import init_parameters
from minillm.notebook import assert_parity, show, show_figure

OUT = Path("runs") / "notebooks" / "02_ffn_and_encoder_block"
OUT.mkdir(parents=True, exist_ok=True)
np.set_printoptions(precision=3, suppress=True)

# %% [markdown]
# ## The FFN, by hand and in the library

# %%
show(ref.feed_forward_forward)

# %%
rng = np.random.default_rng(0)
B, T, C, F = 2, 5, 8, 32
x = rng.standard_normal((B, T, C))                      # (B, T, C)
W1 = rng.standard_normal((C, F)) / np.sqrt(C)           # (C, F)
b1 = 0.1 * rng.standard_normal(F)                       # (F,)
W2 = rng.standard_normal((F, C)) / np.sqrt(F)           # (F, C)
b2 = 0.1 * rng.standard_normal(C)                       # (C,)

hidden = np.maximum(0.0, x @ W1 + b1)                   # (B, T, F)  ReLU(x W1 + b1)
y_hand = hidden @ W2 + b2                               # (B, T, C)
y_lib = ref.feed_forward(x, W1, b1, W2, b2, activation="relu")
np.testing.assert_allclose(y_lib, y_hand, rtol=1e-12, atol=1e-12)
print("FFN output", y_lib.shape, "== hand computation;",
      f"{(hidden == 0).mean():.0%} of the hidden units are zero after ReLU")

# position-wise: position t's output depends on position t's input only
x2 = x.copy()
x2[:, 3] += 1.0                                          # change position 3 only
changed = np.abs(ref.feed_forward(x2, W1, b1, W2, b2) - y_lib).max(axis=(0, 2))  # (T,)
print("largest change per position:", changed)
assert changed[3] > 0 and (np.delete(changed, 3) == 0).all()   # exactly 0 elsewhere: nothing mixes positions

# %% [markdown]
# The chapter uses ReLU; GPT-2 and BERT use GELU, $x\,\Phi(x)$, smooth at 0 and slightly
# negative for small negative $x$. minillm has the exact (erf) form and GPT-2's tanh
# approximation, both with hand-written derivatives:

# %%
z = np.linspace(-4, 4, 401)
fig = Figure(figsize=(6, 3.2), layout="constrained")
ax = fig.subplots()
for name in ("relu", "gelu", "gelu_tanh"):
    ax.plot(z, getattr(ref, name)(z), label=name)
ax.set_xlabel("x")
ax.legend()
ax.grid(alpha=0.3)
ax.set_title("activations")
show_figure(fig, OUT / "activations.png")
print("largest |gelu - gelu_tanh| on [-4, 4]:", np.abs(ref.gelu(z) - ref.gelu_tanh(z)).max())
print(f"smallest gelu on [-4, 4]: {ref.gelu(z).min():.3f} at x = {z[ref.gelu(z).argmin()]:.2f}")
assert -0.2 < ref.gelu(z).min() < 0 and (ref.gelu(z[z > 0]) > 0).all()   # slightly negative, for x < 0 only
assert np.abs(ref.gelu(z) - ref.gelu_tanh(z)).max() < 1e-3                # the approximation is close

# %% [markdown]
# ## Layer normalisation
#
# Each position's vector is normalised over its $C$ features, then scaled and shifted by
# learned $\gamma, \beta$:
#
# $$\mathrm{LN}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,
# \qquad \mu = \frac1C\sum_c x_c,\quad \sigma^2 = \frac1C\sum_c (x_c - \mu)^2$$

# %%
show(ref.layer_norm_forward)

# %%
gamma, beta = np.ones(C), np.zeros(C)
x_far = 50.0 + 10.0 * x                                 # shifted and stretched
mu = x_far.mean(axis=-1, keepdims=True)                 # (B, T, 1)
var = x_far.var(axis=-1, keepdims=True)                 # (B, T, 1), the biased variance
ln_hand = gamma * (x_far - mu) / np.sqrt(var + 1e-5) + beta  # (B, T, C)
ln_lib = ref.layer_norm(x_far, gamma, beta, eps=1e-5)
np.testing.assert_allclose(ln_lib, ln_hand, rtol=1e-12, atol=1e-12)
print("per-position mean after LN:", ln_lib.mean(axis=-1).round(12).ravel()[:5])
print("per-position std  after LN:", ln_lib.std(axis=-1).round(4).ravel()[:5])
np.testing.assert_allclose(ln_lib.mean(axis=-1), 0.0, atol=1e-12)    # float64 rounding
np.testing.assert_allclose(ln_lib.std(axis=-1), 1.0, rtol=1e-6)      # sqrt(var / (var + eps)), var ~ 100

# %% [markdown]
# ## Residuals and the two block layouts
#
# $$\text{pre-norm:}\quad x' = x + \mathrm{MHA}(\mathrm{LN}_1(x)),\qquad y = x' + \mathrm{FFN}(\mathrm{LN}_2(x'))$$
#
# $$\text{post-norm:}\quad x' = \mathrm{LN}_1(x + \mathrm{MHA}(x)),\qquad y = \mathrm{LN}_2(x' + \mathrm{FFN}(x'))$$
#
# The residual $x + f(x)$ gives the gradient a path that skips $f$: $\partial y / \partial x =
# I + \partial f / \partial x$. `TransformerBlock` is both layouts, chosen by
# `ModelConfig.norm_first`:

# %%
show(ref.TransformerBlock.forward)

# %%
for norm_first in (True, False):
    cfg = ModelConfig(d_model=C, n_heads=2, d_ff=F, norm_first=norm_first, dtype="float64")
    block = ref.TransformerBlock(cfg, np.random.default_rng(0))
    block.load_state_dict(init_parameters([(n, p.shape) for n, p in block.named_parameters()],
                                          seed=1, dtype="float64"))
    y_block = block(x)                                  # (B, T, C), no mask: an encoder
    if norm_first:
        h = x + block.attn(block.ln1(x))                # (B, T, C)
        y_hand = h + block.ffn(block.ln2(h))            # (B, T, C)
    else:
        h = block.ln1(x + block.attn(x))                # (B, T, C)
        y_hand = block.ln2(h + block.ffn(h))            # (B, T, C)
    np.testing.assert_allclose(y_block, y_hand, rtol=1e-12, atol=1e-12)
    print(f"norm_first={norm_first}: block == its formula; output std per position "
          f"{y_block.std(axis=-1).mean():.3f}")


# %% [markdown]
# ## Pre- vs post-norm in a deep stack
#
# Two 12-layer encoders with the same weights, one pre-norm and one post-norm, on the same
# random batch. We follow the size of the residual stream through the layers, and the
# gradient each layer's parameters receive from the masked-LM loss (the reference's
# hand-written backward pass computes them).

# %%
def stack_statistics(norm_first, n_layers=12):
    cfg = ModelConfig(vocab_size=64, block_size=16, d_model=32, n_heads=4, n_layers=n_layers,
                      norm_first=norm_first, dtype="float64")
    model = ref.TransformerEncoder(cfg, seed=0)
    data = np.random.default_rng(0)
    idx = data.integers(0, 64, (8, 16))                 # (B, T)
    targets = data.integers(0, 64, (8, 16))             # (B, T)
    # the residual stream after each block, computed with the model's own layers
    x = model.tok_emb(idx) + model.pos_emb(np.arange(16))  # (B, T, C)
    rms = [np.sqrt((x ** 2).mean())]
    for block in model.blocks:
        x = block(x)                                    # (B, T, C)
        rms.append(np.sqrt((x ** 2).mean()))
    _, loss = model(idx, targets)
    loss.backward()
    grad = [np.sqrt(sum((p.grad ** 2).sum() for n, p in model.named_parameters()
                        if n.startswith(f"blocks.{i}.")))
            for i in range(n_layers)]
    return np.array(rms), np.array(grad)

stats = {name: stack_statistics(nf) for name, nf in (("pre-norm", True), ("post-norm", False))}
fig = Figure(figsize=(9, 3.4), layout="constrained")
ax_rms, ax_grad = fig.subplots(1, 2)
for name, (rms, grad) in stats.items():
    ax_rms.plot(range(len(rms)), rms, "o-", label=name)
    ax_grad.plot(range(1, len(grad) + 1), grad, "o-", label=name)
ax_rms.set(xlabel="after block", ylabel="RMS of the residual stream", title="forward")
ax_grad.set(xlabel="block", ylabel="gradient norm of the block", yscale="log", title="backward")
for ax in (ax_rms, ax_grad):
    ax.grid(alpha=0.3)
    ax.legend()
show_figure(fig, OUT / "pre_vs_post_norm.png")
for name, (rms, grad) in stats.items():
    print(f"{name:9s}: stream RMS {rms[0]:.3f} -> {rms[-1]:.3f}; "
          f"block gradient norms span a factor {grad.max() / grad.min():.1f} over the 12 blocks")
    print(f"{'':9s}  gradient norm per block: {grad.round(3)}")

# %% [markdown]
# In the post-norm stack every block ends in a LayerNorm, so the stream is re-normalised to
# RMS 1 after each block; in the pre-norm stack the residual stream is never normalised and
# grows as the blocks add to it (hence the final `ln_f` in pre-norm models).
#
# On the backward side, pre-norm keeps an un-normalised identity path from the loss to every
# block, and the gradients of the blocks stay within a small factor of each other (under 4
# here). In the post-norm stack the gradient has to pass through every LayerNorm on the way
# down: here the first block (whose LayerNorm scales the small embeddings up to RMS 1) gets
# more than ten times as much as any other, and blocks 2-12 get more than ten times less
# than in pre-norm. Uneven gradients across depth are why post-norm Transformers need a
# careful learning-rate warm-up, and why deep models moved to pre-norm (Xiong et al. 2020,
# *On Layer Normalization in the Transformer Architecture*). The cell below checks each of
# these statements on the numbers above.

# %%
(rms_pre, grad_pre), (rms_post, grad_post) = stats["pre-norm"], stats["post-norm"]
np.testing.assert_allclose(rms_post[1:], 1.0, atol=1e-4)   # LN output: RMS sqrt(var / (var + 1e-5))
assert (np.diff(rms_pre) > 0).all()                        # pre-norm: the stream grows block by block
assert grad_pre.max() / grad_pre.min() < 4                 # pre-norm: within a small factor
assert grad_post[0] > 10 * grad_post[1:].max()             # post-norm: block 1 gets far more ...
assert (grad_post[1:] < grad_pre[1:] / 10).all()           # ... blocks 2-12 ten times less than pre-norm
print("checked: post-norm RMS 1 after every block; pre-norm stream grows; gradient spreads as stated")

# %% [markdown]
# ## Parity check: the NumPy reference against PyTorch
#
# The FFN and layer norm, forward and hand-written backward against autograd, float64,
# random upstream gradient, the parity contract of `docs/architecture.md` (rtol $10^{-7}$,
# atol $10^{-9}$); then a whole pre-norm and post-norm block, every parameter gradient
# included.

# %%
PARITY = dict(rtol=1e-7, atol=1e-9)                             # the float64 parity contract

rng = np.random.default_rng(2)
arrays = [x, W1, b1, W2, b2]
dout = rng.standard_normal((B, T, C))                   # random upstream gradient
y_r, cache = ref.feed_forward_forward(*arrays, activation="gelu")
grads_r = ref.feed_forward_backward(dout, cache)
leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
y_t = tb.feed_forward(*leaves, activation="gelu")
(y_t * torch.from_numpy(dout)).sum().backward()
assert_parity("feed_forward out", y_r, y_t, **PARITY)
for name, g_r, leaf in zip(("dx", "dW1", "db1", "dW2", "db2"), grads_r, leaves):
    assert_parity(f"feed_forward {name}", g_r, leaf.grad, **PARITY)

g, b = 1 + 0.1 * rng.standard_normal(C), 0.1 * rng.standard_normal(C)
ln_r, cache = ref.layer_norm_forward(x_far, g, b)
dx_r, dg_r, db_r = ref.layer_norm_backward(dout, cache)
xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x_far, g, b))
ln_t = tb.layer_norm(xt, gt, bt)
(ln_t * torch.from_numpy(dout)).sum().backward()
for name, ours, theirs in (("layer_norm out", ln_r, ln_t), ("layer_norm dx", dx_r, xt.grad),
                           ("layer_norm dgamma", dg_r, gt.grad), ("layer_norm dbeta", db_r, bt.grad)):
    assert_parity(name, ours, theirs, **PARITY)

for norm_first in (True, False):
    cfg = ModelConfig(d_model=C, n_heads=2, d_ff=F, norm_first=norm_first, dtype="float64")
    blocks = [backend.TransformerBlock(cfg, np.random.default_rng(0)) for backend in (ref, tb)]
    weights = init_parameters([(n, p.shape) for n, p in blocks[0].named_parameters()], seed=1, dtype="float64")
    for blk in blocks:
        blk.load_state_dict(weights)
    y_r = blocks[0](x)
    blocks[0].backward(dout)
    y_t = blocks[1](torch.from_numpy(x))
    (y_t * torch.from_numpy(dout)).sum().backward()
    assert_parity(f"block norm_first={norm_first}", y_r, y_t, **PARITY)
    for (name, p_r), (_, p_t) in zip(blocks[0].named_parameters(), blocks[1].named_parameters()):
        assert_parity(f"  d{name}", p_r.grad, p_t.grad, **PARITY)

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "ops" / "test_ops_parity.py") + "::test_feed_forward_parity",
                        str(TESTS / "ops" / "test_ops_parity.py") + "::test_op_parity[layer_norm]",
                        str(TESTS / "ops" / "test_layers.py") + "::test_transformer_block_pre_and_post_norm"])
    assert code == 0, f"the FFN / layer norm / block parity tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the checks above are the parity check")
