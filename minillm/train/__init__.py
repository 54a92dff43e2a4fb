"""Layer 3, training and using a model: the tasks, each declared once (``spec``: the
:class:`~minillm.train.spec.TaskSpec` registry; ``task_specs``: causal LM, masked LM,
classification; ``task_endpoints``: their REST endpoints), their batches (``tasks``), the
trainer (``training``), the one training entry (``entry``: ``train``), evaluation
(``evaluation``; a saved run: ``run_evaluation`` over ``eval_data``), sampling and
generation, and the data side of the pipeline (``pipeline``: prepare, corpora, labelled
files, the data contract's records). Imports only the layers below: ``minillm.core``,
``minillm.data``, the backends and ``minillm.store`` (docs/architecture.md).
"""
