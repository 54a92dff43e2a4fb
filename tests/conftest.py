"""Shared test set-up: hypothesis profiles.

- ``ci``: derandomized and small, so CI is fast and repeatable (chosen when CI=true);
- ``quick``: as small, but with fresh random examples on every run, so local runs keep
  exploring (the default outside CI, so the README's command stays quick);
- ``dev``: many more examples, for a thorough local run:
  ``MINILLM_HYPOTHESIS_PROFILE=dev scripts/test.sh``.
``MINILLM_HYPOTHESIS_PROFILE`` overrides the choice.
"""
import os
import sys
from pathlib import Path

# One BLAS/OpenMP thread per process, set before NumPy or torch load their thread pools:
# on the 2-core CI machine, torch's and OpenBLAS's pools oversubscribe the cores and turn
# 0.01 ms matrix products into 20-75 ms ones (measured by the benchmark work, issue 6).
# Tests compare results, not speed, so one thread loses nothing.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# The tests that do run torch with two threads (subprocesses, test_determinism.py) share
# the cores with the other pytest-xdist worker: OpenMP threads that sleep instead of
# spinning while they wait lose nothing when a core is free and stop stealing it when it
# is not (the two-thread tests took 55 s beside a busy core, 44 s with this).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

try:
    import torch
except ImportError:  # the NumPy-only tests still run
    pass
else:
    torch.set_num_threads(1)

settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "quick", max_examples=25, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=300, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The parity, gradient, model and training tests: the core that must hold on every torch
# release the project supports. CI runs the whole suite on the newest torch pip installs
# and these again on the oldest supported one (``pytest -m core``, see .ci/run). Named by
# module, since no folder is wholly core (ops/ also holds test_modern_ops, test_no_torch,
# test_weight_decay, test_lora and test_dpo, models/ test_modern_models, test_models_no_torch
# and test_cuda).
CORE_MODULES = frozenset({
    # ops/
    "test_api_mirror", "test_attention", "test_bounds", "test_checks_once", "test_fast_path",
    "test_layers", "test_nonfinite", "test_ops_catalogue", "test_ops_errors",
    "test_ops_gradcheck", "test_ops_parity", "test_ops_stability", "test_optim", "test_rope",
    "test_modern_ops", "test_lora", "test_weight_decay",
    # models/
    "test_models_checkpoint", "test_models_metamorphic", "test_models_parity",
    "test_models_training", "test_seq2seq_models", "test_modern_models",
    # train/
    "test_generation", "test_sampling", "test_training", "test_batched_generation",
    "test_evaluation_counts",
})
TESTS = Path(__file__).resolve().parent


def pytest_configure(config):
    """The tests live in folders by subject (ops/, models/, ...) without ``__init__.py``:
    pytest imports each module by its bare name, so two modules of one name in two folders
    would collide, and a core module that was renamed would silently leave ``-m core``."""
    stems = [path.stem for path in TESTS.rglob("test_*.py")]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twice:
        raise pytest.UsageError(f"test module names must be unique across tests/'s folders: {twice}")
    unknown = sorted(CORE_MODULES - set(stems))
    if unknown:
        raise pytest.UsageError(f"tests/conftest.py CORE_MODULES names modules that do not exist: {unknown}")


def pytest_ignore_collect(collection_path, config):
    """With ``-m core``, the other test modules are not even imported: the oldest-torch run
    installs only the ``test-core`` extra, without their test-only packages."""
    if (config.getoption("markexpr") == "core" and collection_path.suffix == ".py"
            and collection_path.name.startswith("test_")):
        if collection_path.stem not in CORE_MODULES:
            return True
    return None   # the other rules (--ignore, --deselect) still apply


# Test modules whose tests pytest-xdist may hand to different workers one by one: their
# tests share no expensive module-scoped fixture (each notebook runs in its own kernel).
# Every other module's tests run in one worker, so its module-scoped fixtures (a trained
# run, a prepared corpus) are built once (``--dist loadgroup``, see scripts/test.sh).
SPREAD_MODULES = frozenset({"test_notebooks"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.stem in CORE_MODULES:
            item.add_marker("core")
        if item.path.stem not in SPREAD_MODULES:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


def pytest_report_header(config):
    """The versions the run tested, on pytest's first lines (CI runs two torch releases)."""
    import numpy
    try:
        import torch as _torch
        torch_version = _torch.__version__
    except ImportError:
        torch_version = "not installed"
    return f"minillm under test: numpy {numpy.__version__}, torch {torch_version}"


_in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
settings.load_profile(os.environ.get("MINILLM_HYPOTHESIS_PROFILE", "ci" if _in_ci else "quick"))


@pytest.fixture
def hide():
    """A module fixture of tests/core/test_optional_extras.py and tests/cli/test_cli_extras.py:
    hide(*names): those modules cannot be imported until the test ends; every module
    imported (or half-imported) meanwhile is dropped again, so no test sees a broken copy."""
    saved = dict(sys.modules)

    def _hide(*names):
        for name in names:
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[key]
            sys.modules[name] = None
    yield _hide
    for key in [k for k in sys.modules if k not in saved]:
        del sys.modules[key]
    sys.modules.update(saved)
