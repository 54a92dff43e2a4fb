"""Benchmark: one training step (forward, backward, Adam) of every variant, side by side.

    python benchmarks/bench_train.py [--sizes tiny small medium] [--repeats 5] [--threads 1] [--compile]

Variants: the reference (NumPy, float32, hand-written backward), the torch backend's
explicit formulas, its fast path (fused attention; ``--compile`` adds torch.compile),
and a plain ``torch.nn`` GPT of the same architecture (the yardstick). Times are the
median of ``--repeats`` rounds, the variants interleaved so that they share the load;
the targets are judged on the small size (benchmarks/harness/targets.py).
"""
from _common import parser, report
from harness.targets import check_targets  # benchmarks/harness/, beside this script
from harness.train_step import bench_train

from minillm.core.threads import thread_limit


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["tiny", "small", "small-llama", "medium"], choices=["tiny", "small", "small-llama", "medium"])
    p.add_argument("--repeats", type=int, default=9, help="interleaved rounds (default: %(default)s)")
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    with thread_limit(a.threads) as info:
        rows = bench_train(a.sizes, repeats=a.repeats, device=a.device, compile_model=a.compile)
    report(info, a.device, train=rows, targets=check_targets(rows, [], a.device))


if __name__ == "__main__":
    main()
