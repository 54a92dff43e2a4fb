r"""A ratio of two variants' times: the median of per-round ratios and a 95% interval of that median.

Two variants timed in the same interleaved round (:mod:`harness.timing`) met the same
load, so their ratio is taken per round, :math:`r_i = a_i / b_i`, and reported as the
median of the :math:`r_i` with a distribution-free confidence interval of that median
(the order-statistic interval: with the :math:`r_i` sorted, :math:`[r_{(k)}, r_{(n+1-k)}]`
holds the true median with probability :math:`1 - 2 P(\mathrm{Bin}(n, 1/2) < k)`, and
:math:`k` is the largest for which that is at least 95%; Conover, *Practical
Nonparametric Statistics*, 3rd ed., section 3.2). It assumes nothing about how the
times are spread, which on a shared machine they are not in any textbook way. Fewer
than 6 rounds cannot give 95% (5 rounds give 94%): then there is no interval, and a
target's verdict is "within noise" (:mod:`harness.targets`).

Which time: process CPU time at one thread on the CPU (the step's own work: it does
not count the time other processes held the core), wall-clock time otherwise (at two
threads the CPU time also counts a thread that spins waiting for the other, and a GPU's
work is no process CPU time). :func:`measure_for` decides it, and the train table's
ratio column and the targets use it alike.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from math import comb

__all__ = ["CONFIDENCE", "MIN_ROUNDS", "Ratio", "measure_for", "median_interval", "ratio", "train_ratio"]

CONFIDENCE = 0.95
ROUND_KEYS = {"cpu": "cpu_s", "wall": "wall_s"}     # measure -> the rows' per-round list


def _smallest_rounds(confidence: float) -> int:
    n = 1
    while 1 - 2 / 2**n < confidence:                  # k = 1: the interval [min, max]
        n += 1
    return n


MIN_ROUNDS = _smallest_rounds(CONFIDENCE)            # 6 for 95%


@dataclass(frozen=True)
class Ratio:
    """``median`` of ``n`` per-round ratios of ``measure`` ("cpu" or "wall") time, and
    the interval [``low``, ``high``] of that median (both None: too few rounds)."""

    median: float
    low: float | None
    high: float | None
    n: int
    measure: str

    def as_dict(self) -> dict:
        return asdict(self)


def measure_for(threads: int | None, device: str) -> str:
    """"cpu" at one thread on the CPU, else "wall" (see the module doc)."""
    return "cpu" if threads == 1 and device == "cpu" else "wall"


def median_interval(samples, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The order-statistic interval of the median of ``samples`` at ``confidence`` or
    more (see the module doc); (None, None) when there are too few samples for it."""
    x = sorted(samples)
    n = len(x)
    tail = (1 - confidence) / 2
    k, below = 0, 0.0                                 # below = P(Bin(n, 1/2) <= k - 1)
    while k < n and below + comb(n, k) / 2**n <= tail:
        below += comb(n, k) / 2**n
        k += 1
    if k == 0:
        return None, None
    return x[k - 1], x[n - k]


def ratio(numerator: dict, denominator: dict, measure: str) -> Ratio:
    """The :class:`Ratio` of two rows timed in the same rounds (each with ``wall_s`` and
    ``cpu_s``, one entry per round)."""
    key = ROUND_KEYS[measure]
    a, b = numerator[key], denominator[key]
    if len(a) != len(b):
        raise ValueError(f"expected rows timed in the same rounds, got {len(a)} and {len(b)} rounds")
    per_round = [x / y for x, y in zip(a, b)]
    low, high = median_interval(per_round)
    return Ratio(statistics.median(per_round), low, high, len(per_round), measure)


def _row(rows, size, variant, threads):
    """The train row of ``variant`` on ``size`` at ``threads`` ("torch_fused" also
    matches its "+compile" form); None when it was not measured."""
    for r in rows:
        if r["size"] == size and r["variant"].split("+")[0] == variant and r.get("threads") == threads:
            return r
    return None


def train_ratio(rows, size: str, threads: int | None, numerator: str, denominator: str,
                device: str = "cpu") -> Ratio | None:
    """The :class:`Ratio` of two variants' train steps on ``size`` at ``threads`` in the
    measure of :func:`measure_for`; None when either was not measured."""
    a, b = _row(rows, size, numerator, threads), _row(rows, size, denominator, threads)
    if a is None or b is None:
        return None
    return ratio(a, b, measure_for(threads, device))
