"""The serving engine (minillm/serving/engine.py) in-process: requests submitted at once
from many threads and from an event loop are decoded in shared steps, each getting the
tokens it gets alone; a cancelled request leaves the batch; a bad one fails alone."""
import asyncio
import concurrent.futures
import importlib.util
import threading

import numpy as np
import pytest

from minillm import ModelConfig
from minillm.store.runtime import Runtime
from minillm.train.generation import generate

pytest.importorskip("fastapi")
from minillm.serving.engine import Engine  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None
BACKENDS = ["numpy", pytest.param("torch", marks=pytest.mark.skipif(not HAVE_TORCH, reason="no torch"))]
V, BLOCK = 50, 12


class Served:
    """What the engine needs of a served run: runtime, model in eval mode, lock."""

    def __init__(self, backend):
        self.runtime = Runtime(backend)
        cfg = ModelConfig(vocab_size=V, block_size=BLOCK, d_model=16, n_heads=2, n_layers=2)
        if backend == "numpy":
            from minillm.reference import GPT
        else:
            from minillm.torch_backend import GPT
        self.model = self.runtime.prepare(GPT(cfg, seed=0))
        self.model.eval()
        self.lock = threading.Lock()


def requests(n):
    rng = np.random.default_rng(1)
    return [dict(prompt_ids=rng.integers(0, V, size=int(rng.integers(1, 9))).tolist(),
                 max_new_tokens=int(rng.integers(0, 16)),                         # some outgrow the block
                 temperature=[0.0, 0.8, 1.5][i % 3], top_k=[None, 5][i % 2], top_p=[None, 0.9][i % 2],
                 seed=i, eos_id=[None, 3][i % 2]) for i in range(n)]


def solo(served, r):
    r = dict(r)
    return generate(served.runtime, served.model, r.pop("prompt_ids"), r.pop("max_new_tokens"), **r)


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_requests_from_threads_get_their_solo_tokens_in_shared_steps(backend):
    served = Served(backend)
    engine = Engine(served, max_rows=8)
    reqs = requests(24)
    expected = [solo(served, r) for r in reqs]
    start = threading.Barrier(len(reqs))

    def one(r):
        r = dict(r)
        start.wait()
        return engine.generate(r.pop("prompt_ids"), r.pop("max_new_tokens"), **r)

    threads = set()
    forward = served.model.forward_cached

    def recorded(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return forward(*args, **kwargs)

    served.model.forward_cached = recorded
    with concurrent.futures.ThreadPoolExecutor(len(reqs)) as pool:
        got = list(pool.map(one, reqs))
    engine.close()
    assert got == expected
    assert threads == {"minillm-engine"}                 # the model ran on the engine's thread only
    assert 1 < engine.widest <= 8                        # rows shared steps, never more than max_rows
    assert engine.steps < sum(len(e) for e in expected)  # fewer steps than tokens: they were batched


@pytest.mark.parametrize("backend", BACKENDS)
def test_streams_in_one_event_loop_and_a_cancelled_stream_leaves(backend):
    served = Served(backend)
    engine = Engine(served)
    reqs = requests(6)
    expected = [solo(served, r) for r in reqs]

    async def collect(r):
        r = dict(r)
        return [t async for came in engine.stream(r.pop("prompt_ids"), r.pop("max_new_tokens"), **r) for t in came]

    async def cut_short():
        tokens = engine.stream([1, 2, 3], 10_000, temperature=1.0, seed=5)
        first = await tokens.__anext__()
        await tokens.aclose()                             # the client went away
        return first

    async def main():
        return await asyncio.gather(cut_short(), *(collect(r) for r in reqs))

    first, *got = asyncio.run(main())
    assert got == expected
    assert first == generate(served.runtime, served.model, [1, 2, 3], len(first), temperature=1.0, seed=5)
    steps = engine.steps
    assert engine.generate([4], 2, seed=0) == generate(served.runtime, served.model, [4], 2, seed=0)
    assert engine.steps == steps + 2                      # the cancelled row is gone: 2 steps for 2 tokens
    engine.close()


def test_a_refused_request_fails_alone():
    served = Served("numpy")
    engine = Engine(served)
    with pytest.raises(ValueError, match=r"prompt_ids must be in \[0, 50\)"):
        engine.generate([V + 1], 4)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
        engine.generate([1], -1)
    assert engine.generate([1], 0) == []
    assert engine.generate([1], 3, seed=2) == generate(served.runtime, served.model, [1], 3, seed=2)
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.generate([1], 1)
    with pytest.raises(ValueError, match="max_rows must be an int >= 1, got 0"):
        Engine(served, max_rows=0)
