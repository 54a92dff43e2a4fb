"""How closely minillm's logits agree with ``transformers``' on a GPT-2 folder: the figures
README.md and docs/pretrained.md quote.

    python benchmarks/bench_interop_agreement.py [--layers 2] [--tokens 64] [--seed 0]

A random-weight ``GPT2LMHeadModel`` at GPT-2 small's width (768, 12 heads, 3072 feed-forward,
vocabulary 50257, 1024 positions) and ``--layers`` layers (2 by default) is built by ``transformers``
offline, saved in float64, and read by ``minillm.apps.interop.load_hf`` in both backends
(the torch fast path and its explicit formulas) at float32 and float64. Each row is the
largest absolute difference of the logits of 2 x ``--tokens`` random token ids, and that
difference over the largest logit (relative). Weights at two scales: ``init`` is
``transformers``' own initialization of GPT-2 (std 0.02, as a model starts training);
``std 0.1`` is the tests' scale (tests/apps/test_interop.py), where activations are O(1).

Why the float32 rows are not 1e-7: a float32 logit is a sum over the 768 features of the
last layer, after every layer's matrix products and LayerNorms; NumPy's, torch's and
transformers' kernels add in different orders (BLAS blocking, vector width), and each order
rounds differently, so the disagreement grows with width and depth. The row
``transformers float32 vs its float64`` is that rounding alone, with no minillm in it: the
float32 rows of minillm against transformers are of the same order. The float64 rows are
the same rounding at a 2^29 times finer unit. The kernels, hence the figures, depend on the
CPU (AVX2 or AVX-512) and the BLAS; rerun here to get this machine's.
"""
from __future__ import annotations

import argparse
import platform

import numpy as np


def _model(layers: int, std: float | None, seed: int, vocab: int):
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_embd=768, n_head=12, n_layer=layers, n_positions=1024,
                                     vocab_size=vocab)
    model = transformers.GPT2LMHeadModel(config).to(torch.float64).eval()
    if std is not None:                      # the tests' scale: weights std, LayerNorm gains ~1
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                z = torch.randn(p.shape, generator=g, dtype=p.dtype)
                p.copy_(1 + std * z if "ln_" in name and name.endswith("weight") else std * z)
    return model


def _logits(model, ids):
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(ids)).logits
    return out.detach().cpu().numpy()


def measure(layers: int, std: float | None, tokens: int, seed: int, folder,
            vocab: int = 50257) -> list[tuple]:
    """Rows (dtype, what, largest |difference|, that over the largest |logit|)."""
    import copy

    from minillm.apps.interop import read_hf
    from minillm.store.runtime import Runtime

    hf64 = _model(layers, std, seed, vocab)
    hf64.save_pretrained(folder)
    hf32 = copy.deepcopy(hf64).float()
    ids = np.random.default_rng(seed).integers(0, vocab, (2, tokens))
    theirs = {"float64": _logits(hf64, ids), "float32": _logits(hf32, ids)}
    rows = []

    def row(dtype, what, ours, ref):
        d = float(np.abs(ours.astype(np.float64) - ref.astype(np.float64)).max())
        rows.append((dtype, what, d, d / float(np.abs(ref).max())))

    for dtype in ("float32", "float64"):
        ckpt = read_hf(folder, dtype=dtype)
        for backend, fused, name in (("numpy", True, "numpy reference"), ("torch", True, "torch fast path"),
                                     ("torch", False, "torch explicit")):
            rt = Runtime(backend, "cpu", fused=fused)
            model = rt.module.GPT(ckpt.config)
            model.load_state_dict(ckpt.state)
            model = rt.prepare(model)
            model.eval()
            with rt.no_grad():
                logits = rt.to_numpy(model(rt.tensor(ids))[0])
            row(dtype, f"minillm {name} vs transformers {dtype}", logits, theirs[dtype])
            if dtype == "float32" and backend == "numpy":
                row(dtype, "minillm numpy reference vs transformers float64", logits, theirs["float64"])
    row("float32", "transformers float32 vs its float64 (rounding alone)", theirs["float32"], theirs["float64"])
    return rows


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return names[0] if names else platform.machine()
    except OSError:
        return platform.machine()


def main(argv=None) -> None:
    import tempfile

    import torch
    import transformers

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, nargs="+", default=[2],
                   help="layer counts to measure (GPT-2 small has 12; 2 keep the run near a minute)")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"GPT-2 width 768, 12 heads, vocabulary 50257; logits of 2 x {a.tokens} tokens; "
          f"{_cpu()} (torch kernels: {torch.backends.cpu.get_cpu_capability()}), "
          f"numpy {np.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"{'layers':>6}  {'weights':<8} {'dtype':<8} {'what':<56} {'max |diff|':>10} {'relative':>9}")
    for layers in a.layers:
        for std, label in ((None, "init"), (0.1, "std 0.1")):
            with tempfile.TemporaryDirectory() as folder:
                for dtype, what, d, rel in measure(layers, std, a.tokens, a.seed, folder):
                    print(f"{layers:>6}  {label:<8} {dtype:<8} {what:<56} {d:>10.1e} {rel:>9.1e}")


if __name__ == "__main__":
    main()
