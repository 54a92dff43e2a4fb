"""Helpers the model tests share: build the same model in both backends, run it with
the right keyword names, read gradients back as NumPy, and a hypothesis strategy for
small configurations.

Tolerances for whole models (forward + backward through every layer):

- float64: the parity contract of docs/architecture.md, rtol 1e-7 / atol 1e-9, applied
  to logits, loss and every gradient. The two backends differ only in summation order inside BLAS,
  softmax and the reductions (and in the erf of exact GELU, which both compute to
  ~1 ulp), so the observed differences are ~1e-13.
- float32: rtol 1e-4, atol 1e-5 times the tensor's largest magnitude (scale-aware, so
  a gradient whose entries are all ~1e-4 is not judged against a fixed 1e-5). A float32
  ulp is 1.2e-7; one Transformer layer chains ~10 reductions of length <= 32 whose
  rounding differs between NumPy and torch, and the backward doubles that chain, so
  1e-4 relative leaves ~100x room above the rounding noise while a wrong formula
  (an error of order 1) is still caught by several orders of magnitude.
"""
import numpy as np
from hypothesis import strategies as st

from minillm.core.config import ACTIVATIONS, ModelConfig

from parity import assert_close

RTOL = {"float64": 1e-7, "float32": 1e-4}
ATOL = {"float64": 1e-9, "float32": 1e-5}

KINDS = ("GPT", "TransformerEncoder", "SequenceClassifier")
POSITIONALS = ("learned", "sinusoidal", "rope")


def build(backend, kind, config, seed=0):
    return getattr(backend, kind)(config, seed=seed)


def call(model, kind, idx, targets=None, mask=None):
    """``model(idx, targets)`` with the right keyword for each kind."""
    if kind == "GPT":
        return model(idx, targets)
    if kind == "TransformerEncoder":
        return model(idx, targets, attention_mask=mask)
    return model(idx, labels=targets, attention_mask=mask)


def make_batch(kind, config, B, T, seed, n_classes=2, with_mask=True):
    """Token ids, targets (with some -100 for the encoder) and a right-padding mask."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, (B, T))
    mask = None
    if kind != "GPT" and with_mask:
        lengths = rng.integers(1, T + 1, B)                       # at least one real token
        mask = np.arange(T)[None, :] < lengths[:, None]           # (B, T)
    if kind == "SequenceClassifier":
        targets = rng.integers(0, n_classes, B)
    else:
        targets = rng.integers(0, config.vocab_size, (B, T))
        if kind == "TransformerEncoder":                          # only "masked" positions count
            targets = np.where(rng.random((B, T)) < 0.5, targets, -100)
            targets[:, 0] = rng.integers(0, config.vocab_size, B)  # at least one counted
    return idx, targets, mask


def to_np(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def grads(model):
    """name -> gradient as NumPy (zeros where a parameter got none)."""
    out = {}
    for name, p in model.named_parameters():
        g = p.grad
        out[name] = np.zeros(tuple(p.shape)) if g is None else to_np(g)
    return out


def assert_model_close(what, ours, theirs, dtype, scale_aware=True):
    """Compare with the tolerances above; float32 atol scales with the tensor's size."""
    theirs_np = to_np(theirs)
    atol = ATOL[dtype]
    if dtype == "float32" and scale_aware:
        atol = atol * max(1.0, float(np.abs(theirs_np).max(initial=0.0)))
    assert_close(what, to_np(ours), theirs_np, RTOL[dtype], atol)


@st.composite
def small_configs(draw, dtypes=("float64", "float32")):
    """Small ModelConfigs over every structural choice (d_model 8-32, vocab 11-40).

    The head sizes drawn are d_model / n_heads in {2, 4, 8} (n_heads 1 -> 8; 2 -> 4 or 8;
    4 -> 2, 4 or 8), all even, so ``positional="rope"`` (which needs an even head size)
    is drawn with every other choice; tests/ops/test_rope.py checks this claim."""
    n_heads = draw(st.sampled_from([1, 2, 4]))
    d_model = n_heads * draw(st.sampled_from([2, 4, 8]))
    d_model = max(d_model, 8)
    return ModelConfig(
        vocab_size=draw(st.integers(11, 40)),
        block_size=8,
        d_model=d_model,
        n_heads=n_heads,
        n_layers=draw(st.integers(1, 2)),
        d_ff=draw(st.sampled_from([0, 16])),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        norm_first=draw(st.booleans()),
        tie_embeddings=draw(st.booleans()),
        positional=draw(st.sampled_from(POSITIONALS)),
        dtype=draw(st.sampled_from(list(dtypes))),
    )


def train_task(task, out, config, *, backend="numpy", steps, batch_size=None, lr=None, seed=0, data=None, **options):
    """``train(task, ...)`` with the task's default recipe at ``steps``, ``batch_size``,
    ``lr`` and ``seed``, silent, without the held-out scores (the tests compute their own)."""
    import minillm.apps  # noqa: F401  (registers translation and question answering)
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.spec import task_spec

    spec = task_spec(task)
    run_config = RunConfig(config, spec.train_config(steps, lr, batch_size=batch_size, seed=seed), backend=backend)
    return train(task, out, run_config, data=data, progress=False, evaluate_test=False, **options)


def load_parts(run, task, backend="numpy"):
    """``(model, runtime, tokenizer)`` of the ``task`` run in ``run``, loaded in ``backend``."""
    from minillm.store.runs import load_run
    from minillm.store.runtime import Runtime

    loaded = load_run(run, Runtime(backend), task=task)
    return loaded.model, loaded.runtime, loaded.tokenizer
