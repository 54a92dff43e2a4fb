"""One training entry for every task: ``train(task, out, run_config, ...) -> TrainedRun``.

Every task shares the set-up around :class:`~minillm.train.training.Trainer`: the
runtime from the :class:`~minillm.train.run_config.RunConfig`, a run folder that is
never replaced silently (``resume`` / ``overwrite``), the run's files
(``run_config.json``, ``run.json``, ``data.json``, ``tokenizer.json``), the model
built in the backend and seeded from the config, the loop, and the scores at the end.
What differs is the task's :class:`~minillm.train.spec.TaskSpec`, read from the
registry (:func:`~minillm.train.spec.task_spec`); this function never branches on a
task's name. The result is a frozen :class:`TrainedRun`: the JSON summary
(:attr:`TrainedRun.summary`) apart from the live objects (the model, its runtime, the
tokenizer, the data).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ..core.threads import training_threads
from ..store import model_io
from ..store.lora_adapters import add_lora
from ..store.run_folder import RunFolder
from ..store.runtime import Runtime
from . import task_specs  # noqa: F401  (registers the training layer's three tasks)
from .run_config import RunConfig
from .spec import TaskInputs, task_spec
from .training import Trainer

__all__ = ["train", "TrainedRun"]

@dataclass(frozen=True)
class TrainedRun:
    """A finished training run: the figures (JSON, :attr:`summary`) and the live objects.

    ``validation``: the scores of the last evaluation (of ``checkpoints/best`` for tasks
    scored on their best checkpoint; ``{}`` for tasks without validation data);
    ``test``: the held-out scores (``None`` where not computed); ``checkpoint``: the
    checkpoint the scores and ``load_run`` refer to (path, step, how it was chosen, its
    validation scores);
    ``data_info``: the data's source and split sizes. ``model``, ``runtime``,
    ``tokenizer`` and ``data`` (what it trained on and held out) are the live objects,
    left out of :attr:`summary`, equality and ``repr``.
    """

    task: str
    steps: int
    train_loss: float
    skipped_steps: int
    validation: Mapping[str, Any]
    test: Mapping[str, Any] | None
    checkpoint: Mapping[str, Any] | None
    run_dir: Path | None
    label_names: tuple | None
    data_info: Mapping[str, Any]
    run_config: RunConfig
    model: Any = field(default=None, repr=False, compare=False)
    runtime: Any = field(default=None, repr=False, compare=False)
    tokenizer: Any = field(default=None, repr=False, compare=False)
    data: Any = field(default=None, repr=False, compare=False)

    @property
    def summary(self) -> dict:
        """The run as JSON: task, steps, losses, scores, checkpoint, run folder, label
        names, data, configuration. No live object."""
        # strict JSON has no NaN: a call that trained no step (a finished run resumed) has no loss
        train_loss = self.train_loss if self.train_loss is not None and math.isfinite(self.train_loss) else None
        out = {"task": self.task, "steps": self.steps, "train_loss": train_loss,
               "skipped_steps": self.skipped_steps, "validation": dict(self.validation),
               "test": None if self.test is None else dict(self.test),
               "checkpoint": None if self.checkpoint is None else dict(self.checkpoint),
               "run_dir": None if self.run_dir is None else str(self.run_dir),
               "data": dict(self.data_info), "run_config": self.run_config.to_dict()}
        if self.label_names is not None:
            out["label_names"] = list(self.label_names)
        return out


# -- the entry ----------------------------------------------------------------------------

def train(task: str, out, run_config: RunConfig, *, data=None, tokenizer=None, resume: bool = False,
          overwrite: bool = False, progress: bool = True, runtime: Runtime | None = None, source: str = "",
          dataset: Mapping | None = None, evaluate_test: bool = True, **options) -> TrainedRun:
    """Train ``task`` (``"causal_lm"``, ``"masked_lm"``, ``"classification"``,
    ``"translation"``, ``"question_answering"``) as ``run_config`` says, into the run
    folder ``out`` (``None``: no files).

    ``data``: the causal and masked LMs' token-id splits (train, validation, test), the
    classifier's labelled splits, translation's and QA's ``(train, test)`` examples
    (``None``: their embedded corpora). ``tokenizer``: the tokenizer the data is encoded
    with (translation and QA train theirs when ``None``). ``source`` / ``dataset``: how the
    data was made, recorded in the data contract (:mod:`minillm.train.pipeline`'s
    ``text_dataset``, ``prepared_dataset``, ``labelled_dataset``); without them the data
    is recorded as given. An ``out`` that already holds a run needs ``resume`` (continue it,
    with the settings and the data it recorded) or ``overwrite`` (delete it first).
    ``evaluate_test``: score the held-out data at the end. ``options``: the task's own
    (classification: ``pooling``, ``encoder_state``; translation: ``label_smoothing``;
    translation and QA: ``n_train``, ``n_test``); :attr:`TaskSpec.options` lists them.
    """
    spec = task_spec(task)
    if not isinstance(run_config, RunConfig):
        raise ValueError(f"expected run_config as a RunConfig, got {type(run_config).__name__}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"task {task!r}: unknown option(s) {unknown}; expected a subset of {sorted(spec.options)}")
    out = None if out is None else Path(out)
    if out is None and (resume or overwrite):
        raise ValueError(f"{'resume' if resume else 'overwrite'}=True needs a run folder, got out=None")
    rt = runtime or run_config.runtime()
    folder = None if out is None else RunFolder(out)
    if folder is not None and rt.is_main:                    # before the data: refuse at once
        folder.claim(resume=resume, overwrite=overwrite)
    tc, cfg = run_config.train, run_config.model
    inputs = TaskInputs(data=data, tokenizer=tokenizer, run_config=run_config, runtime=rt,
                        options=MappingProxyType({**spec.options, **options}), source=source,
                        dataset=dataset)
    parts = spec.setup(inputs)
    tok = parts.tokenizer
    recorded = run_config.to_dict()
    if folder is not None and rt.is_main and resume:         # the settings and the data it recorded
        folder.check_resume(recorded["train"], recorded["model"], parts.contract["dataset"],
                            threads=training_threads(rt.backend))
    model = getattr(rt.module, spec.model_class)(cfg, seed=tc.seed, **dict(parts.model_kwargs))
    if parts.init is not None:
        parts.init(model)
    if tc.lora is not None:                                  # only the adapters (and a new head) train
        lora = tc.lora_config
        add_lora(model, lora.targets, r=lora.r, alpha=lora.alpha, seed=tc.seed)
    info = dict(parts.info)
    if folder is not None and rt.is_main:
        folder.write_run({"task": task, "source": source, "backend": rt.backend, "device": rt.device,
                          "fused": rt.runs_fused, "batch_size": tc.batch_size, "model_config": cfg.to_dict(),
                          "world_size": rt.world_size, "threads": training_threads(rt.backend), **info},
                         tok, parts.contract, recorded)
    # the trainer puts the model and its optimizer on the runtime's device and path (Runtime.prepare)
    trainer = Trainer(rt, model, tc.optimizer(rt, model), parts.train, tc, task=task, eval_data=parts.validation,
                      run_dir=folder, tokenizer=tok.to_dict(), score=spec.score, best_by=spec.best_by,
                      loss_per=spec.loss_per, progress=progress, objective=parts.objective,
                      metadata={**info, "data": parts.contract, "run": run_config.where})
    result = trainer.fit(resume=resume)
    model = trainer.model

    checkpoint = _checkpoint_info(out, trainer)
    if spec.test_best:
        best = None if out is None else out / "checkpoints" / "best"
        if rt.is_main and best is not None and (best / "config.json").exists():
            model_io.resume(best, model)          # score (and return) what evaluate and serve load
        else:
            checkpoint = {"path": None, "step": result.step, "note": "no best checkpoint: the final model"}
        validation = trainer.evaluate()
    else:
        validation = trainer.last_eval or (trainer.evaluate() if rt.is_main else {})
    test = None
    if evaluate_test and spec.test is not None and rt.is_main:
        test = spec.test(inputs, parts, model, tok)
    dataset_record = parts.contract.get("dataset", {})
    names = info.get("label_names")
    return TrainedRun(task=task, steps=result.step, train_loss=result.last_loss,
                      skipped_steps=result.skipped_steps, validation=MappingProxyType(dict(validation)),
                      test=None if test is None else MappingProxyType(dict(test)),
                      checkpoint=None if checkpoint is None else MappingProxyType(checkpoint), run_dir=out,
                      label_names=None if names is None else tuple(names),
                      data_info=MappingProxyType({"source": dataset_record.get("source"),
                                                  "sizes": dataset_record.get("split", {}).get("sizes")}),
                      run_config=run_config, model=model, runtime=rt, tokenizer=tok, data=parts.data)


def _checkpoint_info(out: Path | None, trainer) -> dict | None:
    """The best checkpoint (chosen by the task's ``best_by``: which, and its validation
    scores); the last one for runs without validation."""
    if out is None:
        return None
    if trainer.best_step is None:
        return {"path": str(out / "checkpoints" / "last"), "step": trainer.step, "validation": None,
                "last_step": trainer.step}
    return {"path": str(out / "checkpoints" / "best"), "step": trainer.best_step, "chosen_by": trainer.best_rule,
            "validation": dict(trainer.best_scores or {}), "last_step": trainer.step}

