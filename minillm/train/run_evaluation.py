"""``evaluate(run, runtime)``: a saved run scored as its task says (``minillm evaluate``).

The checkpoint is the run's ``checkpoints/best`` (else ``last``; or the checkpoint folder
given: :func:`minillm.store.runs.load_run`); what is computed is the task's own
``evaluate`` (:attr:`minillm.train.spec.TaskSpec.evaluate`: perplexity for the language
models, accuracy / precision / recall / F1 for a classifier), on the run's own held-out
split unless other data is named (:mod:`minillm.train.eval_data`). The scores say which
checkpoint (path, step) and which data (source, split, size) they are of.
"""
from __future__ import annotations

from ..store.runs import load_run
from ..store.runtime import Runtime
from . import task_specs  # noqa: F401  (registers the training layer's three tasks)
from .spec import task_spec

__all__ = ["evaluate"]


def evaluate(run, runtime: Runtime | None = None, *, dataset: str | None = None, corpus_dir=None,
             split_name: str | None = None, text_column: str | None = None,
             label_column: str | None = None) -> dict:
    """Score the run in ``run`` (a folder) in ``runtime`` (default ``Runtime()``) with its
    task's ``evaluate``; ``dataset`` / ``corpus_dir`` / ``split_name`` / the columns name
    other data (see :mod:`minillm.train.eval_data`)."""
    loaded = load_run(run, runtime)
    spec = task_spec(loaded.task)
    if spec.evaluate is None:
        raise ValueError(f"{run}: a {loaded.task} run has no `evaluate` (its scores are those printed at the "
                         f"end of training, in its summary)")
    scores = spec.evaluate(loaded, dataset=dataset, corpus_dir=corpus_dir, split_name=split_name,
                           text_column=text_column, label_column=label_column)
    return {**scores, "task": loaded.task, "split": scores["data"]["split"], "backend": loaded.runtime.backend,
            "checkpoint": loaded.checkpoint_info}
