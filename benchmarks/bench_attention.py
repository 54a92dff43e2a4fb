"""Benchmark: attention's cost as the sequence grows (the chapter's O(n^2)), with a plot.

    python benchmarks/bench_attention.py [--T 64 128 256 512 1024] [--out attention_cost.png]

Forward + backward of causal attention on one sequence (4 heads of 32): the
reference's hand-written pair, the torch backend's explicit formula and its fused
kernel. The plot puts them on log-log axes with a T^2 line.
"""
from pathlib import Path

from _common import parser, report
from harness.attention import bench_attention, plot_attention  # benchmarks/harness/, beside this script

from minillm.core.threads import thread_limit


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--T", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("attention_cost.png"))
    a = p.parse_args()
    with thread_limit(a.threads) as info:
        rows = bench_attention(a.T, repeats=a.repeats, device=a.device)
    report(info, a.device, attention=rows)
    print(f"plot: {plot_attention(rows, a.out)}")


if __name__ == "__main__":
    main()
