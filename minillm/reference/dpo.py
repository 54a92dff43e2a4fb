r"""Direct preference optimisation (Rafailov et al. 2023, "Direct Preference
Optimization: Your Language Model is Secretly a Reward Model", eq. 7) and the sequence
log-probabilities it reads.

Dimension legend: ``P`` preference pairs; for :func:`sequence_logps` ``N`` sequences,
``T`` positions, ``V`` the vocabulary. Log-probabilities ``(P,)``, logits ``(N, T, V)``,
targets and mask ``(N, T)``.

The policy :math:`\pi_\theta` and the frozen reference :math:`\pi_{ref}` each give the
log-probability of a completion given its prompt, the sum of its tokens'
log-probabilities (:func:`sequence_logps`, with the mask on the completion's tokens);
the reference's are computed once, without gradients.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core import _validate as v
from ..core.config import IGNORE_INDEX
from .module import Loss

__all__ = ["dpo_loss", "dpo_loss_forward", "dpo_loss_backward",
           "sequence_logps", "sequence_logps_forward", "sequence_logps_backward", "dpo_objective"]


def _log_sigmoid(z):
    r""":math:`\log\sigma(z) = -\log(1 + e^{-z})`, by ``logaddexp`` so no exp overflows."""
    return -np.logaddexp(0.0, -z)


class DPOCache(NamedTuple):
    z: np.ndarray            # beta * margin, (P,)
    beta: float
    label_smoothing: float


def _check_dpo(logps, beta, label_smoothing):
    names = ("policy_chosen_logps", "policy_rejected_logps",
             "reference_chosen_logps", "reference_rejected_logps")
    arrays = [np.asarray(a) for a in logps]
    for name, a in zip(names, arrays):
        v.require_float(name, a)
        v.require_ndim(name, a, 1)
        v.require_same_dtype(name, a, names[0], arrays[0])
        v.require_shape(name, a, arrays[0].shape, f"{names[0]}'s (P,)")
    v.require_number_in("beta", beta, 0.0, np.inf, low_open=True)
    v.require_number_in("label_smoothing", label_smoothing, 0.0, 0.5, high_open=True)
    return arrays


def dpo_loss_forward(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                     reference_rejected_logps, beta=0.1, label_smoothing=0.0):
    r"""DPO's loss per pair, with conservative label smoothing (Mitchell 2023, cDPO):

    .. math::
        r_w = \beta\,(\log\pi_\theta(y_w|x) - \log\pi_{ref}(y_w|x)), \quad
        r_l = \beta\,(\log\pi_\theta(y_l|x) - \log\pi_{ref}(y_l|x)), \quad z = r_w - r_l

    .. math::
        \ell = -(1 - \varepsilon)\log\sigma(z) - \varepsilon\log\sigma(-z)

    :math:`r_w, r_l` are the implicit rewards (eq. 5); :math:`\varepsilon` = 0 is eq. 7,
    :math:`\varepsilon > 0` the loss when a fraction :math:`\varepsilon` of the labels is
    believed flipped (in [0, 0.5)). Returns ``((losses, chosen_rewards,
    rejected_rewards), DPOCache)``, in trl's order; the rewards are reports and carry no
    gradient (trl detaches them). Shapes: four (P,) -> three (P,).
    """
    if v.checking():
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, \
            reference_rejected_logps = _check_dpo(
                (policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                 reference_rejected_logps), beta, label_smoothing)
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps)      # (P,)
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps)  # (P,)
    z = chosen_rewards - rejected_rewards                                      # (P,)
    eps = label_smoothing
    losses = -(1.0 - eps) * _log_sigmoid(z)                                    # (P,)
    if eps > 0:   # absent at eps = 0, where 0 * log sig(-z) would be 0 * -inf = NaN at z = +inf
        losses = losses - eps * _log_sigmoid(-z)                               # (P,)
    return (losses, chosen_rewards, rejected_rewards), DPOCache(z, float(beta), float(eps))


def dpo_loss_backward(dlosses, cache: DPOCache):
    r"""Gradients of the losses, from :math:`\frac{d}{dz}\log\sigma(z) = \sigma(-z)`:

    .. math::
        \frac{\partial \ell}{\partial z} = -(1 - \varepsilon)\,\sigma(-z) + \varepsilon\,\sigma(z),
        \qquad \frac{\partial z}{\partial \log\pi_\theta(y_w)} = \beta
        = -\frac{\partial z}{\partial \log\pi_\theta(y_l)}
        = -\frac{\partial z}{\partial \log\pi_{ref}(y_w)}
        = \frac{\partial z}{\partial \log\pi_{ref}(y_l)}

    With :math:`\varepsilon = 0` the chosen completion is pushed up with weight
    :math:`\beta\,\sigma(-z) = \beta\,\sigma(r_l - r_w)`: most where the implicit reward
    orders the pair wrongly (Rafailov et al., section 4, "What does the DPO update do?").
    Shapes: dlosses (P,) -> the four log-probabilities' gradients, (P,) each, in input order.
    """
    z, beta, eps = cache
    if v.checking():
        dlosses = np.asarray(dlosses)
        v.require_shape("dlosses", dlosses, z.shape, "the shape of the losses (P,)")
    sig_pos, sig_neg = np.exp(_log_sigmoid(z)), np.exp(_log_sigmoid(-z))       # (P,) each
    dz = dlosses * (-(1.0 - eps) * sig_neg + eps * sig_pos)                   # (P,)
    dmargin = beta * dz                                                        # (P,)
    return dmargin, -dmargin, -dmargin, dmargin


def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
             reference_rejected_logps, beta=0.1, label_smoothing=0.0):
    """DPO's (losses, chosen_rewards, rejected_rewards); see :func:`dpo_loss_forward`."""
    return dpo_loss_forward(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                            reference_rejected_logps, beta, label_smoothing)[0]


class SequenceLogpsCache(NamedTuple):
    probs: np.ndarray        # softmax(logits), (N, T, V)
    safe_targets: np.ndarray  # targets, 0 where not counted, (N, T)
    mask: np.ndarray         # (N, T) float, 1 where counted


def _check_logps(logits, targets, mask):
    logits, targets, mask = np.asarray(logits), np.asarray(targets), np.asarray(mask)
    v.require_float("logits", logits)
    v.require_ndim("logits", logits, 3)
    v.require_nonempty_axis("logits", logits, -1)
    v.require_integer("targets", targets)
    v.require_shape("targets", targets, logits.shape[:-1], f"logits {logits.shape} without V")
    v.require_shape("mask", mask, logits.shape[:-1], f"logits {logits.shape} without V")
    if not (mask.dtype == bool or np.isin(mask, (0, 1)).all()):
        raise ValueError(f"expected mask to be bool or 0/1, got dtype {mask.dtype} with other values")
    mask = mask.astype(bool)
    V = logits.shape[-1]
    counted = targets[mask]
    if counted.size and (counted.min() < 0 or counted.max() >= V):
        raise ValueError(f"expected every counted target in [0, {V}) (V={V} classes), got values "
                         f"from {counted.min()} to {counted.max()}")
    return logits, targets, mask


def sequence_logps_forward(logits, targets, mask):
    r"""Log-probability of each sequence's counted tokens:

    .. math::
        \log\pi(y|x) = \sum_t m_t \log\mathrm{softmax}(z_t)_{y_t}

    with :math:`m_t` = 1 on the completion's tokens and 0 on the prompt's and on padding;
    ``targets[n, t]`` is the token that ``logits[n, t]`` predicts (already shifted by one:
    position t's logits predict token t + 1 of the text). A target where the mask is 0
    is not read (it may be -100). Shapes: logits (N, T, V), targets (N, T) int,
    mask (N, T) bool or 0/1 -> logps (N,). Returns ``(logps, SequenceLogpsCache)``.
    """
    if v.checking():
        logits, targets, mask = _check_logps(logits, targets, mask)
    m = np.asarray(mask).astype(logits.dtype)                                  # (N, T)
    safe = np.where(m > 0, targets, 0)                                         # (N, T)
    shifted = logits - logits.max(axis=-1, keepdims=True)                      # (N, T, V)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (N, T, V)
    token_logps = np.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]  # (N, T)
    logps = (token_logps * m).sum(axis=-1)                                     # (N,)
    return logps, SequenceLogpsCache(np.exp(log_probs), safe, m)


def sequence_logps_backward(dlogps, cache: SequenceLogpsCache):
    r"""Through log-softmax to the logits, no Jacobian formed:

    .. math::
        \frac{\partial L}{\partial z_{n,t,c}} = g_n\, m_{n,t}\,\big([c = y_{n,t}] - p_{n,t,c}\big)

    with :math:`g_n` = ``dlogps[n]`` (the minus of cross-entropy's gradient: this is a
    log-likelihood, not a loss). Shapes: dlogps (N,) -> dlogits (N, T, V).
    """
    probs, safe, m = cache
    if v.checking():
        dlogps = np.asarray(dlogps)
        v.require_shape("dlogps", dlogps, m.shape[:1], "the shape of the log-probabilities (N,)")
    one_hot = np.zeros_like(probs)                                             # (N, T, V)
    np.put_along_axis(one_hot, safe[..., None], 1.0, axis=-1)
    g = (dlogps[:, None] * m).astype(probs.dtype)                              # (N, T)
    return (one_hot - probs) * g[..., None]                                    # (N, T, V)


def sequence_logps(logits, targets, mask):
    """Sequence log-probabilities; see :func:`sequence_logps_forward`."""
    return sequence_logps_forward(logits, targets, mask)[0]


def dpo_objective(model, idx, targets, reference_logps, beta=0.1, label_smoothing=0.0):
    r"""DPO's training loss of a causal LM ``model`` (a ``GPT``, the policy
    :math:`\pi_\theta`) on a batch of P pairs: rows ``[:P]`` of ``idx`` are the prompts
    with their chosen completions, rows ``[P:]`` the same prompts with the rejected ones;
    ``targets`` are the next tokens, ``-100`` except on the completion's tokens (the mask
    of :func:`sequence_logps`); ``reference_logps`` the frozen reference's
    :math:`\log\pi_{ref}(y|x)` of each row, computed once without gradients.

    .. math::
        L = \frac1P \sum_p \ell_p\big(\log\pi_\theta(y_w|x), \log\pi_\theta(y_l|x),
        \log\pi_{ref}(y_w|x), \log\pi_{ref}(y_l|x)\big)

    Returns ``(loss, chosen_rewards, rejected_rewards)``: the loss a :class:`Loss` whose
    ``backward()`` runs the chain by hand, :func:`dpo_loss_backward` (with
    :math:`\partial L/\partial \ell_p = 1/P`) then :func:`sequence_logps_backward` to the
    logits, then the model's own backward pass; the rewards (P,) reports.
    Shapes: idx, targets (2P, T), reference_logps (2P,) -> a scalar, (P,), (P,).
    """
    targets, reference_logps = np.asarray(targets), np.asarray(reference_logps)
    N = targets.shape[0]
    if N % 2 or reference_logps.shape != (N,):
        raise ValueError(f"expected 2P rows (P chosen, then P rejected) and reference_logps (2P,), got "
                         f"targets {targets.shape} and reference_logps {reference_logps.shape}")
    P = N // 2
    logits, _ = model(idx)                                                     # (2P, T, V)
    mask = targets != IGNORE_INDEX                                             # (2P, T)
    logps, c_logps = sequence_logps_forward(logits, targets, mask)             # (2P,)
    ref = reference_logps.astype(logps.dtype)                                  # (2P,)
    (losses, chosen_rewards, rejected_rewards), c_dpo = dpo_loss_forward(
        logps[:P], logps[P:], ref[:P], ref[P:], beta, label_smoothing)         # (P,) each

    def backward():
        dchosen, drejected, _, _ = dpo_loss_backward(np.full(P, 1.0 / P, dtype=logps.dtype), c_dpo)
        dlogits = sequence_logps_backward(np.concatenate([dchosen, drejected]), c_logps)  # (2P, T, V)
        model._backward(dlogits)

    return Loss(losses.mean(), backward, model, model._forward_id), chosen_rewards, rejected_rewards
