"""Training runs: whole-run parity between the backends, resuming from a checkpoint
(across backends and exactly within one), and a learning check against a known floor.

Tolerances:
- whole-run parity, float64, rtol 1e-8 (the brief's figure): each step's gradients agree
  to ~1e-13 (test_models_parity.py), Adam divides by sqrt(v) + eps and so amplifies a
  relative gradient difference by at most ~1 per step; 20 steps leave the losses and
  parameters ~1e-12 apart, four orders of magnitude inside 1e-8. atol 1e-12 covers
  parameters that are exactly zero-crossing;
- resume across backends: the same rtol 1e-8 (the second half runs in the other backend,
  which is exactly the whole-run comparison);
- resume within the NumPy backend: bitwise (same operations on the same arrays);
- learning check: within 0.1 nats of the exact entropy rate (the brief's figure).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import minillm.reference as R  # noqa: E402
import minillm.torch_backend as T  # noqa: E402
from minillm.core.config import ModelConfig  # noqa: E402
from minillm.store import model_io  # noqa: E402

from model_helpers import build, call, make_batch, to_np  # noqa: E402

RTOL_RUN, ATOL_RUN = 1e-8, 1e-12

RUN_CONFIG = ModelConfig(vocab_size=23, block_size=8, d_model=16, n_heads=2, n_layers=2,
                         dtype="float64", dropout=0.1, activation="gelu")


def batches(kind, config, n, seed=0, B=4, T_=8):
    return [make_batch(kind, config, B, T_, seed + i) for i in range(n)]


def train(model, backend, data, kind, optimizer=None, lr=3e-3):
    """Adam steps over ``data``; returns (per-step losses, optimizer)."""
    opt = optimizer or backend.Adam(model.parameters(), lr=lr)
    losses = []
    for idx, targets, mask in data:
        _, loss = call(model, kind, idx, targets, mask)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return np.array(losses), opt


def params(model):
    return {n: to_np(p).copy() if hasattr(p, "detach") else p.data.copy()
            for n, p in model.named_parameters()}


def assert_same_run(losses_a, params_a, losses_b, params_b, rtol=RTOL_RUN, atol=ATOL_RUN):
    np.testing.assert_allclose(losses_a, losses_b, rtol=rtol, atol=atol, err_msg="losses")
    assert list(params_a) == list(params_b)
    for name in params_a:
        np.testing.assert_allclose(params_a[name], params_b[name], rtol=rtol, atol=atol,
                                   err_msg=name)


def max_rel(a, b, floor=1e-8):
    """Largest relative difference among entries with |b| > floor (below it only the
    absolute difference means anything: b_K stays at rounding noise around 0)."""
    big = np.abs(b) > floor
    return float(np.max(np.abs(a - b)[big] / np.abs(b)[big])) if big.any() else 0.0


@pytest.mark.parametrize("kind", ["GPT", "TransformerEncoder", "SequenceClassifier"])
def test_whole_run_parity_20_adam_steps(kind, record_property):
    data = batches(kind, RUN_CONFIG, 20)
    ref, tor = build(R, kind, RUN_CONFIG, seed=7), build(T, kind, RUN_CONFIG, seed=7)
    before = params(ref)
    losses_r, _ = train(ref, R, data, kind)
    losses_t, _ = train(tor, T, data, kind)
    p_r, p_t = params(ref), params(tor)
    # the run did something: every parameter moved (random tokens: the loss barely can),
    # except the key biases: softmax ignores a constant added to every score of a row,
    # so d(loss)/d(b_K) is exactly 0 and Adam leaves b_K at its initial 0
    moved = {n: np.abs(p_r[n] - before[n]).max() > 1e-3 for n in before}
    assert all(ok != n.endswith(".b_K") for n, ok in moved.items()), moved
    assert_same_run(losses_r, p_r, losses_t, p_t)
    record_property("max_rel_loss_diff", max_rel(losses_r, losses_t))
    record_property("max_rel_param_diff",
                    max(max_rel(p_r[n], p_t[n]) for n in p_r))
    record_property("max_abs_param_diff", max(float(np.abs(p_r[n] - p_t[n]).max()) for n in p_r))


@pytest.mark.parametrize("first, second", [(R, T), (T, R)], ids=["numpy->torch", "torch->numpy"])
def test_resume_across_backends(first, second, tmp_path):
    """10 steps in one backend, save, 10 more in the other == 20 in the other."""
    kind = "GPT"
    data = batches(kind, RUN_CONFIG, 20, seed=100)
    model = build(first, kind, RUN_CONFIG, seed=1)
    _, opt = train(model, first, data[:10], kind)
    model_io.save_checkpoint(tmp_path / "ck", model, opt, step=10)

    resumed = build(second, kind, RUN_CONFIG, seed=999)  # other seed: everything must load
    resumed_opt = second.Adam(resumed.parameters(), lr=1.0)  # lr comes from the checkpoint
    ckpt = model_io.resume(tmp_path / "ck", resumed, resumed_opt)
    assert ckpt.step == 10
    losses_b, _ = train(resumed, second, data[10:], kind, optimizer=resumed_opt)

    straight = build(second, kind, RUN_CONFIG, seed=1)
    losses_s, _ = train(straight, second, data, kind)
    assert_same_run(losses_b, params(resumed), losses_s[10:], params(straight))


@pytest.mark.parametrize("backend", [R, T], ids=["numpy", "torch"])
def test_exact_resume_within_one_backend(backend, tmp_path):
    """Bitwise in NumPy; torch on the CPU is deterministic for these ops too."""
    kind = "GPT"
    data = batches(kind, RUN_CONFIG, 20, seed=200)
    model = build(backend, kind, RUN_CONFIG, seed=4)
    _, opt = train(model, backend, data[:10], kind)
    model_io.save_checkpoint(tmp_path / "ck", model, opt, step=10)
    loaded, ckpt = model_io.load_model(tmp_path / "ck", "numpy" if backend is R else "torch")
    loaded_opt = backend.Adam(loaded.parameters())
    loaded_opt.load_state_dict(ckpt.optimizer)
    losses_b, _ = train(loaded, backend, data[10:], kind, optimizer=loaded_opt)
    straight = build(backend, kind, RUN_CONFIG, seed=4)
    losses_s, _ = train(straight, backend, data, kind)
    np.testing.assert_array_equal(losses_b, losses_s[10:])
    for (name, a), b in zip(params(loaded).items(), params(straight).values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


# ----------------------------------------------------------------------------------------
# learning check

def markov_source(K=6, concentration=0.3, seed=0):
    """An order-1 Markov chain and its exact entropy rate
    :math:`H = -\\sum_s \\pi_s \\sum_x P_{sx} \\log P_{sx}` (nats per token)."""
    rng = np.random.default_rng(seed)
    P = 0.99 * rng.dirichlet(np.full(K, concentration), size=K) + 0.01 / K   # (K, K)
    evals, evecs = np.linalg.eig(P.T)
    pi = np.real(evecs[:, np.argmin(np.abs(evals - 1))])
    pi = pi / pi.sum()                                                       # (K,)
    H = float(-(pi * (P * np.log(P)).sum(axis=1)).sum())
    return P, pi, H


def sample_windows(P, pi, B, T_, rng):
    """B independent stationary windows of T + 1 symbols -> (idx, targets), both (B, T)."""
    K = len(pi)
    cum = np.cumsum(P, axis=1)                                               # (K, K)
    x = np.empty((B, T_ + 1), dtype=np.int64)
    x[:, 0] = rng.choice(K, size=B, p=pi)
    u = rng.random((B, T_))
    for t in range(T_):
        x[:, t + 1] = np.minimum((u[:, t, None] > cum[x[:, t]]).sum(axis=1), K - 1)
    return x[:, :-1], x[:, 1:]


@pytest.mark.parametrize("backend", [R, T], ids=["numpy", "torch"])
def test_gpt_learns_to_the_entropy_floor(backend, record_property):
    """Every GPT prediction has at least one token of context, which is all an order-1
    chain needs, so the expected loss floor is exactly the entropy rate."""
    P, pi, H = markov_source()
    config = ModelConfig(vocab_size=len(pi), block_size=16, d_model=32, n_heads=2,
                         n_layers=1, activation="relu", dtype="float32")  # the chapter's FFN
    model = backend.GPT(config, seed=0)
    opt = backend.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(1)
    for _ in range(300):
        idx, targets = sample_windows(P, pi, 32, 16, rng)
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    idx, targets = sample_windows(P, pi, 512, 16, np.random.default_rng(2))   # held out
    _, loss = model(idx, targets)
    final = loss.item()
    record_property("final_loss", final)
    record_property("entropy_floor", H)
    assert H - 0.05 < final < H + 0.1, f"final loss {final:.4f}, floor {H:.4f}"
