"""The op catalogue (tests/ops_catalogue.py) enrols each op in every property test.

- Each property test the catalogue lists is parametrised with exactly the catalogue's rows
  of its kind, and the activation tests with exactly ``core.config.ACTIVATIONS``; no test
  module parametrises over catalogue rows without being listed (so docs/formulas.md,
  which lists ``tests_of(op)``, cannot miss one).
- Every row has a float32 tolerance with its reason, and its functions are the backends'.
- CONTRIBUTING.md's recipe "Add an op or an activation", followed on a toy activation
  (tanh): the two backends' functions and map entries, the config's name, one catalogue
  entry and a tolerance; each property test then runs on it with no other edit.
"""
import importlib
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import minillm.core.config as config
import minillm.reference as R
import minillm.torch_backend as T
import ops_catalogue
import tolerances
from minillm.core import _validate as v
from minillm.reference.activations import ACTIVATIONS as REFERENCE_ACTIVATIONS
from minillm.torch_backend.activations import ACTIVATIONS as EXPLICIT_ACTIVATIONS
from minillm.torch_backend.activations import FAST_ACTIVATIONS
from ops_catalogue import ACTIVATION_TESTS, OPS, PROPERTY_TESTS, activation_row, rows_for

ROOT = Path(__file__).resolve().parents[2]   # the repository: test ids are paths from it
ParameterSet = type(pytest.param(None))   # what pytest.param(...) makes


def _module(path: Path):
    """The test module at ``path``, imported as pytest imports it: by its name, with its
    folder on ``sys.path`` (so pytest's own import of it later finds this one)."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    return importlib.import_module(path.stem)


def _function(test_id):
    file, name = test_id.split("::")
    return getattr(_module(ROOT / file), name)


def _parametrised_values(func, argname):
    """The values ``func``'s parametrize marks give ``argname`` (None if none does)."""
    for mark in getattr(func, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names = [n.strip() for n in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])]
        if argname not in names:
            continue
        i = names.index(argname)
        values = []
        for value in mark.args[1]:
            value = value.values if isinstance(value, ParameterSet) else value
            values.append(value[i] if len(names) > 1 else value)
        return values
    return None


@pytest.mark.parametrize("test_id", sorted(PROPERTY_TESTS))
def test_each_property_test_is_parametrised_with_the_catalogue(test_id):
    values = _parametrised_values(_function(test_id), "op")
    assert values is not None, f"{test_id} is not parametrised over 'op'"
    expected = [op.name for op in rows_for(test_id)]
    assert sorted({op.name for op in values}) == sorted(expected), test_id
    assert all(isinstance(op, ops_catalogue.Op) for op in values)


@pytest.mark.parametrize("test_id", ACTIVATION_TESTS)
def test_each_activation_test_is_parametrised_with_the_config(test_id):
    assert _parametrised_values(_function(test_id), "activation") == list(config.ACTIVATIONS)


def test_no_catalogue_driven_test_is_left_unlisted():
    """Every test function of a module that uses the catalogue and is parametrised over
    its rows is in PROPERTY_TESTS (whose ids docs/formulas.md must list)."""
    unlisted = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if "ops_catalogue" not in path.read_text(encoding="utf-8") or path.stem == "test_ops_catalogue":
            continue
        module = _module(path)
        for name, func in vars(module).items():
            values = _parametrised_values(func, "op") if name.startswith("test_") else None
            if values and all(isinstance(op, ops_catalogue.Op) for op in values):
                test_id = f"{path.relative_to(ROOT).as_posix()}::{name}"
                if test_id not in PROPERTY_TESTS:
                    unlisted.append(test_id)
    assert not unlisted, f"parametrised over the catalogue but not in PROPERTY_TESTS: {unlisted}"


@pytest.mark.parametrize("op", OPS, ids=repr)
def test_every_row_has_a_float32_tolerance_and_its_backends_functions(op):
    tol = tolerances.tolerance(op.name, np.float32)
    assert tol.reason.strip(), f"{op.name}: a float32 tolerance without its reason"
    assert op.forward is getattr(R, f"{op.name}_forward") and op.backward is getattr(R, f"{op.name}_backward")
    assert op.explicit is getattr(T, op.name)
    assert op.kind in (ops_catalogue.ELEMENTWISE, ops_catalogue.ROWWISE, ops_catalogue.MULTI)
    assert (op.draw is None) == (op.kind != ops_catalogue.MULTI), f"{op.name}: a multi-input op draws its inputs"


def test_an_activation_without_a_catalogue_entry_is_refused_loudly():
    with pytest.raises(KeyError, match="'swish' is in minillm.core.config.ACTIVATIONS but has no entry"):
        activation_row("swish")


# ---------------------------------------------------------------------------------------
# the recipe, on a toy activation: tanh


def _toy_forward(x):
    x = np.asarray(x)
    v.require_float("x", x)
    t = np.tanh(x)
    return t, (t,)


def _toy_backward(dout, cache):
    (t,) = cache
    return dout * (1.0 - t * t)


def _toy_explicit(x):
    v.require_tensor("x", x)
    v.require_float("x", x)
    return torch.tanh(x)


@pytest.fixture
def toy(monkeypatch):
    name = "toy_tanh"
    # 1. the two backends: the functions (here above) and each backend's ACTIVATIONS map
    monkeypatch.setitem(REFERENCE_ACTIVATIONS, name, (_toy_forward, _toy_backward))
    monkeypatch.setitem(EXPLICIT_ACTIVATIONS, name, _toy_explicit)
    monkeypatch.setitem(FAST_ACTIVATIONS, name, _toy_explicit)
    monkeypatch.setattr(R, f"{name}_forward", _toy_forward, raising=False)
    monkeypatch.setattr(R, f"{name}_backward", _toy_backward, raising=False)
    monkeypatch.setattr(T, name, _toy_explicit, raising=False)
    # 2. the config
    monkeypatch.setattr(config, "ACTIVATIONS", config.ACTIVATIONS + (name,))
    # 3. one catalogue entry (tanh's own arithmetic gives its limits +-1, slope 0) and its
    #    float32 tolerance
    facts = dict(oracle=torch.tanh)
    monkeypatch.setitem(ops_catalogue.ACTIVATION_FACTS, name, facts)
    row = activation_row(name)
    monkeypatch.setattr(ops_catalogue, "OPS", ops_catalogue.OPS + [row])
    monkeypatch.setitem(tolerances.FLOAT32, name, tolerances.Tolerance(
        1e-5, 1e-5, "toy: tanh in float32, a few ulps in each library's kernel"))
    return row


def _calls(func, op):
    """Keyword arguments for every parametrised case of ``func``, with ``op`` for the row
    (the cases of the catalogue's first row of the same kind, other parameters as they are)."""
    cases = []
    for mark in getattr(func, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names = [n.strip() for n in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])]
        values = [val.values if isinstance(val, ParameterSet) else (val if len(names) > 1 else (val,))
                  for val in mark.args[1]]
        if "op" in names:
            i = names.index("op")
            first = next(val[i] for val in values if val[i].kind == op.kind)
            values = [tuple(op if j == i else x for j, x in enumerate(val)) for val in values if val[i] is first]
        cases.append([dict(zip(names, val)) for val in values])
    return [dict(itertools.chain.from_iterable(d.items() for d in combo)) for combo in itertools.product(*cases)]


def test_the_recipe_enrols_a_toy_activation_in_every_property_test(toy):
    with np.errstate(all="ignore"):   # the non-finite tests' own fixture is not in force here
        ran = _run_every_property_test(toy)
    # every property test but those for ops that are not elementwise
    not_elementwise = {t for t in PROPERTY_TESTS if not PROPERTY_TESTS[t](toy)}
    assert not_elementwise == {"tests/ops/test_nonfinite.py::test_multi_input_op_nonfinite_values",
                               "tests/ops/test_bounds.py::test_op_at_a_zero_input"}
    assert set(ran) == (set(PROPERTY_TESTS) - not_elementwise) | set(ACTIVATION_TESTS)
    # and a model accepts it
    assert config.ModelConfig(activation=toy.name).activation == toy.name


def _run_every_property_test(toy):
    ran = []
    for test_id in PROPERTY_TESTS:
        if toy not in rows_for(test_id, ops=ops_catalogue.OPS):
            continue
        func = _function(test_id)
        for kwargs in _calls(func, toy):
            func(**kwargs)
        ran.append(test_id)
    for test_id in ACTIVATION_TESTS:
        func = _function(test_id)
        for kwargs in _calls(func, toy):
            func(**{**kwargs, "activation": toy.name})
        ran.append(test_id)
    return ran
