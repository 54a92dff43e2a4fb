r"""The benchmark harness: how fast each backend trains and generates, and what attention costs.

``minillm bench`` and the scripts beside this file call these functions; they return
plain dicts (written to JSON) and :func:`format_report` turns them into the Markdown
tables of benchmarks/README.md. It lives in ``benchmarks/``, not in the ``minillm``
package: it measures the lesson, it is not part of it. The scripts here import it as
``harness`` (their folder is on ``sys.path``); ``minillm bench`` finds this folder
beside the installed package (:func:`minillm.bench.load_harness`: an editable install
of a clone). Measured, side by side in one process:

- the train step (forward, backward, Adam) of the reference (NumPy, float32), of the
  torch backend's two paths, ``torch_explicit`` (the formulas, the explicit Adam step)
  and ``torch_fused`` (torch's kernels: ``F.linear``, ``F.layer_norm``, ``F.gelu``,
  fused attention, ``F.cross_entropy``, the ``torch._foreach_*`` Adam step; optionally
  ``torch.compile``), and of a plain PyTorch model of the same architecture written
  with ``torch.nn`` (``PlainGPT`` in benchmarks/yardstick.py, the yardstick ``torch_nn``), over a sweep
  of model sizes and at each thread count asked for (1 and 2 by default), so that each
  path's ratio to ``torch_nn`` comes from the same run; its time (median of
  ``repeats``, the variants interleaved so that they share the machine's load) and its
  peak memory;
- generation tokens/s with and without the KV cache;
- attention's forward + backward time as T grows, against the chapter's
  :math:`O(T^2)` (the score matrix :math:`QK^\top` is :math:`T \times T`);
- on a GPU: tokens/s and model FLOPs utilisation of a GPT-2-small-sized model with bf16
  autocast and fused attention.

Threads are set explicitly (:func:`minillm.core.threads.thread_limit`: NumPy's BLAS
through ``threadpoolctl``, torch through ``torch.set_num_threads``) and reported: the
backends are compared with the same count, and several libraries each starting one
thread per core on a small machine slow every small matrix product by orders of
magnitude. Every torch step runs in :func:`minillm.core.threads.torch_turn` (which
leaves NumPy's BLAS at one thread); each reference step runs on as many BLAS threads as
torch has, followed, outside the timed region, by a pause long enough for OpenBLAS's
workers to stop spinning, so that each row is its variant's own time (what the spin
costs the next torch step is ``bench_two_backends.py``'s measure).

Memory, per variant: the activations (what the forward allocates and keeps for the
backward; the same measure for both backends) and the peak of a whole step above what
was allocated before it (NumPy through ``tracemalloc``; torch on CUDA through
``torch.cuda.max_memory_allocated``; torch on the CPU keeps no allocation statistics,
and the resident set of a process that reuses freed memory does not show it).

Dimension legend: B batch, T sequence length, C d_model, H heads, D = C / H, V vocabulary.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np

from minillm.core.config import ModelConfig
from minillm.core.threads import thread_limit, torch_turn

logger = logging.getLogger("minillm")

__all__ = [
    "SIZES", "BenchSize", "thread_limit", "environment", "bench_train", "bench_generate",
    "bench_attention", "bench_gpu", "check_targets", "path_ratios", "format_report", "run_all",
]


@dataclass(frozen=True)
class BenchSize:
    """One model size of the sweep: a config and a batch size."""

    name: str
    config: ModelConfig
    batch_size: int


def _gpt(n_layers, n_heads, d_model, block_size, vocab_size=256, **kw) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, block_size=block_size, d_model=d_model,
                       n_heads=n_heads, n_layers=n_layers, dropout=0.0, **kw)


SIZES = {
    "tiny": BenchSize("tiny", _gpt(2, 2, 64, 32), 8),
    "small": BenchSize("small", _gpt(4, 4, 128, 64), 12),       # the targets' model
    "medium": BenchSize("medium", _gpt(4, 4, 256, 128), 8),
    "gpt2-small": BenchSize("gpt2-small", _gpt(12, 12, 768, 1024, vocab_size=50257,
                                               activation="gelu_tanh", tie_embeddings=True), 8),
}
TARGET_SIZE = "small"


# -- threads and the machine ------------------------------------------------------------

def _torch_or_none():
    try:
        import torch
        return torch
    except ImportError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "cpu") -> dict:
    """The machine and library versions a result was measured on."""
    torch = _torch_or_none()
    env = {"cpu": _cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
           "numpy": np.__version__, "torch": torch.__version__ if torch else None,
           "platform": platform.platform(), "device": device}
    if hasattr(os, "getloadavg"):
        env["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if device == "cuda" and torch is not None:
        env["gpu"] = torch.cuda.get_device_name()
    return env


# -- timing and memory --------------------------------------------------------------------

def _activation_mib(step) -> float:
    """MiB the forward allocates and keeps for the backward (activations, caches, logits),
    parameters excluded: NumPy arrays traced by ``tracemalloc`` (the reference), or the
    distinct storages autograd saves plus the logits and loss (torch)."""
    if step.backend == "numpy":
        import tracemalloc
        started = not tracemalloc.is_tracing()
        if started:
            tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            kept = step.forward()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            if started:
                tracemalloc.stop()
        del kept
        return held / 2**20
    import torch
    params = {p.untyped_storage().data_ptr() for p in step.model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits, loss = step.forward()
    for t in (logits, loss):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    step.opt.zero_grad()
    return sum(saved.values()) / 2**20


def _peak_step_mib(step, device: str) -> float | None:
    """MiB above what was allocated before, at the peak of one whole train step: NumPy
    arrays traced by ``tracemalloc`` (the reference) or ``torch.cuda.max_memory_allocated``;
    None for torch on the CPU, which offers no allocation statistics."""
    if step.backend == "numpy":
        import tracemalloc
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            step()
            return (tracemalloc.get_traced_memory()[1] - before) / 2**20
        finally:
            tracemalloc.stop()
    if device != "cuda":
        return None
    import torch
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


_BLAS_SPIN_S = 0.15     # an OpenBLAS worker spins ~0.1 s after a product (minillm/core/threads.py)


@contextlib.contextmanager
def _reference_turn(blas_threads: int | None):
    """The reference's step on ``blas_threads`` BLAS threads (None: as set), in a process
    where every torch turn leaves BLAS at one: the count raised inside and restored
    after, then, past the timed region, a pause for the workers to stop spinning, so
    that the next variant starts as in a process that runs only its own backend
    (bench_two_backends.py measures what the spin costs; this table each step alone)."""
    if blas_threads is None:
        yield
        return
    import threadpoolctl
    with threadpoolctl.threadpool_limits(limits=blas_threads, user_api="blas"):
        yield
    if blas_threads > 1:
        time.sleep(_BLAS_SPIN_S)


def _interleaved_times(steps: dict, repeats: int, warmup: int, sync, reference_blas: int | None = None) -> dict:
    """Median wall-clock and process-CPU seconds per call of each of ``steps``, one call
    of each per round. With one thread on a CPU, the CPU time is the step's own work:
    it does not count the time other processes on a shared machine held the core.
    The reference runs on ``reference_blas`` BLAS threads (None: as set), each torch
    step in ``torch_turn()``."""
    def turn(name):
        return _reference_turn(reference_blas) if name == "reference" else torch_turn()

    for _ in range(warmup):
        for name, step in steps.items():
            with turn(name):
                step()
    sync()
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            with turn(name):
                start, start_cpu = time.perf_counter(), time.process_time()
                step()
                sync()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return {name: {"median_s": statistics.median(t), "min_s": min(t),
                   "cpu_median_s": statistics.median(cpu[name]), "n": len(t)}
            for name, t in wall.items()}


def _sync(device):
    if device == "cuda":
        torch = _torch_or_none()
        return torch.cuda.synchronize
    return lambda: None


# -- the train step ---------------------------------------------------------------------------

def _batch(size: BenchSize, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (size.batch_size, size.config.block_size)
    return rng.integers(0, size.config.vocab_size, shape), rng.integers(0, size.config.vocab_size, shape)


def _train_steps(size: BenchSize, variants, device: str, compile_model: bool) -> dict:
    """One zero-argument train-step closure per variant."""
    x, y = _batch(size)
    cfg = replace(size.config, dtype="float32")
    steps = {}
    if "reference" in variants:
        from minillm import reference as R
        model = R.GPT(cfg, seed=0)
        opt = R.Adam(model.parameters(), lr=1e-4)
        steps["reference"] = _Step(model, opt, x, y, "numpy")
    torch = _torch_or_none() if set(variants) - {"reference"} else None
    if torch is not None:
        from minillm import torch_backend as T
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        if "torch_explicit" in variants:
            model = T.GPT(cfg, seed=0).to(device).set_fused(False)
            steps["torch_explicit"] = _Step(model, T.Adam(model.parameters(), lr=1e-4), xt, yt, "torch")
        if "torch_fused" in variants:
            model = T.GPT(cfg, seed=0).to(device).set_fused(True)
            opt = T.Adam(model.parameters(), lr=1e-4)
            opt.foreach = True                                   # the multi-tensor Adam step
            forward = torch.compile(model) if compile_model else model
            name = "torch_fused" + ("+compile" if compile_model else "")
            steps[name] = _Step(model, opt, xt, yt, "torch", forward)
        if "torch_nn" in variants:
            from yardstick import PlainGPT                       # benchmarks/yardstick.py
            model = PlainGPT(cfg).to(device)
            steps["torch_nn"] = _Step(model, torch.optim.Adam(model.parameters(), lr=1e-4), xt, yt, "torch")
    return steps


class _Step:
    """One train step, ``logits, loss = model(x, y); loss.backward(); opt.step();
    opt.zero_grad()``, callable with no argument; ``forward()`` runs the first part only."""

    def __init__(self, model, opt, x, y, backend, forward=None):
        self.model, self.opt, self.x, self.y, self.backend = model, opt, x, y, backend
        self.call = model if forward is None else forward

    def forward(self):
        return self.call(self.x, self.y)

    def __call__(self):
        _, loss = self.forward()
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()


TRAIN_VARIANTS = ("reference", "torch_explicit", "torch_fused", "torch_nn")


def bench_train(sizes=("tiny", "small", "medium"), variants=TRAIN_VARIANTS, repeats: int = 5,
                warmup: int = 2, device: str = "cpu", compile_model: bool = False) -> list[dict]:
    """Train-step time and peak memory of each variant on each size (see the module doc),
    under the thread setting in force (each row records torch's thread count)."""
    torch = _torch_or_none()
    n_threads = torch.get_num_threads() if torch is not None else None
    rows = []
    for name in sizes:
        size = SIZES[name] if isinstance(name, str) else name
        steps = _train_steps(size, variants, device, compile_model)
        times = _interleaved_times(steps, repeats, warmup, _sync(device), reference_blas=n_threads)
        for variant, step in steps.items():
            c = size.config
            rows.append({"size": size.name, "n_layers": c.n_layers, "n_heads": c.n_heads,
                         "d_model": c.d_model, "block_size": c.block_size,
                         "batch_size": size.batch_size, "activation": c.activation,
                         "variant": variant, "threads": n_threads, **times[variant],
                         "activations_mib": _activation_mib(step),
                         "peak_mib": _peak_step_mib(step, device)})
        logger.info("bench train %s: %s", size.name,
                    {v: round(t["median_s"] * 1e3, 1) for v, t in times.items()})
    return rows


# -- generation ---------------------------------------------------------------------------------

def bench_generate(backends=("numpy", "torch"), new_tokens: int = 256, block_size: int = 256,
                   repeats: int = 1, device: str = "cpu") -> list[dict]:
    """Tokens/s of greedy generation of ``new_tokens`` from a one-token prompt, with and
    without the KV cache, on the ``small`` size with ``block_size`` positions (so the
    last step attends over the whole block and the window never slides). The torch
    model is prepared by its ``Runtime``: the fast path, as generation runs by default."""
    from minillm.train.generation import generate
    from minillm.store.runtime import Runtime

    cfg = replace(SIZES["small"].config, block_size=block_size)
    if new_tokens > block_size:
        raise ValueError(f"new_tokens must be <= block_size={block_size} (the window would slide), "
                         f"got {new_tokens}")
    rows = []
    for backend in backends:
        if backend == "torch" and _torch_or_none() is None:
            continue
        runtime = Runtime(backend, device if backend == "torch" else "cpu")
        model = runtime.prepare(runtime.module.GPT(cfg, seed=0))
        for use_cache in (True, False):                     # warm-up: first calls, allocator
            generate(runtime, model, [0], min(new_tokens, 4), temperature=0.0, use_cache=use_cache)
        for use_cache in (True, False):
            times, cpu_times, tokens = [], [], None
            for _ in range(repeats):
                start, start_cpu = time.perf_counter(), time.process_time()
                tokens = generate(runtime, model, [0], new_tokens, temperature=0.0, use_cache=use_cache)
                runtime.synchronize()
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - start_cpu)
            t = statistics.median(times)
            rows.append({"backend": backend, "use_cache": use_cache, "new_tokens": len(tokens),
                         "block_size": block_size, "seconds": t, "tokens_per_s": len(tokens) / t,
                         "cpu_seconds": statistics.median(cpu_times), "n": repeats,
                         "tokens_head": tokens[:8]})
    return rows


# -- attention cost ---------------------------------------------------------------------------

def bench_attention(Ts=(64, 128, 256, 512, 1024), n_heads: int = 4, d_head: int = 32,
                    repeats: int = 3, device: str = "cpu") -> list[dict]:
    """Forward + backward seconds of causal attention of one sequence (B = 1) at each T:
    the reference's hand-written pair, the torch backend's explicit formula and its
    fused kernel (both through autograd)."""
    from minillm import reference as R
    rng = np.random.default_rng(0)
    rows = []
    torch = _torch_or_none()
    for T_len in Ts:
        q, k, v, dout = (rng.standard_normal((1, n_heads, T_len, d_head), dtype=np.float32)
                         for _ in range(4))
        mask = R.causal_mask(T_len)

        def ref_step():
            out, cache = R.scaled_dot_product_attention_forward(q, k, v, mask)
            R.scaled_dot_product_attention_backward(dout, cache)
        steps = {"reference": ref_step}
        if torch is not None:
            from minillm import torch_backend as TB
            qt, kt, vt = (torch.from_numpy(a).to(device).requires_grad_() for a in (q, k, v))
            dt, mt = torch.from_numpy(dout).to(device), TB.causal_mask(T_len).to(device)

            def torch_step(attend):
                def step():
                    out, _ = attend(qt, kt, vt, mt)
                    out.backward(dt)
                    for t in (qt, kt, vt):
                        t.grad = None
                return step
            steps["torch"] = torch_step(TB.scaled_dot_product_attention)
            steps["torch_fused"] = torch_step(TB.fused_attention)
        times = _interleaved_times(steps, repeats, 1, _sync(device))
        rows += [{"T": T_len, "variant": name, **t} for name, t in times.items()]
    return rows


def plot_attention(rows, out_png):
    """The O(T^2) plot of :func:`bench_attention`'s rows (via :mod:`minillm.core.plots`)."""
    from minillm.core.plots import plot_attention_cost
    Ts = sorted({r["T"] for r in rows})
    series = {}
    for r in rows:
        series.setdefault(r["variant"], {})[r["T"]] = r["median_s"]
    return plot_attention_cost(Ts, {name: [s[T] for T in Ts] for name, s in series.items()}, out_png,
                               title="Causal attention, forward + backward, one sequence")


# -- GPU: throughput and model FLOPs utilisation ------------------------------------------------

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


def _gpu_optimizer(which: str, model):
    """bench_gpu's optimizers: the backend's Adam with its foreach step (the fast path),
    or torch.optim.Adam(fused=True)."""
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
    """Tokens/s and model FLOPs utilisation of the torch backend's GPT in bf16 with fused
    attention, MFU = tokens/s * flops_per_token / peak (None without a known
    peak); the model on the fast path. ``optimizers``: "minillm" is the backend's own
    Adam with its ``torch._foreach_*`` step; "torch_fused" is ``torch.optim.Adam(fused=True)``, to show what
    the optimizer's kernel launches cost. ``device="cpu"`` runs the same code (bf16
    on the CPU) so that it can be smoke-tested without a GPU.

    bf16 is autocast (float32 weights, bf16 matrix products) when the backend accepts
    it; when one of its ops rejects the mixed dtypes autocast produces (a ValueError),
    the model's weights are cast to bf16 instead, and the row says so (``precision``).
    """
    import torch
    from minillm import torch_backend as T
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("bench_gpu needs a CUDA device; torch sees none")
    s = replace(SIZES[size], batch_size=batch_size)
    name = torch.cuda.get_device_name() if device == "cuda" else _cpu_name()
    if peak_flops is None:
        peak_flops = next((p for key, p in PEAK_BF16.items() if key in name), None)
    x, y = (torch.from_numpy(a).to(device) for a in _batch(s))
    sync = _sync(device)
    rows = []
    precision = "bf16 autocast"
    for which in optimizers:
        model = T.GPT(s.config, seed=0).to(device).set_fused(True)
        if precision != "bf16 autocast":
            model = model.to(torch.bfloat16)
        opt = _gpu_optimizer(which, model)
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
            opt = _gpu_optimizer(which, model)
            forward = torch.compile(model) if compile_model else model
        t = _interleaved_times({"gpu": step}, steps, warmup, sync)["gpu"]
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


# -- targets and report -----------------------------------------------------------------------

def _median(rows, size, variant, key="median_s", threads=None):
    """Median seconds (``key``) of ``variant`` on ``size`` (at ``threads`` if given;
    "torch_fused" also matches its "+compile" form); None when it was not measured."""
    for r in rows:
        name = r["variant"].split("+")[0]
        if r["size"] == size and name == variant and threads in (None, r.get("threads")):
            return r[key]
    return None


def path_ratios(train_rows) -> list[dict]:
    """Each torch path against the ``torch.nn`` yardstick, per size and thread count,
    from the same run: explicit / nn, fused / nn and fused / explicit (times < 1 are
    faster than the denominator)."""
    out = []
    for size, threads in dict.fromkeys((r["size"], r.get("threads")) for r in train_rows):
        exp, fused, plain = (_median(train_rows, size, v, threads=threads)
                             for v in ("torch_explicit", "torch_fused", "torch_nn"))
        if exp and fused and plain:
            out.append({"size": size, "threads": threads, "explicit_over_nn": exp / plain,
                        "fused_over_nn": fused / plain, "fused_over_explicit": fused / exp})
    return out


def check_targets(train_rows, generate_rows, size: str = TARGET_SIZE, cpu_time: bool = False) -> list[dict]:
    """The issue's targets as ratios of times from the same run: of process CPU time
    with ``cpu_time`` (one thread on a shared CPU), else of wall-clock time."""
    key = "cpu_median_s" if cpu_time else "median_s"
    ref, exp, fused, plain = (_median(train_rows, size, v, key)
                              for v in ("reference", "torch_explicit", "torch_fused", "torch_nn"))
    out = []

    def target(what, ratio, limit, better):
        if ratio is not None:
            ok = ratio <= limit if better == "below" else ratio >= limit
            out.append({"target": what, "ratio": ratio, "limit": limit, "met": bool(ok),
                        "time": "cpu" if cpu_time else "wall"})
    # issue 16, item 4 (fast path, explicit path, reference) and item 5 (the KV cache)
    target("torch fused / plain torch.nn train step <= 1.05", fused and plain and fused / plain, 1.05, "below")
    target("torch explicit / plain torch.nn train step <= 1.6", exp and plain and exp / plain, 1.6, "below")
    target("reference / torch fused train step <= 2", ref and fused and ref / fused, 2.0, "below")
    target("torch fused / torch explicit train step < 1", fused and exp and fused / exp, 1.0, "below")
    by = {(r["backend"], r["use_cache"]): r["cpu_seconds" if cpu_time else "seconds"] for r in generate_rows}
    for backend in ("numpy", "torch"):
        if (backend, True) in by and (backend, False) in by:
            target(f"{backend}: no cache / KV cache, {generate_rows[0]['new_tokens']} new tokens >= 10",
                   by[(backend, False)] / by[(backend, True)], 10.0, "above")
    return out


def format_report(result: dict) -> str:
    """Markdown tables of a :func:`run_all` result."""
    env = result["environment"]
    lines = [f"Machine: {env['cpu']}, {env['cores']} cores; Python {env['python']}, NumPy "
             f"{env['numpy']}, torch {env['torch']}; device {env['device']}"
             + (f" ({env['gpu']})" if env.get("gpu") else ""),
             f"Threads: {result['threads']['threads']} (torch: {result['threads'].get('torch_threads')}; "
             f"BLAS: {', '.join(result['threads']['blas'])}); load average at start "
             f"{env.get('load_average_at_start')}", ""]
    if result.get("train"):
        lines += ["Train step (forward, backward, Adam), float32, median of "
                  f"{result['train'][0]['n']} interleaved runs:", "",
                  "| size | L/H/C/T, batch | threads | variant | ms/step (median) | ms (min) | CPU ms (median) "
                  "| vs torch.nn | activations MiB | peak MiB |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in result["train"]:
            base = _median(result["train"], r["size"], "torch_nn", threads=r.get("threads"))
            rel = f"{r['median_s'] / base:.2f}x" if base else ""
            peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.1f}"
            lines.append(f"| {r['size']} | {r['n_layers']}/{r['n_heads']}/{r['d_model']}/{r['block_size']}, "
                         f"{r['batch_size']} | {r.get('threads')} | {r['variant']} | {r['median_s'] * 1e3:.1f} | "
                         f"{r['min_s'] * 1e3:.1f} | {r['cpu_median_s'] * 1e3:.1f} | {rel} | "
                         f"{r['activations_mib']:.1f} | {peak} |")
        lines.append("")
        ratios = path_ratios(result["train"])
        if ratios:
            lines += ["The torch backend's two paths against the torch.nn yardstick, train-step time "
                      "ratios from this run (< 1: faster):", "",
                      "| size | threads | torch_explicit / torch_nn | torch_fused / torch_nn "
                      "| torch_fused / torch_explicit |", "|---|---:|---:|---:|---:|"]
            lines += [f"| {q['size']} | {q['threads']} | {q['explicit_over_nn']:.2f} | {q['fused_over_nn']:.2f} | "
                      f"{q['fused_over_explicit']:.2f} |" for q in ratios]
            lines.append("")
    if result.get("generate"):
        lines += ["Generation (greedy, 1-token prompt, small model):", "",
                  "| backend | KV cache | new tokens | block | seconds | CPU seconds | tokens/s |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['backend']} | {'yes' if r['use_cache'] else 'no'} | {r['new_tokens']} | "
                  f"{r['block_size']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['tokens_per_s']:.0f} |"
                  for r in result["generate"]]
        lines.append("")
    if result.get("attention"):
        variants = list(dict.fromkeys(r["variant"] for r in result["attention"]))
        Ts = sorted({r["T"] for r in result["attention"]})
        ms = {(r["T"], r["variant"]): r["median_s"] * 1e3 for r in result["attention"]}
        lines += ["Causal attention, forward + backward, B=1, ms (x: time / time at half the T):", "",
                  "| T | " + " | ".join(variants) + " |", "|---:|" + "---:|" * len(variants)]
        for i, T_len in enumerate(Ts):
            cells = []
            for vname in variants:
                grow = (f" (x{ms[(T_len, vname)] / ms[(Ts[i - 1], vname)]:.1f})"
                        if i and Ts[i - 1] * 2 == T_len else "")
                cells.append(f"{ms[(T_len, vname)]:.2f}{grow}")
            lines.append(f"| {T_len} | " + " | ".join(cells) + " |")
        lines.append("")
    if result.get("gpu"):
        lines += ["GPU, torch backend, bf16, fused attention (MFU: 6N + 12LTC FLOPs per token "
                  "over the dense bf16 peak):", "",
                  "| GPU | model | batch x T | precision | optimizer | compile | ms/step | tokens/s "
                  "| model TFLOP/s | MFU | peak MiB |", "|---|---|---|---|---|---|---:|---:|---:|---:|---:|"]
        for g in result["gpu"]:
            mfu = "n/a" if g["mfu"] is None else f"{100 * g['mfu']:.1f}%"
            lines.append(f"| {g['gpu']} | {g['size']} | {g['batch_size']} x {g['block_size']} | "
                         f"{g['precision']} | {g['optimizer']} | {'yes' if g['compile'] else 'no'} | {g['step_s'] * 1e3:.1f} | "
                         f"{g['tokens_per_s']:,.0f} | {g['model_tflops']:.1f} | {mfu} | "
                         + ("n/a" if g["peak_mib"] is None else f"{g['peak_mib']:.0f}") + " |")
        lines.append("")
    if result.get("targets"):
        lines += ["| target | threads | ratio | of | met |", "|---|---:|---:|---|---|"]
        lines += [f"| {t['target']} | {t.get('threads')} | {t['ratio']:.2f} | {t['time']} time | "
                  f"{'yes' if t['met'] else 'NO'} |" for t in result["targets"]]
        lines.append("")
    return "\n".join(lines)


def run_all(*, threads=(1, 2), sizes=("tiny", "small", "medium"), repeats: int = 9,
            device: str = "cpu", compile_model: bool = False, generate: bool = True,
            attention_Ts=(64, 128, 256, 512, 1024, 2048), new_tokens: int = 256, gpu: bool | None = None) -> dict:
    """Every benchmark in one run; a JSON-ready dict. The train step is measured at each
    count in ``threads`` (an int or a sequence; the rows say which), so the report holds
    every path's ratio to ``torch.nn`` at each count from one run; generation, attention
    and the GPU part run at the first count (``result["threads"]``)."""
    torch = _torch_or_none()
    if gpu is None:
        gpu = torch is not None and torch.cuda.is_available()
    counts = [threads] if isinstance(threads, int) else list(threads)
    if not counts:
        raise ValueError("threads: expected at least one thread count, got none")
    train, targets, thread_infos = [], [], []
    for n in counts[1:]:
        with thread_limit(n) as info:
            thread_infos.append(info)
            rows = bench_train(sizes, repeats=repeats, device=device, compile_model=compile_model)
            train += rows
            targets += [{**t, "threads": n} for t in check_targets(rows, [], cpu_time=n == 1 and device == "cpu")]
    with thread_limit(counts[0]) as thread_info:
        result = {"environment": environment(device), "threads": thread_info}
        rows = bench_train(sizes, repeats=repeats, device=device, compile_model=compile_model)
        result["train"] = rows + train
        result["train_threads"] = [thread_info] + thread_infos
        result["generate"] = (bench_generate(new_tokens=new_tokens, block_size=max(new_tokens, 1),
                                             repeats=max(1, repeats // 3), device=device)
                              if generate else [])
        result["attention"] = (bench_attention(attention_Ts, repeats=max(1, repeats // 2), device=device)
                               if attention_Ts else [])
        result["targets"] = [{**t, "threads": counts[0]} for t in check_targets(
            rows, result["generate"], cpu_time=counts[0] == 1 and device == "cpu")] + targets
        if gpu:
            result["gpu"] = bench_gpu(compile_model=compile_model)
            result["environment"]["gpu"] = result["gpu"][0]["gpu"]
    return result
