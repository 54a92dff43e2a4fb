"""Evaluation of a model on held-out batches, in either backend (chapter section 3.5).

Language models: the mean loss per *counted* token, summed over batches and divided
by the total count (the chapter sums per-batch means and divides by the token count,
which is wrong), with perplexity and bits per token. Classifiers: accuracy, precision,
recall and F1 from the arg-max of the logits, and the confusion matrix
(:func:`minillm.core.metrics.classification_metrics`).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from ..core.config import IGNORE_INDEX
from ..core.metrics import TokenLoss, classification_metrics

__all__ = ["evaluate_lm", "evaluate_classifier", "IGNORE_INDEX", "EVAL_BATCH"]

EVAL_BATCH = 32          # rows per evaluation batch (validation, test, `minillm evaluate`)


def _model_inputs(runtime, batch: Mapping[str, np.ndarray]) -> dict:
    return {name: runtime.tensor(array) for name, array in batch.items()}


def evaluate_lm(runtime, model, batches: Iterable[Mapping[str, np.ndarray]]) -> dict:
    """Token-weighted loss of a causal or masked LM over ``batches``.

    Each batch is the keyword arguments of the model (``idx``, ``targets`` and, for the
    encoder, ``attention_mask``); targets equal to -100 are not counted.

    Returns ``{"loss", "perplexity", "bits_per_token", "tokens"}`` (loss in nats/token).
    """
    total = TokenLoss()
    was_training = model.training
    model.eval()
    try:
        with runtime.no_grad():
            for batch in batches:
                n = int(np.count_nonzero(np.asarray(batch["targets"]) != IGNORE_INDEX))
                if n == 0:
                    continue
                _, loss = model(**_model_inputs(runtime, batch))
                total.add_mean(float(loss), n)
    finally:
        model.train(was_training)
    if total.n_tokens == 0:
        raise ValueError("evaluate_lm: expected at least one counted target token, got none")
    return {"loss": total.mean, "perplexity": total.perplexity,
            "bits_per_token": total.bits_per_token, "tokens": total.n_tokens}


def evaluate_classifier(runtime, model, batches: Iterable[Mapping[str, np.ndarray]],
                        n_classes: int, average: str | None = None, label_names: list[str] | None = None) -> dict:
    """Accuracy, precision, recall, F1 and the confusion matrix of a classifier.

    ``average`` defaults to "binary" for two classes and "macro" otherwise; the loss is
    the example-weighted mean cross-entropy; ``per_class`` is keyed by ``label_names``
    where given (else by the class id).
    """
    average = average or ("binary" if n_classes == 2 else "macro")
    y_true, y_pred, loss = [], [], TokenLoss()
    was_training = model.training
    model.eval()
    try:
        with runtime.no_grad():
            for batch in batches:
                logits, batch_loss = model(**_model_inputs(runtime, batch))
                labels = np.asarray(batch["labels"])
                y_true.append(labels)
                y_pred.append(runtime.to_numpy(logits).argmax(axis=-1))
                loss.add_mean(float(batch_loss), len(labels))
    finally:
        model.train(was_training)
    if not y_true:
        raise ValueError("evaluate_classifier: expected at least one batch, got none")
    y_true, y_pred = np.concatenate(y_true), np.concatenate(y_pred)
    scores = classification_metrics(y_true, y_pred, average=average, n_classes=n_classes,
                                    label_names=label_names)
    return {**scores, "loss": loss.mean}
