r"""On a GPU: tokens/s and model FLOPs utilisation (MFU) of a GPT-2-small-sized model with
bf16 autocast and fused attention.

MFU = tokens/s * FLOPs per token / the GPU's dense bf16 peak, FLOPs per token
:math:`6N + 12\,L\,T\,C` (:func:`flops_per_token`).
"""
from __future__ import annotations

import logging
from dataclasses import replace

from minillm.core.config import ModelConfig

from .machine import cpu_name, synchronizer
from .sizes import SIZES, random_batch
from .timing import interleaved_times

logger = logging.getLogger("minillm")

__all__ = ["PEAK_BF16", "flops_per_token", "bench_gpu"]

# dense bf16 tensor-core peaks from the vendors' data sheets, FLOP/s
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
             "A10": 125e12, "RTX 4090": 165e12}


def flops_per_token(c: ModelConfig) -> float:
    r"""Training FLOPs per token, :math:`6N + 12\,L\,T\,C` (Kaplan et al. 2020, section
    2.1; PaLM, appendix B): :math:`N` the weights every token multiplies by (the blocks
    and the LM head; not the embedding lookups), forward 2 and backward 4 FLOPs per
    weight, and attention's :math:`QK^\top` and weights·V, 12 L T C, unhalved by the mask."""
    per_block = 4 * c.d_model ** 2 + 2 * c.d_model * c.d_ff
    n = c.n_layers * per_block + c.d_model * c.vocab_size
    return 6 * n + 12 * c.n_layers * c.block_size * c.d_model


def _optimizer(which: str, model):
    """The backend's Adam with its foreach step (the fast path, "minillm"), or
    torch.optim.Adam(fused=True)."""
    import torch
    from minillm import torch_backend as T
    if which != "minillm":
        return torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    opt = T.Adam(model.parameters(), lr=1e-4)
    opt.foreach = True
    return opt


def bench_gpu(size: str = "gpt2-small", batch_size: int = 16, steps: int = 10, warmup: int = 3,
              compile_model: bool = False, optimizers=("minillm", "torch_fused"),
              peak_flops: float | None = None, device: str = "cuda") -> list[dict]:
    """Tokens/s and MFU of the torch backend's GPT in bf16 with fused attention (None
    without a known peak); the model on the fast path. ``optimizers``: "minillm" is the
    backend's own Adam with its ``torch._foreach_*`` step; "torch_fused" is
    ``torch.optim.Adam(fused=True)``, to show what the optimizer's kernel launches cost.
    ``device="cpu"`` runs the same code (bf16 on the CPU) so that it can be smoke-tested
    without a GPU.

    bf16 is autocast (float32 weights, bf16 matrix products) when the backend accepts
    it; when one of its ops rejects the mixed dtypes autocast produces (a ValueError),
    the model's weights are cast to bf16 instead, and the row says so (``precision``).
    """
    import torch
    from minillm import torch_backend as T
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("bench_gpu needs a CUDA device; torch sees none")
    s = replace(SIZES[size], batch_size=batch_size)
    name = torch.cuda.get_device_name() if device == "cuda" else cpu_name()
    if peak_flops is None:
        peak_flops = next((p for key, p in PEAK_BF16.items() if key in name), None)
    x, y = (torch.from_numpy(a).to(device) for a in random_batch(s))
    sync = synchronizer(device)
    rows = []
    precision = "bf16 autocast"
    for which in optimizers:
        model = T.GPT(s.config, seed=0).to(device).set_fused(True)
        if precision != "bf16 autocast":
            model = model.to(torch.bfloat16)
        opt = _optimizer(which, model)
        forward = torch.compile(model) if compile_model else model

        def step():
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16 autocast"):
                _, loss = forward(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad()
        try:
            step()
        except ValueError as exc:
            if precision != "bf16 autocast" or "dtype" not in str(exc):
                raise
            logger.warning("bench_gpu: the backend rejects autocast (%s); using bf16 weights", exc)
            precision = f"bf16 weights (autocast rejected: {exc})"
            model = model.to(torch.bfloat16)
            opt = _optimizer(which, model)
            forward = torch.compile(model) if compile_model else model
        t = interleaved_times({"gpu": step}, steps, warmup, sync)["gpu"]
        peak_mib = None
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            step()
            sync()
            peak_mib = torch.cuda.max_memory_allocated() / 2**20   # weights, grads, Adam included
        tokens_per_s = s.batch_size * s.config.block_size / t["median_s"]
        achieved = tokens_per_s * flops_per_token(s.config)
        rows.append({"size": size, "gpu": name, "batch_size": s.batch_size,
                     "block_size": s.config.block_size, "optimizer": which, "compile": compile_model,
                     "precision": precision,
                     "step_s": t["median_s"], "tokens_per_s": tokens_per_s,
                     "model_tflops": achieved / 1e12, "peak_tflops": peak_flops and peak_flops / 1e12,
                     "mfu": achieved / peak_flops if peak_flops else None, "peak_mib": peak_mib})
        del model, opt, forward
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows
