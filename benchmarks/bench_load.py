"""Load: a bounded mix of valid, malformed, oversize and disconnecting clients against a
real `minillm serve`; no 5xx, no lost or mixed-up answer, the server's memory flat.

    python benchmarks/bench_load.py [--run RUN] [--backend numpy] [--clients 40]
        [--rounds 4] [--max-new-tokens 16] [--seconds 120]

Starts ``minillm serve`` as a separate process on a free 127.0.0.1 port (the tiny run of
bench_serving.py unless ``--run`` names one), asks it for every valid request's answer
alone, one request at a time (its *solo* answer), then runs ``--rounds`` rounds in which
``--clients`` clients start at once, each one of these kinds, in turn:

- ``valid``: ``POST /v1/generate`` with its own prompt and seed; its tokens must equal its
  solo answer (a different answer is *mixed up*, none at all is *lost*);
- ``stream``: ``POST /v1/completions`` with ``stream: true`` where the server has it (else
  another ``valid``): the text of its server-sent events, up to ``data: [DONE]``, must equal
  the non-streamed solo answer's;
- ``malformed``: broken JSON, a wrong type, an unknown field, no content type: a 4xx;
- ``oversize``: a body over the server's ``--max-body-bytes``: 413;
- ``disconnect``: a long request whose client goes away after a few milliseconds (or
  after its first streamed event): nothing to check but that the others are unharmed.

The server's resident memory (``VmRSS`` of /proc, Linux) is read after the solo answers
and after each round. *Flat* means the last round ended within ``RSS_SLACK`` of the end of
the middle round: over the first rounds the allocator's pools and torch's caches settle to
their working size (about 2 MiB over 4 rounds in a 75 MiB numpy server here), while a leak
grows with every request, in the second half of the run as in the first. Exits 1 if any
check fails. Every loop is bounded in count and the whole run by ``--seconds``; traffic goes
to the loopback address only. The machine's other load shows in the times: compare rows
of one run only.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench_serving import start_server, tiny_run   # benchmarks/, beside this script

KINDS = ("valid", "stream", "malformed", "oversize", "disconnect")
# 3% of the RSS or 4 MiB, the larger: what the allocator may still take without a leak (its
# arenas grow in steps of up to a few MiB); a request's KV cache left behind would pass it
# within a few hundred requests
RSS_SLACK = (0.03, 4 << 20)
MALFORMED = [(b'{"prompt": ', "application/json"), (b'{"prompt": 5}', "application/json"),
             (b'{"prompt": "x", "model_path": "/etc/passwd"}', "application/json"),
             (b'{"prompt": "x"}', ""), (b"prompt=x", "application/x-www-form-urlencoded"),
             (b'{"prompt": "x", "temperature": NaN}', "application/json")]
PROMPTS = ["The import statement", "A function", "The class", "Lists and tuples", "The module"]


def rss_bytes(pid: int) -> int | None:
    """The process's resident set size, from /proc (None where there is no /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def valid_body(i: int, max_new_tokens: int) -> dict:
    return {"prompt": PROMPTS[i % len(PROMPTS)], "max_new_tokens": max_new_tokens, "temperature": 0.9, "seed": i}


def completions_body(body: dict, model: str, stream: bool) -> dict:
    """The same request in the OpenAI-compatible form."""
    return {"model": model, "prompt": body["prompt"], "max_tokens": body["max_new_tokens"],
            "temperature": body["temperature"], "seed": body["seed"], "stream": stream}


async def read_stream(response: httpx.Response, stop_after: int | None = None) -> str | None:
    """The text of a completions event stream; None if it ended before ``data: [DONE]``."""
    text, events = [], 0
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return "".join(text)
        chunk = json.loads(data)
        text.append(chunk["choices"][0].get("text") or "")
        events += 1
        if stop_after is not None and events >= stop_after:
            return None
    return None


class Load:
    """One server, its solo answers, and the tally of every client's outcome."""

    def __init__(self, url: str, max_new_tokens: int, max_body_bytes: int, n_clients: int):
        self.url, self.max_new_tokens, self.max_body_bytes = url, max_new_tokens, max_body_bytes
        paths = httpx.get(url + "/openapi.json", timeout=30).json()["paths"]
        self.streams = "/v1/completions" in paths
        self.model = httpx.get(url + "/v1/models", timeout=30).json()["data"][0]["id"] if self.streams else None
        self.bodies = {i: valid_body(i, max_new_tokens) for i in range(n_clients) if KINDS[i % len(KINDS)]
                       in ("valid", "stream")}
        self.solo: dict[int, dict] = {}
        self.tally = {"statuses": {}, "mixed_up": 0, "lost": 0, "wrong_status": 0, "disconnected": 0,
                      "checked": 0, "latency_ms": []}

    def solo_answers(self) -> None:
        """Each valid request alone, one at a time: what it must get under load."""
        with httpx.Client(base_url=self.url, timeout=120) as c:
            for i, body in self.bodies.items():
                r = c.post("/v1/generate", json=body)
                r.raise_for_status()
                self.solo[i] = {"tokens": r.json()["tokens"]}
                if self.streams and KINDS[i % len(KINDS)] == "stream":
                    r = c.post("/v1/completions", json=completions_body(body, self.model, stream=False))
                    r.raise_for_status()
                    self.solo[i]["text"] = r.json()["choices"][0]["text"]

    def _count(self, status: int) -> None:
        self.tally["statuses"][status] = self.tally["statuses"].get(status, 0) + 1

    async def client(self, c: httpx.AsyncClient, i: int, round_: int) -> None:
        kind = KINDS[i % len(KINDS)]
        if kind == "stream" and not self.streams:
            kind = "valid"
        start = time.perf_counter()
        try:
            if kind == "valid":
                r = await c.post("/v1/generate", json=self.bodies[i])
                self._count(r.status_code)
                if r.status_code == 200:
                    self.tally["checked"] += 1
                    self.tally["mixed_up"] += r.json()["tokens"] != self.solo[i]["tokens"]
                    self.tally["latency_ms"].append((time.perf_counter() - start) * 1e3)
                else:
                    self.tally["lost"] += 1
            elif kind == "stream":
                body = completions_body(self.bodies[i], self.model, stream=True)
                async with c.stream("POST", "/v1/completions", json=body) as r:
                    self._count(r.status_code)
                    text = await read_stream(r) if r.status_code == 200 else None
                if text is None:
                    self.tally["lost"] += 1
                else:
                    self.tally["checked"] += 1
                    self.tally["mixed_up"] += text != self.solo[i]["text"]
                    self.tally["latency_ms"].append((time.perf_counter() - start) * 1e3)
            elif kind == "malformed":
                content, content_type = MALFORMED[(i + round_) % len(MALFORMED)]
                r = await c.post("/v1/generate", content=content, headers={"content-type": content_type})
                self._count(r.status_code)
                self.tally["wrong_status"] += not 400 <= r.status_code < 500
            elif kind == "oversize":
                r = await c.post("/v1/generate", json={"prompt": "x" * (self.max_body_bytes + 100 * i)})
                self._count(r.status_code)
                self.tally["wrong_status"] += r.status_code != 413
            else:                                           # disconnect: give up early, close the socket
                body = {**valid_body(i, self.max_new_tokens), "max_new_tokens": self.max_new_tokens}
                if self.streams and round_ % 2:
                    async with c.stream("POST", "/v1/completions",
                                        json=completions_body(body, self.model, stream=True)) as r:
                        await read_stream(r, stop_after=1)
                else:
                    with_timeout = httpx.Timeout(0.005 * (1 + i % 5))
                    try:
                        await c.post("/v1/generate", json=body, timeout=with_timeout)
                    except httpx.TimeoutException:
                        pass
                self.tally["disconnected"] += 1
        except httpx.TransportError:
            if kind in ("valid", "stream"):
                self.tally["lost"] += 1
            elif kind != "disconnect":
                self.tally["wrong_status"] += 1

    async def round(self, n_clients: int, round_: int) -> float:
        # a fresh pool per round: a disconnected client's socket is never reused
        limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.url, timeout=120, limits=limits) as c:
            start = time.perf_counter()
            await asyncio.gather(*(self.client(c, i, round_) for i in range(n_clients)))
            return time.perf_counter() - start

    def failures(self) -> list[str]:
        t = self.tally
        out = [f"{n} answers with status {s}" for s, n in sorted(t["statuses"].items()) if s >= 500]
        out += [f"{t[k]} {k.replace('_', ' ')}" for k in ("mixed_up", "lost", "wrong_status") if t[k]]
        return out


def middle(rss: list) -> int:
    """The index in ``rss`` (after the solo answers, then after each round) of the middle
    round: 5 of 10 rounds, 2 of 3."""
    return len(rss) // 2


def rss_flat(rss: list[int | None]) -> bool | None:
    """Whether the last round's RSS is within RSS_SLACK of the middle round's (None: unknown)."""
    if len(rss) < 3 or None in rss:
        return None
    mid, last = rss[middle(rss)], rss[-1]
    return last - mid <= max(RSS_SLACK[0] * mid, RSS_SLACK[1])


def run_load(url: str, pid: int | None, n_clients: int, rounds: int, max_new_tokens: int, max_body_bytes: int,
             seconds: float, log=print) -> tuple[Load, list[int | None]]:
    """The solo answers, then ``rounds`` rounds of ``n_clients``; the tally and the RSS
    after the solo answers and after each round (bounded by ``seconds`` in all)."""
    load = Load(url, max_new_tokens, max_body_bytes, n_clients)
    deadline = time.monotonic() + seconds
    load.solo_answers()
    rss = [rss_bytes(pid) if pid else None]
    for r in range(rounds):
        if time.monotonic() > deadline:
            log(f"stopped after {r} rounds: --seconds {seconds} spent")
            break
        wall = asyncio.run(load.round(n_clients, r))
        rss.append(rss_bytes(pid) if pid else None)
        mib = f"{rss[-1] / 2**20:.1f} MiB" if rss[-1] else "n/a"
        log(f"round {r + 1}: {n_clients} clients in {wall:.2f} s, server RSS {mib}")
    return load, rss


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=None, help="a causal_lm run (default: a tiny one, trained now)")
    p.add_argument("--backend", choices=["numpy", "torch"], default="numpy")
    p.add_argument("--clients", type=int, default=40, help="clients per round, started at once (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=10, help="(default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="the server's limit and each request's")
    p.add_argument("--seconds", type=float, default=120, help="the rounds' time bound (default: %(default)s)")
    a = p.parse_args()
    for name, low, high in (("clients", len(KINDS), 500), ("rounds", 2, 50), ("max_new_tokens", 1, 256)):
        if not low <= getattr(a, name) <= high:
            p.error(f"--{name.replace('_', '-')} must be in [{low}, {high}], got {getattr(a, name)}")
    max_body_bytes = 65536                                  # minillm serve's default --max-body-bytes
    with tempfile.TemporaryDirectory() as tmp:
        run = a.run or tiny_run(Path(tmp) / "run")
        proc, url = start_server(run, a.backend, a.max_new_tokens)
        try:
            load, rss = run_load(url, proc.pid, a.clients, a.rounds, a.max_new_tokens, max_body_bytes, a.seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    t, flat = load.tally, rss_flat(rss)
    latency = sorted(t["latency_ms"])
    p50, p99 = (latency[len(latency) // 2], latency[min(len(latency) - 1, int(0.99 * len(latency)))]) \
        if latency else (float("nan"), float("nan"))
    print(f"\n{a.backend}, {a.clients} clients x {len(rss) - 1} rounds, max_new_tokens={a.max_new_tokens}, "
          f"streaming clients: {'yes' if load.streams else 'no (/v1/completions absent)'}")
    print("| statuses | answers checked | mixed up | lost | wrong 4xx | disconnected | p50 ms | p99 ms "
          "| RSS after solo / middle round / last (MiB) | flat |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    mib = " / ".join("n/a" if x is None else f"{x / 2**20:.1f}" for x in (rss[0], rss[middle(rss)], rss[-1]))
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(t["statuses"].items()))
    print(f"| {statuses} | {t['checked']} | {t['mixed_up']} | {t['lost']} | {t['wrong_status']} "
          f"| {t['disconnected']} | {p50:.0f} | {p99:.0f} | {mib} | {'n/a' if flat is None else flat} |")
    failures = load.failures() + (["the server's memory grew in the second half of the run"] if flat is False else [])
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
