"""One run folder, claimed, written, recorded and checked once per run: :class:`RunFolder`.

A *run folder* holds everything one training run produced (``run.json``,
``run_config.json``, ``data.json``, ``tokenizer.json``, ``train_config.json``,
``metrics.jsonl``, ``loss.png``, ``checkpoints/{last,best}``; ``evaluate`` adds
``eval.json`` and ``confusion.png``). This module is the one place that decides:

- :meth:`RunFolder.claim`: whether a run may write the folder. One that holds a run is
  refused (:class:`RunExists`) unless the run is resumed or ``overwrite`` deletes the
  files a run writes (and only those);
- :meth:`RunFolder.write_run`: the run's own files, once, at its start;
- :meth:`RunFolder.recorded`: the configuration the run recorded in ``checkpoints/last``
  (the trainer's config, the model config, where it ran) and its data (``data.json``);
- :meth:`RunFolder.check_resume`: that a resumed run continues with the configuration
  and on the data it recorded (:class:`ResumeMismatch` naming each difference).

A :class:`RunFolder` remembers that it was claimed and checked, so the trainer, given the
folder :func:`minillm.train.entry.train` claimed, does neither again. It reads and writes
JSON and checkpoints only: the configuration comes as dicts, so this layer needs nothing
of the training layer above it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Mapping

from ..core.threads import check_resume_threads
from .checkpoint import MANIFEST

__all__ = ["RunFolder", "RunExists", "ResumeMismatch", "RUN_FILES", "CHECKPOINT_NAMES", "resume_differences"]

logger = logging.getLogger("minillm")

# what a training run (and `minillm evaluate`) writes in a run folder; overwrite deletes these only
RUN_FILES = ("run.json", "run_config.json", "data.json", "tokenizer.json", "eval.json", "confusion.png",
             "train_config.json", "metrics.jsonl", "loss.png")
CHECKPOINT_NAMES = ("last", "best")                                  # RUN/checkpoints/<name>/


class RunExists(FileExistsError):
    """A training run was pointed at a folder that already holds a run, without being
    asked to resume it or to overwrite it.

    ``str(exc)`` speaks the library (``resume=True`` / ``overwrite=True``);
    :meth:`message` words it for another caller (the CLI: ``--resume`` / ``--overwrite``)."""

    def __init__(self, run_dir, found):
        self.run_dir, self.found = Path(run_dir), [Path(p) for p in found]
        super().__init__(self.message())

    def message(self, resume: str = "resume=True", overwrite: str = "overwrite=True") -> str:
        shown = ", ".join(str(p.relative_to(self.run_dir)) for p in self.found)
        return (f"{self.run_dir} already holds a run ({shown}); continue it with {resume}, "
                f"or delete it and start again with {overwrite}")


class ResumeMismatch(ValueError):
    """``resume=True`` with settings that differ from those the run was started with.

    A resumed run continues the run recorded in its last checkpoint: the learning-rate
    schedule is a function of ``steps`` (and of ``lr``, ``min_lr``, ``warmup_steps``),
    the batches of ``seed`` and ``batch_size``, the weights' shapes of the model config,
    so changing any of them would silently make another run than the one recorded.
    ``differences`` maps each setting to ``(recorded, given)``. ``str(exc)`` names the
    library's arguments; :meth:`message` takes another naming (the CLI's options)."""

    def __init__(self, run_dir, differences: Mapping[str, tuple]):
        self.run_dir, self.differences = Path(run_dir), dict(differences)
        super().__init__(self.message())

    def message(self, name: Callable[[str, object], str] = lambda key, value: f"{key}={value!r}",
                how: str = "pass the recorded values, or start a new run (another run folder, "
                           "or overwrite=True)") -> str:
        recorded = ", ".join(name(k, old) for k, (old, _) in self.differences.items())
        given = ", ".join(name(k, new) for k, (_, new) in self.differences.items())
        why = " (the learning-rate schedule depends on the total steps)" if "steps" in self.differences else ""
        return (f"cannot resume the run in {self.run_dir}: it was started with {recorded}, got {given}; "
                f"a resumed run continues the configuration it recorded{why}: {how}")


def _same(a, b) -> bool:
    """Equal as JSON records them (tuples are lists there)."""
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    return norm(a) == norm(b)


def resume_differences(recorded: Mapping, given: Mapping) -> dict:
    """``{setting: (recorded, given)}`` for every setting both name that differs."""
    return {k: (recorded[k], v) for k, v in given.items() if k in recorded and not _same(recorded[k], v)}


def _remove_checkpoint(folder: Path) -> bool:
    """Delete a checkpoint folder's files, those its manifest lists and the manifest
    itself, then the folder if that left it empty. Returns whether the folder is gone;
    a file the checkpoint did not write is left where it is."""
    manifest = folder / MANIFEST
    names = []
    if manifest.is_file():
        try:
            names = list(json.loads(manifest.read_text(encoding="utf-8"))["files"])
        except (ValueError, KeyError, TypeError):
            names = []
    for name in names:
        if "/" not in name and "\\" not in name:     # a manifest names files of this folder only
            (folder / name).unlink(missing_ok=True)
    manifest.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        logger.warning("%s: kept, it holds files the checkpoint did not write: %s", folder,
                       sorted(p.name for p in folder.iterdir()))
        return False
    return True


class RunFolder:
    """The run folder ``path`` (see the module): claimed, written, recorded and checked once."""

    def __init__(self, path, files=RUN_FILES):
        self.path, self.files = Path(path), tuple(files)
        self.claimed = False             # claim() ran: the folder is this run's
        self.resume_checked = False      # check_resume() ran

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- claiming -------------------------------------------------------------------------
    def found(self) -> list[Path]:
        """The run files and the checkpoints ``checkpoints/{last,best}`` (with the hidden
        leftovers of an interrupted save) present in the folder."""
        found = [self.path / n for n in self.files if (self.path / n).exists()]
        ckpts = self.path / "checkpoints"
        for name in CHECKPOINT_NAMES:
            found += [p for p in (ckpts / name, *ckpts.glob(f".{name}.tmp-*"), *ckpts.glob(f".{name}.old-*"))
                      if p.exists()]
        return found

    def claim(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """Check that this run may write the folder; with ``overwrite``, first delete the
        previous run's files. A folder holding a run (:meth:`found`) is a :class:`RunExists`
        error naming both options unless ``resume`` (continue it) or ``overwrite`` (delete
        only what a run writes: the run files and the checkpoints' own files, as their
        manifests list them; anything else in the folder stays)."""
        if resume and overwrite:
            raise ValueError("expected either resume (continue the run) or overwrite (replace it), got both")
        last = self.path / "checkpoints" / "last"
        if resume and not (last / "config.json").is_file():      # before anything is built or written
            raise FileNotFoundError(f"--resume: no checkpoint to resume from: expected {last}/config.json")
        found = self.found()
        if found and not resume:
            if not overwrite:
                raise RunExists(self.path, found)
            logger.warning("overwriting the run in %s", self.path)
            for path in found:
                if path.is_dir():
                    _remove_checkpoint(path)
                else:
                    path.unlink(missing_ok=True)
            ckpts = self.path / "checkpoints"
            if ckpts.is_dir() and not any(ckpts.iterdir()):
                ckpts.rmdir()
        self.claimed = True

    # -- writing --------------------------------------------------------------------------
    def write_run(self, info: Mapping, tokenizer, contract: Mapping, run_config: Mapping) -> None:
        """The run's own files: ``run.json`` (``info``), ``data.json`` (the data
        contract), ``tokenizer.json`` and ``run_config.json`` (the run configuration as
        JSON: :meth:`minillm.train.run_config.RunConfig.to_dict`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_json("run_config.json", run_config)
        if hasattr(tokenizer, "save"):
            tokenizer.save(self.path / "tokenizer.json")       # atomic, with the file mode open() gives
        else:
            (self.path / "tokenizer.json").write_text(json.dumps(tokenizer.to_dict(), ensure_ascii=False, indent=1),
                                                      encoding="utf-8")
        self._write_json("run.json", info)
        self._write_json("data.json", contract)

    def _write_json(self, name: str, value) -> None:
        (self.path / name).write_text(json.dumps(value, indent=2), encoding="utf-8")

    def _read_json(self, name: str) -> dict:
        """The run file ``name`` as a dict; empty where it is missing or unreadable."""
        try:
            value = json.loads((self.path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    # -- what the run recorded ------------------------------------------------------------
    def recorded(self) -> dict:
        """What the run was started with, from ``checkpoints/last``: ``{"train": the
        trainer's config, "model": the model config, "run": backend, device, amp, fused}``;
        empty where there is no last checkpoint."""
        folder = self.path / "checkpoints" / "last"
        try:
            extra = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8")).get("extra") or {}
            model = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {"train": dict(extra.get("train_config") or {}), "model": model, "run": dict(extra.get("run") or {})}

    def recorded_dataset(self) -> dict:
        """The data the run recorded (``data.json``'s ``dataset``: kind, source, sha256,
        split); empty where there is none."""
        return dict(self._read_json("data.json").get("dataset") or {})

    def check_resume(self, train: Mapping, model: Mapping | None = None, dataset: Mapping | None = None,
                     threads: int | None = None) -> None:
        """A resumed run continues the run recorded: :class:`ResumeMismatch` unless the
        trainer's config ``train`` (and the model config ``model``, where given) are the
        ones recorded; a ``ValueError`` unless ``dataset`` (where given) is the data the run
        was trained on (source and sha256); a warning when ``threads`` (where given) is not
        the thread count ``run.json`` recorded (:func:`~minillm.core.threads.check_resume_threads`)."""
        recorded = self.recorded()
        if recorded:
            diffs = resume_differences(recorded["train"], dict(train))
            if model is not None:
                diffs.update(resume_differences(recorded["model"], dict(model)))
            if diffs:
                raise ResumeMismatch(self.path, diffs)
        old = self.recorded_dataset()
        if dataset is not None and old:
            if old.get("sha256") != dataset.get("sha256") or old.get("source") != dataset.get("source"):
                raise ValueError(f"--resume {self.path}: the run was trained on {old.get('source')!r} "
                                 f"(sha256 {str(old.get('sha256'))[:12]}...), got {dataset.get('source')!r} "
                                 f"(sha256 {str(dataset.get('sha256'))[:12]}...); resume it on the same data")
        if threads is not None:
            check_resume_threads(self._read_json("run.json").get("threads"), threads, self.path)
        self.resume_checked = True
