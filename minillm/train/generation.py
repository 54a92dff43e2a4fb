"""Text generation from a GPT in either backend (chapter section 6.1).

The model gives the logits of the last position; :func:`minillm.train.sampling.sample_next`
chooses the token from them as NumPy, so one seed gives the same tokens in both
backends. With ``use_cache=True`` each step feeds only the new token and reuses the
keys and values of the earlier ones (the KV cache): the same tokens, far less work.
While the sequence is longer than ``block_size`` the window slides, the positions of
every kept token change, and the cache is rebuilt from the window (as without it).
"""
from __future__ import annotations

import numpy as np

from ..store.runs import load_run
from ..store.runtime import Runtime
from .sampling import sample_next

__all__ = ["generate", "generate_text"]


def _check_prompt(prompt_ids, vocab_size: int) -> np.ndarray:
    ids = np.asarray(prompt_ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"prompt_ids must be a non-empty 1-D sequence of token ids, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"prompt_ids must be integer token ids, got dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"prompt_ids must be in [0, {vocab_size}), got values in [{ids.min()}, {ids.max()}]")
    return ids.astype(np.int64)


def generate(runtime, model, prompt_ids, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = 0,
             eos_id: int | None = None, use_cache: bool = True) -> list[int]:
    """Continue ``prompt_ids`` by up to ``max_new_tokens`` tokens; returns the new ids.

    ``temperature=0`` is greedy. Generation stops early after ``eos_id`` (which is
    included in the result). ``seed`` seeds a ``numpy.random.Generator``; the same
    seed gives the same tokens in both backends and with or without the cache.
    """
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    block_size = model.config.block_size
    ids = list(_check_prompt(prompt_ids, model.config.vocab_size))
    rng = np.random.default_rng(seed)
    new: list[int] = []
    cache = None
    was_training = model.training
    model.eval()
    try:
        with runtime.no_grad(), runtime.threads():
            for _ in range(max_new_tokens):
                if use_cache and cache is not None and len(ids) <= block_size:
                    logits, cache = model.forward_cached(runtime.tensor(np.asarray([ids[-1:]])), cache)  # (1, 1, V)
                else:
                    window = runtime.tensor(np.asarray([ids[-block_size:]]))     # (1, T)
                    if use_cache and len(ids) <= block_size:           # prefill the cache
                        logits, cache = model.forward_cached(window, None)
                    else:
                        logits, _ = model(window)
                last = runtime.to_numpy(logits[:, -1, :]).astype(np.float64)     # (1, V)
                token = int(sample_next(last, temperature=temperature, top_k=top_k,
                                        top_p=top_p, rng=rng)[0])
                ids.append(token)
                new.append(token)
                if eos_id is not None and token == eos_id:
                    break
    finally:
        model.train(was_training)
    return new


def generate_text(run, prompt: str, runtime: Runtime | None = None, *, max_new_tokens: int = 100,
                  temperature: float = 0.8, top_k: int | None = 40, top_p: float | None = None,
                  seed: int | None = 0, use_cache: bool = True) -> str:
    """The continuation of ``prompt`` by the causal-LM run in ``run`` (a folder), loaded
    into ``runtime`` (default ``Runtime()``); an empty prompt starts from ``<bos>``."""
    loaded = load_run(run, runtime, task="causal_lm")
    tok = loaded.tokenizer
    new = generate(loaded.runtime, loaded.model, tok.encode(prompt) or [tok.bos_id], max_new_tokens,
                   temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, eos_id=tok.eos_id,
                   use_cache=use_cache)
    return tok.decode(new, skip_special_tokens=True)
