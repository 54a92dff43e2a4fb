"""Benchmark: generation tokens/s with and without the KV cache, both backends.

    python benchmarks/bench_generate.py [--new-tokens 256] [--repeats 9] [--threads 1]

Greedy generation from a one-token prompt on the ``small`` model (4 layers, 4 heads,
d_model 128) with ``block_size = new_tokens``, so that the last step attends over the
whole block and the window never slides. Without the cache every step recomputes all
positions (O(T^2) work per step in attention, O(T) in the rest); with it, one position.
Each round generates with and without the cache, and the KV-cache target is judged on
the per-round ratios (benchmarks/harness/targets.py).
"""
from _common import parser, report
from harness.generation import bench_generate  # benchmarks/harness/, beside this script
from harness.targets import check_targets

from minillm.core.threads import thread_limit


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=9, help="rounds (default: %(default)s)")
    a = p.parse_args()
    with thread_limit(a.threads) as info:
        rows = bench_generate(new_tokens=a.new_tokens, block_size=a.new_tokens, repeats=a.repeats, device=a.device)
    report(info, a.device, generate=rows, targets=check_targets([], rows, a.device))


if __name__ == "__main__":
    main()
