"""A child Python where torch cannot be imported, for the tests that prove a part of
minillm needs no torch (ops/test_no_torch.py, models/test_models_no_torch.py,
models/test_modern_models.py, apps/test_interop_no_torch.py).

``run_without_torch(code)`` runs ``code`` in a fresh interpreter whose import system
refuses ``torch`` (``BLOCK_TORCH``, a finder at the front of ``sys.meta_path``), so a stray
``import torch`` fails the test even on a machine that has torch installed.
"""
import subprocess
import sys
import textwrap

# Installed first in the child: any import of torch (or torch.*) fails as if absent.
BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc
    import sys

    class _RefuseTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname == "torch" or fullname.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by tests/without_torch.py)")
            return None

    sys.meta_path.insert(0, _RefuseTorch())
    assert "torch" not in sys.modules
""")

# Helpers the reference checks share. run_op(name, *args, **kwargs) calls the op's
# forward, checks that `name(...)` gives the same output, runs its backward with a
# random upstream gradient and checks every gradient is finite; it records the op in
# EXERCISED so the coverage check can see which ops ran.
OP_HELPERS = textwrap.dedent("""
    import copy

    import numpy as np
    import minillm
    import minillm.reference as ref

    rng = np.random.default_rng(0)
    EXERCISED = set()

    def run_op(name, *args, **kwargs):
        # the second call gets copies, so a random generator (dropout) starts equal
        args_again, kwargs_again = copy.deepcopy((args, kwargs))
        out, cache = getattr(ref, name + "_forward")(*args, **kwargs)
        again = getattr(ref, name)(*args_again, **kwargs_again)
        outs = out if isinstance(out, tuple) else (out,)
        agains = again if isinstance(again, tuple) else (again,)
        for a, b in zip(outs, agains):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} != {name}_forward[0]")
        dout = rng.standard_normal(np.shape(outs[0]))
        grads = getattr(ref, name + "_backward")(dout, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        assert any(g is not None for g in grads), f"{name}_backward returned no gradient"
        for g in grads:
            assert g is None or np.all(np.isfinite(g)), f"{name}_backward: non-finite gradient"
        EXERCISED.add(name)
        return out, grads
""")

def run_without_torch(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing torch fails."""
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + code],
        capture_output=True, text=True, timeout=120,
    )


def assert_ok(result):
    assert result.returncode == 0, (
        f"child failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
