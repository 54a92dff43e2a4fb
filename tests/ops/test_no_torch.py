"""minillm and its NumPy reference work in a Python where torch cannot be imported.

Each check runs in a fresh interpreter whose import system refuses ``torch`` (a finder
at the front of ``sys.meta_path`` raises ``ModuleNotFoundError`` for it; the child and its
helpers are in tests/without_torch.py, which other folders' no-torch tests share), so a stray
``import torch`` anywhere under ``minillm.reference`` fails the test even on a machine
that has torch installed.

To add a check (for example a whole training step once the models exist), append a
snippet to ``REFERENCE_STEPS``: it runs after ``BLOCK_TORCH`` and ``OP_HELPERS``, with
``np``, ``ref`` (``minillm.reference``), ``rng`` and ``run_op`` in scope, and fails by
raising.
"""
import textwrap

import pytest

from without_torch import OP_HELPERS, assert_ok, run_without_torch

# One call per reference op with a forward/backward pair. The coverage check below
# fails when the reference exports an op that no line here exercises.
EVERY_REFERENCE_OP = textwrap.dedent("""
    B, T, C, H = 2, 4, 6, 3
    x = rng.standard_normal((B, T, C))
    q, k, v = (rng.standard_normal((B, H, T, 2)) for _ in range(3))
    mask = ref.causal_mask(T) & ref.length_mask(np.array([4, 2]), T)[:, None, None, :]

    # attention.py
    run_op("scaled_dot_product_attention", q, k, v)
    run_op("scaled_dot_product_attention", q, k, v, mask)
    run_op("split_heads", x, H)
    run_op("merge_heads", q)
    run_op("repeat_kv", q, 2)
    # softmax.py
    run_op("softmax", x)
    run_op("log_softmax", x, axis=1)
    # activations.py
    for activation in minillm.core.config.ACTIVATIONS:
        run_op(activation, x)
    # losses.py
    targets = rng.integers(0, C, size=(B, T))
    targets[0, 0] = -100
    run_op("cross_entropy", x, targets)
    run_op("cross_entropy", x, targets, label_smoothing=0.1, reduction="sum")
    # linear.py, embedding.py
    W, b = rng.standard_normal((C, 5)), rng.standard_normal(5)
    run_op("linear", x, W, b)
    run_op("linear", x, W)
    run_op("embedding", targets.clip(0), rng.standard_normal((C, 3)))
    # layer_norm.py, feed_forward.py, dropout.py
    run_op("layer_norm", x, rng.standard_normal(C), rng.standard_normal(C))
    run_op("rms_norm", x, rng.standard_normal(C))
    W1, b1 = rng.standard_normal((C, 8)), rng.standard_normal(8)
    W2, b2 = rng.standard_normal((8, C)), rng.standard_normal(C)
    for activation in minillm.core.config.ACTIVATIONS:
        run_op("feed_forward", x, W1, b1, W2, b2, activation=activation)
    run_op("gated_feed_forward", x, W1, b1, rng.standard_normal((C, 8)), None, W2, None)
    run_op("dropout", x, 0.3, training=True, rng=np.random.default_rng(1))
    # lora.py, dpo.py
    A, B_ = rng.standard_normal((C, 2)), rng.standard_normal((2, 5))
    run_op("lora", x, W, b, A, B_, 1.5, 0.2, True, np.random.default_rng(2))
    run_op("dpo_loss", *(-np.abs(rng.standard_normal(3)) for _ in range(4)), 0.1, 0.1)
    run_op("sequence_logps", x, targets.clip(0), rng.random((B, T)) < 0.5)
    # rope.py: q (B, H, T, 2) rotated by the tables of positions 0..T-1
    run_op("rope", q, *minillm.core.init.rotary_tables(T, 2, "float64"))
    run_op("rope_half", q, *minillm.core.init.rotary_tables(T, 2, "float64", 500000.0))

    # ops with a forward/backward pair (feed_forward is an op, feed_forward_forward its forward)
    forward_names = {n[: -len("_forward")] for n in ref.__all__
                     if n.endswith("_forward") and n[: -len("_forward")] in ref.__all__}
    missing = sorted(forward_names - EXERCISED)
    assert not missing, f"reference ops not exercised without torch: {missing}"
""")

REFERENCE_STEPS = {
    "every_reference_op": EVERY_REFERENCE_OP,
}


def test_the_blocker_blocks_torch():
    # guards the other tests: without this, they would pass vacuously
    result = run_without_torch("import torch")
    assert result.returncode != 0
    assert "blocked by tests/without_torch.py" in result.stderr


def test_import_minillm_and_the_reference():
    assert_ok(run_without_torch(textwrap.dedent("""
        import minillm
        import minillm.reference
        import minillm.core.config
        assert "torch" not in sys.modules, "something imported torch"
    """)))


@pytest.mark.parametrize("step", sorted(REFERENCE_STEPS))
def test_reference_runs_without_torch(step):
    assert_ok(run_without_torch(OP_HELPERS + REFERENCE_STEPS[step] + textwrap.dedent("""
        assert "torch" not in sys.modules, "something imported torch"
    """)))


def test_torch_backend_says_how_to_install_torch():
    result = run_without_torch(textwrap.dedent("""
        try:
            import minillm.torch_backend
        except ImportError as exc:
            print(str(exc))
        else:
            raise SystemExit("importing minillm.torch_backend without torch did not fail")
    """))
    assert_ok(result)
    assert "pip install" in result.stdout and "torch" in result.stdout, result.stdout
