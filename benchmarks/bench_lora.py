"""Benchmark: LoRA r=8 on the attention projections of the demo GPT against full fine-tuning.

    python benchmarks/bench_lora.py [--threads 1 2] [--repeats 9] [--backends numpy torch]

The model is ``minillm demo``'s GPT (4 layers, 4 heads, d_model 128, block 64, a BPE
vocabulary of 1024; dropout off, so that no random mask is timed), trained on a random
batch of 16 rows, float32. "full" trains every parameter with Adam; "lora" attaches
adapters of rank 8, alpha 16, to W_Q, W_K, W_V and W_O of every layer
(``minillm.store.lora_adapters.add_lora``) and gives Adam only their A and B. For each
backend (the reference's hand-written backward; the torch backend on the fast path
training uses) and thread count it reports:

- the trained parameters, and the bytes of Adam's state (``m`` and ``v``, read from the
  optimizer's own arrays);
- the bytes of gradients a backward leaves (torch: the frozen weights get no gradient
  buffer, autograd computes no dL/dW for them; the reference: an adapted projection
  skips its dW, the other parameters still get theirs, which no optimizer reads);
- a train step (forward, backward, Adam, zero_grad): the median over interleaved rounds
  (full and LoRA once each per round, so that both meet the same load), and the ratio
  LoRA / full as the median of the per-round ratios with its 95% interval
  (benchmarks/harness/ratios.py), in CPU time at one thread and wall-clock time at two.

The counts are exact on any machine; the times depend on it and on what else it runs.
"""
from __future__ import annotations

import time

from _common import print_machine, rounds_parser  # benchmarks/, beside this script
from harness.ratios import measure_for, ratio
from harness.sizes import BenchSize, gpt_config, random_batch
from harness.timing import summary

from minillm.store.lora_adapters import add_lora, lora_parameters
from minillm.core.threads import thread_limit
from minillm.store.runtime import Runtime

DEMO = BenchSize("demo", gpt_config(4, 4, 128, 64, vocab_size=1024), 16)   # minillm/demo.py's GPT
TARGETS, RANK, ALPHA = ("W_Q", "W_K", "W_V", "W_O"), 8, 16.0


def _nbytes(a) -> int:
    return int(a.nbytes)     # a NumPy array or a torch tensor


def train_step(backend: str, lora: bool, size: BenchSize = DEMO):
    """(step, runtime, counts): a zero-argument train step of ``size``'s model on its
    batch, and what it trains and keeps."""
    runtime = Runtime(backend)
    model = runtime.module.GPT(size.config, seed=0)
    if lora:
        add_lora(model, TARGETS, r=RANK, alpha=ALPHA)
        params = [p for _, p in lora_parameters(model)]
    else:
        params = list(model.parameters())
    model = runtime.prepare(model)
    opt = runtime.prepare_optimizer(runtime.module.Adam(params, lr=1e-4))
    x, y = (runtime.tensor(a) for a in random_batch(size))        # (B, T) each

    def step():
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    _, loss = model(x, y)                                         # once, to read the gradients' bytes
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    opt.step()
    counts = {"trained": sum(int(p.numel() if hasattr(p, "numel") else p.data.size) for p in params),
              "parameters": sum(int(p.numel() if hasattr(p, "numel") else p.data.size) for p in model.parameters()),
              "grad_bytes": sum(_nbytes(g) for g in grads),
              "adam_bytes": sum(_nbytes(s[k]) for s in opt.state for k in ("m", "v"))}
    opt.zero_grad()
    return step, runtime, counts


def bench(backend: str, repeats: int, warmup: int = 2, size: BenchSize = DEMO) -> dict:
    """Counts and interleaved step times of full fine-tuning and LoRA on one backend."""
    steps, counts = {}, {}
    for name in ("full", "lora"):
        steps[name], runtime, counts[name] = train_step(backend, name == "lora", size)
    with runtime.threads():
        for _ in range(warmup):
            for step in steps.values():
                step()
        wall, cpu = {n: [] for n in steps}, {n: [] for n in steps}
        for _ in range(repeats):
            for name, step in steps.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                step()
                runtime.synchronize()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return {"counts": counts, "times": {n: summary(wall[n], cpu[n]) for n in steps}}


def main() -> None:
    a = rounds_parser(__doc__.splitlines()[0]).parse_args()
    print_machine()
    c = DEMO.config
    print(f"demo GPT ({c.n_layers} layers, d_model {c.d_model}, V {c.vocab_size}, batch {DEMO.batch_size}x"
          f"{c.block_size}), float32; LoRA r={RANK}, alpha={ALPHA:g} on {', '.join(TARGETS)}; {a.repeats} rounds\n")
    print("| backend | threads | variant | trained parameters | Adam state bytes | gradient bytes "
          "| step ms (median) | LoRA / full [95% interval] |")
    print("|---|---|---|---|---|---|---|---|")
    for threads in a.threads:
        for backend in a.backends:
            with thread_limit(threads):
                r = bench(backend, a.repeats)
            rt = ratio(r["times"]["lora"], r["times"]["full"], measure_for(threads, "cpu"))
            spread = f"[{rt.low:.2f}, {rt.high:.2f}]" if rt.low is not None else "(too few rounds)"
            for name in ("full", "lora"):
                k, t = r["counts"][name], r["times"][name]
                tail = f"{rt.median:.2f}x {spread} ({rt.measure})" if name == "lora" else ""
                print(f"| {backend} | {threads} | {name} | {k['trained']:,} of {k['parameters']:,} "
                      f"| {k['adam_bytes']:,} | {k['grad_bytes']:,} | {1e3 * t['median_s']:.1f} | {tail} |")


if __name__ == "__main__":
    main()
