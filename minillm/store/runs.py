"""A run folder loaded as one record: :func:`load_run` -> :class:`Run`.

Every command and module that uses a trained run (``evaluate``, ``generate``, ``serve``,
``translate``, ``answer``, the notebooks, ``minillm.apps.interop``) loads it here, by
one rule:

- the checkpoint: ``checkpoints/best`` (the best validation, by the task's ``best_by``), else
  ``checkpoints/last``; or the checkpoint folder given; ``checkpoint="last"`` asks for
  the latest state instead;
- the model: built in the backend asked for, moved to the device and put on the torch
  path asked for (:meth:`minillm.store.runtime.Runtime.prepare`);
- the tokenizer: the one saved in the checkpoint, of whatever kind (BPE, word, char, or
  the pieces of the translation and question-answering runs);
- the task and the data contract (``data.json``: where the data came from, how it was
  split, the label names; see :mod:`minillm.train.pipeline`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ..core.config import ModelConfig
from ..data import Tokenizer
from ..data.hf_tokenizers.folder import read_record
from ..data.hf_tokenizers.record import KIND as HF_RECORD
from ..data.parallel import PieceTokenizer
from . import model_io
from .runtime import Runtime

__all__ = ["Run", "load_run", "checkpoint_folder", "tokenizer_from_dict"]


@dataclass(frozen=True)
class Run:
    """A trained run, loaded: what it is, what it was trained on, and its model.

    ``folder`` is the folder given, ``checkpoint`` the checkpoint folder loaded and
    ``step`` its optimizer step. ``data`` is the data contract; ``extra`` everything else
    the checkpoint recorded (read-only).
    """

    folder: Path
    checkpoint: Path
    step: int
    task: str
    config: ModelConfig
    model: Any
    tokenizer: Any
    runtime: Runtime
    data: Mapping[str, Any]
    extra: Mapping[str, Any]

    @property
    def label_names(self) -> list[str]:
        """The label names in id order, as the data contract records them (a classifier's);
        ``[]`` for a run without labels."""
        return list(self.data.get("label_names") or [])

    @property
    def checkpoint_info(self) -> dict:
        """``{"path": ..., "step": ...}``: what scores and answers name as their checkpoint."""
        return {"path": str(self.checkpoint), "step": self.step}


def checkpoint_folder(run, which: str = "best") -> Path:
    """The checkpoint folder of ``run``: a run folder's ``checkpoints/best`` (else
    ``last``) with ``which="best"``, its ``checkpoints/last`` with ``which="last"``, or
    ``run`` itself when it is a checkpoint folder."""
    if which not in ("best", "last"):
        raise ValueError(f"expected checkpoint 'best' or 'last', got {which!r}")
    run = Path(run)
    order = ("best", "last") if which == "best" else ("last",)
    for candidate in [run / "checkpoints" / name for name in order] + [run]:
        if (candidate / "config.json").exists():
            return candidate
    wanted = " or ".join(f"checkpoints/{name}" for name in order)
    raise FileNotFoundError(f"{run}: expected a run folder (with {wanted}) or a checkpoint folder "
                            f"(with config.json); found neither")


def tokenizer_from_dict(data: dict):
    """A tokenizer saved by any run: BPE, word or char (:class:`minillm.data.Tokenizer`),
    the piece tokenizer of the translation and question-answering runs, or a Hugging Face
    folder's files (a run tuned from one: :mod:`minillm.data.hf_tokenizers.record`)."""
    if isinstance(data, dict) and data.get("kind") == PieceTokenizer.kind:
        return PieceTokenizer.from_dict(data)
    if isinstance(data, dict) and data.get("kind") == HF_RECORD:        # a Hugging Face folder's (SFT)
        return read_record(data)
    return Tokenizer.from_dict(data)


def load_run(folder, runtime: Runtime | None = None, *, checkpoint: str = "best", task: str | None = None) -> Run:
    """Load the run in ``folder`` (a run folder or a checkpoint folder) into ``runtime``
    (default ``Runtime()``: the torch fast path where torch is installed, else numpy).

    ``checkpoint``: ``"best"`` (else last; what ``evaluate`` and ``serve`` score) or
    ``"last"``. ``task``: when given, a run of another task is a ``ValueError`` naming
    both (e.g. ``generate`` on a classifier). The task is the one the checkpoint
    recorded; the model is built from the class the checkpoint names
    (:func:`minillm.store.model_io.load_model`), so no list of tasks is kept here.
    """
    runtime = Runtime() if runtime is None else runtime
    if not isinstance(runtime, Runtime):
        raise ValueError(f"expected runtime as a minillm.store.runtime.Runtime, got {type(runtime).__name__}")
    ckpt_folder = checkpoint_folder(folder, checkpoint)
    model, ckpt = model_io.load_model(ckpt_folder, runtime.backend)
    if ckpt.tokenizer is None:
        raise ValueError(f"{ckpt_folder}: the checkpoint has no tokenizer; expected one saved by the trainer")
    extra = dict(ckpt.extra or {})
    found = extra.get("task")
    if not isinstance(found, str):
        raise ValueError(f"{ckpt_folder}: expected the task in the checkpoint (extra['task']), got {found!r}")
    if task is not None and found != task:
        raise ValueError(f"{folder}: expected a {task} run, got a {found} run ({type(model).__name__})")
    data = extra.pop("data", None) or {}
    return Run(folder=Path(folder), checkpoint=ckpt_folder, step=int(ckpt.step), task=found,
               config=model.config, model=runtime.prepare(model), tokenizer=tokenizer_from_dict(ckpt.tokenizer),
               runtime=runtime, data=MappingProxyType(dict(data)), extra=MappingProxyType(extra))
