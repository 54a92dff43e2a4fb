"""The REST endpoints of the training layer's tasks, declared as plain Python
(:class:`~minillm.train.spec.Endpoint`; the server, :mod:`minillm.serving`, builds them):

    POST /v1/generate   prompt -> continuation (causal_lm)
    POST /v1/score      text -> loss and perplexity (causal_lm)
    POST /v1/classify   text -> label and class probabilities (classification)

Sampling draws from ``numpy.random.default_rng(seed)`` per request, so one request (same
prompt, same seed) gives the same tokens over HTTP as :func:`minillm.train.generation.generate`
called directly, in both backends. Words the tokenizer does not know become ``<unk>``,
as in training.

Dimension legend:
    T   block_size, the most positions the model sees
    n   tokens of one request's text
    K   classes of a classifier
"""
from __future__ import annotations

import math
import secrets
from typing import Literal, Optional

import numpy as np

from ..data.batching import pad_batch
from ..reference.softmax import softmax
from .spec import LONG_INPUT, Endpoint, Refused

__all__ = ["GENERATE", "SCORE", "CLASSIFY", "TEXT"]

MAX_SEED = 2**63 - 1          # numpy's default_rng takes any int >= 0; keep seeds in int64
MAX_TOP_K = 2**31 - 1
MAX_TEMPERATURE = 1e4         # a bound for the schema, far above any useful temperature

TRUNCATED = (int, {"description": "tokens of the text left out: " + LONG_INPUT})
TEXT = (str, {"min_length": 1, "max_length": "limits.max_text_chars"})     # a request's non-empty text


def _generate(served, req: dict) -> dict:
    tok, T = served.tokenizer, served.config.block_size
    prompt_ids, dropped = served.window(req["prompt"], T, keep="last")
    prompt_ids = prompt_ids or [tok.bos_id]
    seed = req["seed"] if req["seed"] is not None else secrets.randbits(63)
    # decoded with the other requests in flight (minillm.serving.engine): the tokens of
    # minillm.train.generation.generate with the KV cache, as the library's default
    new = served.engine.generate(prompt_ids, req["max_new_tokens"], temperature=req["temperature"],
                                 top_k=req["top_k"], top_p=req["top_p"], seed=seed, eos_id=tok.eos_id)
    finish = "eos" if new and new[-1] == tok.eos_id else "length"
    return {"text": tok.decode(new, skip_special_tokens=True), "tokens": new, "prompt_tokens": prompt_ids,
            "finish_reason": finish, "seed": seed, "truncated_tokens": dropped}


GENERATE = Endpoint(
    "/v1/generate",
    request={"prompt": (str, {"default": "", "max_length": "limits.max_text_chars",
                              "description": "the text to continue; empty starts from <bos>"}),
             "max_new_tokens": (int, {"default": lambda limits: min(32, limits.max_new_tokens), "ge": 0,
                                      "le": "limits.max_new_tokens"}),
             "temperature": (float, {"default": 0.8, "ge": 0.0, "le": MAX_TEMPERATURE,
                                     "description": "0 = greedy (argmax)"}),
             "top_k": (Optional[int], {"default": None, "ge": 0, "le": MAX_TOP_K,
                                       "description": "sample among the k likeliest tokens; 0 or null: off "
                                                      "(default: off)"}),
             "top_p": (Optional[float], {"default": None, "gt": 0.0, "le": 1.0,
                                         "description": "sample in the smallest set of tokens with this much "
                                                        "probability; 1 or null: off (default: off)"}),
             "seed": (Optional[int], {"default": None, "ge": 0, "le": MAX_SEED,
                                      "description": "same seed, same prompt: same tokens; omitted: a fresh "
                                                     "seed, returned in the answer"})},
    response={"text": str, "tokens": list[int], "prompt_tokens": list[int],
              "finish_reason": Literal["eos", "length"], "seed": int, "truncated_tokens": TRUNCATED},
    handler=_generate, doc="The continuation of the prompt (section 6.1), sampled as the library samples.")


def _score(served, req: dict) -> dict:
    T = served.config.block_size
    ids, dropped = served.window(req["text"], T + 1, keep="first")
    if len(ids) < 2:
        raise Refused(422, "too_few_tokens", f"scoring needs at least 2 tokens (one to predict from, "
                                             f"one to predict), the text has {len(ids)}")
    x = np.asarray([ids[:-1]], dtype=np.int64)                    # (1, n-1), n-1 <= T
    y = np.asarray([ids[1:]], dtype=np.int64)                     # (1, n-1)
    rt = served.runtime
    with served.lock, rt.no_grad():
        _, loss = served.model(rt.tensor(x), rt.tensor(y))
        loss = float(rt.to_numpy(loss))
    perplexity = math.exp(loss) if loss < math.log(np.finfo(np.float64).max) else None
    return {"loss": loss, "perplexity": perplexity, "tokens": len(ids) - 1, "truncated_tokens": dropped}


SCORE = Endpoint(
    "/v1/score", request={"text": TEXT},
    response={"loss": float, "perplexity": (Optional[float], {"description": "e^loss; null where it overflows "
                                                                             "float64"}),
              "tokens": int, "truncated_tokens": TRUNCATED},
    handler=_score,
    doc=r"""Mean next-token loss of the text and its perplexity (section 3.5):
:math:`L = -\frac{1}{n-1}\sum_{t=2}^{n} \log p(x_t \mid x_{<t})`, :math:`\mathrm{PPL} = e^{L}`.""")


def _classify(served, req: dict) -> dict:
    tok, T, rt = served.tokenizer, served.config.block_size, served.runtime
    ids, dropped = served.window(req["text"], T, keep="first")
    if not ids:
        raise Refused(422, "empty_text", "the text has no tokens")
    idx, mask = pad_batch([ids], tok.pad_id, max_len=T)         # (1, T), (1, T) as in evaluation
    with served.lock, rt.no_grad():
        logits, _ = served.model(rt.tensor(idx), attention_mask=rt.tensor(mask))
        logits = rt.to_numpy(logits)[0].astype(np.float64)     # (K,)
    p = softmax(logits)                                         # (K,)
    k = int(np.argmax(p))
    return {"label": served.label_names[k], "label_id": k, "tokens": len(ids), "truncated_tokens": dropped,
            "probabilities": {name: float(q) for name, q in zip(served.label_names, p)}}


CLASSIFY = Endpoint(
    "/v1/classify", request={"text": TEXT},
    response={"label": str, "label_id": int, "probabilities": dict[str, float], "tokens": int,
              "truncated_tokens": TRUNCATED},
    handler=_classify,
    doc=r"Class probabilities :math:`p = \mathrm{softmax}(\ell)` of the fine-tuned head (section 5.4).")
