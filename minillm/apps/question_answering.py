r"""Extractive question answering with :class:`SpanQA` (chapter section 6.3; BERT,
Devlin et al. 2019, section 4.2), for either backend: batches, span decoding, exact
match / token F1, and a training entry point over the embedded QA set.

Dimension legend:
    B  batch size      T  input length (question + context + 3 special tokens)

The input is ``<cls> question <sep> context <sep>``; the answer is the context span
:math:`[i, j]` with the highest :math:`s_i + e_j` among ``i <= j < i + max_answer_len``
inside the context (the question and the special tokens are never an answer).
"""
from __future__ import annotations

import logging

import numpy as np

from ..core.config import ModelConfig
from ..core.text_metrics import exact_match, token_f1
from ..data.batching import RowBatches, rank_batch_size
from ..data.parallel import PieceTokenizer
from ..data.qa import qa_corpus, qa_format_problem
from ..reference.softmax import softmax
from ..store.runtime import Runtime
from ..train.contract import data_contract, generated_dataset, given_dataset
from ..train.eval_data import generated_eval_data
from ..train.spec import Endpoint, Refused, TaskInputs, TaskParts, TaskSpec, register_task
from ..train.task_endpoints import TEXT
from .input_checks import CHECK_FIELDS, CheckedAnswer, check_values, checked_fields

__all__ = ["QAData", "encode_qa", "best_span", "span_probability", "answer", "answer_spans",
           "answer_checked", "evaluate_qa", "QA_CONFIG", "QA_RECIPE",
           "QA_TASK"]

logger = logging.getLogger("minillm")

# type_vocab_size=2: segment embeddings tell the question (0) from the context (1), as
# BERT's. positional="rope" and init_std=1/sqrt(d_model): answering needs the question's
# name matched with the subject of the answer's sentence, a few pieces back; with
# positions added to the embeddings, or with GPT-2's init scale 0.02, every run measured
# stayed at ~80% exact match (benchmarks/README.md, question answering).
QA_CONFIG = ModelConfig(vocab_size=128, block_size=64, d_model=64, n_heads=4, n_layers=2,
                        d_ff=128, dropout=0.0, activation="gelu", type_vocab_size=2,
                        positional="rope", init_std=0.125)


def _input_ids(tok: PieceTokenizer, context: str, question: str):
    """``(ids, context_start)``: ``<cls> question <sep> context <sep>``."""
    q, c = tok.encode(question), tok.encode(context)
    return [tok.cls_id] + q + [tok.sep_id] + c + [tok.sep_id], len(q) + 2


def encode_qa(examples, tok: PieceTokenizer, max_len: int) -> dict:
    """Padded arrays. Shapes: N examples -> idx (N, T), attention_mask (N, T),
    token_type_ids (N, T) (0 for the question and its specials, 1 from the context on),
    start_positions, end_positions (N,) (indices into idx). Raises ``ValueError`` when
    an input is longer than ``max_len``."""
    rows, starts, ends = [], [], []
    for ex in examples:
        ids, offset = _input_ids(tok, ex["context"], ex["question"])
        if len(ids) > max_len:
            raise ValueError(f"expected inputs of at most {max_len} pieces (block_size), got {len(ids)}")
        rows.append((ids, offset))
        starts.append(offset + ex["answer_start"])
        ends.append(offset + ex["answer_start"] + len(tok.pieces(ex["answer"])) - 1)
    idx, types = _pad(rows, tok)
    return {"idx": idx, "start_positions": np.array(starts, np.int64),
            "end_positions": np.array(ends, np.int64), "attention_mask": idx != tok.pad_id,
            "token_type_ids": types}


def _pad(rows, tok):
    """``[(ids, context_start)]`` -> idx (N, T) padded with ``<pad>``, token_type_ids (N, T)."""
    T = max(len(ids) for ids, _ in rows)
    idx = np.full((len(rows), T), tok.pad_id, np.int64)
    types = np.zeros((len(rows), T), np.int64)
    for r, (ids, offset) in enumerate(rows):
        idx[r, :len(ids)] = ids
        types[r, offset:len(ids)] = 1
    return idx, types


class QAData(RowBatches):
    """Batches of ``batch_size`` random examples; ``batch(step)`` is a pure function of
    ``(seed, step)`` (padding trimmed from the inputs, their mask and their segments).
    ``batch_size`` is global: each of ``world_size`` ranks takes its share of the rows."""

    def __init__(self, examples, tok: PieceTokenizer, batch_size: int, seed: int = 0, max_len: int = 64, *,
                 rank: int = 0, world_size: int = 1):
        super().__init__(encode_qa(examples, tok, max_len), rank_batch_size(batch_size, world_size), seed,
                         trim=("idx", "attention_mask", "token_type_ids"), rank=rank, world_size=world_size)


def _span_scores(start_logits, end_logits, lo, hi, max_answer_len):
    """(n, n) scores s_i + e_j of the spans [lo + i, lo + j], -inf where not allowed."""
    s = np.asarray(start_logits, np.float64)[lo:hi]
    e = np.asarray(end_logits, np.float64)[lo:hi]
    n = len(s)
    score = s[:, None] + e[None, :]                                        # (n, n)
    i, j = np.indices((n, n))
    return np.where((j >= i) & (j < i + max_answer_len), score, -np.inf)


def best_span(start_logits, end_logits, lo: int, hi: int, max_answer_len: int = 6):
    r""":math:`\arg\max_{lo \le i \le j < \min(hi, i + L)} s_i + e_j`. Shapes: (T,), (T,) -> (i, j)."""
    score = _span_scores(start_logits, end_logits, lo, hi, max_answer_len)
    a, b = np.unravel_index(int(np.argmax(score)), score.shape)
    return lo + int(a), lo + int(b)


def span_probability(start_logits, end_logits, lo: int, hi: int, i: int, j: int,
                     max_answer_len: int = 6) -> float:
    r"""The model's probability of the span :math:`[i, j]` among the allowed ones (those
    :func:`best_span` chooses from): :math:`e^{s_i + e_j} / \sum_{(k, l)} e^{s_k + e_l}`,
    the product of a softmax over starts and one over ends, renormalised to the spans
    with :math:`k \le l < k + L` inside ``[lo, hi)``. Shapes: (T,), (T,) -> float."""
    score = _span_scores(start_logits, end_logits, lo, hi, max_answer_len)
    p = softmax(score.reshape(-1)).reshape(score.shape)   # (n, n); -inf (not allowed) -> 0
    return float(p[i - lo, j - lo])


def answer_spans(model, runtime: Runtime, tok: PieceTokenizer, contexts, questions,
                 max_answer_len: int = 6) -> list[tuple[str, int, int]]:
    """``(text, i, j)`` for each (context, question): the answer and its first and last
    piece as indices into the context's pieces (:meth:`PieceTokenizer.pieces`)."""
    return [out[:3] for out in _spans(model, runtime, tok, contexts, questions, max_answer_len)]


def _spans(model, runtime, tok, contexts, questions, max_answer_len):
    """``(text, i, j, probability)`` for each (context, question)."""
    if isinstance(contexts, str) or isinstance(questions, str):
        raise ValueError("expected contexts and questions as lists of str")
    if len(contexts) != len(questions):
        raise ValueError(f"expected one question per context, got {len(contexts)} contexts and "
                         f"{len(questions)} questions")
    T_max = model.config.block_size
    rows = []
    for c, q in zip(contexts, questions):
        if not isinstance(c, str) or not isinstance(q, str):
            raise ValueError("expected contexts and questions as lists of str")
        ids, offset = _input_ids(tok, c, q)
        if len(ids) > T_max or len(ids) == offset + 1:
            raise ValueError(f"expected a non-empty context and at most {T_max} pieces in all "
                             f"(block_size), got {len(ids)} with a context of {len(ids) - offset - 1}")
        rows.append((ids, offset))
    idx, types = _pad(rows, tok)
    types = runtime.tensor(types) if model.config.type_vocab_size else None
    model.eval()
    with runtime.no_grad():
        logits, _ = model(runtime.tensor(idx), attention_mask=runtime.tensor(idx != tok.pad_id),
                          token_type_ids=types)
    logits = runtime.to_numpy(logits)                                      # (B, 2, T)
    out = []
    for r, ((ids, offset), c) in enumerate(zip(rows, contexts)):
        i, j = best_span(logits[r, 0], logits[r, 1], offset, len(ids) - 1, max_answer_len)
        p = span_probability(logits[r, 0], logits[r, 1], offset, len(ids) - 1, i, j, max_answer_len)
        spans = tok.piece_spans(c)        # the context's own characters ("Dublin", not "dublin")
        text = c[spans[i - offset][0]:spans[j - offset][1]] if spans else tok.decode(ids[i:j + 1])
        out.append((text, i - offset, j - offset, p))
    return out


def answer(model, runtime: Runtime, tok: PieceTokenizer, contexts, questions,
           max_answer_len: int = 6) -> list[str]:
    """The answer span of each (context, question), as text."""
    return [a for a, _, _ in answer_spans(model, runtime, tok, contexts, questions, max_answer_len)]


def answer_checked(model, runtime: Runtime, tok: PieceTokenizer, contexts, questions,
                   max_answer_len: int = 6) -> list[CheckedAnswer]:
    """:func:`answer_spans` with the checks of :mod:`minillm.apps.input_checks`, for each
    (context, question): ``unknown_tokens`` of the ``tokens`` of question and context,
    ``in_domain`` (:func:`~minillm.data.qa.qa_format_problem`: the shapes of the
    embedded corpus), ``confidence`` (:func:`span_probability` of the answer) and a
    ``warning`` (``None`` when nothing is unknown and the input is in domain)."""
    return [CheckedAnswer(text=text, start=i, end=j,
                          **checked_fields(tok, (q, c), qa_format_problem(c, q), p, "answer"))
            for (text, i, j, p), c, q in zip(_spans(model, runtime, tok, contexts, questions, max_answer_len),
                                             contexts, questions)]


def evaluate_qa(model, runtime: Runtime, tok: PieceTokenizer, examples, batch_size: int = 256) -> dict:
    """Mean exact match and token F1 (SQuAD's definitions) over ``examples``."""
    preds = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        preds += answer(model, runtime, tok, [e["context"] for e in chunk], [e["question"] for e in chunk])
    gold = [e["answer"] for e in examples]
    return {"exact_match": float(np.mean([exact_match(p, g) for p, g in zip(preds, gold)])),
            "f1": float(np.mean([token_f1(p, g) for p, g in zip(preds, gold)])),
            "n": len(examples), "examples": list(zip(gold[:3], preds[:3]))}


def _qa_setup(inputs: TaskInputs) -> TaskParts:
    """The QA facts (or the ``(train, test)`` examples given), their piece tokenizer
    (trained on every context and question unless one is given) and span batches."""
    opts, cfg, tc = inputs.options, inputs.run_config.model, inputs.run_config.train
    if inputs.data is None:
        train, test = qa_corpus(opts["n_train"], opts["n_test"], seed=0)
        dataset = generated_dataset("facts", {"train": len(train), "test": len(test)}, "examples")
    else:
        train, test = _check_examples(inputs.data)
        dataset = given_dataset(inputs.source or "examples", {"train": len(train), "test": len(test)}, "examples")
    tok = inputs.tokenizer or PieceTokenizer.train([e[k] for e in train + test for k in ("context", "question")])
    if tok.vocab_size > cfg.vocab_size:
        raise ValueError(f"expected config.vocab_size >= {tok.vocab_size} (the corpus's pieces), "
                         f"got {cfg.vocab_size}")
    data = QAData(train, tok, tc.batch_size, tc.seed, cfg.block_size, rank=inputs.runtime.rank,
                  world_size=inputs.runtime.world_size)
    if not cfg.type_vocab_size:                      # a model without segment embeddings
        data.arrays.pop("token_type_ids")
    return TaskParts(data, None, data_contract(dict(inputs.dataset or dataset), tok, cfg.block_size), tok,
                     info={"corpus": "facts" if inputs.data is None else "given"}, held_out=test, data=(train, test))


def _qa_test(inputs: TaskInputs, parts: TaskParts, model, tok) -> dict:
    return evaluate_qa(model, inputs.runtime, tok, parts.held_out)


def _evaluate_run(run, **data) -> dict:
    """``minillm evaluate``: the held-out questions, generated again as the run recorded them."""
    examples, info = generated_eval_data(run, lambda n_train, n_test, seed: qa_corpus(n_train, n_test, seed=seed),
                                         **data)
    return {**evaluate_qa(run.model, run.runtime, run.tokenizer, examples), "data": info}


def _answer_endpoint(served, req: dict) -> dict:
    T = served.config.block_size
    n_q = len(served.encode(req["question"], T, "the question"))
    n_c = len(served.encode(req["context"], T, "the context"))
    if n_q == 0 or n_c == 0:
        raise Refused(422, "empty_text", "the context and the question need at least one token each")
    if n_q + n_c + 3 > T:
        raise Refused(422, "too_many_tokens", f"question ({n_q} tokens) + context ({n_c}) + 3 special "
                                              f"tokens exceed this model's block_size = {T}")
    with served.lock:
        out = answer_checked(served.model, served.runtime, served.tokenizer, [req["context"]], [req["question"]])[0]
    return {"answer": out.text, "start": out.start, "end": out.end, "tokens": out.tokens, **check_values(out)}


# POST /v1/answer; confidence: the span's probability among the allowed spans
ANSWER = Endpoint(
    "/v1/answer", request={"context": TEXT, "question": TEXT},
    response={"answer": str,
              "start": (int, {"description": "index of the answer's first piece in the context's pieces"}),
              "end": (int, {"description": "index of its last piece (inclusive)"}),
              "tokens": (int, {"description": "the question's and the context's tokens"}), **CHECK_FIELDS},
    handler=_answer_endpoint,
    doc=r"""The span of the context that answers the question (section 6.3):
:math:`\arg\max_{i \le j} s_i + e_j` over the context's pieces.""")


# the task, declared once (its defaults are those of `minillm answer --train` and
# benchmarks/bench_apps.py). The learning rate stays at lr after a short warmup (10%, at
# most 50 steps): the loss sits on a plateau (~0.33, the questions whose relation is
# stated for two people answered at chance) until the model learns to match names, which
# took 700 to 1,500 steps in the runs measured; a cosine decay slows that escape
# (benchmarks/README.md). No weight decay; no validation data (the held-out examples are
# scored at the end).
QA_TASK = register_task(TaskSpec(
    "question_answering", "SpanQA", _qa_setup, test=_qa_test, steps=2000, lr=1e-3, batch_size=64,
    recipe=lambda steps, lr: {"warmup_steps": min(50, steps // 10), "min_lr": lr, "weight_decay": 0.0,
                              "eval_every": steps},
    options={"n_train": 40000, "n_test": 400}, evaluate=_evaluate_run, endpoints=(ANSWER,)))
# train_qa's defaults, also those of `minillm answer --train` and benchmarks/bench_apps.py
QA_RECIPE = {"steps": QA_TASK.steps, "batch_size": QA_TASK.batch_size, "lr": QA_TASK.lr}


def _check_examples(examples):
    keys = {"context": str, "question": str, "answer": str, "answer_start": int}
    if not isinstance(examples, (tuple, list)) or len(examples) != 2:
        raise ValueError(f"expected examples as (train, test), got {type(examples).__name__}")
    for split, rows in zip(("train", "test"), examples):
        if not isinstance(rows, list) or not rows:
            raise ValueError(f"expected a non-empty list of {split} examples, got {rows!r:.60}")
        for r, ex in enumerate(rows):
            if not isinstance(ex, dict) or any(not isinstance(ex.get(k), t) for k, t in keys.items()):
                raise ValueError(f"expected {split} example {r} as a dict with {sorted(keys)} "
                                 f"(str, except answer_start: int), got {ex!r:.80}")
            pieces = PieceTokenizer.pieces(ex["context"])
            answer = PieceTokenizer.pieces(ex["answer"])
            at = ex["answer_start"]
            if pieces[at:at + len(answer)] != answer or at < 0:
                raise ValueError(f"expected {split} example {r}'s answer {ex['answer']!r} at piece "
                                 f"{at} of its context, got {pieces[max(at, 0):max(at, 0) + len(answer)]}")
    return examples[0], examples[1]


