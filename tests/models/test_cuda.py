"""The torch backend's CUDA path (skipped where torch sees no GPU).

Run on a GPU machine with ``pytest tests/models/test_cuda.py``. Checks that the same model on
CUDA computes what the NumPy reference computes, that fused attention keeps fully
masked rows at zero there (some GPU kernels give NaN), that bf16 autocast trains, and
that a checkpoint written from CUDA loads into the reference.

Tolerances: float64 on CUDA uses the same formulas with other summation orders
(cuBLAS), 1e-9 relative; float32 on CUDA may use TF32-free cuBLAS kernels with other
orders, 1e-4 relative with atol 1e-5 x scale, the models' float32 tolerance.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import minillm.reference as R  # noqa: E402
import minillm.torch_backend as TB  # noqa: E402
from minillm import ModelConfig  # noqa: E402
from minillm.store import model_io
from minillm.store.runtime import Runtime  # noqa: E402
from minillm.train.generation import generate  # noqa: E402
from minillm.train.tasks import CausalLMData  # noqa: E402
from minillm.train.training import TrainConfig, Trainer  # noqa: E402

CONFIG = ModelConfig(vocab_size=50, block_size=16, d_model=32, n_heads=4, n_layers=2, dropout=0.0)


def _batch(seed=0, B=4, T=16):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 50, (B, T)), rng.integers(0, 50, (B, T))


@pytest.mark.parametrize("dtype, rtol, atol", [("float64", 1e-9, 1e-12), ("float32", 1e-4, 1e-5)])
def test_gpt_on_cuda_matches_the_reference(dtype, rtol, atol):
    config = ModelConfig(**{**CONFIG.to_dict(), "dtype": dtype})
    ref, gpu = R.GPT(config, seed=0), TB.GPT(config, seed=0).cuda()
    x, y = _batch()
    logits_r, loss_r = ref(x, y)
    loss_r.backward()
    logits_g, loss_g = gpu(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda())
    loss_g.backward()
    np.testing.assert_allclose(logits_g.detach().cpu().numpy(), logits_r, rtol=rtol, atol=atol)
    assert abs(loss_g.item() - float(loss_r)) <= rtol * abs(float(loss_r)) + atol
    grads_g = {n: p.grad.cpu().numpy() for n, p in gpu.named_parameters()}
    for name, p in ref.named_parameters():
        scale = max(1.0, float(np.abs(p.grad).max()))
        np.testing.assert_allclose(grads_g[name], p.grad, rtol=rtol, atol=atol * scale, err_msg=name)


def test_fused_attention_on_cuda_keeps_fully_masked_rows_at_zero():
    q, k, v = (torch.randn(2, 4, 5, 8, device="cuda", dtype=torch.float32) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool, device="cuda")
    mask[:, :, 2, :] = False                                   # row 2 may attend to nothing
    out_f, _ = TB.fused_attention(q, k, v, mask)
    out_e, _ = TB.scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out_f).all()
    assert (out_f[:, :, 2] == 0).all()
    torch.testing.assert_close(out_f, out_e, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_training_on_cuda_and_checkpoint_to_reference(tmp_path):
    rt = Runtime("torch", "cuda", amp=True)
    model = rt.prepare(TB.GPT(CONFIG, seed=0))
    assert model.fused  # Runtime.prepare chose the fast path
    ids = np.random.default_rng(0).integers(0, 50, 4000)
    tc = TrainConfig(steps=30, lr=3e-3, min_lr=3e-4, warmup_steps=3, eval_every=30, checkpoint_every=30)
    opt = TB.AdamW(list(model.parameters()), lr=tc.lr)
    result = Trainer(rt, model, opt, CausalLMData(ids, 16, 8, 0), tc, run_dir=tmp_path, progress=False).fit()
    assert result.skipped_steps == 0 and np.isfinite(result.last_loss)
    assert result.losses[-1][1] < result.losses[0][1]
    ref, _ = model_io.load_model(tmp_path / "checkpoints" / "last", "numpy")
    x, _ = _batch(1)
    model.eval()
    with torch.no_grad():
        logits_g, _ = model(torch.from_numpy(x).cuda())
    logits_r, _ = ref(x)
    np.testing.assert_allclose(logits_g.float().cpu().numpy(), logits_r, rtol=1e-4, atol=1e-4)


def test_generation_on_cuda_with_and_without_cache():
    rt = Runtime("torch", "cuda")
    config = ModelConfig(**{**CONFIG.to_dict(), "dtype": "float64"})
    model = rt.prepare(TB.GPT(config, seed=1))
    with_cache = generate(rt, model, [3, 4, 5], 20, temperature=0.8, top_k=10, seed=0)
    without = generate(rt, model, [3, 4, 5], 20, temperature=0.8, top_k=10, seed=0, use_cache=False)
    on_cpu = generate(Runtime("numpy"), R.GPT(config, seed=1), [3, 4, 5], 20, temperature=0.8, top_k=10, seed=0)
    assert with_cache == without == on_cpu
