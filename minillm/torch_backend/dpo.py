r"""Direct preference optimisation (Rafailov et al. 2023, eq. 7) and the sequence
log-probabilities it reads — PyTorch backend, line by line ``minillm/reference/dpo.py``;
gradients from autograd.

Dimension legend: ``P`` pairs; ``N`` sequences, ``T`` positions, ``V`` the vocabulary.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core import _validate as v
from ..core.config import IGNORE_INDEX

__all__ = ["dpo_loss", "sequence_logps", "dpo_objective"]


def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
             reference_rejected_logps, beta=0.1, label_smoothing=0.0):
    r"""DPO's loss per pair with conservative label smoothing; see
    ``minillm.reference.dpo_loss_forward``:

    .. math::
        z = r_w - r_l, \quad r = \beta(\log\pi_\theta - \log\pi_{ref}), \quad
        \ell = -(1 - \varepsilon)\log\sigma(z) - \varepsilon\log\sigma(-z)

    Returns ``(losses, chosen_rewards, rejected_rewards)``; the rewards are detached
    (reports, as in trl). Shapes: four (P,) -> three (P,).
    """
    if v.checking():
        names = ("policy_chosen_logps", "policy_rejected_logps",
                 "reference_chosen_logps", "reference_rejected_logps")
        tensors = (policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                   reference_rejected_logps)
        for name, t in zip(names, tensors):
            v.require_tensor(name, t)
            v.require_float(name, t)
            v.require_ndim(name, t, 1)
            v.require_same_dtype(name, t, names[0], tensors[0])
            v.require_shape(name, t, tuple(tensors[0].shape), f"{names[0]}'s (P,)")
        v.require_number_in("beta", beta, 0.0, np.inf, low_open=True)
        v.require_number_in("label_smoothing", label_smoothing, 0.0, 0.5, high_open=True)
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps)      # (P,)
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps)  # (P,)
    z = chosen_rewards - rejected_rewards                                      # (P,)
    eps = label_smoothing
    losses = -(1.0 - eps) * F.logsigmoid(z)                                    # (P,)
    if eps > 0:   # absent at eps = 0, where 0 * log sig(-z) would be 0 * -inf = NaN at z = +inf
        losses = losses - eps * F.logsigmoid(-z)                               # (P,)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


def sequence_logps(logits, targets, mask):
    r"""Log-probability of each sequence's counted tokens,
    :math:`\sum_t m_t \log\mathrm{softmax}(z_t)_{y_t}`; see
    ``minillm.reference.sequence_logps_forward``.
    Shapes: logits (N, T, V), targets (N, T) int, mask (N, T) bool or 0/1 -> (N,).
    """
    if v.checking():
        v.require_tensor("logits", logits)
        v.require_float("logits", logits)
        v.require_ndim("logits", logits, 3)
        v.require_nonempty_axis("logits", logits, -1)
        v.require_tensor("targets", targets)
        v.require_integer("targets", targets)
        v.require_shape("targets", targets, tuple(logits.shape[:-1]), f"logits {tuple(logits.shape)} without V")
        v.require_shape("mask", mask, tuple(logits.shape[:-1]), f"logits {tuple(logits.shape)} without V")
        if not (mask.dtype == torch.bool or bool(((mask == 0) | (mask == 1)).all())):
            raise ValueError(f"expected mask to be bool or 0/1, got dtype {mask.dtype} with other values")
        V = logits.shape[-1]
        counted = targets[mask.bool()]
        if counted.numel() and (int(counted.min()) < 0 or int(counted.max()) >= V):
            raise ValueError(f"expected every counted target in [0, {V}) (V={V} classes), got values "
                             f"from {int(counted.min())} to {int(counted.max())}")
    m = mask.to(logits.dtype)                                                  # (N, T)
    safe = torch.where(m > 0, targets, torch.zeros_like(targets))              # (N, T)
    log_probs = torch.log_softmax(logits, dim=-1)                              # (N, T, V)
    token_logps = log_probs.gather(-1, safe[..., None])[..., 0]                # (N, T)
    return (token_logps * m).sum(dim=-1)                                       # (N,)


def dpo_objective(model, idx, targets, reference_logps, beta=0.1, label_smoothing=0.0):
    r"""DPO's training loss of a causal LM on P pairs (rows ``[:P]`` chosen, ``[P:]``
    rejected, ``targets`` -100 off the completions); see
    ``minillm.reference.dpo_objective``. Returns ``(loss, chosen_rewards,
    rejected_rewards)``; autograd takes the loss back through the log-probabilities.
    Shapes: idx, targets (2P, T), reference_logps (2P,) -> a scalar, (P,), (P,).
    """
    N = targets.shape[0]
    if N % 2 or tuple(reference_logps.shape) != (N,):
        raise ValueError(f"expected 2P rows (P chosen, then P rejected) and reference_logps (2P,), got "
                         f"targets {tuple(targets.shape)} and reference_logps {tuple(reference_logps.shape)}")
    P = N // 2
    logits, _ = model(idx)                                                     # (2P, T, V)
    mask = targets != IGNORE_INDEX                                             # (2P, T)
    logps = sequence_logps(logits, targets, mask)                              # (2P,)
    ref = reference_logps.to(logps.dtype)                                      # (2P,)
    losses, chosen_rewards, rejected_rewards = dpo_loss(
        logps[:P], logps[P:], ref[:P], ref[P:], beta, label_smoothing)         # (P,) each
    return losses.mean(), chosen_rewards, rejected_rewards
