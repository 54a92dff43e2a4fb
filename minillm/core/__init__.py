"""Layer 0, the base: what everything else stands on and what imports nothing above it.

``config`` (ModelConfig), ``_validate`` (the input checks both backends share), ``init``
(initial weights, positions, dropout generators), ``state`` (state dicts as NumPy),
``optim_checks`` (the optimizers' argument checks), ``schedule`` (the learning-rate
schedule), ``metrics`` and ``text_metrics`` (scores), ``progress`` and ``plots``
(reporting), ``_optional`` (the messages for a missing extra). The layers above:
the backends (``minillm.reference``, ``minillm.torch_backend``), then ``minillm.store``,
``minillm.train``, ``minillm.apps`` and, on top, ``cli``, ``serving`` and ``demo``
(docs/architecture.md).
"""
