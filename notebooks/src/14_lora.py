# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 14. LoRA: tuning a model without touching its weights
#
# Full fine-tuning updates every weight, and Adam keeps two more numbers (its $m$ and $v$)
# for each: a model of $N$ parameters needs a gradient and $2N$ optimizer numbers beside its
# own $N$. LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
# eq. 3) freezes a projection $W$ ($d_{in} \times d_{out}$) and learns a low-rank update
# beside it:
#
# $$y = xW + b + \frac{\alpha}{r}\,\mathrm{dropout}(x)\,A B, \qquad
# A \in \mathbb R^{d_{in} \times r},\ B \in \mathbb R^{r \times d_{out}},\ r \ll \min(d_{in}, d_{out})$$
#
# Only $A$ and $B$ train: $r(d_{in} + d_{out})$ numbers instead of $d_{in} d_{out}$.
# This notebook follows `minillm/reference/lora.py` (the op and its hand-written backward)
# and `minillm/store/lora_adapters.py` (adapters on a model's projections by name): the
# formula, its three gradients checked by finite differences and by torch's autograd, why
# $B$ starts at zero, rank-stabilised scaling, the parameters and optimizer memory saved,
# merging, and a small LoRA fine-tune; it ends with the parity check of the reference
# against torch.

# %%
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.store.lora_adapters import add_lora, lora_parameters, merge_lora, unmerge_lora
from minillm.core.config import ModelConfig
from minillm.core.lora import LoRAConfig, init_lora_A, lora_scale
from minillm.data import synthetic_language
from minillm.notebook import assert_parity, show
from minillm.reference.lora import lora_backward, lora_forward

torch.set_num_threads(1)
rng = np.random.default_rng(0)

# %% [markdown]
# ## The formula
#
# `lora_forward` computes the base map, then the update as two thin products, $(uA)B$ with
# $u = \mathrm{dropout}(x)$, never the $d_{in} \times d_{out}$ matrix $AB$: the update
# costs $N r (d_{in} + d_{out})$ multiply-adds for $N$ rows instead of $N d_{in} d_{out}$. The scale
# $s = \alpha / r$ comes from `minillm.core.lora.lora_scale`, shared by both backends.

# %%
show(lora_forward)

# %%
d_in, d_out, r, alpha = 12, 10, 3, 6.0
x = rng.normal(size=(2, 5, d_in))                          # (B, T, d_in), float64
W, b = rng.normal(size=(d_in, d_out)), rng.normal(size=d_out)
A, B = rng.normal(size=(d_in, r)), rng.normal(size=(r, d_out))   # B not zero: an adapter after training
s = lora_scale(r, alpha)
y, cache = lora_forward(x, W, b, A, B, s)
by_formula = x @ W + b + (alpha / r) * x @ (A @ B)         # the update formed as one matrix
print(f"s = alpha / r = {s}; largest |lora_forward - formula| {np.abs(y - by_formula).max():.1e}")
assert s == alpha / r
assert np.allclose(y, by_formula, rtol=1e-12, atol=1e-12)   # float64: the same sums in another order

# %% [markdown]
# ## Its gradients, by hand
#
# Write $g = \partial L / \partial y$ as rows $(N, d_{out})$, $h = uA$. The chain rule
# through each product, exactly as for a linear layer ($y = xW \Rightarrow \partial L/\partial x =
# gW^\top$, $\partial L/\partial W = x^\top g$), gives
#
# $$\frac{\partial L}{\partial B} = s\,h^\top g,\qquad \frac{\partial L}{\partial h} = s\,gB^\top,\qquad
# \frac{\partial L}{\partial A} = u^\top \frac{\partial L}{\partial h},\qquad
# \frac{\partial L}{\partial x} = gW^\top + \mathrm{dropout}'\!\Big(\frac{\partial L}{\partial h}A^\top\Big)$$
#
# A LoRA layer passes `frozen=True`: the base's $\partial L/\partial W = x^\top g$, the one
# $d_{in} \times d_{out}$ product of the backward, is skipped, since nothing trains $W$.

# %%
show(lora_backward)

# %% [markdown]
# Two checks. Finite differences: for the scalar $L = \sum y \odot G$ with a random $G$
# (not all ones: that hides a transposed gradient), the central difference
# $(L(\theta + \epsilon e_i) - L(\theta - \epsilon e_i)) / 2\epsilon$ on every entry of $x$,
# $A$ and $B$. And torch's autograd on the torch backend's `lora`, the same formula
# written with tensors.

# %%
G = rng.normal(size=y.shape)                                # (B, T, d_out), the upstream gradient
dx, dW, db, dA, dB = lora_backward(G, cache)
frozen = lora_backward(G, cache, frozen=True)
assert frozen[1] is None and frozen[2] is None              # no dW, db for a frozen base
assert all(np.array_equal(a, c) for a, c in zip((dx, dA, dB), (frozen[0], frozen[3], frozen[4])))


def loss_of(x_, A_, B_):
    return float((lora_forward(x_, W, b, A_, B_, s)[0] * G).sum())


eps = 1e-6
numeric = {}
for name, arr, grad in (("dx", x, dx), ("dA", A, dA), ("dB", B, dB)):
    fd = np.zeros_like(arr)
    for i in np.ndindex(arr.shape):
        plus, minus = arr.copy(), arr.copy()
        plus[i] += eps
        minus[i] -= eps
        args = {"dx": (plus, A, B), "dA": (x, plus, B), "dB": (x, A, plus)}[name]
        args_m = {"dx": (minus, A, B), "dA": (x, minus, B), "dB": (x, A, minus)}[name]
        fd[i] = (loss_of(*args) - loss_of(*args_m)) / (2 * eps)
    numeric[name] = np.abs(fd - grad).max()
    # L is linear in each argument, so the central difference is exact up to rounding:
    # ~ 1e-16 * |L| / eps, a few 1e-8 here
    assert np.allclose(fd, grad, rtol=1e-6, atol=1e-6), name
print("largest |finite difference - hand-written|:", {k: f"{v:.1e}" for k, v in numeric.items()})

tx, tA, tB = (torch.tensor(a, requires_grad=True) for a in (x, A, B))
t_y = tb.lora(tx, torch.tensor(W), torch.tensor(b), tA, tB, s)
t_y.backward(torch.tensor(G))
for name, ours, theirs in (("y", y, t_y), ("dx", dx, tx.grad), ("dA", dA, tA.grad), ("dB", dB, tB.grad)):
    assert_parity(f"{name} vs autograd", ours, theirs, rtol=1e-7, atol=1e-9)   # the float64 parity contract

# %% [markdown]
# ## Why B starts at zero
#
# `LoRALinear` draws $A$ from $\mathcal U(-1/\sqrt{d_{in}}, 1/\sqrt{d_{in}})$ (PEFT's
# default) and sets $B = 0$. Then $AB = 0$: at step 0 the adapted layer computes **exactly**
# the base layer, bit for bit, so a pretrained model starts tuning from what it already
# does. The gradients read off the formulas above: at $B = 0$,
# $\partial L/\partial h = s\,gB^\top = 0$, so $\partial L/\partial A = 0$, but
# $\partial L/\partial B = s\,(xA)^\top g$ is not zero since $A$ is random. The first step
# moves $B$, and from then on both move. Had both started at zero, every gradient of the
# adapter would be zero forever.

# %%
layer = ref.LoRALinear(d_in, d_out, r=r, alpha=alpha, dtype="float64", rng=np.random.default_rng(1))
layer.W.data[...], layer.b.data[...] = W, b
assert not layer.lora.B.data.any() and layer.lora.A.data.any()
base = ref.Linear(d_in, d_out, dtype="float64")
base.W.data[...], base.b.data[...] = W, b
out = layer(x)
assert np.array_equal(out, base(x))                          # bit for bit: s (xA) 0 adds exact zeros
layer.backward(G)
print(f"at B = 0: |dA| = {np.abs(layer.lora.A.grad).max()}, |dB| = {np.abs(layer.lora.B.grad).max():.3f}")
assert not layer.lora.A.grad.any() and layer.lora.B.grad.any()
assert layer.W.grad is None                                  # the base gets no gradient

both_zero = lora_backward(G, lora_forward(x, W, b, np.zeros_like(A), np.zeros_like(B), s)[1], frozen=True)
assert not both_zero[3].any() and not both_zero[4].any()    # A = B = 0: the adapter can never move

# %% [markdown]
# ## Rank-stabilised scaling
#
# How large is the update $s\,xAB$ as the rank grows? With $A$ at its initialisation
# (variance $1/(3d_{in})$ per entry) and $B$ of unit-variance entries (a trained $B$ is no
# longer zero), each entry of $h = xA$ has variance $d_{in} \cdot 1/(3 d_{in}) = 1/3$ for
# unit-variance $x$, and an entry of $hB$ sums $r$ such terms: variance $r/3$. So the
# update's standard deviation is $s\sqrt{r/3}$: with $s = \alpha/r$ it shrinks as
# $1/\sqrt r$, and a larger rank learns slower for the same learning rate.
# Rank-stabilised LoRA (Kalajdzievski 2023, rsLoRA; PEFT's `use_rslora`) takes
# $s = \alpha/\sqrt r$, and the size no longer depends on $r$. The cell measures both.

# %%
big_in, big_out, N = 256, 1024, 512
xs = rng.normal(size=(N, big_in))
print(f"{'r':>3s} {'alpha/r':>10s} {'alpha/sqrt r':>13s}   (std of s x A B; predicted alpha/sqrt(3r), alpha/sqrt 3)")
stds = {}
for rank in (1, 4, 16, 64):
    A_r = init_lora_A(big_in, rank, np.random.default_rng(rank), "float64")
    B_r = np.random.default_rng(100 + rank).normal(size=(rank, big_out))
    hB = xs @ A_r @ B_r                                                 # (N, d_out)
    stds[rank] = [float((lora_scale(rank, alpha, rs) * hB).std()) for rs in (False, True)]
    print(f"{rank:3d} {stds[rank][0]:10.3f} {stds[rank][1]:13.3f}")
    # 15%: the sample std of ~5e5 entries that share r * d_out draws of B and d_in * r of A
    assert np.isclose(stds[rank][0], alpha / np.sqrt(3 * rank), rtol=0.15)
    assert np.isclose(stds[rank][1], alpha / np.sqrt(3), rtol=0.15)
assert stds[64][0] < stds[1][0] / 6                                     # 1/sqrt(64) = 1/8 of rank 1's
assert lora_scale(16, 32.0, rank_stabilised=True) == 32.0 / 4

# %% [markdown]
# ## Parameters and optimizer memory saved
#
# The demo's GPT (`minillm demo`: 4 layers, $C = 128$, BPE vocabulary of 1024, block 64)
# with LoRA of rank 8 on the four attention projections $W_Q, W_K, W_V, W_O$ of every
# layer. `add_lora` freezes everything else; `lora_parameters` is what reaches the
# optimizer. Adam keeps $m$ and $v$, one number each per trained parameter: the state is
# measured from the optimizer's own arrays. In torch the frozen weights also get no
# gradient buffer at all (`.grad` stays `None`: autograd computes no $\partial L/\partial W$
# for them).

# %%
demo = ModelConfig(vocab_size=1024, block_size=64, d_model=128, n_heads=4, n_layers=4, dropout=0.0)
C, L = demo.d_model, demo.n_layers
full_model = ref.GPT(demo, seed=0)
n_full = sum(p.data.size for p in full_model.parameters())
full_opt = ref.Adam(full_model.parameters())
lora_model = ref.GPT(demo, seed=0)
names = add_lora(lora_model, ("W_Q", "W_K", "W_V", "W_O"), r=8, alpha=16.0)
trained = [p for _, p in lora_parameters(lora_model)]
n_lora = sum(p.data.size for p in trained)
lora_opt = ref.Adam(trained)


def state_bytes(opt):
    return sum(a.nbytes for s_ in opt.state for k, a in s_.items() if k != "step")


print(f"adapted: {len(names)} projections ({names[0]}, ..., {names[-1]})")
print(f"trained parameters: full {n_full:,}, LoRA {n_lora:,} ({100 * n_lora / n_full:.2f}%)")
print(f"Adam state: full {state_bytes(full_opt):,} bytes, LoRA {state_bytes(lora_opt):,} bytes "
      f"({state_bytes(full_opt) / state_bytes(lora_opt):.0f}x less)")
assert len(names) == 4 * L and n_lora == L * 4 * 8 * (C + C)        # r (d_in + d_out) per projection
assert state_bytes(full_opt) == 2 * 4 * n_full and state_bytes(lora_opt) == 2 * 4 * n_lora   # m, v float32
assert n_lora < 0.05 * n_full and round(n_full / n_lora) == 32     # the figures notebooks/README.md quotes

t_model = tb.GPT(demo, seed=0)
add_lora(t_model, ("W_Q", "W_K", "W_V", "W_O"), r=8, alpha=16.0)
ids = torch.as_tensor(rng.integers(0, demo.vocab_size, (2, demo.block_size)))
t_model(ids, ids)[1].backward()
grads = {n: p.grad for n, p in t_model.named_parameters()}
grad_bytes = sum(g.numel() * g.element_size() for g in grads.values() if g is not None)
print(f"torch: {sum(g is not None for g in grads.values())} of {len(grads)} parameters hold a gradient, "
      f"{grad_bytes:,} bytes")
assert all((g is not None) == (".lora_" in n) for n, g in grads.items())
assert grad_bytes == 4 * n_lora

# %% [markdown]
# ## Merge and unmerge
#
# For inference the update can be folded into the weight, $W \leftarrow W + sAB$: the
# adapted model then costs exactly what the base costs. `merge_lora` does it for every
# adapter, `unmerge_lora` takes it out again. $x(W + sAB)$ and $xW + s(xA)B$ are the same
# sums in another order, so the logits agree to rounding; and $(W + D) - D$ rounds twice,
# so the weight comes back within $\epsilon(|W| + |D|)$, not bit for bit.

# %%
small = ModelConfig(vocab_size=40, block_size=16, d_model=16, n_heads=4, n_layers=2, dtype="float64")
model = ref.GPT(small, seed=1)
model.eval()
add_lora(model, ("W_Q", "W_V"), r=2, alpha=4.0, seed=3)
for n, p in lora_parameters(model):
    if n.endswith(".B"):
        p.data[...] = rng.normal(size=p.data.shape)              # as after training
idx = rng.integers(0, small.vocab_size, (2, 16))
adapted = model(idx)[0]
W_before = model.blocks[0].attn.W_Q.data.copy()
merge_lora(model)
merged = model(idx)[0]
adapter = model.blocks[0].attn.lora_W_Q
D = adapter.delta()                                              # s A B, (d_in, d_out)
assert np.array_equal(model.blocks[0].attn.W_Q.data, W_before + D)
print(f"largest |merged - adapted| logit: {np.abs(merged - adapted).max():.1e}")
assert np.allclose(merged, adapted, rtol=1e-10, atol=1e-12)       # float64, sums reordered
unmerge_lora(model)
assert (np.abs(model.blocks[0].attn.W_Q.data - W_before) <= np.finfo(np.float64).eps * (np.abs(W_before) + np.abs(D))).all()
assert np.allclose(model(idx)[0], adapted, rtol=1e-10, atol=1e-12)

# %% [markdown]
# ## A small LoRA fine-tune
#
# A GPT pretrained on one of the embedded synthetic languages (notebook 6: a seeded Markov
# chain whose entropy rate, the floor of any model's loss, is known exactly) is adapted to
# another one it has never seen (another seed's), with rank-4 adapters on its attention and
# feed-forward projections and nothing else trained. The loss on held-out text of the new
# language falls, and every base weight is equal bit for bit at the end: the whole change
# lives in the adapters. The reference backend trains, its gradients written by hand.

# %%
T_ = 32
cfg = ModelConfig(vocab_size=8, block_size=T_, d_model=32, n_heads=4, n_layers=2, dropout=0.0)
old = synthetic_language(20_000, order=2, alphabet_size=8, seed=0).ids
new_language = synthetic_language(20_000, order=2, alphabet_size=8, seed=1)
new = new_language.ids


def batch(tokens, gen, n=16):
    starts = gen.integers(0, len(tokens) // 2 - T_ - 1, n)             # the first half trains
    idx = np.stack([tokens[i:i + T_] for i in starts])
    return idx, np.stack([tokens[i + 1:i + T_ + 1] for i in starts])


held_out = (np.stack([new[i:i + T_] for i in range(len(new) // 2, len(new) - T_ - 1, 97)][:32]),
            np.stack([new[i + 1:i + T_ + 1] for i in range(len(new) // 2, len(new) - T_ - 1, 97)][:32]))
gpt = ref.GPT(cfg, seed=0)
opt = ref.AdamW(gpt.parameters(), lr=3e-3)
gen = np.random.default_rng(0)
for step in range(150):                                                 # the base: the old language
    _, loss = gpt(*batch(old, gen))
    loss.backward()
    opt.step()
    opt.zero_grad()
gpt.eval()
base_loss = float(gpt(*held_out)[1])
frozen_copy = {n: p.data.copy() for n, p in gpt.named_parameters()}
add_lora(gpt, ("W_Q", "W_K", "W_V", "W_O", "W1", "W2"), r=4, alpha=8.0)
assert float(gpt(*held_out)[1]) == base_loss                            # B = 0: the same model
gpt.train()
opt = ref.AdamW([p for _, p in lora_parameters(gpt)], lr=1e-2)
for step in range(200):                                                 # LoRA on the new language
    _, loss = gpt(*batch(new, gen))
    loss.backward()
    opt.step()
    opt.zero_grad()
gpt.eval()
tuned_loss = float(gpt(*held_out)[1])
print(f"held-out loss on the new language: base {base_loss:.3f}, after LoRA {tuned_loss:.3f} "
      f"(its entropy rate, the floor: {new_language.entropy_rate:.3f}; uniform: log 8 = {np.log(8):.3f})")
# 0.4 nats: about 0.7 was measured; the held-out estimate (1,024 tokens) is good to ~0.05
assert tuned_loss < base_loss - 0.4, (base_loss, tuned_loss)
for n, p in gpt.named_parameters():
    if ".lora_" not in n:
        assert np.array_equal(p.data, frozen_copy[n]), n                # the base, bit for bit

# %% [markdown]
# On the command line the same thing is one option of the commands that fine-tune a trained
# model: `--lora r,alpha,targets`, e.g. `--lora 4,8,W_Q,W_K,W_V,W_O,W1,W2` for the run above
# (`minillm.core.lora.LoRAConfig` reads it; the run records it, so `--resume` takes it).

# %%
spec = LoRAConfig.parse("4,8,W_Q,W_K,W_V,W_O,W1,W2")
assert (spec.r, spec.alpha, spec.targets) == (4, 8.0, ("W_Q", "W_K", "W_V", "W_O", "W1", "W2"))
assert str(spec) == "4,8,W_Q,W_K,W_V,W_O,W1,W2"                      # written back one way

# %% [markdown]
# ## Parity check: a GPT with adapters in the reference and in torch
#
# The same float64 GPT and the same adapters (one generator draws every $A$ in the model's
# order, in both backends) on every attention and feed-forward projection, with $B$ set to
# the same random values: logits, loss and every adapter's gradient, on the torch explicit
# path and its fast path, within the float64 parity contract (rtol $10^{-7}$, atol
# $10^{-9}$, docs/architecture.md). The frozen weights get no gradient in torch.

# %%
tiny = ModelConfig(vocab_size=40, block_size=16, d_model=16, n_heads=4, n_layers=2, dtype="float64", init_std=0.1)
targets_ = ("W_Q", "W_K", "W_V", "W_O", "W1", "W2")
ids = rng.integers(0, tiny.vocab_size, (3, 16))
tgt = rng.integers(0, tiny.vocab_size, (3, 16))
B_values = np.random.default_rng(9)
reference = ref.GPT(tiny, seed=1)
add_lora(reference, targets_, r=2, alpha=4.0, rank_stabilised=True, seed=7)
for n, p in lora_parameters(reference):
    if n.endswith(".B"):
        p.data[...] = B_values.normal(size=p.data.shape)
logits, loss = reference(ids, tgt)
loss.backward()
for path, fused in (("explicit", False), ("fast", True)):
    model = tb.GPT(tiny, seed=1)
    add_lora(model, targets_, r=2, alpha=4.0, rank_stabilised=True, seed=7)
    model.set_fused(fused)
    with torch.no_grad():
        for (n, p), (_, q) in zip(lora_parameters(reference), lora_parameters(model)):
            if n.endswith(".B"):
                q.copy_(torch.from_numpy(p.data))
            else:
                np.testing.assert_array_equal(q.numpy(), p.data, err_msg=n)   # A: the same draws
    t_logits, t_loss = model(torch.as_tensor(ids), torch.as_tensor(tgt))
    t_loss.backward()
    assert_parity(f"{path} logits", logits, t_logits, rtol=1e-7, atol=1e-9)
    for (n, p), (_, q) in zip(lora_parameters(reference), lora_parameters(model)):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-7, atol=1e-9, err_msg=n)
    assert all(q.grad is None for n, q in model.named_parameters() if ".lora_" not in n)
    print(f"{path}: {len(lora_parameters(model))} adapter gradients within rtol 1e-7, atol 1e-9")

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "ops" / "test_lora.py"), str(TESTS / "store" / "test_lora_adapters.py"),
                        "-k", "not peft"])
    assert code == 0, f"LoRA's parity tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the check above is the parity check")
