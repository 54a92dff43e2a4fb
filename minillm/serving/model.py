"""The served run: loaded once, with one lock (the reference layers keep their caches on
``self``, so one model must not run two forwards at once), and, for a GPT, the engine that
decodes every generation request together (:mod:`~minillm.serving.engine`)."""
from __future__ import annotations

import threading
from pathlib import Path

from ..store.runs import load_run
from ..store.runtime import Runtime
from ..train.spec import Refused
from .engine import Engine
from .limits import Limits

__all__ = ["ServedRun", "public_contract"]


class ServedRun:
    """What an endpoint's handler gets: ``runtime``, ``model`` (in eval mode),
    ``tokenizer``, ``config``, ``task``, ``label_names``, ``limits``, ``lock`` (held
    around every forward), ``checkpoint`` (name and step), ``data`` (the data contract
    without local paths), ``name`` (the run folder's name, the model's id in the OpenAI
    API) and ``engine`` (:class:`~minillm.serving.engine.Engine`, started at the first
    generation request)."""

    def __init__(self, run_folder, runtime: Runtime | None, limits: Limits):
        run = load_run(run_folder, runtime)
        self.name = Path(run_folder).resolve().name
        self.runtime, self.model, self.tokenizer, self.task = run.runtime, run.model, run.tokenizer, run.task
        self.data = public_contract(dict(run.data))
        self.checkpoint = {"name": run.checkpoint.name, "step": run.step}    # no server path leaves the server
        self.label_names = run.label_names
        n_classes = getattr(self.model, "n_classes", None)
        if self.label_names and n_classes is not None and len(self.label_names) != n_classes:
            raise ValueError(f"{run_folder}: the run names {len(self.label_names)} labels "
                             f"{self.label_names}, its classifier has {n_classes} classes")
        self.config, self.limits = self.model.config, limits
        self.model.eval()
        self.lock = threading.Lock()
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The decoding engine of this run (one, made at the first call)."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = Engine(self)
            return self._engine

    def window(self, text: str, max_tokens: int, keep: str) -> tuple[list[int], int]:
        """``text``'s token ids cut to at most ``max_tokens`` (:data:`~minillm.train.spec.LONG_INPUT`):
        ``keep="last"`` keeps the end (a prompt to continue), ``"first"`` the start (a text to
        classify or score, as training cut its texts); and how many ids were left out."""
        ids = self.tokenizer.encode(text)
        dropped = max(0, len(ids) - max_tokens)
        return (ids[dropped:] if keep == "last" else ids[:max_tokens]), dropped

    def encode(self, text: str, max_tokens: int, what: str) -> list[int]:
        """``text``'s token ids; more than ``max_tokens`` is refused (422 ``too_many_tokens``)."""
        ids = self.tokenizer.encode(text)
        if len(ids) > max_tokens:
            raise Refused(422, "too_many_tokens", f"{what} has {len(ids)} tokens; this model takes at most "
                                                  f"{max_tokens} (block_size = {self.config.block_size})")
        return ids


def public_contract(contract: dict | None) -> dict | None:
    """The run's data contract without local paths: a file is named by its name only."""
    if not contract:
        return None
    dataset = dict(contract.get("dataset") or {})
    if dataset.get("source") not in (None, "", "python_docs", "sentiment"):
        dataset["source"] = Path(dataset["source"]).name
    return {**contract, "dataset": dataset}
