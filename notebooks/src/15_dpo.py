# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 15. DPO: preference tuning without a reward model
#
# Preference data says which of two answers to the same prompt is better: a prompt $x$, a
# chosen answer $y_w$ and a rejected one $y_l$. RLHF fits a reward model to such pairs and
# then runs reinforcement learning against it. Direct preference optimisation (Rafailov et
# al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
# Model", eq. 7) shows that the policy itself defines a reward, and trains on the pairs
# with one loss:
#
# $$\mathcal L = -\log\sigma\Big(\beta\big[(\log\pi_\theta(y_w|x) - \log\pi_{ref}(y_w|x))
#   - (\log\pi_\theta(y_l|x) - \log\pi_{ref}(y_l|x))\big]\Big)$$
#
# with $\pi_{ref}$ the frozen model tuning starts from. This notebook follows
# `minillm/reference/dpo.py`: the loss and its gradient derived and checked, the implicit
# reward, label smoothing, the sequence log-probabilities and their backward to the
# logits, a toy policy pushed toward the chosen answers; it ends with the parity check of
# the reference against torch.

# %%
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.core.config import ModelConfig
from minillm.notebook import assert_parity, show
from minillm.reference.dpo import (dpo_loss_backward, dpo_loss_forward, sequence_logps_backward,
                                   sequence_logps_forward)

torch.set_num_threads(1)
rng = np.random.default_rng(0)

# %% [markdown]
# ## The loss and the implicit reward
#
# DPO's derivation starts from the RLHF objective, a reward $r$ maximised with a KL
# penalty $\beta\,\mathrm{KL}(\pi\,\|\,\pi_{ref})$; its optimum is
# $\pi^*(y|x) \propto \pi_{ref}(y|x)\,e^{r(x,y)/\beta}$, so any policy defines the reward
# it is optimal for, up to a term of $x$ alone:
#
# $$r_\theta(x, y) = \beta\,\big(\log\pi_\theta(y|x) - \log\pi_{ref}(y|x)\big)$$
#
# (eq. 5). Under the Bradley-Terry model $P(y_w \succ y_l) = \sigma(r(x,y_w) - r(x,y_l))$
# the $x$ term cancels, and the loss above is the negative log-likelihood of the observed
# preferences under the policy's own rewards. `dpo_loss` returns, in trl's order, the
# loss of each pair and the two rewards (reports: they carry no gradient).

# %%
show(dpo_loss_forward)

# %%
P = 6
policy_chosen, policy_rejected, reference_chosen, reference_rejected = (-rng.uniform(5, 30, P) for _ in range(4))
beta = 0.1
(losses, chosen_rewards, rejected_rewards), cache = dpo_loss_forward(
    policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)
r_w = beta * (policy_chosen - reference_chosen)
r_l = beta * (policy_rejected - reference_rejected)
by_formula = -np.log(1 / (1 + np.exp(-(r_w - r_l))))
print("losses :", losses.round(4))
print("rewards: chosen", chosen_rewards.round(3), " rejected", rejected_rewards.round(3))
assert np.array_equal(chosen_rewards, r_w) and np.array_equal(rejected_rewards, r_l)
assert np.allclose(losses, by_formula, rtol=1e-12, atol=1e-14)    # the same float64 formula via logaddexp
# a pair whose rewards are ordered rightly costs less than log 2, one ordered wrongly more
assert ((losses < np.log(2)) == (chosen_rewards > rejected_rewards)).all()

# %% [markdown]
# ## Its gradient
#
# Write $z = r_w - r_l$ (the margin). From $\frac{d}{dz}\log\sigma(z) = 1 - \sigma(z) =
# \sigma(-z)$:
#
# $$\frac{\partial\mathcal L}{\partial z} = -\sigma(-z), \qquad
# \frac{\partial\mathcal L}{\partial \log\pi_\theta(y_w|x)} = -\beta\,\sigma(-z), \qquad
# \frac{\partial\mathcal L}{\partial \log\pi_\theta(y_l|x)} = +\beta\,\sigma(-z)$$
#
# So each step raises the chosen answer's log-probability and lowers the rejected one's,
# with the weight $\beta\,\sigma(r_l - r_w)$: large where the implicit reward orders the
# pair wrongly, near zero where it already orders it rightly by a wide margin (the paper's
# section 4, "What does the DPO update do?"). The reference's log-probabilities get the
# opposite signs; they are constants in training, computed once without gradients.

# %%
show(dpo_loss_backward)

# %%
dlosses = rng.normal(size=P)                       # a random upstream gradient, not all ones
grads = dpo_loss_backward(dlosses, cache)
z = chosen_rewards - rejected_rewards
sigma_minus_z = 1 / (1 + np.exp(z))
assert np.allclose(grads[0], dlosses * -beta * sigma_minus_z, rtol=1e-12, atol=1e-15)   # the derivation
assert np.array_equal(grads[1], -grads[0]) and np.array_equal(grads[2], -grads[0]) and np.array_equal(grads[3], grads[0])

inputs = [policy_chosen, policy_rejected, reference_chosen, reference_rejected]
h = 1e-6
for i, name in enumerate(("policy_chosen", "policy_rejected", "reference_chosen", "reference_rejected")):
    fd = np.zeros(P)
    for p in range(P):
        plus = [a.copy() for a in inputs]
        minus = [a.copy() for a in inputs]
        plus[i][p] += h
        minus[i][p] -= h
        fd[p] = ((dpo_loss_forward(*plus, beta)[0][0] - dpo_loss_forward(*minus, beta)[0][0]) * dlosses).sum() / (2 * h)
    # central difference: error ~ h^2 |l'''| + 1e-16 |l| / h, below 1e-9 here
    assert np.allclose(fd, grads[i], rtol=1e-6, atol=1e-9), name
print("finite differences agree with the hand-written gradient of each of the four inputs")

weight = beta * sigma_minus_z
order = np.argsort(z)
print("margin z           :", z[order].round(3))
print("weight beta sig(-z):", weight[order].round(4))
assert (np.diff(weight[order]) <= 0).all()         # the more wrongly ordered the pair, the larger its step

# %% [markdown]
# ## Label smoothing (conservative DPO)
#
# If a fraction $\varepsilon$ of the preference labels is believed flipped, the
# probability that $y_w$ is really the better answer is $1-\varepsilon$, not 1. The
# conservative loss (Mitchell 2023, cDPO; trl's `label_smoothing`) is the cross-entropy of
# the model's $P(y_w \succ y_l) = \sigma(z)$ against that soft label:
#
# $$\mathcal L_\varepsilon = -(1-\varepsilon)\log\sigma(z) - \varepsilon\log\sigma(-z), \qquad
# \frac{\partial\mathcal L_\varepsilon}{\partial z} = -(1-\varepsilon)\sigma(-z) + \varepsilon\sigma(z)$$
#
# With $\varepsilon = 0$ the gradient never vanishes: the loss keeps pushing the margin to
# infinity, however certain it already is. With $\varepsilon > 0$ the gradient is zero where
# $\sigma(z)/\sigma(-z) = e^z = (1-\varepsilon)/\varepsilon$: the margin stops at
# $z^* = \log\frac{1-\varepsilon}{\varepsilon}$, the loss's minimum.

# %%
margins = np.linspace(-4, 8, 1201)
zero = np.zeros_like(margins)
for eps_ls in (0.0, 0.1, 0.25):
    (l_eps, _, _), c_eps = dpo_loss_forward(margins / beta, zero, zero, zero, beta, eps_ls)   # z = margins
    slope = dpo_loss_backward(np.ones_like(margins), c_eps)[0] / beta                        # dL/dz
    best = margins[np.argmin(l_eps)]
    if eps_ls == 0.0:
        print(f"eps 0.00: dL/dz < 0 everywhere (closest to 0 at z = 8: {slope.max():.1e}): no minimum")
        assert (slope < 0).all()
    else:
        z_star = np.log((1 - eps_ls) / eps_ls)
        (_, _, _), c_star = dpo_loss_forward(np.array([z_star / beta]), *[np.zeros(1)] * 3, beta, eps_ls)
        at_star = dpo_loss_backward(np.ones(1), c_star)[0][0] / beta
        print(f"eps {eps_ls:.2f}: the loss is lowest at z = {best:.2f}; z* = log((1-eps)/eps) = {z_star:.3f}, "
              f"dL/dz there {at_star:.1e}")
        assert abs(at_star) < 1e-12                        # float64 rounding of sigmoids near 0.1-0.9
        assert abs(best - z_star) <= 0.01                  # the grid's spacing

# %% [markdown]
# ## Sequence log-probabilities and their backward to the logits
#
# $\log\pi(y|x)$ is a sum over the completion's tokens: with $m_t = 1$ on the completion
# and 0 on the prompt and padding, $\log\pi(y|x) = \sum_t m_t \log\mathrm{softmax}(z_t)_{y_t}$,
# with $z_t$ the logits at position $t$ and $y_t$ the token they predict. It is the minus
# of the summed cross-entropy over the counted tokens, so its gradient is the minus of
# cross-entropy's, "one-hot minus softmax", scaled by the upstream gradient $g_n$:
#
# $$\frac{\partial L}{\partial z_{n,t,c}} = g_n\,m_{n,t}\,\big([c = y_{n,t}] - p_{n,t,c}\big)$$

# %%
show(sequence_logps_backward)

# %%
N, T, V = 3, 5, 7
logits = rng.normal(size=(N, T, V)) * 2
targets = rng.integers(0, V, (N, T))
mask = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 0, 1, 1]], dtype=bool)   # prompt, completion, padding
logps, lp_cache = sequence_logps_forward(logits, targets, mask)
ce = np.array([ref.cross_entropy(logits[n], np.where(mask[n], targets[n], -100), reduction="sum") for n in range(N)])
print("log pi(y|x):", logps.round(4), "  -summed cross-entropy:", (-ce).round(4))
assert np.allclose(logps, -ce, rtol=1e-12, atol=1e-12)

g = rng.normal(size=N)
dlogits = sequence_logps_backward(g, lp_cache)
assert not dlogits[~mask].any()                     # prompt and padding positions get no gradient
assert np.allclose(dlogits.sum(-1), 0, atol=1e-14)  # one-hot minus a distribution sums to zero over V
fd = np.zeros_like(logits)
for i in np.ndindex(logits.shape):
    plus, minus = logits.copy(), logits.copy()
    plus[i] += h
    minus[i] -= h
    fd[i] = ((sequence_logps_forward(plus, targets, mask)[0] - sequence_logps_forward(minus, targets, mask)[0]) @ g) / (2 * h)
print(f"largest |finite difference - hand-written| over {fd.size} logits: {np.abs(fd - dlogits).max():.1e}")
assert np.allclose(fd, dlogits, rtol=1e-6, atol=1e-9)   # central difference, as above

# %% [markdown]
# ## A toy policy pushed toward the chosen answers
#
# The smallest language model that shows the whole chain: a bigram policy,
# $\pi_\theta(y_t | y_{t-1}) = \mathrm{softmax}(\Theta_{y_{t-1}})$ with one row of logits
# $\Theta$ (V, V) per previous token. The reference model is its frozen copy at the start.
# A prompt is one token $p$; the chosen answer counts up from it, $(p+1, p+2)$, the rejected
# one counts down, $(p-1, p-2)$ (mod V). Each step runs the whole hand-written chain:
# the logits, `sequence_logps` on the answers' tokens, `dpo_loss`, then backward through
# both to the logits, and from the logits to $\Theta$ (each row gets the gradients of the
# positions whose previous token it is). The reward accuracy, the share of pairs whose
# chosen reward is above the rejected one, is 0 at the start (the policy is the reference:
# every reward is 0) and rises to 1.

# %%
V_toy, beta_toy = 8, 0.5
prompts = np.arange(V_toy)
chosen = np.stack([prompts, (prompts + 1) % V_toy, (prompts + 2) % V_toy], axis=1)     # (P, 3): x, y_w
rejected = np.stack([prompts, (prompts - 1) % V_toy, (prompts - 2) % V_toy], axis=1)   # (P, 3): x, y_l
sequences = np.concatenate([chosen, rejected])                 # (2P, 3): every chosen, then every rejected
inputs_, targets_ = sequences[:, :-1], sequences[:, 1:]        # position t predicts token t + 1
answer = np.ones_like(targets_, dtype=bool)                    # both predicted tokens are the answer's
theta = rng.normal(scale=0.5, size=(V_toy, V_toy))             # the policy's logits table
theta_start = theta.copy()                                     # the reference model's
reference_logps = sequence_logps_forward(theta[inputs_], targets_, answer)[0]   # frozen, computed once
P_toy = len(prompts)


def dpo_step(theta):
    logits = theta[inputs_]                                                       # (2P, 2, V)
    logps, c_logps = sequence_logps_forward(logits, targets_, answer)            # (2P,)
    (losses, r_w, r_l), c_dpo = dpo_loss_forward(logps[:P_toy], logps[P_toy:], reference_logps[:P_toy],
                                                  reference_logps[P_toy:], beta_toy)
    d_chosen, d_rejected, _, _ = dpo_loss_backward(np.full(P_toy, 1 / P_toy), c_dpo)   # the mean loss
    dlogits = sequence_logps_backward(np.concatenate([d_chosen, d_rejected]), c_logps)  # (2P, 2, V)
    dtheta = np.zeros_like(theta)
    np.add.at(dtheta, inputs_, dlogits)                                         # row y_{t-1} gets position t's
    return losses.mean(), float((r_w > r_l).mean()), float((r_w - r_l).mean()), dtheta


history = []
for step in range(60):
    loss, accuracy, margin, dtheta = dpo_step(theta)
    history.append((loss, accuracy, margin))
    theta -= 1.0 * dtheta                                                       # plain gradient descent
print(f"{'step':>4s} {'loss':>6s} {'reward acc.':>11s} {'margin':>7s}")
for step in (0, 1, 5, 20, 59):
    print(f"{step:4d} {history[step][0]:6.3f} {history[step][1]:11.2f} {history[step][2]:7.3f}")
up, down = (prompts + 1) % V_toy, (prompts - 1) % V_toy
theta_ref = theta_start
print("pi(p+1 | p), reference:", ref.softmax(theta_ref)[prompts, up].round(2))
print("             policy   :", ref.softmax(theta)[prompts, up].round(2))
print("pi(p-1 | p), reference:", ref.softmax(theta_ref)[prompts, down].round(2))
print("             policy   :", ref.softmax(theta)[prompts, down].round(2))
assert history[0][1] == 0.0 and history[0][2] == 0.0 and np.isclose(history[0][0], np.log(2))   # policy = reference
assert history[-1][1] == 1.0 and history[-1][0] < 0.5 * np.log(2)
assert all(b[0] <= a[0] + 1e-12 for a, b in zip(history, history[1:]))         # the loss never rose
assert (ref.softmax(theta)[prompts, up] > ref.softmax(theta_ref)[prompts, up]).all()       # every step up more likely
assert (ref.softmax(theta)[prompts, down] < ref.softmax(theta_ref)[prompts, down]).all()   # every step down less

# %% [markdown]
# ## The same chain on a GPT: `dpo_objective`
#
# For a real model the chain is the same with one more link: the logits come from the
# policy GPT, and their gradient goes on into the model's own hand-written backward.
# `dpo_objective(model, idx, targets, reference_logps)` takes a batch of $2P$ rows (the
# prompts with their chosen completions, then the same prompts with the rejected ones),
# targets `-100` off the completions, and the frozen reference's log-probabilities, and
# returns the mean loss (a `Loss` whose `backward()` runs the chain) and the rewards. It is
# what `minillm dpo` trains with. The reference model is the policy's copy at the start,
# its log-probabilities computed once, without gradients.

# %%
show(ref.dpo_objective)

# %%
V_gpt, T_gpt, P_gpt = 12, 8, 6
cfg = ModelConfig(vocab_size=V_gpt, block_size=T_gpt, d_model=32, n_heads=4, n_layers=2, dropout=0.0, dtype="float64")
first = rng.integers(0, V_gpt, P_gpt)                                         # one prompt token each
steps_up = (first[:, None] + np.arange(T_gpt + 1)) % V_gpt                    # x, then counting up
steps_down = (first[:, None] - np.arange(T_gpt + 1)) % V_gpt                  # x, then counting down
rows = np.concatenate([steps_up, steps_down])                                  # (2P, T + 1)
idx, targets = rows[:, :-1], rows[:, 1:].copy()                                # (2P, T) each
targets[:, :1] = -100                                                          # predicting x's own token: no
policy = ref.GPT(cfg, seed=0)
reference_model = ref.GPT(cfg, seed=0)                                         # the frozen copy
logits_ref, _ = reference_model(idx)
frozen_logps = ref.sequence_logps(logits_ref, np.where(targets < 0, 0, targets), targets >= 0)   # (2P,)
opt = ref.AdamW(policy.parameters(), lr=1e-3)
accuracy = []
for step in range(20):
    loss, chosen_r, rejected_r = ref.dpo_objective(policy, idx, targets, frozen_logps, beta=0.5)
    accuracy.append(float((chosen_r > rejected_r).mean()))
    loss.backward()
    opt.step()
    opt.zero_grad()
print(f"reward accuracy at steps 0, 1, 10, 19: {accuracy[0]}, {accuracy[1]}, {accuracy[10]}, {accuracy[-1]}; "
      f"last loss {float(loss):.3f}")
assert accuracy[0] == 0.0 and accuracy[-1] == 1.0       # every reward 0 at the start (policy = reference)

# %% [markdown]
# ## Parity check: DPO in the reference and in torch
#
# First the ops: the same float64 logits through `sequence_logps` and `dpo_loss` (with
# label smoothing) in both backends: the log-probabilities, the losses, the rewards, and the
# gradient of the mean loss with respect to the policy's logits (the reference's by hand,
# torch's by autograd). Then `dpo_objective` on the GPT above: the loss, the rewards and
# every parameter's gradient, on the torch explicit path and its fast path. All within the
# float64 parity contract (rtol $10^{-7}$, atol $10^{-9}$, docs/architecture.md).

# %%
Np, Tp, Vp = 4, 6, 11                                          # 2 pairs: chosen rows first, then rejected
policy_logits = rng.normal(size=(Np, Tp, Vp))
reference_logits = rng.normal(size=(Np, Tp, Vp))
tok = rng.integers(0, Vp, (Np, Tp))
completion = np.zeros((Np, Tp), dtype=bool)
completion[:, 2:] = True
kw = dict(beta=0.3, label_smoothing=0.1)

pol, c_pol = sequence_logps_forward(policy_logits, tok, completion)
refl = sequence_logps_forward(reference_logits, tok, completion)[0]
(r_losses, r_cw, r_rw), c_d = dpo_loss_forward(pol[:2], pol[2:], refl[:2], refl[2:], **kw)
dc, dr, _, _ = dpo_loss_backward(np.full(2, 0.5), c_d)
r_dlogits = sequence_logps_backward(np.concatenate([dc, dr]), c_pol)

t_logits = torch.tensor(policy_logits, requires_grad=True)
t_tok, t_mask = torch.as_tensor(tok), torch.as_tensor(completion)
t_pol = tb.sequence_logps(t_logits, t_tok, t_mask)
with torch.no_grad():                                           # the frozen reference: no graph
    t_ref = tb.sequence_logps(torch.tensor(reference_logits), t_tok, t_mask)
t_losses, t_cw, t_rw = tb.dpo_loss(t_pol[:2], t_pol[2:], t_ref[:2], t_ref[2:], **kw)
t_losses.mean().backward()
for name, ours, theirs in (("policy logps", pol, t_pol), ("losses", r_losses, t_losses),
                           ("chosen rewards", r_cw, t_cw), ("rejected rewards", r_rw, t_rw),
                           ("dlogits", r_dlogits, t_logits.grad)):
    assert_parity(name, ours, theirs, rtol=1e-7, atol=1e-9)
assert not t_cw.requires_grad and not t_ref.requires_grad       # reports and the reference carry no gradient

# %%
policy = ref.GPT(cfg, seed=3)
loss, chosen_r, rejected_r = ref.dpo_objective(policy, idx, targets, frozen_logps, beta=0.5, label_smoothing=0.1)
loss.backward()
for path, fused in (("explicit", False), ("fast", True)):
    t_policy = tb.GPT(cfg, seed=3).set_fused(fused)
    t_loss, t_chosen, t_rejected = tb.dpo_objective(t_policy, torch.as_tensor(idx), torch.as_tensor(targets),
                                                    torch.as_tensor(frozen_logps), beta=0.5, label_smoothing=0.1)
    t_loss.backward()
    assert_parity(f"{path} loss", np.array(float(loss)), np.array(t_loss.item()), rtol=1e-7, atol=1e-9)
    assert_parity(f"{path} rewards", np.concatenate([chosen_r, rejected_r]), torch.cat([t_chosen, t_rejected]),
                  rtol=1e-7, atol=1e-9)
    t_params = dict(t_policy.named_parameters())
    for name, p in policy.named_parameters():
        np.testing.assert_allclose(p.grad, t_params[name].grad.numpy(), rtol=1e-7, atol=1e-9, err_msg=name)
    print(f"{path}: every one of {len(t_params)} gradients within rtol 1e-7, atol 1e-9")

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "ops" / "test_dpo.py"), str(TESTS / "apps" / "test_dpo_task.py"),
                        "-k", "not test_dpo_task or dpo_objective"])
    assert code == 0, f"DPO's parity tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the check above is the parity check")
