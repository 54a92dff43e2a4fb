# Source of notebooks/04_adam.ipynb (build with: python notebooks/build.py)

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

for t, g in enumerate(gradients, start=1):
    m = beta1 * m + (1 - beta1) * g                    # (1)
    v = beta2 * v + (1 - beta2) * g ** 2               # (2)
    m_hat = m / (1 - beta1 ** t)                       # (3)
    v_hat = v / (1 - beta2 ** t)                       # (4)
    theta = theta - alpha * m_hat / (np.sqrt(v_hat) + eps)  # (5)
    param.grad = g.copy()
    opt.step()
    opt.zero_grad()
    print(f"t={t}  m={m}  m_hat={m_hat}\n     v={v}  v_hat={v_hat}\n     theta={theta}")
    np.testing.assert_allclose(param.data, theta, rtol=1e-15, atol=1e-15)
print("minillm.reference.Adam followed the five formulas exactly")

# %% [markdown]
# Two things to notice. The step of every coordinate is about $\alpha = 0.1$ at first,
# whether its gradient is $-2$ or $0.01$: Adam divides by the gradient's running scale, so
# its step size is set by $\alpha$, not by the size of the gradient. And the first
# coordinate, whose gradient changes sign, moves less and less: $\hat m$ averages the
# disagreeing gradients towards 0.
#
# ## What bias correction does at small $t$
#
# $m$ and $v$ start at 0, so in the first steps they are biased towards 0: with a constant
# gradient $g$, $m_t = (1-\beta_1^t)\,g$ and $v_t = (1-\beta_2^t)\,g^2$. Dividing by
# $1-\beta^t$ removes exactly that factor. Without the correction the first update would
# be $\alpha\,(1-\beta_1)/\sqrt{1-\beta_2} \approx 3.16\,\alpha$ (with the defaults), then
# shrink: too large at the start, and wrong for hundreds of steps because $\beta_2 = 0.999$
# forgets slowly.

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
print(f"first update without correction: {step_raw[0]:.3f} alpha; with: {step_corrected[0]:.3f} alpha")

# %% [markdown]
# ## SGD, momentum and Adam on a 2-D surface
#
# A long narrow valley, $f(x, y) = \tfrac12 (x^2 + 30\,y^2)$, the shape that makes plain
# gradient descent zig-zag: the gradient points mostly across the valley, not along it. Each
# optimizer is minillm's own (`SGD`, `SGD(momentum=0.9)`, `Adam`), fed the exact gradient
# $(x, 30y)$ for 80 steps from $(-4.5, 1.2)$.

# %%
def loss_and_grad(theta):                              # f and its gradient, by hand
    x, y = theta
    return 0.5 * (x ** 2 + 30 * y ** 2), np.array([x, 30 * y])

def trajectory(make_optimizer, n_steps=80, start=(-4.5, 1.2)):
    p = ref.Parameter(np.array(start))
    opt = make_optimizer([p])
    path = [p.data.copy()]
    for _ in range(n_steps):
        _, p.grad = loss_and_grad(p.data)
        opt.step()
        opt.zero_grad()
        path.append(p.data.copy())
    return np.array(path)                              # (n_steps + 1, 2)

runs = {
    "SGD (lr 0.05)": trajectory(lambda ps: ref.SGD(ps, lr=0.05)),
    "momentum (lr 0.02, 0.8)": trajectory(lambda ps: ref.SGD(ps, lr=0.02, momentum=0.8)),
    "Adam (lr 0.2)": trajectory(lambda ps: ref.Adam(ps, lr=0.2)),
}
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
for name, path in runs.items():
    print(f"{name:24s} f after 80 steps: {loss_and_grad(path[-1])[0]:.2e}")

# %% [markdown]
# SGD's learning rate is capped by the steep direction (above $\mathrm{lr} = 2/30$ it
# diverges across the valley), so it zig-zags across and crawls along. Momentum accumulates
# the consistent along-valley component and damps the oscillating one: on a pure quadratic,
# well-tuned momentum is hard to beat. Adam rescales each coordinate by its own gradient
# size, so it heads for the minimum in a nearly straight line from the start, with a step of
# about $\alpha$ whatever the gradient's scale; near the minimum that fixed step size makes
# it circle until $\hat m$ shrinks. Its real advantage is that one learning rate works for
# parameters whose gradients differ by orders of magnitude (replace 30 by 3000 above: SGD
# and momentum need a new learning rate, Adam does not).
#
# ## Parity check: the NumPy reference against PyTorch
#
# 100 steps of `Adam` (and `AdamW`) in both backends on the same random gradients, float64,
# and `torch.optim.Adam` as a third opinion. The formulas are the same; only the rounding
# of a few operations may differ, so the float64 parity contract of `docs/architecture.md` (rtol $10^{-7}$, atol
# $10^{-9}$) is generous.

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
                        str(TESTS / "test_optim.py") + "::test_200_steps_follow_torch_optim",
                        str(TESTS / "test_optim.py") + "::test_the_first_adam_step_moves_every_element_by_lr"])
    assert code == 0, f"the optimizer parity tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the checks above are the parity check")
