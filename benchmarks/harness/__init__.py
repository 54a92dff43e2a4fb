"""The benchmark harness: how fast each backend trains and generates, and what attention costs.

``minillm bench`` loads this package (:func:`minillm.bench.load_harness`) and calls its
entry points: :func:`run_all` (every part, a JSON-ready dict), :func:`format_report`
(the Markdown tables of benchmarks/README.md) and :func:`plot_attention`. It lives in
``benchmarks/``, not in the ``minillm`` package: it measures the lesson, it is not part
of it. The scripts beside it import its modules (their folder is on ``sys.path``), one
concept each:

- :mod:`harness.sizes`: the model sizes and the batch each is timed on;
- :mod:`harness.machine`: the machine and library versions a result was measured on;
- :mod:`harness.timing`: interleaved rounds, every variant once per round, under the
  thread setting of its backend;
- :mod:`harness.memory`: a train step's activations and peak;
- :mod:`harness.train_step`: the train step of the reference, the torch backend's two
  paths and the ``torch.nn`` yardstick (benchmarks/yardstick.py);
- :mod:`harness.generation`: tokens/s with and without the KV cache;
- :mod:`harness.attention`: attention's cost as T grows, and its plot;
- :mod:`harness.gpu`: tokens/s and model FLOPs utilisation on a GPU;
- :mod:`harness.ratios`: a ratio of two variants as the median of per-round ratios with
  the 95% interval of that median, of CPU time at one thread and wall time otherwise;
- :mod:`harness.targets`: the speed targets and their verdict, met, missed or within noise;
- :mod:`harness.report`: the Markdown tables.

Threads are set explicitly (:func:`minillm.core.threads.thread_limit`: NumPy's BLAS
through ``threadpoolctl``, torch through ``torch.set_num_threads``) and reported: the
backends are compared with the same count, and several libraries each starting one
thread per core on a small machine slow every small matrix product by orders of magnitude.
"""
from __future__ import annotations

from minillm.core.threads import thread_limit

from .attention import bench_attention, plot_attention
from .generation import bench_generate
from .gpu import bench_gpu
from .machine import environment, torch_or_none
from .report import format_report
from .targets import check_targets
from .train_step import bench_train

__all__ = ["run_all", "format_report", "plot_attention"]


def run_all(*, threads=(1, 2), sizes=("tiny", "small", "small-llama", "medium"), repeats: int = 9,
            device: str = "cpu", compile_model: bool = False, generate: bool = True,
            attention_Ts=(64, 128, 256, 512, 1024, 2048), new_tokens: int = 256, gpu: bool | None = None) -> dict:
    """Every benchmark in one run; a JSON-ready dict. The train step is measured at each
    count in ``threads`` (an int or a sequence; the rows say which), ``repeats``
    interleaved rounds each, so that the report holds every path's ratio to ``torch.nn``
    at each count from one run; generation (``repeats`` rounds, each with and without
    the KV cache), attention (half as many) and the GPU part run at the first count
    (``result["threads"]``). ``result["targets"]`` holds each target's verdict."""
    torch = torch_or_none()
    if gpu is None:
        gpu = torch is not None and torch.cuda.is_available()
    counts = [threads] if isinstance(threads, int) else list(threads)
    if not counts:
        raise ValueError("threads: expected at least one thread count, got none")
    env = environment(device)                             # the load average before any work
    train, thread_infos = [], []
    for n in counts[1:]:
        with thread_limit(n) as info:
            thread_infos.append(info)
            train += bench_train(sizes, repeats=repeats, device=device, compile_model=compile_model)
    with thread_limit(counts[0]) as thread_info:
        result = {"environment": env, "threads": thread_info,
                  "train_threads": [thread_info] + thread_infos}
        result["train"] = bench_train(sizes, repeats=repeats, device=device, compile_model=compile_model) + train
        result["generate"] = (bench_generate(new_tokens=new_tokens, block_size=max(new_tokens, 1),
                                             repeats=repeats, device=device) if generate else [])
        result["attention"] = (bench_attention(attention_Ts, repeats=max(1, repeats // 2), device=device)
                               if attention_Ts else [])
        result["targets"] = check_targets(result["train"], result["generate"], device)
        if gpu:
            result["gpu"] = bench_gpu(compile_model=compile_model)
            result["environment"]["gpu"] = result["gpu"][0]["gpu"]
    return result
