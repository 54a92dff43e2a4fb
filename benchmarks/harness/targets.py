"""The speed targets (issue 16, items 4 and 5), each declared once, and the verdict rule.

A target is a limit on a :class:`harness.ratios.Ratio`. Its verdict:

- "met": the whole 95% interval of the median ratio is on the target's side of the limit;
- "missed": the whole interval is on the other side;
- "within noise": the interval holds the limit (or there are too few rounds for an
  interval): this run cannot tell, and another run may fall either side.

So a verdict flips between two runs only when the interval of one of them misses the true
median, which the 95% makes rare, instead of whenever a median lands either side of the limit.
"""
from __future__ import annotations

from dataclasses import dataclass

from .ratios import Ratio, measure_for, ratio, train_ratio
from .sizes import TARGET_SIZES

__all__ = ["Target", "TRAIN_TARGETS", "KV_CACHE_TARGET", "BATCHED_GENERATION_TARGET", "BATCHED_GENERATION_THREADS",
           "verdict", "check_targets"]

MET, MISSED, WITHIN_NOISE = "met", "missed", "within noise"


@dataclass(frozen=True)
class Target:
    """``numerator / denominator`` "below" (at most) or "above" (at least) ``limit``."""

    numerator: str
    denominator: str
    limit: float
    better: str

    def __post_init__(self):
        if self.better not in ("below", "above"):
            raise ValueError(f"Target.better: expected 'below' or 'above', got {self.better!r}")

    def describe(self, what: str = "train step") -> str:
        sign = "<=" if self.better == "below" else ">="
        return f"{self.numerator} / {self.denominator} {what} {sign} {self.limit:g}"


TRAIN_TARGETS = (
    Target("torch_fused", "torch_nn", 1.05, "below"),      # the fast path as fast as plain torch.nn
    Target("torch_explicit", "torch_nn", 1.6, "below"),    # the formulas within 1.6x of it
    Target("reference", "torch_fused", 2.0, "below"),      # NumPy within 2x of the fast path
    Target("torch_fused", "torch_explicit", 1.0, "below"),  # the fast path faster than the formulas
)
KV_CACHE_TARGET = Target("no cache", "KV cache", 10.0, "above")   # each backend's generation
# issue 25: 8 prompts decoded together give 4x the tokens/s of the same 8 one at a time, at
# 2 threads, in each backend (benchmarks/bench_batched_generation.py)
BATCHED_GENERATION_TARGET = Target("together", "one at a time", 4.0, "above")
BATCHED_GENERATION_THREADS = 2


def verdict(r: Ratio, target: Target) -> str:
    """"met", "missed" or "within noise" (see the module doc)."""
    if r.low is None:
        return WITHIN_NOISE
    if target.better == "below":
        return MET if r.high <= target.limit else MISSED if r.low > target.limit else WITHIN_NOISE
    return MET if r.low >= target.limit else MISSED if r.high < target.limit else WITHIN_NOISE


def _judged(what: str, target: Target, r: Ratio, threads) -> dict:
    return {"target": what, "threads": threads, "limit": target.limit, "better": target.better,
            "ratio": r.median, **{k: v for k, v in r.as_dict().items() if k != "median"},
            "verdict": verdict(r, target)}


def check_targets(train_rows, generate_rows, device: str = "cpu", sizes=TARGET_SIZES) -> list[dict]:
    """Every target that this run measured, on each of ``sizes`` at each thread count of the
    train rows, and the KV cache's for each backend of the generation rows: the median ratio,
    its interval, the measure (:func:`harness.ratios.measure_for`) and the verdict."""
    out = []
    for size in sizes:
        for threads in dict.fromkeys(r.get("threads") for r in train_rows if r["size"] == size):
            for t in TRAIN_TARGETS:
                r = train_ratio(train_rows, size, threads, t.numerator, t.denominator, device)
                if r is not None:
                    out.append(_judged(f"{size}: {t.describe()}", t, r, threads))
    by = {(r["backend"], r["use_cache"]): r for r in generate_rows}
    for backend in dict.fromkeys(r["backend"] for r in generate_rows):
        if (backend, True) in by and (backend, False) in by:
            cached, uncached = by[(backend, True)], by[(backend, False)]
            r = ratio(uncached, cached, measure_for(cached.get("threads"), device))
            what = f"{backend}: " + KV_CACHE_TARGET.describe(f"generation, {cached['new_tokens']} new tokens")
            out.append(_judged(what, KV_CACHE_TARGET, r, cached.get("threads")))
    return out
