"""The training layer's three tasks, declared once each (:class:`~minillm.train.spec.TaskSpec`):

- ``causal_lm``: a GPT on token ids, next-token loss; evaluated by perplexity;
- ``masked_lm``: an encoder (BERT's objective); evaluated by the masked tokens' loss;
- ``classification``: a ``SequenceClassifier`` on labelled texts; its best checkpoint is
  the one of the highest validation accuracy (ties: the lower loss: a loss that falls
  while accuracy stays is a classifier growing surer of the same answers), scored by
  accuracy, precision, recall and F1.

Importing :mod:`minillm.train.entry` registers them.
"""
from __future__ import annotations

import logging

from .contract import data_contract, given_dataset
from .eval_data import labelled_eval_data, text_eval_data
from .evaluation import EVAL_BATCH, evaluate_classifier, evaluate_lm
from .spec import TaskInputs, TaskParts, TaskSpec, register_task
from .task_endpoints import CLASSIFY, GENERATE, SCORE
from .tasks import (CausalLMData, ClassificationData, MaskedLMData, causal_lm_eval_batches,
                    classification_eval_batches, masked_lm_eval_batches)

__all__ = ["CAUSAL_LM", "MASKED_LM", "CLASSIFICATION"]

logger = logging.getLogger("minillm")


def _require_tokenizer(inputs: TaskInputs, task: str):
    if inputs.tokenizer is None:
        raise ValueError(f"task {task!r}: expected tokenizer=, the tokenizer the data was encoded with; got None")
    if inputs.data is None:
        raise ValueError(f"task {task!r}: expected data= as (train, validation, test) splits, got None")
    return inputs.tokenizer


def _causal_lm(inputs: TaskInputs) -> TaskParts:
    tok, splits = _require_tokenizer(inputs, "causal_lm"), inputs.data
    rt, tc, T = inputs.runtime, inputs.run_config.train, inputs.run_config.model.block_size
    train = CausalLMData(splits.train, T, tc.batch_size, tc.seed, rank=rt.rank, world_size=rt.world_size)
    contract = data_contract(dict(inputs.dataset or given_dataset(inputs.source, splits, "tokens")), tok, T)
    return TaskParts(train, causal_lm_eval_batches(splits.validation, T, EVAL_BATCH), contract, tok, data=splits)


def _masked_lm(inputs: TaskInputs) -> TaskParts:
    tok, splits = _require_tokenizer(inputs, "masked_lm"), inputs.data
    rt, tc, T = inputs.runtime, inputs.run_config.train, inputs.run_config.model.block_size
    masking = dict(mask_id=tok.mask_id, vocab_size=tok.vocab_size, special_ids=tok.special_ids)
    train = MaskedLMData(splits.train, T, tc.batch_size, seed=tc.seed, rank=rt.rank, world_size=rt.world_size,
                         **masking)
    validation = masked_lm_eval_batches(splits.validation, T, EVAL_BATCH, seed=tc.seed, **masking)
    contract = data_contract(dict(inputs.dataset or given_dataset(inputs.source, splits, "tokens")), tok, T)
    return TaskParts(train, validation, contract, tok, data=splits)


def _classification(inputs: TaskInputs) -> TaskParts:
    tok, data = _require_tokenizer(inputs, "classification"), inputs.data
    rt, tc, T = inputs.runtime, inputs.run_config.train, inputs.run_config.model.block_size
    label_names = list(data.train.label_names)
    if len(label_names) < 2:
        dataset = dict(inputs.dataset or {})
        where = dataset.get("source") or inputs.source or "the labelled data"
        column = f" (label column {dataset['label_column']!r})" if dataset.get("label_column") else ""
        raise ValueError(f"{where}: a classifier needs at least 2 different labels, got {len(label_names)}: "
                         f"{label_names}{column}")
    encode = lambda texts: [tok.encode(t)[:T] for t in texts]  # noqa: E731
    train = ClassificationData(encode(data.train.texts), data.train.labels, tc.batch_size, pad_id=tok.pad_id,
                               max_len=T, seed=tc.seed, rank=rt.rank, world_size=rt.world_size)
    validation = classification_eval_batches(encode(data.validation.texts), data.validation.labels, EVAL_BATCH,
                                             pad_id=tok.pad_id, max_len=T)
    test = classification_eval_batches(encode(data.test.texts), data.test.labels, EVAL_BATCH,
                                       pad_id=tok.pad_id, max_len=T)
    contract = data_contract(dict(inputs.dataset or given_dataset(inputs.source, data, "rows")), tok, T,
                             label_names)
    encoder_state = inputs.options["encoder_state"]
    init = None if encoder_state is None else (lambda model: model.load_encoder_state(encoder_state))
    return TaskParts(train, validation, contract, tok,
                     info={"label_names": label_names, "pretrained": encoder_state is not None},
                     model_kwargs={"n_classes": len(label_names), "pooling": inputs.options["pooling"]},
                     init=init, held_out=test, data=data)


def _score_classifier(runtime, model, batches, label_names=None) -> dict:
    return evaluate_classifier(runtime, model, batches, model.n_classes, label_names=label_names)


def _classification_test(inputs: TaskInputs, parts: TaskParts, model, tok) -> dict:
    scores = _score_classifier(inputs.runtime, model, parts.held_out, parts.info["label_names"])
    return {**scores, "split": "test", "rows": len(inputs.data.test), "source": parts.contract["dataset"]["source"]}


# -- minillm evaluate: a loaded run on its own held-out split, or on other data ----------

def _evaluate_causal_lm(run, **data) -> dict:
    ids, info = text_eval_data(run, **data)
    return {**evaluate_lm(run.runtime, run.model, causal_lm_eval_batches(ids, run.config.block_size, EVAL_BATCH)),
            "data": info}


def _evaluate_masked_lm(run, **data) -> dict:
    ids, info = text_eval_data(run, **data)
    tok, seed = run.tokenizer, int((run.extra.get("train_config") or {}).get("seed", 0))  # validation's masks
    batches = masked_lm_eval_batches(ids, run.config.block_size, EVAL_BATCH, mask_id=tok.mask_id,
                                     vocab_size=tok.vocab_size, special_ids=tok.special_ids, seed=seed)
    return {**evaluate_lm(run.runtime, run.model, batches), "data": info}


def _evaluate_classification(run, **data) -> dict:
    texts, info = labelled_eval_data(run, **data)
    tok, T = run.tokenizer, run.config.block_size
    ids = [tok.encode(t) for t in texts.texts]
    long = sum(len(i) > T for i in ids)
    if long:                                 # the long-input rule (LONG_INPUT), said when applied
        logger.warning("%d of %d texts have more than block_size = %d tokens: each is cut to its first %d "
                    "(as training cut its texts)", long, len(ids), T, T)
    batches = classification_eval_batches([i[:T] for i in ids], texts.labels, EVAL_BATCH,
                                          pad_id=tok.pad_id, max_len=T)
    return {**_score_classifier(run.runtime, run.model, batches, list(texts.label_names)), "label_names": list(texts.label_names),
            "data": info}


# defaults: those of `minillm pretrain` and `minillm finetune` (the finetune ones: the demo's
# fine-tuning, 0.965-0.995 test accuracy over seeds 0-2, measured when best was chosen by
# loss; 300 steps at lr 1e-3 and batch 32 stayed at chance: the word-order labels need more
# updates at a higher rate). Their REST endpoints: minillm.train.task_endpoints.
CAUSAL_LM = register_task(TaskSpec("causal_lm", "GPT", _causal_lm, steps=300, lr=3e-3, batch_size=16,
                                   evaluate=_evaluate_causal_lm, endpoints=(GENERATE, SCORE), command="pretrain"))
MASKED_LM = register_task(TaskSpec("masked_lm", "TransformerEncoder", _masked_lm, steps=300, lr=3e-3,
                                   batch_size=16, evaluate=_evaluate_masked_lm, command="pretrain"))
CLASSIFICATION = register_task(TaskSpec(
    "classification", "SequenceClassifier", _classification, score=_score_classifier,
    best_by=("accuracy", "max"), loss_per="example", test=_classification_test, test_best=True,
    steps=600, lr=2e-3, batch_size=64,
    options={"pooling": "mean", "encoder_state": None}, evaluate=_evaluate_classification,
    endpoints=(CLASSIFY,)))
