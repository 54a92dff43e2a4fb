"""The KV cache's ceiling: the best no-cache / cache ratio a cached step can give on this machine.

    python benchmarks/bench_kv_floor.py [--threads 1] [--size small] [--prefix 128]

Generating 256 tokens at block 256 (bench_generate.py) costs, for each new token, one
forward over the whole prefix without the cache, and one single-position step with it.
A ratio of 10x therefore needs the single-position step to cost a tenth of the average
full forward. At one position every operation is tiny, so what a step costs is mostly
the fixed cost of each call, and that has a floor. In each backend, at a prefix of
``--prefix`` positions (128: the middle of a 256-token run), this script times:

- ``step``: minillm's ``GPT.forward_cached`` of one token over the cache;
- ``floor``: the same step written with the fewest array operations: weights transposed
  once beforehand, the cache a preallocated buffer written in place, no input checks,
  no modules, no mask (the same arithmetic and GELU: its logits are checked against
  ``forward_cached``'s);
- ``full``: the forward over ``prefix + 1`` positions, what a step without the cache
  computes.

It reports ``full / step`` (what minillm's cache gains at this point of a run) and
``full / floor`` (what any cached step of this model could gain here). Medians of
``--repeats`` blocks of calls, wall clock. Beside them, the Python calls of one step and
of the floor (cProfile's count of functions and builtins, the same on every machine):
at one position most of a step's cost is its calls, and timings of a loaded machine move.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import replace

import numpy as np

from _common import parser
from harness.machine import environment  # benchmarks/harness/, beside this script
from harness.sizes import SIZES

from minillm.core.threads import thread_limit


def _timed(f, calls: int, repeats: int) -> float:
    """Median seconds of one call of ``f``, over ``repeats`` blocks of ``calls`` calls."""
    for _ in range(max(2, calls // 10)):                     # warm-up: caches, allocator
        f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            f()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def _python_calls(f, calls: int = 20) -> float:
    """Python function and builtin calls (cProfile's count) in one call of ``f``."""
    import cProfile
    import pstats
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        f()
    profile.disable()
    return pstats.Stats(profile).total_calls / calls


def _weights(model, backend):
    """name -> array; matrices of torch as F.linear wants them, (out, in) contiguous."""
    state = model.state_dict()
    if backend == "numpy":
        return {k: np.asarray(v) for k, v in state.items()}
    return {k: v.detach().t().contiguous() if v.ndim == 2 and not k.endswith("emb.W") else v.detach()
            for k, v in state.items()}


def _numpy_floor(W, cfg, cache):
    from minillm.reference.activations import gelu
    L, H, C, eps = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.layer_norm_eps
    D, P = C // H, cache[0][0].shape[2]
    keys = [np.zeros((1, H, cfg.block_size, D), np.float32) for _ in range(L)]
    values = [np.zeros((1, H, cfg.block_size, D), np.float32) for _ in range(L)]
    for i, (k, v) in enumerate(cache):
        keys[i][:, :, :P], values[i][:, :, :P] = k, v

    def norm(x, name):
        centered = x - x.mean(-1, keepdims=True)
        var = (centered * centered).mean(-1, keepdims=True)
        return W[name + ".gamma"] * (centered / np.sqrt(var + eps)) + W[name + ".beta"]

    def step(token):
        x = (W["tok_emb.W"][token] + W["pos_emb.W"][P])[None, None]           # (1, 1, C)
        for i in range(L):
            p = f"blocks.{i}."
            h = norm(x, p + "ln1")
            q, k, v = ((h @ W[p + "attn.W_" + n] + W[p + "attn.b_" + n]).reshape(1, 1, H, D).transpose(0, 2, 1, 3)
                       for n in "QKV")                                         # (1, H, 1, D)
            keys[i][:, :, P:P + 1], values[i][:, :, P:P + 1] = k, v
            s = q @ keys[i][:, :, :P + 1].swapaxes(-1, -2) / np.sqrt(D)        # (1, H, 1, P+1)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ values[i][:, :, :P + 1]).transpose(0, 2, 1, 3).reshape(1, 1, C)
            x = x + a @ W[p + "attn.W_O"] + W[p + "attn.b_O"]
            h = norm(x, p + "ln2")
            x = x + gelu(h @ W[p + "ffn.W1"] + W[p + "ffn.b1"]) @ W[p + "ffn.W2"] + W[p + "ffn.b2"]
        return norm(x, "ln_f") @ W["lm_head.W"]                                 # (1, 1, V)
    return step


def _torch_floor(W, cfg, cache):
    import torch
    import torch.nn.functional as F
    L, H, C, eps = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.layer_norm_eps
    D, P = C // H, cache[0][0].shape[2]
    keys = [torch.zeros(1, H, cfg.block_size, D) for _ in range(L)]
    values = [torch.zeros(1, H, cfg.block_size, D) for _ in range(L)]
    for i, (k, v) in enumerate(cache):
        keys[i][:, :, :P], values[i][:, :, :P] = k, v

    def norm(x, name):
        return F.layer_norm(x, (C,), W[name + ".gamma"], W[name + ".beta"], eps)

    def step(token):
        x = (W["tok_emb.W"][token] + W["pos_emb.W"][P]).view(1, 1, C)
        for i in range(L):
            p = f"blocks.{i}."
            h = norm(x, p + "ln1")
            q, k, v = (F.linear(h, W[p + "attn.W_" + n], W[p + "attn.b_" + n]).view(1, 1, H, D).transpose(1, 2)
                       for n in "QKV")
            keys[i][:, :, P:P + 1], values[i][:, :, P:P + 1] = k, v
            a = F.scaled_dot_product_attention(q, keys[i][:, :, :P + 1], values[i][:, :, :P + 1])
            x = x + F.linear(a.transpose(1, 2).reshape(1, 1, C), W[p + "attn.W_O"], W[p + "attn.b_O"])
            h = norm(x, p + "ln2")
            x = x + F.linear(F.gelu(F.linear(h, W[p + "ffn.W1"], W[p + "ffn.b1"])), W[p + "ffn.W2"], W[p + "ffn.b2"])
        return F.linear(norm(x, "ln_f"), W["lm_head.W"])
    return step


def measure(backend: str, size: str, prefix: int, calls: int, repeats: int) -> dict:
    from minillm.store.runtime import Runtime
    cfg = replace(SIZES[size].config, block_size=2 * prefix)
    if cfg.activation != "gelu" or not cfg.norm_first or cfg.positional != "learned" or cfg.tie_embeddings:
        raise ValueError(f"the floor is written for the pre-norm, exact-GELU, learned-position GPT; got {cfg}")
    runtime = Runtime(backend)
    model = runtime.prepare(runtime.module.GPT(cfg, seed=0))
    model.eval()
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, prefix + 1))
    token = int(ids[0, -1])
    with runtime.no_grad():
        _, cache = model.forward_cached(runtime.tensor(ids[:, :-1]))
        one, whole = runtime.tensor(ids[:, -1:]), runtime.tensor(ids)
        floor = (_numpy_floor if backend == "numpy" else _torch_floor)(_weights(model, backend), cfg, cache)
        ours = runtime.to_numpy(model.forward_cached(one, cache)[0]).reshape(-1)
        # float32 sums in another order: within 1e-4 of logits of scale ~1
        np.testing.assert_allclose(runtime.to_numpy(floor(token)).reshape(-1), ours, rtol=1e-4, atol=1e-4)
        step = _timed(lambda: model.forward_cached(one, cache), calls, repeats)
        floor_s = _timed(lambda: floor(token), calls, repeats)
        full = _timed(lambda: model(whole), max(1, calls // 10), repeats)
        step_calls = _python_calls(lambda: model.forward_cached(one, cache))
        floor_calls = _python_calls(lambda: floor(token))
    return {"backend": backend, "size": size, "prefix": prefix, "step_ms": step * 1e3,
            "floor_ms": floor_s * 1e3, "full_ms": full * 1e3, "gain": full / step, "best_gain": full / floor_s,
            "step_calls": step_calls, "floor_calls": floor_calls}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--size", choices=tuple(SIZES), default="small")
    p.add_argument("--prefix", type=int, default=128)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    with thread_limit(a.threads) as info:
        rows = [measure(b, a.size, a.prefix, a.calls, a.repeats) for b in ("numpy", "torch")]
    env = environment("cpu")
    print(f"Machine: {env['cpu']} ({env['cores']} cores); NumPy {env['numpy']}, torch {env['torch']}; "
          f"threads {info['threads']}; load average at start {env.get('load_average_at_start')}\n")
    print("| backend | size | prefix | forward_cached ms | floor ms | forward_cached / floor | full forward ms "
          "| full / forward_cached | full / floor | Python calls: forward_cached | floor |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['size']} | {r['prefix']} | {r['step_ms']:.2f} | {r['floor_ms']:.2f} | "
              f"{r['step_ms'] / r['floor_ms']:.2f}x | {r['full_ms']:.2f} | {r['gain']:.1f}x | {r['best_gain']:.1f}x | "
              f"{r['step_calls']:.0f} | {r['floor_calls']:.0f} |")


if __name__ == "__main__":
    main()
