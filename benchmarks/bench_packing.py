"""Benchmark: SFT batches packed against padded, on the embedded instruction set.

    python benchmarks/bench_packing.py [--threads 1 2] [--repeats 9] [--backends numpy torch]

The conversations are ``minillm.data.instruction_set``'s training rows (200 of each task),
rendered with ``DEFAULT_CHAT_TEMPLATE`` and a BPE of 1024 tokens trained on the embedded
corpus, as ``minillm demo`` trains its tokenizer. The model is the demo's GPT (4 layers,
4 heads, d_model 128, float32, dropout off) with a block of 256 positions, so that the
longest conversation fits. "padded": 16 conversations a batch, one a row, right-padded to
the longest of the batch; "packed": 4 rows of 256 positions, conversations one after
another with ``segment_ids`` (``minillm.data.chat_batches.ConversationBatches``). It
reports:

- the share of positions that hold padding, over the batches timed;
- a train step (forward, backward, Adam) on each, interleaved: round i times the i-th
  padded batch and the i-th packed one, so that both meet the same load; the throughput
  is the counted tokens (the assistant's targets, what the loss is on) per second; the
  ratio packed / padded is the median of the per-round ratios with its 95% interval
  (benchmarks/harness/ratios.py), in CPU time at one thread and wall-clock time at two.

The shares do not depend on the machine; the times do, and on what else it runs.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import replace

from _common import print_machine, rounds_parser  # benchmarks/, beside this script
from harness.ratios import measure_for, median_interval
from harness.sizes import gpt_config

from minillm.core.config import IGNORE_INDEX
from minillm.core.threads import thread_limit
from minillm.data import instruction_set
from minillm.data.chat_batches import ConversationBatches
from minillm.data.chat_template import DEFAULT_CHAT_TEMPLATE
from minillm.data.conversations import encode_conversations
from minillm.store.runtime import Runtime
from minillm.train import pipeline

BLOCK = 256
ROWS = {"padded": 16, "packed": 4}


def batches(repeats: int, warmup: int = 2, per_task: int = 200):
    """The tokenizer's vocabulary size, its pad id and, per variant, the batches of every
    round (warm-up ones first), from ``per_task`` conversations of each task."""
    tok = pipeline.train_tokenizer("bpe", pipeline.load_corpus("python_docs"), 1024)
    rows, _ = instruction_set(n_train=per_task, n_test=1, seed=0)
    encoded = encode_conversations(tok, DEFAULT_CHAT_TEMPLATE, rows, BLOCK)
    out = {}
    for name, n_rows in ROWS.items():
        source = ConversationBatches(encoded.ids, encoded.targets, n_rows, BLOCK, tok.pad_id, seed=0,
                                     packing=name == "packed")
        out[name] = [source.batch(s) for s in range(warmup + repeats)]
    return tok.vocab_size, tok.pad_id, out


def bench(backend: str, vocab_size: int, all_batches: dict, warmup: int = 2, config=None) -> dict:
    """Per variant: the per-round (seconds, CPU seconds, counted tokens) of the train steps
    of ``config``'s GPT (default: the demo's with a block of BLOCK)."""
    runtime = Runtime(backend)
    if config is None:
        config = replace(gpt_config(4, 4, 128, BLOCK, vocab_size=vocab_size), dtype="float32")
    models, opts = {}, {}
    for name in all_batches:
        models[name] = runtime.prepare(runtime.module.GPT(config, seed=0))
        opts[name] = runtime.prepare_optimizer(runtime.module.Adam(models[name].parameters(), lr=1e-4))
    rounds = {name: [] for name in all_batches}
    with runtime.threads():
        for i in range(len(next(iter(all_batches.values())))):
            for name, bs in all_batches.items():
                b = bs[i]
                args = [runtime.tensor(b["idx"]), runtime.tensor(b["targets"])]
                extra = {"segment_ids": runtime.tensor(b["segment_ids"])} if "segment_ids" in b else {}
                start, start_cpu = time.perf_counter(), time.process_time()
                _, loss = models[name](*args, **extra)
                loss.backward()
                opts[name].step()
                opts[name].zero_grad()
                runtime.synchronize()
                if i >= warmup:
                    rounds[name].append((time.perf_counter() - start, time.process_time() - start_cpu,
                                         int((b["targets"] != IGNORE_INDEX).sum())))
    return rounds


def main() -> None:
    a = rounds_parser(__doc__.splitlines()[0]).parse_args()
    print_machine()
    vocab_size, pad_id, all_batches = batches(a.repeats)
    timed = {name: bs[2:] for name, bs in all_batches.items()}
    print(f"demo GPT with a block of {BLOCK}, float32; instruction set, BPE {vocab_size}; padded "
          f"{ROWS['padded']} rows a batch, packed {ROWS['packed']} rows of {BLOCK}; {a.repeats} rounds\n")
    print("| backend | threads | batches | positions a batch (median) | padding share | counted tokens/s (median) "
          "| packed / padded [95% interval] |")
    print("|---|---|---|---|---|---|---|")
    for threads in a.threads:
        for backend in a.backends:
            with thread_limit(threads):
                rounds = bench(backend, vocab_size, all_batches)
            k = 0 if measure_for(threads, "cpu") == "wall" else 1
            rate = {n: [r[2] / r[k] for r in rs] for n, rs in rounds.items()}   # counted tokens / s
            per_round = [x / y for x, y in zip(rate["packed"], rate["padded"])]
            low, high = median_interval(per_round)
            spread = f"[{low:.2f}, {high:.2f}]" if low is not None else "(too few rounds)"
            for name, bs in timed.items():
                positions = [b["idx"].size for b in bs]
                padding = sum(int((b["idx"] == pad_id).sum()) for b in bs) / sum(positions)
                tail = f"{statistics.median(per_round):.2f}x {spread} ({measure_for(threads, 'cpu')})" \
                    if name == "packed" else ""
                print(f"| {backend} | {threads} | {name} | {statistics.median(positions):.0f} | {padding:.1%} "
                      f"| {statistics.median(rate[name]):,.0f} | {tail} |")


if __name__ == "__main__":
    main()
