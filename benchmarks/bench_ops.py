"""Benchmark: what each explicit formula of the torch backend costs against torch's own op.

    python benchmarks/bench_ops.py [--repeats 15] [--threads 1]

On the ``small`` size (the targets' model: 4 layers, 4 heads, d_model 128, block 64,
batch 12, exact GELU), process CPU time, everything interleaved in one process:

1. each op alone, forward + backward with a random upstream gradient (Adam: one step),
   at the shapes it has in that model: the backend's explicit formula and torch's
   native op (the fast path's or the ``torch.nn`` yardstick's);
2. the whole train step with one op at a time replaced by the native one (patched into
   the backend for the measurement only and restored after each step), with all of
   them replaced, and the ``torch.nn`` yardstick of ``benchmarks/yardstick.py``; next to each,
   the minor page faults per step (``getrusage``): freed temporaries that glibc
   returned to the system and the next step touches again.

The explicit formulas stay what the backend is for (see benchmarks/README.md); this
script says what they cost, op by op.
"""
from __future__ import annotations

import contextlib
import importlib
import math
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from _common import parser
from harness.machine import environment  # benchmarks/harness/, beside this script
from harness.sizes import SIZES
from harness.train_step import train_steps

from minillm import torch_backend as T
from minillm.core.threads import thread_limit

layers = importlib.import_module("minillm.torch_backend.layers")
feed_forward = importlib.import_module("minillm.torch_backend.feed_forward")
models = importlib.import_module("minillm.torch_backend.models")


def yardstick_attention(q, k, v, mask):
    """The attention of yardstick.PlainGPT: scores / sqrt(D), masked_fill, Tensor.softmax."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])          # (B, H, T, T)
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v, None


NATIVE = {  # op -> (module, attribute, native replacement)
    "gelu": [(feed_forward.ACTIVATIONS, "gelu", F.gelu)],
    "layer_norm": [(layers, "layer_norm",
                    lambda x, g, b, eps=1e-5: F.layer_norm(x, x.shape[-1:], g, b, eps))],
    "attention": [(layers, "scaled_dot_product_attention", yardstick_attention)],
    "cross_entropy": [(models, "cross_entropy",
                       lambda logits, t, ignore_index: F.cross_entropy(logits, t, ignore_index=ignore_index))],
    "linear": [(m, "linear", lambda x, W, b=None: F.linear(x, W.t(), b)) for m in (layers, feed_forward, models)],
}


@contextlib.contextmanager
def native(ops):
    """The given ops of the backend replaced by torch's native ones inside the block."""
    saved = []
    for op in ops:
        for where, name, fn in NATIVE.get(op, []):
            if isinstance(where, dict):
                saved.append((where, name, where[name]))
                where[name] = fn
            else:
                saved.append((where, name, getattr(where, name)))
                setattr(where, name, fn)
    try:
        yield
    finally:
        for where, name, old in reversed(saved):
            if isinstance(where, dict):
                where[name] = old
            else:
                setattr(where, name, old)


def _interleaved_cpu_ms(fns, repeats, calls=5, warmup=2):
    """Median CPU ms per call of each of fns, one round of ``calls`` calls each at a time."""
    times = [[] for _ in fns]
    for r in range(warmup + repeats):
        for i, fn in enumerate(fns):
            start = time.process_time()
            for _ in range(calls):
                fn()
            if r >= warmup:
                times[i].append((time.process_time() - start) / calls * 1e3)
    return [statistics.median(t) for t in times]


def op_table(repeats):
    size = SIZES["small"]
    c, B = size.config, size.batch_size
    C, H, D, Fw, V, Tn = c.d_model, c.n_heads, c.d_model // c.n_heads, c.d_ff, c.vocab_size, c.block_size
    g = torch.Generator().manual_seed(0)

    def leaf(*shape):
        return torch.randn(*shape, generator=g).requires_grad_()

    def fwd_bwd(f, inputs, out_shape):
        dout = torch.randn(tuple(out_shape), generator=g)

        def run():
            f(*inputs).backward(dout)
            for t in inputs:
                if isinstance(t, torch.Tensor):
                    t.grad = None
        return run

    h, x = leaf(B, Tn, Fw), leaf(B, Tn, C)
    gamma, beta = leaf(C), leaf(C)
    q, k, v = (leaf(B, Tn, C).view(B, Tn, H, D).transpose(1, 2) for _ in range(3))
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    mask = T.causal_mask(Tn)
    logits, targets = leaf(B * Tn, V), torch.randint(0, V, (B * Tn,), generator=g)
    W1, b1 = leaf(C, Fw), leaf(Fw)
    rows = [
        ("GELU (exact)", f"({B}, {Tn}, {Fw})", fwd_bwd(T.gelu, (h,), h.shape), fwd_bwd(F.gelu, (h,), h.shape), "F.gelu"),
        ("layer norm", f"({B}, {Tn}, {C})", fwd_bwd(T.layer_norm, (x, gamma, beta), x.shape),
         fwd_bwd(lambda x, g_, b_: F.layer_norm(x, (C,), g_, b_), (x, gamma, beta), x.shape), "F.layer_norm"),
        ("causal attention", f"({B}, {H}, {Tn}, {D})",
         fwd_bwd(lambda q, k, v: T.scaled_dot_product_attention(q, k, v, mask)[0], (q, k, v), q.shape),
         fwd_bwd(lambda q, k, v: yardstick_attention(q, k, v, mask)[0], (q, k, v), q.shape),
         "masked_fill + softmax (yardstick)"),
        ("causal attention", f"({B}, {H}, {Tn}, {D})",
         fwd_bwd(lambda q, k, v: T.scaled_dot_product_attention(q, k, v, mask)[0], (q, k, v), q.shape),
         fwd_bwd(lambda q, k, v: T.fused_attention(q, k, v, mask)[0], (q, k, v), q.shape),
         "fused (the fast path)"),
        ("cross-entropy", f"({B * Tn}, {V})", fwd_bwd(T.cross_entropy, (logits, targets), ()),
         fwd_bwd(F.cross_entropy, (logits, targets), ()), "F.cross_entropy"),
        ("linear", f"({B}, {Tn}, {C}) -> {Fw}", fwd_bwd(T.linear, (x, W1, b1), (B, Tn, Fw)),
         fwd_bwd(lambda x, W, b: F.linear(x, W.t(), b), (x, W1, b1), (B, Tn, Fw)), "F.linear"),
    ]
    model = T.GPT(c, seed=0)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    rows.append(("Adam step", "all parameters", T.Adam(params, lr=1e-6).step,
                 torch.optim.Adam(params, lr=1e-6).step, "torch.optim.Adam"))
    ms = _interleaved_cpu_ms([f for row in rows for f in row[2:4]], repeats)
    lines = ["| op | shape | explicit ms | native ms | native | explicit - native ms |",
             "|---|---|---:|---:|---|---:|"]
    for i, (name, shape, _, _, what) in enumerate(rows):
        ours, theirs = ms[2 * i], ms[2 * i + 1]
        lines.append(f"| {name} | {shape} | {ours:.2f} | {theirs:.2f} | {what} | {ours - theirs:+.2f} |")
    return "\n".join(lines)


def step_table(repeats):
    size = SIZES["small"]
    swaps = {"none (explicit formulas)": [], "GELU -> F.gelu": ["gelu"],
             "layer norm -> F.layer_norm": ["layer_norm"],
             "attention -> the yardstick's (masked_fill + softmax)": ["attention"],
             "cross-entropy -> F.cross_entropy": ["cross_entropy"],
             "linear -> F.linear": ["linear"], "Adam -> torch.optim.Adam": ["adam"],
             "all of the above": ["gelu", "layer_norm", "attention", "cross_entropy", "linear", "adam"]}
    steps = {}
    for name, ops in swaps.items():
        step = train_steps(size, ("torch_explicit",), "cpu", False)["torch_explicit"]
        if "adam" in ops:
            step.opt = torch.optim.Adam(step.model.parameters(), lr=1e-4)
        steps[name] = (step, ops)
    steps["plain torch.nn model (the yardstick)"] = (
        train_steps(size, ("torch_nn",), "cpu", False)["torch_nn"], [])
    cpu = {name: [] for name in steps}
    faults = {name: [] for name in steps}
    for r in range(repeats + 2):
        for name, (step, ops) in steps.items():
            with native(ops):
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start = time.process_time()
                step()
                elapsed = time.process_time() - start
                f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            if r >= 2:  # two warm-up rounds
                cpu[name].append(elapsed * 1e3)
                faults[name].append(f1 - f0)
    base = statistics.median(cpu["none (explicit formulas)"])
    lines = ["| change to the torch backend | CPU ms | vs explicit | page faults / step |",
             "|---|---:|---:|---:|"]
    for name in steps:
        ms = statistics.median(cpu[name])
        lines.append(f"| {name} | {ms:.1f} | {ms / base:.2f} | {statistics.median(faults[name]):.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    a = p.parse_args()
    with thread_limit(a.threads) as info:
        env = environment("cpu")
        print(f"Machine: {env['cpu']}, {env['cores']} cores; torch {env['torch']}; "
              f"threads {info['threads']}; load average at start {env.get('load_average_at_start')}\n")
        print("Each op alone, forward + backward, CPU ms (median):\n")
        print(op_table(a.repeats))
        print("\nThe small model's train step with one op replaced, CPU ms (median):\n")
        print(step_table(a.repeats))


if __name__ == "__main__":
    main()
