"""Generation tokens/s with and without the KV cache, both backends, in interleaved rounds."""
from __future__ import annotations

import statistics
import time
from dataclasses import replace

from .machine import torch_or_none
from .sizes import SIZES

__all__ = ["bench_generate"]


def bench_generate(backends=("numpy", "torch"), new_tokens: int = 256, block_size: int = 256,
                   repeats: int = 1, device: str = "cpu") -> list[dict]:
    """Rows of greedy generation of ``new_tokens`` from a one-token prompt, with and
    without the KV cache, on the ``small`` size with ``block_size`` positions (so the
    last step attends over the whole block and the window never slides). Each of
    ``repeats`` rounds generates once with the cache and once without, so that the two
    share the load of that moment; a row holds every round (``wall_s``, ``cpu_s``) and
    their medians (``seconds``, ``cpu_seconds``). The torch model is prepared by its
    ``Runtime``: the fast path, as generation runs by default."""
    from minillm.store.runtime import Runtime
    from minillm.train.generation import generate

    if new_tokens > block_size:
        raise ValueError(f"new_tokens must be <= block_size={block_size} (the window would slide), "
                         f"got {new_tokens}")
    cfg = replace(SIZES["small"].config, block_size=block_size)
    torch = torch_or_none()
    threads = torch.get_num_threads() if torch is not None else None
    rows = []
    for backend in backends:
        if backend == "torch" and torch is None:
            continue
        runtime = Runtime(backend, device if backend == "torch" else "cpu")
        model = runtime.prepare(runtime.module.GPT(cfg, seed=0))
        for use_cache in (True, False):                     # warm-up: first calls, allocator
            generate(runtime, model, [0], min(new_tokens, 4), temperature=0.0, use_cache=use_cache)
        wall = {True: [], False: []}
        cpu = {True: [], False: []}
        tokens = {}
        for _ in range(repeats):
            for use_cache in (True, False):
                start, start_cpu = time.perf_counter(), time.process_time()
                tokens[use_cache] = generate(runtime, model, [0], new_tokens, temperature=0.0,
                                             use_cache=use_cache)
                runtime.synchronize()
                wall[use_cache].append(time.perf_counter() - start)
                cpu[use_cache].append(time.process_time() - start_cpu)
        for use_cache in (True, False):
            t = statistics.median(wall[use_cache])
            n_tokens = len(tokens[use_cache])
            rows.append({"backend": backend, "use_cache": use_cache, "new_tokens": n_tokens,
                         "block_size": block_size, "threads": threads, "seconds": t,
                         "tokens_per_s": n_tokens / t, "cpu_seconds": statistics.median(cpu[use_cache]),
                         "n": repeats, "wall_s": wall[use_cache], "cpu_s": cpu[use_cache],
                         "tokens_head": tokens[use_cache][:8]})
    return rows
