"""Benchmark: concurrent clients of a real `minillm serve`, generated together, against the
same server answering one request at a time (issue 27 item 2).

    python benchmarks/bench_serving.py [--run RUN] [--backend numpy torch] [--clients 16]
        [--requests 32] [--max-tokens 64] [--time-limit 120] [--server-threads N]

Starts ``minillm serve`` as a separate process on a free 127.0.0.1 port (so the clients do
not share the server's interpreter), waits for /health, then, per backend, sends the same
``--requests`` streamed ``POST /v1/completions`` (``max_tokens`` each, ``temperature=0.8``,
a seed each) twice: one at a time, then from ``--clients`` concurrent clients (each sends
its share one after another). The concurrent requests are decoded in shared batched steps
by the server's engine (minillm/serving/engine.py). Printed per mode: aggregate completion
tokens/s (every token of every answer over the wall time of the mode), the p50/p99 latency
of a whole answer, the p50/p99 time to first token (the first chunk with text), and the
ratio of the concurrent to the sequential tokens/s (goal: at least 4x with 16 clients).
A request may stop early at ``<eos>``; the tokens are counted from each answer's usage.

Without ``--run`` a small GPT (d_model 64, 2 layers, block 128, BPE vocabulary 512 on the
first 100 kB of python_docs()) is trained for 2 steps into a temporary folder: speed does
not depend on how well it is trained. Bounded: at most ``--requests`` per mode, and no new
request starts after ``--time-limit`` seconds of a mode. Traffic stays on the loopback
address. The machine's other load shows in these numbers: compare rows of one run only.
On a busy machine the torch server's one-at-a-time rows suffer from waking torch's intra-op
threads for every tiny forward; ``--server-threads 1`` (OMP_NUM_THREADS=1 for the server
process) removes that.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

PROMPT = "The import statement"


def tiny_run(folder: Path) -> Path:
    from minillm import ModelConfig
    from minillm.data import BPETokenizer, python_docs, split_contiguous
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig

    text = python_docs()[:100_000]
    tok = BPETokenizer.train(text, vocab_size=512)
    splits = split_contiguous(np.asarray(tok.encode(text), dtype=np.int64), (0.9, 0.05, 0.05))
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=128, d_model=64, n_heads=4, n_layers=2)
    tc = TrainConfig(steps=2, lr=1e-3, min_lr=1e-4, warmup_steps=0, eval_every=2, checkpoint_every=2, batch_size=8)
    train("causal_lm", folder, RunConfig(cfg, tc, backend="numpy"), data=splits, tokenizer=tok, progress=False)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, backend: str, max_tokens: int, threads: int | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    proc = subprocess.Popen([sys.executable, "-m", "minillm.cli", "serve", str(run), "--port", str(port),
                             "--backend", backend, "--max-new-tokens", str(max_tokens)],
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


def one_request(client: httpx.Client, model: str, max_tokens: int, seed: int) -> tuple[float, float, int]:
    """One streamed completion: (latency s, time to first token s, completion tokens)."""
    body = {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed,
            "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first, tokens = None, None
    with client.stream("POST", "/v1/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: "):])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            if first is None and chunk["choices"] and chunk["choices"][0]["text"]:
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    latency = time.perf_counter() - start
    return latency, latency if first is None else first, int(tokens or 0)


def fire(url: str, model: str, n_requests: int, clients: int, max_tokens: int, time_limit: float) -> dict:
    """``n_requests`` from ``clients`` concurrent clients (1: one at a time); each client sends
    its share in turn, and none starts a request after ``time_limit`` seconds."""
    with httpx.Client(base_url=url, timeout=300, limits=httpx.Limits(max_connections=clients)) as client:
        one_request(client, model, max_tokens, seed=10_000)                 # warm-up, not timed
        start = time.perf_counter()

        def client_loop(c):
            out = []
            for i in range(c, n_requests, clients):
                if time.perf_counter() - start > time_limit:
                    break
                out.append(one_request(client, model, max_tokens, seed=i))
            return out

        with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
            results = [r for rs in pool.map(client_loop, range(clients)) for r in rs]
        wall = time.perf_counter() - start
    latency, ttft, tokens = (np.asarray(x, dtype=float) for x in zip(*results))
    return {"requests": len(results), "tok_s": float(tokens.sum() / wall), "tokens": float(tokens.mean()),
            "p50": float(np.percentile(latency, 50) * 1e3), "p99": float(np.percentile(latency, 99) * 1e3),
            "ttft50": float(np.percentile(ttft, 50) * 1e3), "ttft99": float(np.percentile(ttft, 99) * 1e3)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a causal_lm run (default: a tiny one, trained now)")
    parser.add_argument("--backend", nargs="+", default=["torch", "numpy"], choices=["numpy", "torch"])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=32, help="requests per mode (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=64, help="per request (default: %(default)s)")
    parser.add_argument("--time-limit", type=float, default=120.0,
                        help="seconds per mode after which no request starts (default: %(default)s)")
    parser.add_argument("--server-threads", type=int, default=None,
                        help="OMP_NUM_THREADS of the server process (default: inherited)")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 10_000 or not 1 <= args.clients <= 256 or not 1 <= args.max_tokens <= 4096:
        parser.error("expected --requests in [1, 10000], --clients in [1, 256], --max-tokens in [1, 4096]")

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or tiny_run(Path(tmp) / "run")
        print(f"POST /v1/completions (streamed), {args.requests} requests per mode, max_tokens={args.max_tokens}, "
              f"server threads: {args.server_threads or os.environ.get('OMP_NUM_THREADS', 'default')}")
        print(f"{'backend':>8} {'clients':>8} {'tokens/s':>9} {'x solo':>7} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'TTFT p50':>9} {'TTFT p99':>9} {'tok/req':>8}")
        for backend in args.backend:
            proc, url = start_server(run, backend, args.max_tokens, args.server_threads)
            try:
                model = httpx.get(url + "/v1/models").json()["data"][0]["id"]
                solo = None
                for clients in (1, args.clients):
                    m = fire(url, model, args.requests, clients, args.max_tokens, args.time_limit)
                    solo = solo or m["tok_s"]
                    print(f"{backend:>8} {clients:>8} {m['tok_s']:>9.0f} {m['tok_s'] / solo:>6.1f}x {m['p50']:>8.0f} "
                          f"{m['p99']:>8.0f} {m['ttft50']:>9.0f} {m['ttft99']:>9.0f} {m['tokens']:>8.1f}", flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
