"""Optimizers, gradient clipping and the learning-rate schedule, in both backends.

Each backend's SGD / Adam / AdamW (and the torch backend's fast step, ``foreach = True``,
as a third side) is run on one fixed random sequence of gradients and compared with
``torch.optim`` step after step; the state dict of one backend resumes in the other.
Tolerances:

- float64 parity with torch.optim: atol 1e-10. The formulas are the same; only the
  order of rounding differs (torch uses ``lerp`` for m and divides sqrt(v) by
  sqrt(1 - beta2^t) instead of dividing v first), about 1e-16 per step. Measured over
  200 steps: Adam/AdamW <= 4.5e-16, SGD with momentum <= 3.6e-15.
- float32 parity with torch.optim: atol 1e-5. Each step rounds to float32 (relative
  6e-8) on parameters of size ~3; measured over 200 steps: <= 3.6e-7.
- cross-backend resume: atol 1e-12 (both backends do the same float64 operations in the
  same order; measured <= 6e-17).
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.core.schedule import warmup_cosine

SHAPES = [(3, 4), (5,), (2, 3, 2), ()]
SCALES = [1.0, 1e-3, 10.0, 0.5]  # gradient magnitudes differ per parameter


class RefSide:
    name = "reference"
    mod = ref

    @staticmethod
    def make(arrays):
        return [ref.Parameter(np.array(a, copy=True)) for a in arrays]

    @staticmethod
    def set_grads(params, grads):
        for p, g in zip(params, grads):
            p.grad = None if g is None else np.array(g, dtype=p.data.dtype, copy=True)

    @staticmethod
    def values(params):
        return [np.array(p.data, copy=True) for p in params]


class TorchSide:
    name = "torch_backend"
    mod = tb

    @staticmethod
    def make(arrays):
        return [torch.nn.Parameter(torch.tensor(np.array(a, copy=True))) for a in arrays]

    @staticmethod
    def set_grads(params, grads):
        for p, g in zip(params, grads):
            p.grad = None if g is None else torch.tensor(g, dtype=p.dtype)

    @staticmethod
    def values(params):
        return [p.detach().numpy().copy() for p in params]


class TorchOptimSide(TorchSide):
    """torch.optim itself: the yardstick."""
    name = "torch.optim"
    mod = torch.optim


class _ForeachBackend:
    """torch_backend whose optimizers are built with ``foreach = True`` (the fast step,
    as ``Runtime.prepare_optimizer`` sets it); every other name is torch_backend's."""

    def __getattr__(self, name):
        obj = getattr(tb, name)
        if name not in ("SGD", "Adam", "AdamW"):
            return obj

        def build(*args, **kwargs):
            opt = obj(*args, **kwargs)
            opt.foreach = True
            return opt
        return build


class TorchForeachSide(TorchSide):
    """The torch backend's fast step (torch._foreach_* kernels): every test of the
    explicit step holds for it with the same tolerances."""
    name = "torch_backend foreach"
    mod = _ForeachBackend()


SIDES = [RefSide, TorchSide, TorchForeachSide]


def make_run(seed, steps, dtype=np.float64, none_every=3):
    """Initial values and a sequence of gradients; parameter 1 gets no gradient on
    every ``none_every``-th step (so its own step count t lags, as in torch)."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = []
    for i in range(steps):
        gs = [(scale * rng.standard_normal(s)).astype(dtype) for s, scale in zip(SHAPES, SCALES)]
        if none_every and i % none_every == 0:
            gs[1] = None
        grads.append(gs)
    return init, grads


def run(side, cls_name, kwargs, init, grads, params=None, opt=None):
    params = side.make(init) if params is None else params
    opt = getattr(side.mod, cls_name)(params, **kwargs) if opt is None else opt
    for gs in grads:
        side.set_grads(params, gs)
        opt.step()
    return params, opt


def max_diff(a_list, b_list):
    return max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(a_list, b_list))


CONFIGS = [
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("AdamW", {"lr": 1e-2}),
    ("AdamW", {"lr": 3e-3, "betas": (0.85, 0.95), "weight_decay": 0.3}),
    ("SGD", {"lr": 1e-2}),
    ("SGD", {"lr": 1e-2, "momentum": 0.9}),
    ("SGD", {"lr": 5e-3, "momentum": 0.5, "weight_decay": 0.05}),
]


# ---------------------------------------------------------------- parity with torch.optim

@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
@pytest.mark.parametrize("cls_name,kwargs", CONFIGS, ids=lambda c: str(c))
def test_200_steps_follow_torch_optim(side, cls_name, kwargs):
    init, grads = make_run(seed=0, steps=200)
    ours, _ = run(side, cls_name, kwargs, init, grads)
    theirs, _ = run(TorchOptimSide, cls_name, kwargs, init, grads)
    diff = max_diff(side.values(ours), TorchOptimSide.values(theirs))
    assert diff <= 1e-10, f"{side.name} {cls_name}{kwargs}: largest difference {diff:.3e}"
    # the run moved the parameters: a no-op optimizer would not pass vacuously
    assert max_diff(side.values(ours), init) > 1e-3


@given(
    seed=st.integers(0, 2**32 - 1),
    lr=st.floats(1e-4, 0.3),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    log_eps=st.floats(-10, -2),
    weight_decay=st.floats(0.0, 0.5),
    decoupled=st.booleans(),
)
def test_adam_follows_torch_for_drawn_hyper_parameters(seed, lr, beta1, beta2, log_eps,
                                                       weight_decay, decoupled):
    cls_name = "AdamW" if decoupled else "Adam"
    kwargs = {"lr": lr, "betas": (beta1, beta2), "eps": 10.0 ** log_eps, "weight_decay": weight_decay}
    init, grads = make_run(seed, steps=40)
    theirs, _ = run(TorchOptimSide, cls_name, kwargs, init, grads)
    for side in SIDES:
        ours, _ = run(side, cls_name, kwargs, init, grads)
        diff = max_diff(side.values(ours), TorchOptimSide.values(theirs))
        assert diff <= 1e-10, f"{side.name} {cls_name}{kwargs}: largest difference {diff:.3e}"


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
def test_the_first_adam_step_moves_every_element_by_lr(side):
    """Bias correction makes the first update alpha * g/(|g| + eps) ~ alpha elementwise,
    whatever the gradient's scale (Kingma & Ba, 2015, section 3)."""
    lr, (beta1, beta2), eps = 1e-3, (0.9, 0.999), 1e-8
    rng = np.random.default_rng(1)
    init = [rng.standard_normal(s) for s in SHAPES]
    # |g| in [1e-3, 10]: eps / |g| <= 1e-5, hence rtol 1e-4 below
    g = [rng.choice([-1.0, 1.0], size=s) * 10.0 ** rng.uniform(-3, 1, size=s) for s in SHAPES]
    params, opt = run(side, "Adam", {"lr": lr, "betas": (beta1, beta2), "eps": eps}, init, [g])
    for before, after, gi in zip(init, side.values(params), g):
        step = after - before
        np.testing.assert_allclose(np.abs(step), lr, rtol=1e-4)
        assert np.all(np.sign(step) == -np.sign(gi))

    # The stored moments are the raw ones, m_1 = (1-b1) g and v_1 = (1-b2) g^2. Stepping
    # with them uncorrected would move by alpha (1-b1)|g| / (sqrt(1-b2)|g| + eps), off by
    # the factor (1-b1)/sqrt(1-b2) = 3.16 for the default betas: not alpha.
    for entry, gi in zip(opt.state_dict()["state"], g):
        np.testing.assert_allclose(entry["m"], (1 - beta1) * gi, rtol=1e-12)
        np.testing.assert_allclose(entry["v"], (1 - beta2) * gi**2, rtol=1e-12)
        uncorrected = lr * np.abs(entry["m"]) / (np.sqrt(entry["v"]) + eps)
        # rtol: eps / (sqrt(1-b2) min|g|) = 1e-8 / 3.2e-5 = 3.2e-4
        np.testing.assert_allclose(uncorrected, lr * (1 - beta1) / math.sqrt(1 - beta2), rtol=1e-3)
        assert np.all(uncorrected > 3.0 * lr)
    # with betas (0.99, 0.999) the uncorrected first step would be 0.32 lr: far smaller
    params, opt = run(side, "Adam", {"lr": lr, "betas": (0.99, 0.999), "eps": eps}, init, [g])
    for before, after, entry in zip(init, side.values(params), opt.state_dict()["state"]):
        np.testing.assert_allclose(np.abs(after - before), lr, rtol=1e-4)
        assert np.all(lr * np.abs(entry["m"]) / (np.sqrt(entry["v"]) + eps) < 0.33 * lr)


# ---------------------------------------------------------------- clipping

@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
@pytest.mark.parametrize("max_norm", [0.5, 5.0, 1e3])
def test_clip_grad_norm_matches_torch(side, max_norm):
    rng = np.random.default_rng(2)
    init = [rng.standard_normal(s) for s in SHAPES]
    grads = [rng.standard_normal(s) * scale for s, scale in zip(SHAPES, SCALES)]
    grads[3] = None  # skipped, as in torch
    ours, theirs = side.make(init), TorchOptimSide.make(init)
    side.set_grads(ours, grads)
    TorchOptimSide.set_grads(theirs, grads)
    total = side.mod.clip_grad_norm(ours, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert isinstance(total, float)
    assert total == pytest.approx(float(expected), rel=1e-12)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if grads[i] is None:
            assert a.grad is None
            continue
        ga = a.grad if isinstance(a.grad, np.ndarray) else a.grad.numpy()
        np.testing.assert_allclose(ga, b.grad.numpy(), rtol=1e-12, atol=0, err_msg=f"grad {i}")
    clipped = math.sqrt(sum(float(np.sum(np.asarray(g) ** 2)) for g in
                            [p.grad if isinstance(p.grad, np.ndarray) else p.grad.numpy()
                             for p in ours if p.grad is not None]))
    assert clipped == pytest.approx(min(total, max_norm), rel=1e-5)


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
def test_clip_grad_norm_without_gradients_and_bad_input(side):
    params = side.make([np.ones(3)])
    assert side.mod.clip_grad_norm(params, 1.0) == 0.0
    with pytest.raises(ValueError, match="max_norm > 0"):
        side.mod.clip_grad_norm(params, 0.0)
    with pytest.raises(ValueError, match="non-empty"):
        side.mod.clip_grad_norm([], 1.0)


# ---------------------------------------------------------------- state dict

RESUME_CONFIGS = [c for c in CONFIGS if c[1].get("weight_decay") or c[1].get("momentum")]


@pytest.mark.parametrize("first,second", [(RefSide, TorchSide), (TorchSide, RefSide)],
                         ids=["reference->torch", "torch->reference"])
@pytest.mark.parametrize("cls_name,kwargs", RESUME_CONFIGS, ids=lambda c: str(c))
def test_state_dict_resumes_in_the_other_backend(first, second, cls_name, kwargs):
    init, grads = make_run(seed=3, steps=200)
    straight, _ = run(first, cls_name, kwargs, init, grads)
    half, opt = run(first, cls_name, kwargs, init, grads[:100])
    sd = opt.state_dict()
    assert all(isinstance(a, np.ndarray) for entry in sd["state"] for k, a in entry.items() if k != "step")
    # a fresh optimizer with other hyper-parameters: load_state_dict must restore them
    params = second.make(first.values(half))
    fresh = getattr(second.mod, cls_name)(params, lr=0.5)
    fresh.load_state_dict(sd)
    assert fresh.lr == kwargs["lr"] and fresh.state_dict().keys() == sd.keys()
    resumed, _ = run(second, cls_name, kwargs, None, grads[100:], params=params, opt=fresh)
    diff = max_diff(second.values(resumed), first.values(straight))
    assert diff <= 1e-12, f"{first.name}->{second.name} {cls_name}: largest difference {diff:.3e}"


def test_state_dicts_have_the_same_keys_in_both_backends():
    init, grads = make_run(seed=4, steps=3)
    for cls_name, kwargs in CONFIGS:
        sds = [run(side, cls_name, kwargs, init, grads)[1].state_dict() for side in SIDES]
        assert sds[0].keys() == sds[1].keys()
        assert [e.keys() for e in sds[0]["state"]] == [e.keys() for e in sds[1]["state"]]
        assert [e["step"] for e in sds[0]["state"]] == [3, 2, 3, 3]  # parameter 1 skipped once


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
def test_load_state_dict_rejects_mismatches(side):
    init, grads = make_run(seed=5, steps=2)
    _, opt = run(side, "Adam", {}, init, grads)
    sd = opt.state_dict()
    other = side.mod.Adam(side.make(init))
    with pytest.raises(ValueError, match="expected type 'Adam', got 'AdamW'"):
        other.load_state_dict({**sd, "type": "AdamW"})
    with pytest.raises(ValueError, match="expected state for 4 parameters, got 3"):
        other.load_state_dict({**sd, "state": sd["state"][:3]})
    bad = [dict(e) for e in sd["state"]]
    bad[0]["m"] = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"state\[0\]\['m'\] has shape \(4, 3\) but parameter 0 has shape \(3, 4\)"):
        other.load_state_dict({**sd, "state": bad})
    with pytest.raises(ValueError, match="expected eps > 0"):
        other.load_state_dict({**sd, "eps": 0.0})
    # a refused load changed nothing
    assert other.steps == 0 and all(e["step"] == 0 for e in other.state)


# ---------------------------------------------------------------- dtype, grads, validation

@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
@pytest.mark.parametrize("cls_name,kwargs", CONFIGS, ids=lambda c: str(c))
def test_float32_stays_float32(side, cls_name, kwargs):
    init, grads = make_run(seed=6, steps=5, dtype=np.float32)
    params, opt = run(side, cls_name, kwargs, init, grads)
    assert all(v.dtype == np.float32 for v in side.values(params))
    for entry in opt.state_dict()["state"]:
        assert all(a.dtype == np.float32 for k, a in entry.items() if k != "step")


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
@pytest.mark.parametrize("cls_name,kwargs", CONFIGS[:4], ids=lambda c: str(c))
def test_float32_runs_follow_torch_optim(side, cls_name, kwargs):
    init, grads = make_run(seed=7, steps=200, dtype=np.float32)
    ours, _ = run(side, cls_name, kwargs, init, grads)
    theirs, _ = run(TorchOptimSide, cls_name, kwargs, init, grads)
    diff = max_diff(side.values(ours), TorchOptimSide.values(theirs))
    assert diff <= 1e-5, f"{side.name} {cls_name}{kwargs} float32: largest difference {diff:.3e}"


def test_reference_float64_gradient_does_not_promote_a_float32_parameter():
    p = ref.Parameter(np.ones(3, dtype=np.float32))
    opt = ref.Adam([p])
    p.grad = np.full(3, 0.5)  # float64
    opt.step()
    assert p.data.dtype == np.float32 and opt.state[0]["m"].dtype == np.float32


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
def test_zero_grad_and_parameters_without_gradient(side):
    params = side.make([np.ones(2), np.ones(3)])
    opt = side.mod.Adam(params, lr=0.1)
    side.set_grads(params, [np.ones(2), None])
    opt.step()
    values = side.values(params)
    np.testing.assert_allclose(values[0], 0.9, rtol=1e-6)  # moved by lr
    np.testing.assert_array_equal(values[1], 1.0)          # no gradient: untouched
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    opt.step()  # nothing to do
    np.testing.assert_array_equal(side.values(params)[0], values[0])


BAD = [
    ("Adam", {"lr": -1.0}, r"Adam: expected lr >= 0.0, got lr=-1.0"),
    ("Adam", {"lr": float("nan")}, r"expected lr >= 0.0, got lr=nan"),
    ("Adam", {"betas": (1.0, 0.999)}, r"expected 0.0 <= betas\[0\] < 1.0, got betas\[0\]=1.0"),
    ("Adam", {"betas": (0.9, -0.1)}, r"betas\[1\]=-0.1"),
    ("Adam", {"betas": (0.9,)}, r"expected betas to be a pair"),
    ("Adam", {"eps": 0.0}, r"expected eps > 0.0, got eps=0.0"),
    ("Adam", {"weight_decay": -0.1}, r"expected weight_decay >= 0.0"),
    ("AdamW", {"lr": "0.1"}, r"AdamW: expected lr >= 0.0, got lr='0.1'"),
    ("SGD", {"lr": 0.1, "momentum": 1.0}, r"expected 0.0 <= momentum < 1.0, got momentum=1.0"),
    ("SGD", {"lr": 0.1, "weight_decay": -1}, r"expected weight_decay >= 0.0"),
]


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
@pytest.mark.parametrize("cls_name,kwargs,match", BAD, ids=lambda b: str(b))
def test_bad_hyper_parameters_raise(side, cls_name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(side.mod, cls_name)(side.make([np.ones(2)]), **kwargs)


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
def test_bad_parameter_lists_and_lr_assignment_raise(side):
    params = side.make([np.ones(2)])
    with pytest.raises(ValueError, match="non-empty iterable"):
        side.mod.Adam(iter([]))
    with pytest.raises(ValueError, match="not named_parameters"):
        side.mod.Adam([("w", params[0])])
    with pytest.raises(ValueError, match="listed twice"):
        side.mod.SGD(params + params, lr=0.1)
    opt = side.mod.Adam(p for p in params)  # a generator is materialised once
    assert len(opt.params) == 1
    opt.lr = 0.25  # what the trainer does each step
    assert opt.state_dict()["lr"] == 0.25
    with pytest.raises(ValueError, match="expected lr >= 0.0, got lr=-0.1"):
        opt.lr = -0.1


# ---------------------------------------------------------------- schedule

def test_both_backends_export_the_one_schedule():
    assert ref.warmup_cosine is tb.warmup_cosine is warmup_cosine


def test_warmup_cosine_at_key_steps():
    kw = {"max_lr": 1.0, "warmup_steps": 10, "total_steps": 110, "min_lr": 0.1}
    assert warmup_cosine(0, **kw) == 0.0
    assert warmup_cosine(5, **kw) == pytest.approx(0.5, abs=1e-15)
    assert warmup_cosine(10, **kw) == 1.0
    assert warmup_cosine(60, **kw) == pytest.approx(0.55, abs=1e-15)  # half-way: (max+min)/2
    assert warmup_cosine(110, **kw) == pytest.approx(0.1, abs=1e-15)
    assert warmup_cosine(10_000, **kw) == 0.1
    # no warmup: the first step already has max_lr
    assert warmup_cosine(0, max_lr=2.0, warmup_steps=0, total_steps=5) == 2.0


@given(
    warmup=st.integers(0, 50), decay=st.integers(1, 200),
    max_lr=st.floats(1e-6, 1.0), min_fraction=st.floats(0.0, 1.0),
)
def test_warmup_cosine_shape(warmup, decay, max_lr, min_fraction):
    total, min_lr = warmup + decay, max_lr * min_fraction
    kw = {"max_lr": max_lr, "warmup_steps": warmup, "total_steps": total, "min_lr": min_lr}
    lrs = np.array([warmup_cosine(s, **kw) for s in range(total + 5)])
    # warmup: a straight line from 0 through max_lr * s / W
    np.testing.assert_allclose(lrs[:warmup], max_lr * np.arange(warmup) / max(warmup, 1), rtol=1e-12)
    # after the warmup: starts at max_lr, never increases, ends at min_lr and stays there
    assert lrs[warmup] == pytest.approx(max_lr, rel=1e-12)
    assert np.all(np.diff(lrs[warmup:]) <= 1e-15 * max_lr)
    # (the warmup starts at 0, below min_lr; only the decay is bounded below by min_lr)
    assert np.all(lrs >= 0.0) and np.all(lrs[warmup:] >= min_lr * (1 - 1e-15))
    assert np.all(lrs <= max_lr * (1 + 1e-15))
    np.testing.assert_allclose(lrs[total:], min_lr, rtol=1e-12, atol=1e-18)


@pytest.mark.parametrize("kwargs,match", [
    ({"step": -1}, r"expected step to be an int >= 0, got -1"),
    ({"step": 1.5}, r"expected step to be an int >= 0, got 1.5"),
    ({"max_lr": -1.0}, r"expected max_lr to be a finite number >= 0"),
    ({"min_lr": 2.0}, r"expected min_lr <= max_lr, got min_lr=2.0, max_lr=1.0"),
    ({"warmup_steps": 100}, r"expected warmup_steps < total_steps, got warmup_steps=100, total_steps=100"),
    ({"total_steps": 0}, r"expected total_steps to be an int >= 1, got 0"),
    ({"warmup_steps": True}, r"expected warmup_steps to be an int >= 0, got True"),
])
def test_warmup_cosine_rejects_bad_arguments(kwargs, match):
    args = {"step": 0, "max_lr": 1.0, "warmup_steps": 10, "total_steps": 100, "min_lr": 0.0, **kwargs}
    step = args.pop("step")
    with pytest.raises(ValueError, match=match):
        warmup_cosine(step, **args)
