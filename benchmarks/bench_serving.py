"""Benchmark: requests/s and latency of POST /v1/generate on a real `minillm serve`.

    python benchmarks/bench_serving.py [--run RUN] [--backend numpy torch]
        [--requests 100] [--concurrency 1 8 32] [--max-new-tokens 16] [--server-threads N]

Starts ``minillm serve`` as a separate process on a free 127.0.0.1 port (so the client
does not share the server's interpreter), waits for /health, then fires a bounded
number of /v1/generate requests for each level of concurrency (1 = sequential) and
prints requests/s and the p50/p99 latency. Without ``--run`` a small GPT (d_model 64,
2 layers, block 64, BPE vocabulary 512 on the first 100 kB of python_docs()) is trained
for 2 steps into a temporary folder: speed does not depend on how well it is trained.
Every request has its own seed and ``temperature=0.8``; a request may stop early at
``<eos>``, so the table also reports the mean number of tokens generated per request.
The machine's other load shows in these numbers: compare rows of one run only. On a
busy 2-core machine the torch server's sequential latency suffers from waking torch's
intra-op threads for every tiny forward; ``--server-threads 1`` (OMP_NUM_THREADS=1 for
the server process) removes that.
Traffic goes to the loopback address only; every loop is bounded in count.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def tiny_run(folder: Path) -> Path:
    from minillm import ModelConfig
    from minillm.data import BPETokenizer, python_docs, split_contiguous
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig

    text = python_docs()[:100_000]
    tok = BPETokenizer.train(text, vocab_size=512)
    splits = split_contiguous(np.asarray(tok.encode(text), dtype=np.int64), (0.9, 0.05, 0.05))
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=64, d_model=64, n_heads=4, n_layers=2)
    tc = TrainConfig(steps=2, lr=1e-3, min_lr=1e-4, warmup_steps=0, eval_every=2, checkpoint_every=2, batch_size=8)
    train("causal_lm", folder, RunConfig(cfg, tc, backend="numpy"), data=splits, tokenizer=tok, progress=False)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, backend: str, max_new_tokens: int,
                 threads: int | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    proc = subprocess.Popen([sys.executable, "-m", "minillm.cli", "serve", str(run), "--port", str(port),
                             "--backend", backend, "--max-new-tokens", str(max_new_tokens)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the server did not answer /health within 60 s")


def fire(url: str, n_requests: int, concurrency: int, max_new_tokens: int) -> dict:
    bodies = [{"prompt": "The import statement", "max_new_tokens": max_new_tokens, "temperature": 0.8,
               "seed": i} for i in range(n_requests)]
    with httpx.Client(base_url=url, timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:
        client.post("/v1/generate", json=bodies[0])                     # warm-up, not timed

        def one(body):
            start = time.perf_counter()
            r = client.post("/v1/generate", json=body)
            r.raise_for_status()
            return time.perf_counter() - start, len(r.json()["tokens"])

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(one, bodies))
        wall = time.perf_counter() - start
    latency = np.asarray([t for t, _ in results]) * 1e3                  # ms
    tokens = np.asarray([n for _, n in results])
    return {"rps": n_requests / wall, "p50": float(np.percentile(latency, 50)),
            "p99": float(np.percentile(latency, 99)), "tokens": float(tokens.mean()),
            "tok_s": float(tokens.sum() / wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a causal_lm run (default: a tiny one, trained now)")
    parser.add_argument("--backend", nargs="+", default=["numpy", "torch"], choices=["numpy", "torch"])
    parser.add_argument("--requests", type=int, default=100, help="requests per row (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--server-threads", type=int, default=None,
                        help="OMP_NUM_THREADS of the server process (default: inherited)")
    args = parser.parse_args()
    if not 1 <= args.requests <= 10_000:
        parser.error(f"--requests must be in [1, 10000], got {args.requests}")

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or tiny_run(Path(tmp) / "run")
        print(f"POST /v1/generate, {args.requests} requests per row, max_new_tokens={args.max_new_tokens}, "
              f"server threads: {args.server_threads or os.environ.get('OMP_NUM_THREADS', 'default')}")
        print(f"{'backend':>8} {'clients':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'tokens/req':>11} "
              f"{'tokens/s':>9}")
        for backend in args.backend:
            proc, url = start_server(run, backend, args.max_new_tokens, args.server_threads)
            try:
                for concurrency in args.concurrency:
                    m = fire(url, args.requests, concurrency, args.max_new_tokens)
                    print(f"{backend:>8} {concurrency:>8} {m['rps']:>8.1f} {m['p50']:>8.1f} {m['p99']:>8.1f} "
                          f"{m['tokens']:>11.1f} {m['tok_s']:>9.0f}", flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
