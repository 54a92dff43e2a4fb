"""What a train step holds in memory: its activations and its peak.

*Activations*: what the forward allocates and keeps for the backward (activations,
caches, logits), parameters excluded: NumPy arrays traced by ``tracemalloc`` (the
reference), or the distinct storages autograd saves plus the logits and loss (torch);
the same measure for both backends. *Peak*: the highest allocation during a whole step
above what was allocated before it (NumPy through ``tracemalloc``, torch on CUDA through
``torch.cuda.max_memory_allocated``); torch on the CPU keeps no allocation statistics,
and the resident set of a process that reuses freed memory does not show it.
"""
from __future__ import annotations

import tracemalloc

__all__ = ["activation_mib", "peak_step_mib"]


def activation_mib(step) -> float:
    """MiB the forward of ``step`` (a :class:`harness.train_step.TrainStep`) keeps for the backward."""
    if step.backend == "numpy":
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


def peak_step_mib(step, device: str) -> float | None:
    """MiB above what was allocated before, at the peak of one whole train step; None
    for torch on the CPU, which offers no allocation statistics."""
    if step.backend == "numpy":
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
