"""Runtime: backend and device choices, and the torch backend under bf16 autocast.

Autocast runs on CUDA in training (--amp); torch also offers it on the CPU, which lets
CI check that every op accepts bf16 activations beside float32 weights. Tolerance: bf16
keeps 8 bits of mantissa (relative rounding 2^-8 = 0.4%), so a loss of ~3.5 nats after a
few layers agrees with float32 to about 2%.
"""
import numpy as np
import pytest
import torch

import minillm.torch_backend as TB
from minillm import ModelConfig
from minillm.store.runtime import Runtime


def test_backend_and_device_choices_are_checked():
    with pytest.raises(ValueError, match=r"backend must be one of \('numpy', 'torch'\), got 'jax'"):
        Runtime("jax")
    with pytest.raises(ValueError, match="numpy backend runs on the CPU only; got device='cuda'"):
        Runtime("numpy", "cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        Runtime("torch", "tpu")
    with pytest.raises(ValueError, match="bf16 autocast is offered on CUDA only"):
        Runtime("torch", "cpu", amp=True)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA device"):
            Runtime("torch", "cuda")


def test_runtime_moves_numpy_batches_to_the_backend():
    x = np.arange(6).reshape(2, 3)
    assert isinstance(Runtime("numpy").tensor(x), np.ndarray)
    t = Runtime("torch").tensor(x)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64 and t.device.type == "cpu"
    np.testing.assert_array_equal(Runtime.to_numpy(t), x)


@pytest.mark.parametrize("model_name", ["GPT", "TransformerEncoder"])
def test_bf16_autocast_trains_and_matches_float32(model_name):
    config = ModelConfig(vocab_size=40, block_size=16, d_model=32, n_heads=4, n_layers=2)
    model = getattr(TB, model_name)(config, seed=0)
    rng = np.random.default_rng(0)
    idx = torch.from_numpy(rng.integers(0, 40, (4, 16)))
    targets = torch.from_numpy(rng.integers(0, 40, (4, 16)))
    _, loss32 = model(idx, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss16 = model(idx, targets)
    loss16.backward()
    assert logits.dtype == torch.bfloat16
    assert abs(loss16.item() - loss32.item()) < 0.02 * loss32.item()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
