"""DPO (Rafailov et al. 2023): the loss, rewards and gradients against trl's, the
hand-written backwards against finite differences, the reference against torch, the
sequence log-probabilities against the cross-entropy they are the minus of.

The oracle is trl's ``DPOTrainer._compute_loss`` (trl 1.16 has no free-standing DPO
loss function: the loss is written inside it). It is called unbound with a stub
``self`` holding only the attributes it reads, and a stub model whose "per-token
log-probabilities" are our sequence log-probabilities in one column, so trl sums them
back to themselves; ``precompute_ref_logps`` hands it the reference's. trl's
``"sigmoid"`` loss is eq. 7 without label smoothing; its ``"aot"`` loss, for one pair
(its sort over the batch is then the identity), is the conservative DPO loss
-(1 - e) log sig(z) - e log sig(-z) that our ``label_smoothing`` computes.
"""
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minillm.reference as ref
from minillm.reference.dpo import (
    dpo_loss_backward, dpo_loss_forward, sequence_logps_backward, sequence_logps_forward,
)
from parity import assert_close, check_grad, random_array, seeds
from tolerances import FD, FD_STEP, FLOAT64

torch = pytest.importorskip("torch")
trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")
import minillm.torch_backend as tb  # noqa: E402


class _Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather_for_metrics(t):
        return t

    gather = gather_for_metrics


def trl_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, loss_type):
    """trl's mean loss over the pairs and its metrics, with the gradient of the loss
    with respect to the policy's log-probabilities (chosen, rejected)."""
    P = len(policy_chosen)
    logps = torch.tensor(np.concatenate([policy_chosen, policy_rejected]))[:, None]  # (2P, 1)
    logps.requires_grad_(True)
    outputs = SimpleNamespace(log_probs=logps, entropy=torch.zeros(2 * P, 1),
                              mean_logits=torch.zeros(2 * P, 1),
                              is_top1=torch.zeros(2 * P, 1, dtype=torch.bool))
    stub = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=_Accelerator(), aux_loss_enabled=False,
        ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
        loss_types=[loss_type], loss_weights=[1.0], beta=beta, label_smoothing=0.0,
        use_weighting=False, _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0, _tp_size=1, args=SimpleNamespace())
    inputs = {"input_ids": torch.zeros(2 * P, 2, dtype=torch.long),
              "attention_mask": torch.ones(2 * P, 2, dtype=torch.long),
              "completion_mask": torch.ones(2 * P, 2, dtype=torch.long),
              "ref_chosen_logps": torch.tensor(ref_chosen),
              "ref_rejected_logps": torch.tensor(ref_rejected)}
    return stub, logps, outputs, inputs


def run_trl(pc, pr, rc, rr, beta, label_smoothing=0.0, loss_type="sigmoid"):
    stub, logps, outputs, inputs = trl_dpo_loss(pc, pr, rc, rr, beta, loss_type)
    stub.label_smoothing = label_smoothing
    loss = trl_dpo.DPOTrainer._compute_loss(stub, lambda **kw: outputs, inputs, False)
    loss.backward()
    grad = logps.grad[:, 0].numpy()
    metrics = stub._metrics["train"]
    return (loss.item(), grad[:len(pc)], grad[len(pc):], metrics["rewards/chosen"][0],
            metrics["rewards/rejected"][0])


def _logps(seed, P):
    rng = np.random.default_rng(seed)
    # sequence log-probabilities: negative, a few nats to tens of nats
    return [-np.abs(random_array(rng, (P,), scale=10.0)) for _ in range(4)]


@given(seed=seeds, P=st.integers(1, 6), beta=st.sampled_from([0.1, 0.5, 2.0]))
def test_loss_rewards_and_gradients_equal_trl_float64(seed, P, beta):
    pc, pr, rc, rr = _logps(seed, P)
    (losses, chosen, rejected), cache = dpo_loss_forward(pc, pr, rc, rr, beta)
    dpc, dpr, drc, drr = dpo_loss_backward(np.full(P, 1.0 / P), cache)   # of the mean
    loss, g_chosen, g_rejected, _, _ = run_trl(pc, pr, rc, rr, beta)
    assert_close("mean loss", np.float64(losses.mean()), np.float64(loss), FLOAT64.rtol, FLOAT64.atol)
    assert_close("d policy_chosen_logps", dpc, g_chosen, FLOAT64.rtol, FLOAT64.atol)
    assert_close("d policy_rejected_logps", dpr, g_rejected, FLOAT64.rtol, FLOAT64.atol)
    for i in range(P):   # per pair: trl reports only means, so one pair a call
        one = [a[i:i + 1] for a in (pc, pr, rc, rr)]
        loss_i, _, _, chosen_i, rejected_i = run_trl(*one, beta)
        assert_close(f"loss[{i}]", losses[i], np.float64(loss_i), FLOAT64.rtol, FLOAT64.atol)
        assert_close(f"chosen_rewards[{i}]", chosen[i], np.float64(chosen_i), FLOAT64.rtol, FLOAT64.atol)
        assert_close(f"rejected_rewards[{i}]", rejected[i], np.float64(rejected_i),
                     FLOAT64.rtol, FLOAT64.atol)


@given(seed=seeds, eps=st.sampled_from([0.05, 0.1, 0.3]), beta=st.sampled_from([0.1, 1.0]))
def test_label_smoothing_equals_trl_conservative_form_float64(seed, eps, beta):
    pc, pr, rc, rr = _logps(seed, 1)
    (losses, _, _), cache = dpo_loss_forward(pc, pr, rc, rr, beta, eps)
    dpc, dpr, _, _ = dpo_loss_backward(np.ones(1), cache)
    loss, g_chosen, g_rejected, _, _ = run_trl(pc, pr, rc, rr, beta, eps, loss_type="aot")
    assert_close("cDPO loss", losses[0], np.float64(loss), FLOAT64.rtol, FLOAT64.atol)
    assert_close("cDPO d policy_chosen_logps", dpc, g_chosen, FLOAT64.rtol, FLOAT64.atol)
    assert_close("cDPO d policy_rejected_logps", dpr, g_rejected, FLOAT64.rtol, FLOAT64.atol)


@given(seed=seeds, P=st.integers(1, 5), eps=st.sampled_from([0.0, 0.2]))
def test_dpo_backward_matches_finite_differences_and_torch(seed, P, eps):
    pc, pr, rc, rr = _logps(seed, P)
    dlosses = random_array(np.random.default_rng(seed + 1), (P,))
    _, cache = dpo_loss_forward(pc, pr, rc, rr, 0.5, eps)
    grads = dpo_loss_backward(dlosses, cache)
    f = lambda *a: dpo_loss_forward(*a, 0.5, eps)[0][0]  # noqa: E731
    check_grad(f, [pc, pr, rc, rr], dlosses, list(grads), ["dpc", "dpr", "drc", "drr"],
               FD_STEP, FD.rtol, FD.atol)
    ts = [torch.tensor(a, requires_grad=True) for a in (pc, pr, rc, rr)]
    out = tb.dpo_loss(*ts, 0.5, eps)
    for name, t, a in zip(("losses", "chosen", "rejected"), out, ref.dpo_loss(pc, pr, rc, rr, 0.5, eps)):
        assert_close(f"torch {name}", t, a, FLOAT64.rtol, FLOAT64.atol)
    assert not out[1].requires_grad and not out[2].requires_grad   # rewards are reports
    out[0].backward(torch.tensor(dlosses))
    for name, t, g in zip(("dpc", "dpr", "drc", "drr"), ts, grads):
        assert_close(f"torch {name}", t.grad, g, FLOAT64.rtol, FLOAT64.atol)


def test_extreme_margins_stay_finite():
    big = np.array([1e4, -1e4])
    (losses, _, _), cache = dpo_loss_forward(big, -big, np.zeros(2), np.zeros(2), 1.0)
    assert np.isfinite(losses).all() and losses[0] == 0.0 and losses[1] == 2e4
    assert np.isfinite(dpo_loss_backward(np.ones(2), cache)).all()


def _logits(seed, N=3, T=4, V=5):
    rng = np.random.default_rng(seed)
    logits = random_array(rng, (N, T, V), scale=3.0)
    targets = rng.integers(0, V, size=(N, T))
    mask = rng.random((N, T)) < 0.6
    targets[~mask] = -100                  # not read where the mask is 0
    return logits, targets, mask


@given(seed=seeds)
def test_sequence_logps_backward_matches_finite_differences_and_torch(seed):
    logits, targets, mask = _logits(seed)
    dlogps = random_array(np.random.default_rng(seed + 1), (3,))
    logps, cache = sequence_logps_forward(logits, targets, mask)
    dlogits = sequence_logps_backward(dlogps, cache)
    check_grad(lambda z: sequence_logps_forward(z, targets, mask)[0], [logits], dlogps, [dlogits],
               ["dlogits"], FD_STEP, FD.rtol, FD.atol)
    z = torch.tensor(logits, requires_grad=True)
    out = tb.sequence_logps(z, torch.tensor(targets), torch.tensor(mask))
    assert_close("torch logps", out, logps, FLOAT64.rtol, FLOAT64.atol)
    out.backward(torch.tensor(dlogps))
    assert_close("torch dlogits", z.grad, dlogits, FLOAT64.rtol, FLOAT64.atol)


def test_sequence_logps_is_minus_the_summed_cross_entropy():
    logits, targets, mask = _logits(3)
    per_token = ref.cross_entropy(logits, np.where(mask, targets, -100), reduction="none")
    np.testing.assert_allclose(ref.sequence_logps(logits, targets, mask), -per_token.sum(axis=1),
                               rtol=1e-12, atol=1e-12)


def test_bad_inputs_are_clear_errors():
    pc, pr, rc, rr = _logps(0, 3)
    with pytest.raises(ValueError, match="label_smoothing"):
        ref.dpo_loss(pc, pr, rc, rr, 0.1, 0.5)
    with pytest.raises(ValueError, match="beta"):
        tb.dpo_loss(*(torch.tensor(a) for a in (pc, pr, rc, rr)), 0.0)
    with pytest.raises(ValueError, match="reference_rejected_logps"):
        ref.dpo_loss(pc, pr, rc, rr[:2])
    logits, targets, mask = _logits(0)
    targets[mask] = 7
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        ref.sequence_logps(logits, targets, mask)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        tb.sequence_logps(torch.tensor(logits), torch.tensor(targets), torch.tensor(mask))
