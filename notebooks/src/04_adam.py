# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Adam, one formula at a time
#
# The chapter's section 4.3 gives Adam (Kingma & Ba 2015, Algorithm 1) as five lines. With
# the gradient $g_t$ at step $t$, $m_0 = v_0 = 0$:
#
# $$\begin{aligned}
# m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t &&\text{(1) moving average of the gradient}\\
# v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 &&\text{(2) moving average of its square}\\
# \hat m_t &= m_t / (1-\beta_1^t) &&\text{(3) bias correction}\\
# \hat v_t &= v_t / (1-\beta_2^t) &&\text{(4) bias correction}\\
# \theta_t &= \theta_{t-1} - \alpha\, \hat m_t / (\sqrt{\hat v_t} + \epsilon) &&\text{(5) the update}
# \end{aligned}$$
#
# This notebook computes them one at a time, shows what bias correction does in the first
# steps, races SGD, momentum and Adam on a 2-D loss surface, and checks the reference
# optimizer against PyTorch's.

# %%
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.notebook import show, show_figure

OUT = Path("runs") / "notebooks" / "04_adam"
OUT.mkdir(parents=True, exist_ok=True)
np.set_printoptions(precision=5, suppress=True)

# %% [markdown]
# ## The reference code beside the formulas
#
# Each of the five lines is one line of `Adam.step`, with the formula's name in the comment:

# %%
show(ref.Adam.step)

# %% [markdown]
# ## The five formulas, one at a time
#
# One parameter $\theta$ (three numbers), four made-up gradients. We run the formulas by hand
# and, beside them, `minillm.reference.Adam` on a `Parameter` receiving the same gradients.

# %%
alpha, beta1, beta2, eps = 0.1, 0.9, 0.999, 1e-8
gradients = [np.array([1.0, -2.0, 0.01]), np.array([0.5, -2.0, 0.02]),
             np.array([-1.0, -2.0, 0.01]), np.array([0.2, -2.0, 0.03])]

theta = np.array([1.0, 1.0, 1.0])                      # by hand
m, v = np.zeros(3), np.zeros(3)
param = ref.Parameter(theta.copy())                    # the library
opt = ref.Adam([param], lr=alpha, betas=(beta1, beta2), eps=eps)
thetas = [theta.copy()]

for t, g in enumerate(gradients, start=1):
    m = beta1 * m + (1 - beta1) * g                    # (1)
    v = beta2 * v + (1 - beta2) * g ** 2               # (2)
    m_hat = m / (1 - beta1 ** t)                       # (3)
    v_hat = v / (1 - beta2 ** t)                       # (4)
    theta = theta - alpha * m_hat / (np.sqrt(v_hat) + eps)  # (5)
    param.grad = g.copy()
    opt.step()
    opt.zero_grad()
    thetas.append(theta.copy())
    print(f"t={t}  m={m}  m_hat={m_hat}\n     v={v}  v_hat={v_hat}\n     theta={theta}")
    np.testing.assert_allclose(param.data, theta, rtol=1e-15, atol=1e-15)
print("minillm.reference.Adam followed the five formulas exactly")
moves = np.abs(np.diff(thetas, axis=0))                # (4 steps, 3 coordinates)
print("size of each step, per coordinate:\n", moves)

# %% [markdown]
# Two things to notice in the table of step sizes. The first step of every coordinate is
# $\alpha = 0.1$, whether its gradient is $1$, $-2$ or $0.01$ (at $t = 1$,
# $\hat m / \sqrt{\hat v} = g / |g|$): Adam divides by the gradient's running scale, so its
# step size is set by $\alpha$, not by the size of the gradient; the coordinate whose
# gradient is always $-2$ moves exactly $\alpha$ at every step. And the first coordinate,
# whose gradient turns negative at step 3, moves far less from then on (about a tenth of
# $\alpha$): $\hat m$ averages the disagreeing gradients towards 0.

# %%
# step 1: alpha * |g| / (|g| + eps); eps = 1e-8 against |g| >= 0.01 changes it by at most 1e-6 relative
np.testing.assert_allclose(moves[0], alpha, rtol=1e-6)
np.testing.assert_allclose(moves[:, 1], alpha, rtol=1e-8)   # constant gradient: alpha each step (eps/2 = 5e-9)
assert (moves[2:, 0] < 0.2 * alpha).all(), moves[:, 0]      # after the sign change: under a fifth of alpha
print("checked: first steps all alpha; constant gradient alpha every step; "
      f"after the sign change the first coordinate moves {moves[2, 0]:.3f} and {moves[3, 0]:.3f}")

# %% [markdown]
# ## What bias correction does at small $t$
#
# $m$ and $v$ start at 0, so in the first steps they are biased towards 0: with a constant
# gradient $g$, $m_t = (1-\beta_1^t)\,g$ and $v_t = (1-\beta_2^t)\,g^2$. Dividing by
# $1-\beta^t$ removes exactly that factor, and the corrected update is $\alpha$ at every
# step. Without the correction the update is $\alpha\,(1-\beta_1^t)/\sqrt{1-\beta_2^t}$: at
# $t = 1$ that is $\alpha\,(1-\beta_1)/\sqrt{1-\beta_2} \approx 3.16\,\alpha$ (with the
# defaults); then it *grows*, because $m_t$ fills in ($\beta_1 = 0.9$) much faster than
# $\sqrt{v_t}$ ($\beta_2 = 0.999$), to about $6.6\,\alpha$ near step 12; only then does it
# shrink, and slowly: still about $2.3\,\alpha$ at step 200, and within 10 % of $\alpha$
# only after about 1,750 steps. Too large at the start, and wrong for a long time.

# %%
steps = np.arange(1, 201)
g_const = 1.0
m_t = (1 - beta1 ** steps) * g_const                   # m_t for a constant gradient
v_t = (1 - beta2 ** steps) * g_const ** 2              # v_t
m_hat_t = m_t / (1 - beta1 ** steps)                   # = g
v_hat_t = v_t / (1 - beta2 ** steps)                   # = g^2
step_raw = m_t / (np.sqrt(v_t) + eps)                  # update / alpha, uncorrected
step_corrected = m_hat_t / (np.sqrt(v_hat_t) + eps)    # update / alpha, corrected

fig = Figure(figsize=(10, 3.4), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
ax1.plot(steps, m_t, label=r"$m_t$")
ax1.plot(steps, m_hat_t, "--", label=r"$\hat m_t$")
ax1.plot(steps, v_t, label=r"$v_t$")
ax1.plot(steps, v_hat_t, ":", label=r"$\hat v_t$")
ax1.set(xlabel="step t", title="moments for a constant gradient g = 1", xscale="log")
ax2.plot(steps, step_raw, label="without correction")
ax2.plot(steps, step_corrected, label="with correction")
ax2.set(xlabel="step t", ylabel=r"update / $\alpha$", title="size of the update", xscale="log")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
    ax.legend()
show_figure(fig, OUT / "bias_correction.png")
peak = int(np.argmax(step_raw))
later = np.arange(1, 5001)
raw_later = (1 - beta1 ** later) / np.sqrt(1 - beta2 ** later)   # the same curve, further out
within_10 = int(later[np.argmax(raw_later < 1.1)])
print(f"without correction: {step_raw[0]:.3f} alpha at t=1, peak {step_raw[peak]:.3f} alpha at t={steps[peak]}, "
      f"{step_raw[-1]:.3f} alpha at t=200, within 10% of alpha from t={within_10}; "
      f"with correction: {step_corrected.min():.6f}..{step_corrected.max():.6f} alpha")

# %%
# what the text says, checked (the curve is a closed formula: no noise, tight tolerances)
np.testing.assert_allclose(step_corrected, 1.0, rtol=1e-7)          # eps = 1e-8 against sqrt(v_hat) = 1
np.testing.assert_allclose(step_raw[0], (1 - beta1) / np.sqrt(1 - beta2), rtol=1e-6)  # eps / sqrt(v_1) = 3e-7
assert abs(step_raw[0] - 3.16) < 0.005
assert 10 <= steps[peak] <= 14 and abs(step_raw[peak] - 6.6) < 0.05, (steps[peak], step_raw[peak])
assert (np.diff(step_raw[:peak + 1]) > 0).all() and (np.diff(step_raw[peak:]) < 0).all()  # rises, then falls
assert abs(step_raw[-1] - 2.3) < 0.06 and 1700 <= within_10 <= 1800, (step_raw[-1], within_10)


# %% [markdown]
# ## SGD, momentum and Adam on a 2-D surface
#
# A long narrow valley, $f(x, y) = \tfrac12 (x^2 + 30\,y^2)$: the curvature across the
# valley ($y$) is 30 times the curvature along it ($x$). Each optimizer is minillm's own
# (`SGD`, `SGD(momentum=0.8)`, `Adam`), fed the exact gradient $(x, 30y)$ for 80 steps
# from $(-4.5, 1.2)$.

# %%
def loss_and_grad(theta, kappa=30.0):                  # f and its gradient, by hand
    x, y = theta
    return 0.5 * (x ** 2 + kappa * y ** 2), np.array([x, kappa * y])

def trajectory(make_optimizer, n_steps=80, start=(-4.5, 1.2), kappa=30.0):
    p = ref.Parameter(np.array(start))
    opt = make_optimizer([p])
    path = [p.data.copy()]
    for _ in range(n_steps):
        _, p.grad = loss_and_grad(p.data, kappa)
        opt.step()
        opt.zero_grad()
        path.append(p.data.copy())
    return np.array(path)                              # (n_steps + 1, 2)

optimizers = {
    "SGD (lr 0.05)": lambda ps: ref.SGD(ps, lr=0.05),
    "momentum (lr 0.02, 0.8)": lambda ps: ref.SGD(ps, lr=0.02, momentum=0.8),
    "Adam (lr 0.2)": lambda ps: ref.Adam(ps, lr=0.2),
}
runs = {name: trajectory(make) for name, make in optimizers.items()}
xs, ys = np.meshgrid(np.linspace(-5, 5, 200), np.linspace(-1.6, 1.6, 120))
fig = Figure(figsize=(10, 4.2), layout="constrained")
ax = fig.subplots()
ax.contour(xs, ys, 0.5 * (xs ** 2 + 30 * ys ** 2), levels=np.geomspace(0.05, 60, 14), cmap="Greys")
for name, path in runs.items():
    ax.plot(path[:, 0], path[:, 1], "o-", ms=2.5, lw=1, label=name)
ax.plot(0, 0, "k*", ms=12)
ax.set(xlabel="x", ylabel="y", title=r"$f(x, y) = (x^2 + 30 y^2) / 2$, 80 steps each")
ax.legend()
show_figure(fig, OUT / "trajectories.png")
final = {name: loss_and_grad(path[-1])[0] for name, path in runs.items()}
for name, path in runs.items():
    flips = int((np.sign(path[1:, 1]) != np.sign(path[:-1, 1])).sum())
    print(f"{name:24s} f after 80 steps: {final[name]:.2e}   y changed sign {flips:2d} times")

# %% [markdown]
# What the plot shows, and the cell below checks:
#
# - **SGD** zig-zags across the valley and crawls along it. Its learning rate is capped by
#   the steep direction (above $\mathrm{lr} = 2/30$ it diverges across the valley); at 0.05,
#   $y_{t+1} = (1 - 30 \cdot 0.05)\,y_t = -0.5\,y_t$ changes sign at every step, while
#   $x_{t+1} = 0.95\,x_t$ creeps along: after 80 steps $x$ is still $-4.5 \cdot
#   0.95^{80} \approx -0.074$.
# - **Momentum** accumulates the consistent along-valley component and damps the
#   oscillating one: it ends more than a hundred times lower than the other two. On a pure
#   quadratic, well-tuned momentum is hard to beat.
# - **Adam** does *not* head straight for the minimum. Its first step moves both
#   coordinates by exactly $\alpha = 0.2$, although the gradient $(-4.5, 36)$ is eight times
#   steeper across the valley: a diagonal step, pointing neither down the gradient nor at
#   the minimum. Then $x$ advances by nearly $\alpha$ per step while $y$ overshoots the
#   valley floor and swings back with a shrinking amplitude: the wide S-curve. It
#   overshoots the minimum along $x$ as well (to about $x = +0.5$) and turns back, circling
#   in until $\hat m$ shrinks. After 80 steps it is no better than SGD here (slightly
#   worse).
#
# Adam's real advantage is elsewhere: its path does not depend on the scale of each
# coordinate's gradient, so one learning rate works for parameters whose gradients differ
# by orders of magnitude.

# %%
sgd, momentum, adam = runs.values()
assert (np.sign(sgd[1:, 1]) != np.sign(sgd[:-1, 1])).all()              # SGD: y flips at every step
np.testing.assert_allclose(sgd[1:, 0] / sgd[:-1, 0], 0.95, rtol=1e-12)  # and x shrinks by 0.95 per step
np.testing.assert_allclose(sgd[-1, 0], -4.5 * 0.95 ** 80, rtol=1e-12)
f_sgd, f_momentum, f_adam = final.values()
assert f_momentum < f_sgd / 100 and f_momentum < f_adam / 100, final  # momentum: far lowest
np.testing.assert_allclose(np.abs(adam[1] - adam[0]), 0.2, rtol=1e-6)  # Adam's first step: alpha in x and y
assert adam[1:, 1].min() < -0.3 and (np.sign(adam[1:, 1]) != np.sign(adam[:-1, 1])).sum() >= 3  # y overshoots, swings
assert 0.3 < adam[:, 0].max() < 0.7 and abs(adam[-1, 0]) < 0.1      # overshoots x = 0, turns back
assert f_adam > f_sgd, final                                          # not better than SGD on this quadratic
print("checked: SGD zig-zags (y flips every step) and crawls (x *= 0.95); momentum lowest by 100x; "
      "Adam's first step is (+0.2, -0.2), its y overshoots to", adam[:, 1].min().round(3))

# %% [markdown]
# Now make the valley a hundred times steeper across, $f = \tfrac12(x^2 + 3000\,y^2)$, and
# keep every learning rate. SGD and momentum diverge at once (the factor on $y$ becomes
# $1 - 3000 \cdot 0.05 = -149$ per step), and need a learning rate a hundred times smaller,
# which makes them crawl along $x$ a hundred times slower. Adam follows *the same path* as
# before: multiplying the gradient of $y$ by 100 multiplies $\hat m$ and $\sqrt{\hat v}$ of
# $y$ by 100 alike, and the ratio does not change (only $\epsilon = 10^{-8}$ in the
# denominator notices, far below what a plot shows).

# %%
with np.errstate(over="ignore", invalid="ignore"):   # SGD's iterates overflow: that is the point
    steep = {name: trajectory(make, kappa=3000.0) for name, make in optimizers.items()}
for name, path in steep.items():
    print(f"{name:24s} kappa 3000: largest |y| {np.abs(path[:, 1]).max():.1e}")
gap = np.abs(steep["Adam (lr 0.2)"] - runs["Adam (lr 0.2)"]).max()
print(f"Adam's path with 3000 instead of 30: largest difference {gap:.1e}")
for name in ("SGD (lr 0.05)", "momentum (lr 0.02, 0.8)"):      # diverged: |y| beyond 1e100 (or inf / nan)
    assert not np.abs(steep[name][:, 1]).max() <= 1e100, name
assert gap < 1e-6, gap    # eps / sqrt(v_hat) is ~1e-8 relative per step; 80 steps leave it far below 1e-6


# %% [markdown]
# ## Parity check: the NumPy reference against PyTorch
#
# 100 steps of `Adam` (and `AdamW`) in both backends on the same random gradients, float64,
# and `torch.optim.Adam` as a third opinion. The formulas are the same; only the rounding
# of a few operations may differ, so the float64 parity contract of
# `docs/architecture.md` (rtol $10^{-7}$, atol $10^{-9}$) is generous.

# %%
def run(backend, cls, n_steps=100, **hyper):
    rng = np.random.default_rng(3)
    theta0 = rng.standard_normal((4, 5))
    if backend == "torch.optim":
        p = torch.nn.Parameter(torch.tensor(theta0))
        opt = getattr(torch.optim, cls)([p], **hyper)
    else:
        module = ref if backend == "reference" else tb
        p = module.Parameter(theta0.copy() if module is ref else torch.tensor(theta0))
        opt = getattr(module, cls)([p], **hyper)
    for _ in range(n_steps):
        g = rng.standard_normal((4, 5))                # the same gradients in every run
        p.grad = g if backend == "reference" else torch.tensor(g)
        opt.step()
        opt.zero_grad()
    return p.data if backend == "reference" else p.detach().numpy()

for cls, hyper in (("Adam", dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8)),
                   ("AdamW", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1))):
    theta_ref = run("reference", cls, **hyper)
    for other in ("torch", "torch.optim"):
        theta_other = run(other, cls, **hyper)
        np.testing.assert_allclose(theta_ref, theta_other, rtol=1e-7, atol=1e-9, err_msg=f"{cls} vs {other}")
        print(f"{cls:5s} reference vs {other:11s}: after 100 steps, largest difference "
              f"{np.abs(theta_ref - theta_other).max():.1e}")

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "ops" / "test_optim.py") + "::test_200_steps_follow_torch_optim",
                        str(TESTS / "ops" / "test_optim.py") + "::test_the_first_adam_step_moves_every_element_by_lr"])
    assert code == 0, f"the optimizer parity tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the checks above are the parity check")
