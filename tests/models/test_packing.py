"""Packing (issue 26.1): several sequences in one row with ``segment_ids``, each attending
only to its own earlier tokens, its positions counted from its own start. Proof: a packed
row gives each sequence the logits it has alone, and the packed loss's gradients are the
alone losses' gradients weighted by their counted targets, in the reference and in both
torch paths (float64, the parity contract's tolerance: the same sums in another order),
for learned positions (GPT-2) and RoPE with grouped-query attention (Llama style)."""
import numpy as np
import pytest

import minillm.reference as ref
from minillm.core.config import ModelConfig

from model_helpers import ATOL, RTOL, assert_model_close, grads, to_np

torch = pytest.importorskip("torch")
import minillm.torch_backend as tb  # noqa: E402

CONFIGS = {
    "gpt2": ModelConfig(vocab_size=23, block_size=16, d_model=16, n_heads=2, n_layers=2, d_ff=32,
                        dropout=0.0, dtype="float64"),
    "llama": ModelConfig(vocab_size=23, block_size=16, d_model=16, n_heads=4, n_kv_heads=2, n_layers=2,
                         d_ff=24, dropout=0.0, dtype="float64", norm="rms", activation="swiglu",
                         positional="rope", rope_layout="half", bias=False, tie_embeddings=False),
}
LENGTHS = ([5, 4, 3, 4], [9, 7])      # two rows of packed sequences, T = 16 each


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    T = 16
    idx = rng.integers(0, 23, (len(LENGTHS), T))
    targets = rng.integers(0, 23, (len(LENGTHS), T))
    targets[rng.random(targets.shape) < 0.3] = -100                    # prompts: not counted
    segments = np.array([np.repeat(np.arange(len(row)), row) for row in LENGTHS])   # (B, T)
    pieces = [(b, int(start), int(n)) for b, row in enumerate(LENGTHS)
              for start, n in zip(np.cumsum([0] + row[:-1]), row)]
    return idx, targets, segments, pieces


def _alone(model, backend, idx, targets, pieces):
    """Each sequence run alone: its logits, and the packed loss's gradients assembled from
    the alone losses' gradients (weights: its counted targets over all counted)."""
    total = int((targets != -100).sum())
    logits, summed = [], None
    for b, start, n in pieces:
        x, y = idx[b:b + 1, start:start + n], targets[b:b + 1, start:start + n]
        count = int((y != -100).sum())
        model.zero_grad()
        out, loss = model(_as(backend, x), _as(backend, y))
        logits.append(to_np(out)[0])
        if count:
            loss.backward()
            g = {k: v * count / total for k, v in grads(model).items()}
            summed = g if summed is None else {k: summed[k] + g[k] for k in g}
    return logits, summed


def _as(backend, x):
    return torch.as_tensor(x) if backend is tb else x


@pytest.mark.parametrize("name", list(CONFIGS))
def test_packed_rows_are_each_sequence_alone(name):
    config = CONFIGS[name]
    idx, targets, segments, pieces = _batch()
    models = {"reference": ref.GPT(config, seed=1), "explicit": tb.GPT(config, seed=1),
              "fused": tb.GPT(config, seed=1).set_fused(True)}
    alone_logits, alone_grads = _alone(models["reference"], ref, idx, targets, pieces)
    for path, model in models.items():
        backend = ref if path == "reference" else tb
        model.zero_grad()
        logits, loss = model(_as(backend, idx), _as(backend, targets), segment_ids=_as(backend, segments))
        loss.backward()
        logits = to_np(logits)
        for k, (b, start, n) in enumerate(pieces):
            assert_model_close(f"{path} logits of sequence {k}", logits[b, start:start + n], alone_logits[k],
                               "float64")
        got = grads(model)
        for key in alone_grads:
            assert_model_close(f"{path} d{key}", got[key], alone_grads[key], "float64")


def test_without_segments_a_packed_row_differs():
    """The check can fail: the same row without segment_ids attends across sequences."""
    config = CONFIGS["gpt2"]
    idx, targets, segments, pieces = _batch()
    model = ref.GPT(config, seed=1)
    plain, _ = model(idx)
    packed, _ = model(idx, segment_ids=segments)
    b, start, n = pieces[1]
    assert not np.allclose(plain[b, start:start + n], packed[b, start:start + n], rtol=RTOL["float64"],
                           atol=ATOL["float64"])
    np.testing.assert_array_equal(plain[0, :5], packed[0, :5])        # the first sequence sees the same


@pytest.mark.parametrize("backend", [ref, tb], ids=["reference", "torch"])
def test_segment_ids_errors(backend):
    model = backend.GPT(CONFIGS["gpt2"])
    idx = _as(backend, np.zeros((1, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="segment_ids non-decreasing"):
        model(idx, segment_ids=_as(backend, np.array([[0, 1, 0, 1]])))
    with pytest.raises(ValueError, match="segment_ids"):
        model(idx, segment_ids=_as(backend, np.zeros((1, 3), dtype=np.int64)))
