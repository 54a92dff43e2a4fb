"""One run's configuration: :class:`RunConfig` = the model, the training, and where it runs.

The one training entry (:func:`minillm.train.entry.train`, which the CLI's training
commands and the demo call) takes its settings from one ``RunConfig``:

=========  ==========================================================================
field      what it says
=========  ==========================================================================
model      the :class:`~minillm.core.config.ModelConfig` (the weights' shapes)
train      the :class:`~minillm.train.training.TrainConfig` (steps, schedule, batch)
backend    ``"numpy"`` (the reference) or ``"torch"`` (default: torch where installed)
device     ``"cpu"``, ``"cuda"`` or ``"mps"`` (torch only)
amp        bf16 autocast (torch on CUDA)
fused      torch: the fast path (``True``) or the explicit formulas (``False``)
=========  ==========================================================================

A run folder records it twice: ``run_config.json`` for a reader, and every checkpoint
(the trainer's config, the model config, and ``extra["run"]`` for the backend, device,
amp and fused), which is what :meth:`RunConfig.recorded` reads back and what ``resume=True`` is checked
against (:class:`~minillm.store.run_folder.RunFolder`). The data contract (where the
data came from, how it was split) is the data's, not the configuration's: it is
recorded beside it in ``data.json``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..core.config import ModelConfig
from ..store.run_folder import RunFolder
from ..store.runtime import BACKENDS, DEVICES, Runtime, default_backend
from .training import TrainConfig, _jsonable

__all__ = ["RunConfig"]


@dataclass(frozen=True)
class RunConfig:
    """The model, the training and the runtime of one run (see the module's table)."""

    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    backend: str = field(default_factory=default_backend)
    device: str = "cpu"
    amp: bool = False
    fused: bool = True

    def __post_init__(self):
        if not isinstance(self.model, ModelConfig):
            raise ValueError(f"expected model as a ModelConfig, got {type(self.model).__name__}")
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"expected train as a TrainConfig, got {type(self.train).__name__}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in ("amp", "fused"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"expected {name} to be a bool, got {getattr(self, name)!r}")

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes``; ``train`` and ``model`` also take a dict of their
        own fields to change (``run.replace(train={"steps": 10})``)."""
        for name in ("model", "train"):
            if isinstance(changes.get(name), dict):
                changes[name] = dataclasses.replace(getattr(self, name), **changes[name])
        return dataclasses.replace(self, **changes)

    def runtime(self) -> Runtime:
        """The runtime this configuration asks for (joining ``torchrun``'s process group
        when ``WORLD_SIZE`` > 1: :meth:`~minillm.store.runtime.Runtime.from_env`)."""
        return Runtime.from_env(self.backend, self.device, self.amp, self.fused)

    # -- recorded ---------------------------------------------------------------------
    @property
    def where(self) -> dict:
        """``{"backend", "device", "amp", "fused"}``: what every checkpoint records as
        ``extra["run"]`` beside the train and model configs."""
        return {"backend": self.backend, "device": self.device, "amp": self.amp, "fused": self.fused}

    def to_dict(self) -> dict:
        """As JSON (``run_config.json``): ``{"model": ..., "train": ..., "backend": ..., ...}``."""
        return {"model": self.model.to_dict(), "train": _jsonable(dataclasses.asdict(self.train)), **self.where}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """The inverse of :meth:`to_dict` (tuples, written as JSON lists, come back as tuples)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown or "model" not in d:
            raise ValueError(f"expected a RunConfig as a dict with 'model' and a subset of {sorted(known)}, "
                             f"got keys {sorted(d)}")
        train = dict(d.get("train") or {})
        if "betas" in train:
            train["betas"] = tuple(train["betas"])
        rest = {k: v for k, v in d.items() if k not in ("model", "train")}
        return cls(model=ModelConfig.from_dict(dict(d["model"])), train=TrainConfig(**train), **rest)

    @classmethod
    def recorded(cls, run_dir) -> "RunConfig | None":
        """The configuration the run in ``run_dir`` recorded in ``checkpoints/last``
        (:meth:`minillm.store.run_folder.RunFolder.recorded`), ``None`` where there is no
        last checkpoint."""
        recorded = RunFolder(run_dir).recorded()
        if not recorded:
            return None
        return cls.from_dict({"model": recorded["model"], "train": recorded["train"], **recorded["run"]})
