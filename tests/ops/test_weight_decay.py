"""Parameter groups and which tensors weight decay shrinks (issue 28, item 3).

Oracle: ``torch.optim`` with the same parameter groups, 200 steps in float64, for SGD,
Adam and AdamW in both backends (and the torch backend's foreach step); tolerance atol
1e-10 as in test_optim (the same formulas, rounded in another order). The default rule
is nanoGPT's ``configure_optimizers``: decay every tensor of two or more dimensions
(embeddings included), never biases and LayerNorm parameters.
"""
import numpy as np
import pytest
import torch

import minillm.reference as ref
import minillm.torch_backend as tb
from minillm import ModelConfig
from minillm.core.param_groups import decay_groups
from minillm.store.runtime import Runtime
from minillm.train.run_config import RunConfig
from minillm.train.training import TrainConfig
from test_optim import SIDES, RefSide, TorchOptimSide, make_run, max_diff

# SHAPES of test_optim: (3, 4), (5,), (2, 3, 2), (): parameters 0 and 2 have 2+ dimensions
GROUP_CONFIGS = [
    ("AdamW", {"lr": 3e-3, "betas": (0.85, 0.95)}, 0.3),
    ("Adam", {"lr": 3e-3}, 0.1),
    ("SGD", {"lr": 5e-3, "momentum": 0.5}, 0.05),
]


def _groups(params, wd):
    return [{"params": [params[0], params[2]], "weight_decay": wd},
            {"params": [params[1], params[3]], "weight_decay": 0.0}]


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
@pytest.mark.parametrize("cls_name,kwargs,wd", GROUP_CONFIGS, ids=lambda c: str(c))
def test_groups_follow_torch_optim_for_200_steps(side, cls_name, kwargs, wd):
    init, grads = make_run(seed=7, steps=200)
    results = []
    for s in (side, TorchOptimSide):
        params = s.make(init)
        opt = getattr(s.mod, cls_name)(_groups(params, wd), **kwargs)
        for gs in grads:
            s.set_grads(params, gs)
            opt.step()
        results.append(s.values(params))
    diff = max_diff(*results)
    assert diff <= 1e-10, f"{side.name} {cls_name}: largest difference {diff:.3e} from torch.optim"
    # the groups matter: one decay for all would move the undecayed parameters elsewhere
    flat = getattr(side.mod, cls_name)(side.make(init), weight_decay=wd, **kwargs)
    params = flat.params
    for gs in grads:
        side.set_grads(params, gs)
        flat.step()
    assert max_diff([side.values(params)[1]], [results[0][1]]) > 1e-4


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.name)
def test_an_undecayed_parameter_without_gradient_signal_stays_and_a_decayed_one_shrinks(side):
    params = side.make([np.full((2, 2), 3.0), np.full((2,), 3.0)])
    opt = side.mod.AdamW([{"params": [params[0]], "weight_decay": 0.5},
                          {"params": [params[1]], "weight_decay": 0.0}], lr=0.1)
    side.set_grads(params, [np.zeros((2, 2)), np.zeros(2)])
    opt.step()
    w, b = side.values(params)
    np.testing.assert_allclose(w, 3.0 * (1 - 0.1 * 0.5), rtol=1e-12)   # θ(1 - αλ), m = 0
    np.testing.assert_array_equal(b, 3.0)


def test_state_dict_keeps_the_groups_across_backends():
    init, grads = make_run(seed=8, steps=20)
    a = RefSide.make(init)
    opt = ref.AdamW(_groups(a, 0.2), lr=1e-2)
    for gs in grads:
        RefSide.set_grads(a, gs)
        opt.step()
    sd = opt.state_dict()
    assert sd["weight_decays"] == [0.2, 0.2, 0.0, 0.0]       # flat order: the groups' order
    other = tb.AdamW([torch.nn.Parameter(torch.tensor(init[i])) for i in (0, 2, 1, 3)], lr=1.0, weight_decay=0.7)
    other.load_state_dict(sd)
    assert other.decays == [0.2, 0.2, 0.0, 0.0]
    old = {k: v for k, v in sd.items() if k != "weight_decays"}   # written before groups: one λ
    other.load_state_dict(old)
    assert other.decays == [sd["weight_decay"]] * 4
    with pytest.raises(ValueError, match="expected weight_decays for 4 parameters, got 3"):
        other.load_state_dict({**sd, "weight_decays": [0.1, 0.1, 0.0]})


@pytest.mark.parametrize("mod", [ref, tb], ids=["reference", "torch_backend"])
def test_bad_groups_are_refused_by_name(mod):
    params = (RefSide if mod is ref else SIDES[1]).make([np.zeros(2), np.zeros((2, 2))])
    with pytest.raises(ValueError, match=r"group 0 to hold 'params' and optionally 'weight_decay', got keys \['lr', 'params'\]"):
        mod.AdamW([{"params": params, "lr": 0.1}])
    with pytest.raises(ValueError, match="either parameters or parameter groups"):
        mod.AdamW([params[0], {"params": [params[1]]}])
    with pytest.raises(ValueError, match=r"expected group 1's weight_decay >= 0.0, got"):
        mod.Adam([{"params": [params[0]]}, {"params": [params[1]], "weight_decay": -1.0}])
    with pytest.raises(ValueError, match="listed twice"):
        mod.SGD([{"params": [params[0]]}, {"params": [params[0]]}], lr=0.1)


CONFIG = ModelConfig(vocab_size=31, block_size=8, d_model=16, n_heads=2, n_layers=1, dtype="float64")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_the_trainers_optimizer_decays_matrices_and_embeddings_only(backend):
    """nanoGPT's rule (``p.dim() >= 2`` decayed): the 1-layer GPT's biases and LayerNorm
    parameters (ndim 1) are exempt, its linear weights and embeddings decayed."""
    rt = Runtime(backend)
    model = rt.module.GPT(CONFIG, seed=0)
    opt = TrainConfig(weight_decay=0.1).optimizer(rt, model)
    named = dict(model.named_parameters())
    by_id = {id(p): wd for p, wd in zip(opt.params, opt.decays)}
    decays = {name: by_id[id(p)] for name, p in named.items()}
    assert set(decays) == set(named), "every parameter is in one group"
    for name, p in named.items():
        assert decays[name] == (0.1 if len(p.shape) >= 2 else 0.0), name
    assert any("emb" in n or "wte" in n for n, wd in decays.items() if wd), "embeddings are decayed"
    exempt = [n for n, wd in decays.items() if wd == 0.0]
    assert exempt and all(len(named[n].shape) < 2 for n in exempt)
    every = TrainConfig(weight_decay=0.1, decayed="all").optimizer(rt, model)
    assert every.decays == [0.1] * len(named)


def test_both_backends_make_the_same_groups():
    names = {}
    for backend in ("numpy", "torch"):
        model = Runtime(backend).module.GPT(CONFIG, seed=0)
        named = list(model.named_parameters())
        groups = decay_groups([p for _, p in named], 0.1)
        by_id = {id(p): n for n, p in named}
        names[backend] = [[by_id[id(p)] for p in g["params"]] for g in groups]
    assert names["numpy"] == names["torch"]


def test_the_rule_is_recorded_in_the_run_config_and_checked():
    run = RunConfig(CONFIG, TrainConfig())
    assert run.to_dict()["train"]["decayed"] == "matrices"
    assert RunConfig.from_dict(run.to_dict()) == run
    with pytest.raises(ValueError, match=r"decayed must be one of \('matrices', 'all'\), got 'biases'"):
        TrainConfig(decayed="biases")
