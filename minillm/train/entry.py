"""One training entry for every task: ``train(task, out, run_config, ...) -> TrainedRun``.

The five tasks share the set-up around :class:`~minillm.train.training.Trainer`: the
runtime from the :class:`~minillm.train.run_config.RunConfig`, a run folder that is
never replaced silently (``resume`` / ``overwrite``), the run's files
(``run_config.json``, ``run.json``, ``data.json``, ``tokenizer.json``), the model
built in the backend and seeded from the config, the loop, and the scores at the end.
What differs is small and declared once per task, as a :class:`TaskSpec`:

- the model class the backend builds (``GPT``, ``TransformerEncoder``,
  ``SequenceClassifier``, ``EncoderDecoder``, ``SpanQA``) and its extra arguments;
- ``setup``: the training batches, the validation batches, the data contract and the
  tokenizer, from the data given;
- ``test``: the held-out scores, and whether they are of the best checkpoint;
- the task's defaults: steps, learning rate, batch size, and how its recipe departs from
  :meth:`~minillm.train.training.TrainConfig.recipe` (:meth:`TaskSpec.train_config`).

This module declares the three tasks of the training layer (``causal_lm``,
``masked_lm``, ``classification``); :mod:`minillm.apps.translation` and
:mod:`minillm.apps.question_answering` declare theirs (``translation``,
``question_answering``) when imported (:func:`register_task`). The result is a frozen
:class:`TrainedRun`: the JSON summary (:attr:`TrainedRun.summary`) apart from the live
objects (the model, its runtime, the tokenizer, the data).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ..core.threads import check_resume_threads, training_threads
from ..store import model_io
from ..store.runtime import Runtime
from .contract import data_contract, given_dataset
from .evaluation import evaluate_classifier
from .run_config import RUN_CONFIG_FILE, RunConfig
from .tasks import (CausalLMData, ClassificationData, MaskedLMData, causal_lm_eval_batches,
                    classification_eval_batches, masked_lm_eval_batches)
from .training import TRAINER_FILES, TrainConfig, Trainer, check_resume, claim_run_dir

__all__ = ["train", "TrainedRun", "TaskSpec", "TaskInputs", "TaskParts", "register_task", "task_spec",
           "TASK_SPECS", "RUN_FILES", "EVAL_BATCH"]

EVAL_BATCH = 32
# what a training run (and `minillm evaluate`) writes in a run folder; overwrite=True deletes these only
RUN_FILES = ("run.json", RUN_CONFIG_FILE, "data.json", "tokenizer.json", "eval.json", "confusion.png",
             *TRAINER_FILES)


@dataclass(frozen=True)
class TaskInputs:
    """What a task's ``setup`` and ``test`` read: the data and tokenizer given to
    :func:`train` (``None`` where the task makes its own), the run configuration, the
    runtime, the task's options (with their defaults filled in), and how the data was made
    (``source``, ``dataset``: see :mod:`minillm.train.contract`)."""

    data: Any
    tokenizer: Any
    run_config: RunConfig
    runtime: Runtime
    options: Mapping[str, Any]
    source: str = ""
    dataset: Mapping | None = None


@dataclass(frozen=True)
class TaskParts:
    """What a task's ``setup`` returns: the training batches (``batch(step)``), the
    validation batches (``None``: no evaluation during training), the data contract, the
    tokenizer, what the run records about the task (``info``: label names, corpus; in
    ``run.json`` and every checkpoint), the model's extra arguments, ``init`` (called on
    the new model, before the runtime prepares it: a pretrained encoder's weights),
    ``held_out`` (what ``test`` scores) and ``data`` (what :attr:`TrainedRun.data` holds)."""

    train: Any
    validation: list | None
    contract: dict
    tokenizer: Any
    info: Mapping = field(default_factory=dict)
    model_kwargs: Mapping = field(default_factory=dict)
    n_classes: int | None = None
    init: Callable[[Any], None] | None = None
    held_out: Any = None
    data: Any = None


def _no_recipe_changes(steps: int, lr: float) -> dict:
    return {}


@dataclass(frozen=True)
class TaskSpec:
    """One task, declared once (see the module's list). ``recipe(steps, lr)`` returns the
    task's departures from :meth:`TrainConfig.recipe` (e.g. no weight decay), applied
    where the caller gives no value. ``test(inputs, parts, model, tokenizer)`` scores the
    held-out data; with ``test_best`` the model first takes the weights of
    ``checkpoints/best`` (what ``evaluate`` and ``serve`` load)."""

    name: str
    model_class: str
    setup: Callable[[TaskInputs], TaskParts]
    test: Callable[[TaskInputs, TaskParts, Any, Any], dict] | None = None
    test_best: bool = False
    steps: int = 300
    lr: float = 3e-3
    batch_size: int = 16
    recipe: Callable[[int, float], dict] = _no_recipe_changes
    options: Mapping[str, Any] = field(default_factory=dict)

    def train_config(self, steps: int | None = None, lr: float | None = None, *,
                     batch_size: int | None = None, **given) -> TrainConfig:
        """This task's default training: :meth:`TrainConfig.recipe` with the task's steps,
        learning rate, batch size and recipe changes, where ``given`` does not set them
        (a ``None`` in ``given`` is not given)."""
        steps = self.steps if steps is None else steps
        lr = self.lr if lr is None else lr
        given = {k: v for k, v in given.items() if v is not None}
        return TrainConfig.recipe(steps, lr, batch_size=self.batch_size if batch_size is None else batch_size,
                                  **{**self.recipe(steps, lr), **given})


TASK_SPECS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Make ``spec`` what ``train(spec.name, ...)`` runs (the last one registered wins)."""
    TASK_SPECS[spec.name] = spec
    return spec


_DECLARED_IN = {"translation": "minillm.apps.translation", "question_answering": "minillm.apps.question_answering"}


def task_spec(task: str) -> TaskSpec:
    """The :class:`TaskSpec` registered as ``task``."""
    if task in TASK_SPECS:
        return TASK_SPECS[task]
    if task in _DECLARED_IN:
        raise ValueError(f"task {task!r} is declared in {_DECLARED_IN[task]}: import it first "
                         f"(it registers the task)")
    raise ValueError(f"expected task in {sorted({*TASK_SPECS, *_DECLARED_IN})}, got {task!r}")


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run: the figures (JSON, :attr:`summary`) and the live objects.

    ``validation``: the scores of the last evaluation (of ``checkpoints/best`` for tasks
    scored on their best checkpoint; ``{}`` for tasks without validation data);
    ``test``: the held-out scores (``None`` where not computed); ``checkpoint``: the
    checkpoint the scores and ``load_run`` refer to (path, step, validation loss);
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
        out = {"task": self.task, "steps": self.steps, "train_loss": self.train_loss,
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
    if out is not None and rt.is_main:                       # before the data: refuse at once
        claim_run_dir(out, resume=resume, overwrite=overwrite, names=RUN_FILES)
    tc, cfg = run_config.train, run_config.model
    inputs = TaskInputs(data=data, tokenizer=tokenizer, run_config=run_config, runtime=rt,
                        options=MappingProxyType({**spec.options, **options}), source=source,
                        dataset=dataset)
    parts = spec.setup(inputs)
    tok = parts.tokenizer
    if out is not None and rt.is_main and resume:
        _check_resumable(out, run_config, parts.contract)
    model = getattr(rt.module, spec.model_class)(cfg, seed=tc.seed, **dict(parts.model_kwargs))
    if parts.init is not None:
        parts.init(model)
    model = rt.prepare(model)
    info = dict(parts.info)
    if out is not None and rt.is_main:
        _write_run(out, {"task": task, "source": source, "backend": rt.backend, "device": rt.device,
                         "fused": rt.runs_fused, "batch_size": tc.batch_size, "model_config": cfg.to_dict(),
                         "world_size": rt.world_size, "threads": training_threads(rt.backend), **info},
                   tok, parts.contract, run_config)
    trainer = Trainer(rt, model, tc.optimizer(rt, model), parts.train, tc, task=task, eval_data=parts.validation,
                      run_dir=out, tokenizer=tok.to_dict(), n_classes=parts.n_classes, progress=progress,
                      metadata={**info, "data": parts.contract, "run": run_config.where})
    result = trainer.fit(resume=resume)

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


def _check_resumable(out: Path, run_config: RunConfig, contract: dict) -> None:
    """A resumed run must be trained with the settings (:func:`check_resume`) and on the
    data it started with (the data contract's source and sha256)."""
    check_resume(out, run_config.train, batch_size=run_config.train.batch_size,
                 model_config=run_config.model.to_dict())
    try:                                          # the thread count the run recorded (issue 28, item 4)
        recorded_threads = json.loads((out / "run.json").read_text(encoding="utf-8")).get("threads")
    except (OSError, ValueError):
        recorded_threads = None
    check_resume_threads(recorded_threads, training_threads(run_config.backend), out)
    old_file = out / "data.json"
    if old_file.exists():
        old = json.loads(old_file.read_text(encoding="utf-8")).get("dataset", {})
        new = contract["dataset"]
        if old.get("sha256") != new.get("sha256") or old.get("source") != new.get("source"):
            raise ValueError(f"--resume {out}: the run was trained on {old.get('source')!r} "
                             f"(sha256 {str(old.get('sha256'))[:12]}...), got {new.get('source')!r} "
                             f"(sha256 {str(new.get('sha256'))[:12]}...); resume it on the same data")


def _write_run(out: Path, info: dict, tok, contract: dict, run_config: RunConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run_config.write(out)
    if hasattr(tok, "save"):
        tok.save(out / "tokenizer.json")                       # atomic, with the file mode open() gives
    else:
        (out / "tokenizer.json").write_text(json.dumps(tok.to_dict(), ensure_ascii=False, indent=1),
                                            encoding="utf-8")
    (out / "run.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    (out / "data.json").write_text(json.dumps(contract, indent=2), encoding="utf-8")


def _checkpoint_info(out: Path | None, trainer) -> dict | None:
    """The best checkpoint (lowest validation loss); the last one for runs without validation."""
    if out is None:
        return None
    if trainer.best_step is None:
        return {"path": str(out / "checkpoints" / "last"), "step": trainer.step, "validation_loss": None,
                "last_step": trainer.step}
    return {"path": str(out / "checkpoints" / "best"), "step": trainer.best_step,
            "validation_loss": trainer.best_val, "last_step": trainer.step}


# -- the training layer's three tasks -----------------------------------------------------

def _require_tokenizer(inputs: TaskInputs, task: str):
    if inputs.tokenizer is None:
        raise ValueError(f"task {task!r}: expected tokenizer=, the tokenizer the data was encoded with; got None")
    if inputs.data is None:
        raise ValueError(f"task {task!r}: expected data= as (train, validation, test) splits, got None")
    return inputs.tokenizer


def _causal_lm(inputs: TaskInputs) -> TaskParts:
    tok, splits = _require_tokenizer(inputs, "causal_lm"), inputs.data
    rt, tc, T = inputs.runtime, inputs.run_config.train, inputs.run_config.model.block_size
    train = CausalLMData(splits.train, T, tc.batch_size, tc.seed, rank=rt.rank, world_size=rt.world_size)
    contract = data_contract(dict(inputs.dataset or given_dataset(inputs.source, splits, "tokens")), tok, T)
    return TaskParts(train, causal_lm_eval_batches(splits.validation, T, EVAL_BATCH), contract, tok, data=splits)


def _masked_lm(inputs: TaskInputs) -> TaskParts:
    tok, splits = _require_tokenizer(inputs, "masked_lm"), inputs.data
    rt, tc, T = inputs.runtime, inputs.run_config.train, inputs.run_config.model.block_size
    masking = dict(mask_id=tok.mask_id, vocab_size=tok.vocab_size, special_ids=tok.special_ids)
    train = MaskedLMData(splits.train, T, tc.batch_size, seed=tc.seed, rank=rt.rank, world_size=rt.world_size,
                         **masking)
    validation = masked_lm_eval_batches(splits.validation, T, EVAL_BATCH, seed=tc.seed, **masking)
    contract = data_contract(dict(inputs.dataset or given_dataset(inputs.source, splits, "tokens")), tok, T)
    return TaskParts(train, validation, contract, tok, data=splits)


def _classification(inputs: TaskInputs) -> TaskParts:
    tok, data = _require_tokenizer(inputs, "classification"), inputs.data
    rt, tc, T = inputs.runtime, inputs.run_config.train, inputs.run_config.model.block_size
    label_names = list(data.train.label_names)
    encode = lambda texts: [tok.encode(t)[:T] for t in texts]  # noqa: E731
    train = ClassificationData(encode(data.train.texts), data.train.labels, tc.batch_size, pad_id=tok.pad_id,
                               max_len=T, seed=tc.seed, rank=rt.rank, world_size=rt.world_size)
    validation = classification_eval_batches(encode(data.validation.texts), data.validation.labels, EVAL_BATCH,
                                             pad_id=tok.pad_id, max_len=T)
    test = classification_eval_batches(encode(data.test.texts), data.test.labels, EVAL_BATCH,
                                       pad_id=tok.pad_id, max_len=T)
    contract = data_contract(dict(inputs.dataset or given_dataset(inputs.source, data, "rows")), tok, T,
                             label_names)
    encoder_state = inputs.options["encoder_state"]
    init = None if encoder_state is None else (lambda model: model.load_encoder_state(encoder_state))
    return TaskParts(train, validation, contract, tok,
                     info={"label_names": label_names, "pretrained": encoder_state is not None},
                     model_kwargs={"n_classes": len(label_names), "pooling": inputs.options["pooling"]},
                     n_classes=len(label_names), init=init, held_out=test, data=data)


def _classification_test(inputs: TaskInputs, parts: TaskParts, model, tok) -> dict:
    scores = evaluate_classifier(inputs.runtime, model, parts.held_out, parts.n_classes)
    return {**scores, "split": "test", "rows": len(inputs.data.test), "source": parts.contract["dataset"]["source"]}


# defaults: those of `minillm pretrain` and `minillm finetune` (the finetune ones: the demo's
# fine-tuning, 0.965-0.995 test accuracy over seeds 0-2; 300 steps at lr 1e-3 and batch 32
# stayed at chance: the word-order labels need more updates at a higher rate)
register_task(TaskSpec("causal_lm", "GPT", _causal_lm, steps=300, lr=3e-3, batch_size=16))
register_task(TaskSpec("masked_lm", "TransformerEncoder", _masked_lm, steps=300, lr=3e-3, batch_size=16))
register_task(TaskSpec("classification", "SequenceClassifier", _classification, test=_classification_test,
                       test_best=True, steps=600, lr=2e-3, batch_size=64,
                       options={"pooling": "mean", "encoder_state": None}))
