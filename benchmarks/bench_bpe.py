"""Benchmark: byte-level BPE training and encoding throughput on python_docs().

    python benchmarks/bench_bpe.py [--vocab-size 2000 4000] [--repeats 3]

Trains a BPETokenizer from scratch on the CPython documentation (about 465 kB) for each
vocabulary size, then encodes the whole text twice: cold (empty word cache) and warm.
Throughput is bytes of UTF-8 input per second (MB = 10^6 bytes); each time is the best
of ``--repeats`` runs on one core.
"""
from __future__ import annotations

import argparse
import time

from minillm.data import BPETokenizer, python_docs


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    text = python_docs()
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"python_docs(): {megabytes:.3f} MB, best of {args.repeats}")
    print(f"{'vocab':>6} {'merges':>7} {'train s':>8} {'train MB/s':>11} "
          f"{'encode cold MB/s':>17} {'encode warm MB/s':>17} {'bytes/token':>12}")
    for vocab_size in args.vocab_size:
        t_train, tok = best_time(lambda: BPETokenizer.train(text, vocab_size=vocab_size), args.repeats)

        def encode_cold():
            fresh = BPETokenizer(tok.merges)        # empty word cache
            return fresh.encode(text)
        t_cold, ids = best_time(encode_cold, args.repeats)
        t_warm, _ = best_time(lambda: tok.encode(text), args.repeats)
        assert tok.decode(ids) == text, "round trip failed"
        print(f"{tok.vocab_size:>6} {len(tok.merges):>7} {t_train:>8.3f} {megabytes / t_train:>11.2f} "
              f"{megabytes / t_cold:>17.2f} {megabytes / t_warm:>17.2f} {megabytes * 1e6 / len(ids):>12.2f}")


if __name__ == "__main__":
    main()
