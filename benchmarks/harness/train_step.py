"""The train step (forward, backward, Adam) of each variant, timed side by side.

Variants, float32:

- ``reference``: the NumPy backend, hand-written backward, ``minillm.reference.Adam``;
- ``torch_explicit``: the torch backend's formulas (autograd) and its explicit Adam step;
- ``torch_fused``: its fast path (torch's kernels: ``F.linear``, ``F.layer_norm``,
  ``F.gelu``, fused attention, ``F.cross_entropy``) and the ``torch._foreach_*`` Adam
  step; ``torch_fused+compile`` with ``torch.compile``;
- ``torch_nn``: the yardstick, a plain ``torch.nn`` model of the same architecture
  (``PlainGPT``, or ``PlainLlama`` for the "llama" preset, benchmarks/yardstick.py) from
  the same initial weights, with ``torch.optim.Adam``.

Dimension legend: B batch, T sequence length, C d_model, V vocabulary.
"""
from __future__ import annotations

import logging
from dataclasses import replace

from .machine import synchronizer, torch_or_none
from .memory import activation_mib, peak_step_mib
from .sizes import SIZES, BenchSize, random_batch
from .timing import interleaved_times

logger = logging.getLogger("minillm")

__all__ = ["TRAIN_VARIANTS", "TrainStep", "train_steps", "bench_train"]

TRAIN_VARIANTS = ("reference", "torch_explicit", "torch_fused", "torch_nn")


class TrainStep:
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


def train_steps(size: BenchSize, variants, device: str, compile_model: bool) -> dict:
    """One :class:`TrainStep` per variant, all from seed 0 on the same batch."""
    x, y = random_batch(size)                                    # (B, T), (B, T)
    cfg = replace(size.config, dtype="float32")
    steps = {}
    if "reference" in variants:
        from minillm import reference as R
        model = R.GPT(cfg, seed=0)
        steps["reference"] = TrainStep(model, R.Adam(model.parameters(), lr=1e-4), x, y, "numpy")
    torch = torch_or_none() if set(variants) - {"reference"} else None
    if torch is not None:
        from minillm import torch_backend as T
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        if "torch_explicit" in variants:
            model = T.GPT(cfg, seed=0).to(device).set_fused(False)
            steps["torch_explicit"] = TrainStep(model, T.Adam(model.parameters(), lr=1e-4), xt, yt, "torch")
        if "torch_fused" in variants:
            model = T.GPT(cfg, seed=0).to(device).set_fused(True)
            opt = T.Adam(model.parameters(), lr=1e-4)
            opt.foreach = True                                   # the multi-tensor Adam step
            forward = torch.compile(model) if compile_model else model
            name = "torch_fused" + ("+compile" if compile_model else "")
            steps[name] = TrainStep(model, opt, xt, yt, "torch", forward)
        if "torch_nn" in variants:
            from yardstick import plain_model                    # benchmarks/yardstick.py
            start = T.GPT(cfg, seed=0).state_dict()              # the same initial weights
            model = plain_model(cfg).load_minillm_weights(start).to(device)
            steps["torch_nn"] = TrainStep(model, torch.optim.Adam(model.parameters(), lr=1e-4), xt, yt, "torch")
    return steps


def bench_train(sizes=("tiny", "small", "small-llama", "medium"), variants=TRAIN_VARIANTS, repeats: int = 5,
                warmup: int = 2, device: str = "cpu", compile_model: bool = False) -> list[dict]:
    """Train-step rows: each variant on each size (a name of ``SIZES`` or a
    :class:`BenchSize`), ``repeats`` interleaved rounds (:func:`harness.timing.interleaved_times`:
    the medians and every round), activations and peak memory, under the thread setting in
    force (each row records torch's thread count in ``threads``)."""
    torch = torch_or_none()
    n_threads = torch.get_num_threads() if torch is not None else None
    rows = []
    for name in sizes:
        size = SIZES[name] if isinstance(name, str) else name
        steps = train_steps(size, variants, device, compile_model)
        times = interleaved_times(steps, repeats, warmup, synchronizer(device), reference_blas=n_threads)
        c = size.config
        for variant, step in steps.items():
            rows.append({"size": size.name, "n_layers": c.n_layers, "n_heads": c.n_heads,
                         "d_model": c.d_model, "block_size": c.block_size,
                         "batch_size": size.batch_size, "activation": c.activation,
                         "variant": variant, "threads": n_threads, **times[variant],
                         "activations_mib": activation_mib(step),
                         "peak_mib": peak_step_mib(step, device)})
        logger.info("bench train %s: %s", size.name,
                    {v: round(t["median_s"] * 1e3, 1) for v, t in times.items()})
    return rows
