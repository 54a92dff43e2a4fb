"""Layer 3, training and using a model: the tasks' batches (``tasks``), the trainer
(``training``), evaluation, sampling and generation, and the chapter's pipeline as
functions (``pipeline``: prepare, pretrain, fine-tune, evaluate, generate). Imports
only the layers below: ``minillm.core``, ``minillm.data``, the backends and
``minillm.store`` (docs/architecture.md).
"""
