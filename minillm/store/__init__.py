"""Layer 2, storage: a backend chosen by name, and what is written to and read from disk.

``runtime`` (the one place a backend name becomes a module: ``load_backend``; a device;
batches as the backend's arrays), ``safetensors_io`` and ``checkpoint`` (atomic
checkpoint folders), ``model_io`` (a model with its optimizer and RNG state in a
checkpoint), ``run_folder`` (a run folder claimed, written, recorded and checked once:
:class:`~minillm.store.run_folder.RunFolder`) and ``runs`` (a run folder loaded as one
:class:`~minillm.store.runs.Run`).
Imports only ``minillm.core``, ``minillm.data`` and the backends (docs/architecture.md).
"""
