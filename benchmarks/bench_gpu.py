"""Benchmark: tokens/s and model FLOPs utilisation of the torch backend on one CUDA GPU.

    python benchmarks/bench_gpu.py [--batch-size 16] [--steps 10] [--compile] [--peak-tflops X]

A GPT-2-small-sized GPT (12 layers, 12 heads, d_model 768, 1024 positions, vocabulary
50257, tied embeddings, tanh GELU) with bf16 autocast and fused attention, trained with
the backend's own Adam and with ``torch.optim.Adam(fused=True)``. MFU counts
6N + 12 L T C FLOPs per token against the GPU's dense bf16 peak (known GPUs in
``PEAK_BF16`` of benchmarks/harness/gpu.py, or ``--peak-tflops``).
"""
from _common import parser, report
from harness.gpu import bench_gpu  # benchmarks/harness/, beside this script

from minillm.core.threads import thread_limit


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(device="cuda")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None)
    a = p.parse_args()
    peak = a.peak_tflops * 1e12 if a.peak_tflops else None
    with thread_limit(a.threads) as info:
        try:
            rows = bench_gpu(batch_size=a.batch_size, steps=a.steps, compile_model=a.compile,
                                   peak_flops=peak)
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
    report(info, "cuda", gpu=rows)


if __name__ == "__main__":
    main()
