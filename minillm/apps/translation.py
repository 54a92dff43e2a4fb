r"""Machine translation with the encoder-decoder (chapter sections 2.3 and 6.2), for
either backend: batches for teacher forcing, greedy and beam-search decoding, scores,
and a training entry point over the embedded dates corpus.

Dimension legend:
    B  batch size      S  source length      T  target length      V  vocabulary
    K  beam size

Teacher forcing: the decoder reads the reference shifted right, ``<bos> y_1 .. y_{n}``,
and is trained to predict ``y_1 .. y_n <eos>`` (padded targets are ``-100``, not
counted). At inference it reads its own predictions instead:

- greedy: :math:`y_t = \arg\max_v p(v \mid y_{<t}, x)` until ``<eos>``;
- beam search (Sutskever et al. 2014; length penalty of Wu et al. 2016, eq. 14): keep
  the ``K`` best prefixes by :math:`\log p(y \mid x)`; a finished hypothesis is scored
  :math:`\log p(y \mid x) / \mathrm{lp}(y)`, :math:`\mathrm{lp}(y) = ((5 + |y|)/6)^\alpha`,
  so that ``alpha > 0`` stops short outputs from winning only by being short.

Decoding re-runs the decoder on the whole prefix at each step (no KV cache): the
sequences here are at most ``block_size`` pieces long.
"""
from __future__ import annotations

import logging

import numpy as np

from ..core._validate import require_int_at_least
from ..core.config import IGNORE_INDEX, ModelConfig
from ..core.text_metrics import corpus_bleu
from ..data.batching import RowBatches, rank_batch_size
from ..data.parallel import PieceTokenizer, date_format_problem, dates_corpus
from ..reference.softmax import log_softmax
from ..store.runtime import Runtime
from ..train.contract import data_contract, generated_dataset, given_dataset
from ..train.eval_data import generated_eval_data
from ..train.spec import Endpoint, Refused, TaskInputs, TaskParts, TaskSpec, register_task
from ..train.task_endpoints import TEXT
from .input_checks import CHECK_FIELDS, Checked, check_values, checked_fields

__all__ = ["TranslationData", "encode_pairs", "greedy_decode", "beam_search", "translate",
           "translate_checked", "output_log_probs", "evaluate_translation", "TRANSLATION_CONFIG",
           "TRANSLATION_TASK"]

logger = logging.getLogger("minillm")

# the benchmark's model: small enough for 2 CPU cores, enough to learn the dates corpus
TRANSLATION_CONFIG = ModelConfig(vocab_size=128, block_size=16, d_model=64, n_heads=4, n_layers=2,
                                 d_ff=128, dropout=0.0, activation="gelu")


def encode_pairs(pairs, tok: PieceTokenizer, max_len: int) -> dict:
    """Padded arrays for teacher forcing. Raises ``ValueError`` when a side is longer
    than ``max_len`` pieces (the target with its ``<bos>``/``<eos>``).

    Shapes: N pairs -> idx (N, S) source ids, attention_mask (N, S) True at real
    source pieces, tgt_idx (N, T) ``<bos>`` + target, targets (N, T) target + ``<eos>``
    (``-100`` at padding).
    """
    srcs = [tok.encode(s) for s, _ in pairs]
    tgts = [tok.encode(t) for _, t in pairs]
    S, T = max(map(len, srcs)), max(map(len, tgts)) + 1
    if S > max_len or T > max_len:
        raise ValueError(f"expected sources and targets of at most {max_len} pieces "
                         f"(block_size), got {S} and {T} (with <bos>/<eos>)")
    n = len(pairs)
    idx = np.full((n, S), tok.pad_id, np.int64)
    tgt_idx = np.full((n, T), tok.pad_id, np.int64)
    targets = np.full((n, T), IGNORE_INDEX, np.int64)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        idx[i, :len(s)] = s
        tgt_idx[i, :len(t) + 1] = [tok.bos_id] + t
        targets[i, :len(t) + 1] = t + [tok.eos_id]
    return {"idx": idx, "tgt_idx": tgt_idx, "targets": targets, "attention_mask": idx != tok.pad_id}


class TranslationData(RowBatches):
    """Batches of ``batch_size`` random pairs: ``batch(step)`` is a pure function of
    ``(seed, step)``, so a resumed run sees the same batches (source padding trimmed).
    ``batch_size`` is global: each of ``world_size`` ranks takes its share of the rows."""

    def __init__(self, pairs, tok: PieceTokenizer, batch_size: int, seed: int = 0, max_len: int = 16, *,
                 rank: int = 0, world_size: int = 1):
        super().__init__(encode_pairs(pairs, tok, max_len), rank_batch_size(batch_size, world_size), seed,
                         trim=("idx", "attention_mask"), rank=rank, world_size=world_size)


def _logits(model, runtime, tgt, memory, src_mask):
    with runtime.no_grad():
        out = model.decode(runtime.tensor(tgt), memory, runtime.tensor(src_mask))  # (B, T, V)
    return runtime.to_numpy(out)[:, -1].astype(np.float64)                          # (B, V)


def greedy_decode(model, runtime: Runtime, idx, attention_mask, bos_id: int, eos_id: int,
                  max_len: int) -> list[list[int]]:
    """Greedy decoding of a batch. Shapes: idx (B, S), attention_mask (B, S) -> B lists
    of at most ``max_len - 1`` ids each, without ``<bos>`` and ``<eos>``."""
    model.eval()
    with runtime.no_grad():
        memory = model.encode(runtime.tensor(idx), runtime.tensor(attention_mask))  # (B, S, C)
    B = len(idx)
    tgt = np.full((B, 1), bos_id, np.int64)                                         # (B, 1)
    done = np.zeros(B, bool)
    while tgt.shape[1] < max_len and not done.all():
        nxt = _logits(model, runtime, tgt, memory, attention_mask).argmax(axis=-1)  # (B,)
        nxt = np.where(done, eos_id, nxt)
        tgt = np.concatenate([tgt, nxt[:, None]], axis=1)                           # (B, t+1)
        done |= nxt == eos_id
    out = []
    for row in tgt[:, 1:].tolist():
        out.append(row[:row.index(eos_id)] if eos_id in row else row)
    return out


def beam_search(model, runtime: Runtime, idx, attention_mask, bos_id: int, eos_id: int,
                max_len: int, beam_size: int = 4, length_penalty: float = 0.6) -> list[int]:
    r"""Beam search for ONE source sentence (Wu et al. 2016's length penalty
    :math:`((5 + |y|)/6)^\alpha`, ``alpha = length_penalty``). Shapes: idx (1, S),
    attention_mask (1, S) -> the best ids, without ``<bos>``/``<eos>``."""
    require_int_at_least("beam_size", beam_size, 1)
    if not length_penalty >= 0:
        raise ValueError(f"expected length_penalty >= 0, got {length_penalty!r}")
    model.eval()
    idx, attention_mask = np.repeat(idx, beam_size, 0), np.repeat(attention_mask, beam_size, 0)
    with runtime.no_grad():                            # the source once per beam: (K, S, C)
        memory = model.encode(runtime.tensor(idx), runtime.tensor(attention_mask))
    beams = [([bos_id], 0.0)]                                  # (prefix, log p) of live beams
    finished = []                                              # (ids, normalised score)

    def lp(n):
        return ((5.0 + n) / 6.0) ** length_penalty

    while beams and len(beams[0][0]) < max_len:
        K = len(beams)
        tgt = np.array([b[0] for b in beams], np.int64)                              # (K, t)
        logp = log_softmax(_logits(model, runtime, tgt, memory[:K], attention_mask[:K]))  # (K, V)
        scores = np.array([b[1] for b in beams])[:, None] + logp                    # (K, V)
        order = np.argsort(-scores, axis=None)[: 2 * beam_size]                      # best 2K
        new = []
        for flat in order:
            k, v = divmod(int(flat), scores.shape[1])
            ids, s = beams[k][0] + [v], float(scores[k, v])
            if v == eos_id:
                finished.append((ids[1:-1], s / lp(len(ids) - 1)))
            else:
                new.append((ids, s))
            if len(new) == beam_size:
                break
        beams = new
        # stop once no live beam can beat the best finished one: log p <= 0 only
        # decreases, and lp grows with length, so log p / lp(max_len - 1) bounds it
        if finished and beams and max(b[1] for b in beams) / lp(max_len - 1) < max(f[1] for f in finished):
            break
    if not finished:                                  # no beam ended: the best unfinished one
        finished = [(b[0][1:], b[1] / lp(len(b[0]) - 1)) for b in beams]
    return max(finished, key=lambda f: f[1])[0]


def translate(model, runtime: Runtime, tok: PieceTokenizer, texts, beam_size: int = 1,
              length_penalty: float = 0.6) -> list[str]:
    """Translate ``texts`` (a list of str): greedy with ``beam_size=1``, else beam search."""
    _, _, out = _decode(model, runtime, tok, texts, beam_size, length_penalty)
    return [tok.decode(o) for o in out]


def _decode(model, runtime, tok, texts, beam_size, length_penalty):
    """``(idx (B, S), attention_mask (B, S), output ids)`` of ``texts``."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("expected texts as a list of str")
    max_len = model.config.block_size
    ids = [tok.encode(t) for t in texts]
    for t, i in zip(texts, ids):
        if not 1 <= len(i) <= max_len:
            raise ValueError(f"expected a source of 1 to {max_len} pieces, got {len(i)}: {t!r:.60}")
    S = max(map(len, ids))
    idx = np.full((len(ids), S), tok.pad_id, np.int64)
    for r, i in enumerate(ids):
        idx[r, :len(i)] = i
    mask = idx != tok.pad_id
    if beam_size == 1:
        out = greedy_decode(model, runtime, idx, mask, tok.bos_id, tok.eos_id, max_len)
    else:
        out = [beam_search(model, runtime, idx[r:r + 1], mask[r:r + 1], tok.bos_id, tok.eos_id,
                           max_len, beam_size, length_penalty) for r in range(len(ids))]
    return idx, mask, out


def output_log_probs(model, runtime: Runtime, idx, attention_mask, outputs, bos_id: int,
                     eos_id: int) -> list[np.ndarray]:
    r""":math:`\log p(y_t \mid y_{<t}, x)` of each output followed by ``<eos>``, in one
    teacher-forced pass of the decoder (causal, so right padding changes no earlier
    position). Shapes: idx (B, S), attention_mask (B, S), B lists of ids (without
    ``<bos>``/``<eos>``, at most ``block_size - 1`` each) -> B arrays of len(y) + 1."""
    T = max(map(len, outputs)) + 1
    tgt = np.full((len(outputs), T), bos_id, np.int64)                          # (B, T), padding unread
    for r, o in enumerate(outputs):
        tgt[r, 1:len(o) + 1] = o
    model.eval()
    with runtime.no_grad():
        memory = model.encode(runtime.tensor(idx), runtime.tensor(attention_mask))
        logits = model.decode(runtime.tensor(tgt), memory, runtime.tensor(attention_mask))
    logp = log_softmax(runtime.to_numpy(logits).astype(np.float64))           # (B, T, V)
    return [logp[r, np.arange(len(o) + 1), list(o) + [eos_id]] for r, o in enumerate(outputs)]


def translate_checked(model, runtime: Runtime, tok: PieceTokenizer, texts, beam_size: int = 1,
                      length_penalty: float = 0.6) -> list[Checked]:
    r""":func:`translate` with the checks of :mod:`minillm.apps.input_checks`, for each text:
    ``unknown_tokens`` of its ``tokens``, ``in_domain``
    (:func:`~minillm.data.parallel.date_format_problem`: a date in words as the
    embedded corpus writes them), ``confidence`` :math:`= \exp` of the mean
    :func:`output_log_probs` over the output's pieces and its ``<eos>`` (the geometric
    mean of the per-piece probabilities, in (0, 1]) and a ``warning`` (``None`` when
    nothing is unknown and the text is in domain)."""
    idx, mask, out = _decode(model, runtime, tok, texts, beam_size, length_penalty)
    logps = output_log_probs(model, runtime, idx, mask, out, tok.bos_id, tok.eos_id)
    return [Checked(text=tok.decode(o), **checked_fields(tok, (t,), date_format_problem(t),
                                                         np.exp(lp.mean()), "translation"))
            for t, o, lp in zip(texts, out, logps)]


def evaluate_translation(model, runtime: Runtime, tok: PieceTokenizer, pairs, beam_size: int = 1,
                         length_penalty: float = 0.6, batch_size: int = 256) -> dict:
    """``exact``: the share of outputs equal to the reference; ``bleu``: corpus BLEU
    over the target pieces (characters of the ISO date)."""
    hyps = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        hyps += translate(model, runtime, tok, [s for s, _ in chunk], beam_size, length_penalty)
    refs = [t for _, t in pairs]
    exact = float(np.mean([h == r for h, r in zip(hyps, refs)]))
    bleu = corpus_bleu([tok.pieces(h) for h in hyps], [tok.pieces(r) for r in refs])
    return {"exact": exact, "bleu": bleu, "n": len(pairs), "examples": list(zip(refs[:3], hyps[:3]))}


def _translation_setup(inputs: TaskInputs) -> TaskParts:
    """The dates corpus (or the ``(train, test)`` pairs given), its piece tokenizer (trained
    on both sides of every pair unless one is given) and teacher-forcing batches."""
    opts, cfg, tc = inputs.options, inputs.run_config.model, inputs.run_config.train
    if inputs.data is None:
        train, test = dates_corpus(opts["n_train"], opts["n_test"], seed=0)
        dataset = generated_dataset("dates", {"train": len(train), "test": len(test)}, "pairs")
    else:
        train, test = _check_pairs(inputs.data)
        dataset = given_dataset(inputs.source or "pairs", {"train": len(train), "test": len(test)}, "pairs")
    tok = inputs.tokenizer or PieceTokenizer.train([s for p in train + test for s in p])
    if tok.vocab_size > cfg.vocab_size:
        raise ValueError(f"expected config.vocab_size >= {tok.vocab_size} (the corpus's pieces), "
                         f"got {cfg.vocab_size}")
    data = TranslationData(train, tok, tc.batch_size, tc.seed, cfg.block_size, rank=inputs.runtime.rank,
                           world_size=inputs.runtime.world_size)
    return TaskParts(data, None, data_contract(dict(inputs.dataset or dataset), tok, cfg.block_size), tok,
                     info={"corpus": "dates" if inputs.data is None else "given"},
                     model_kwargs={"label_smoothing": opts["label_smoothing"]}, held_out=test, data=(train, test))


def _check_pairs(data):
    if not isinstance(data, (tuple, list)) or len(data) != 2 or not all(isinstance(part, list) and part
                                                                         for part in data):
        raise ValueError(f"expected data as (train, test): two non-empty lists of (source, target) pairs, "
                         f"got {type(data).__name__}")
    return data[0], data[1]


def _translation_test(inputs: TaskInputs, parts: TaskParts, model, tok) -> dict:
    return evaluate_translation(model, inputs.runtime, tok, parts.held_out)


def _evaluate_run(run, **data) -> dict:
    """``minillm evaluate``: the held-out dates, generated again as the run recorded them."""
    pairs, info = generated_eval_data(run, lambda n_train, n_test, seed: dates_corpus(n_train, n_test, seed=seed),
                                      **data)
    return {**evaluate_translation(run.model, run.runtime, run.tokenizer, pairs), "data": info}


def _translate_endpoint(served, req: dict) -> dict:
    n = len(served.encode(req["text"], served.config.block_size, "the text"))
    if n == 0:
        raise Refused(422, "empty_text", "the text has no tokens")
    with served.lock:
        out = translate_checked(served.model, served.runtime, served.tokenizer, [req["text"]], req["beam_size"],
                                req["length_penalty"])[0]
    return {"translation": out.text, "tokens": n, **check_values(out)}


MAX_BEAM = 8                  # beam search runs one decoder call per step for the whole beam
MAX_LENGTH_PENALTY = 10.0

# POST /v1/translate; confidence: exp of the mean log-probability of the output's pieces and its <eos>
TRANSLATE = Endpoint(
    "/v1/translate",
    request={"text": TEXT,
             "beam_size": (int, {"default": 1, "ge": 1, "le": MAX_BEAM, "description": "1 = greedy decoding"}),
             "length_penalty": (float, {"default": 0.6, "ge": 0.0, "le": MAX_LENGTH_PENALTY,
                                        "description": "alpha of ((5 + |y|) / 6)^alpha (beam search)"})},
    response={"translation": str, "tokens": int, **CHECK_FIELDS},
    handler=_translate_endpoint,
    doc=r"""The encoder-decoder's translation (section 6.2): greedy, or beam search with the
length penalty :math:`((5 + |y|)/6)^\alpha` when ``beam_size`` > 1.""")


# the task, declared once: its model, batches and test, and its defaults (those of
# `minillm translate --train`): 400 steps, enough for >= 95% exact dates on the torch backend
# (benchmarks/bench_apps.py); a short warmup (10%, at most 50 steps), no weight decay, no
# validation data (one evaluation at the end, on the held-out dates)
TRANSLATION_TASK = register_task(TaskSpec(
    "translation", "EncoderDecoder", _translation_setup, test=_translation_test, steps=400, lr=2e-3, batch_size=64,
    recipe=lambda steps, lr: {"warmup_steps": min(50, steps // 10), "weight_decay": 0.0, "eval_every": steps},
    options={"label_smoothing": 0.1, "n_train": 4000, "n_test": 400}, evaluate=_evaluate_run,
    endpoints=(TRANSLATE,)))


