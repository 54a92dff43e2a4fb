"""One trainer for both backends: pretraining (causal or masked LM) and fine-tuning.

The step is the one every backend shares (chapter sections 3.3 and 3.4)::

    logits, loss = model(**batch)     # batch: idx, targets / labels, attention_mask
    loss.backward()                   # reference: the hand-written backward pass
    grad_norm = clip_grad_norm(model.parameters(), grad_clip)
    opt.lr = warmup_cosine(step, ...); opt.step(); opt.zero_grad()

Around it: evaluation every ``eval_every`` steps, the best checkpoint (by the task's
own score: ``best_by``) and the last, per-step metrics in JSON lines (``step``: the steps
done, 1 to ``steps``, as the progress lines and the checkpoints count them), progress on
stderr (a bar in a terminal, a line every few seconds anywhere else:
:class:`~minillm.core.progress.Progress`), loss curves as PNG, and the robustness the
chapter's loop lacks:

- a non-finite loss or gradient skips the step (counted); ``max_bad_steps`` in a row
  stop the run with :class:`TrainingDiverged`, whose message names the checkpoint left
  untouched, or says that none was written; a skipped step is neither evaluated nor
  checkpointed (nothing is saved at the stop either: the steps before it, finite or not,
  may already have wrecked the weights);
- Ctrl-C finishes the current step, writes the last checkpoint, then raises
  ``KeyboardInterrupt``;
- the batches are a pure function of ``(seed, step)``, so ``resume=True`` continues
  exactly: the same losses as a run that was never interrupted.

Under ``torchrun`` the torch model is wrapped in DistributedDataParallel; each rank's
batch source yields that rank's shard of the global batch (see :mod:`minillm.train.tasks`),
each rank's loss is its summed loss over the global count of counted targets and the
gradients are summed over the ranks, so a step equals the single-process step on the
global batch; only rank 0 writes files and progress.

The trainer keeps the loop; three collaborators (:mod:`minillm.train.collaborators`) do
the jobs around it: :class:`~minillm.train.collaborators.Distribution` (the wrapping and
the sums over ranks), :class:`~minillm.train.collaborators.MetricsFiles`
(``metrics.jsonl``, ``loss.png``) and :class:`~minillm.train.collaborators.Checkpoints`
(``checkpoints/{last,best}``, resuming).
"""
from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol

import numpy as np

from ..core.param_groups import DECAY_RULES, decay_groups
from ..core.plots import LOSS_UNITS
from ..core.progress import Progress
from ..core.schedule import warmup_cosine
from ..core.lora import LoRAConfig
from ..store.lora_adapters import trainable_parameters
from ..store.run_folder import RunFolder
from .collaborators import Checkpoints, Distribution, MetricsFiles
from .evaluation import IGNORE_INDEX, evaluate_lm
from .tasks import counted

__all__ = ["TrainConfig", "Trainer", "TrainResult", "TrainingDiverged", "BatchSource"]

logger = logging.getLogger("minillm")

class BatchSource(Protocol):
    """Anything with ``batch(step) -> dict`` of NumPy arrays: the model's keyword
    arguments for this rank's part of that step's batch, a pure function of
    (seed, step, rank)."""

    def batch(self, step: int) -> Mapping[str, np.ndarray]: ...


class TrainingDiverged(RuntimeError):
    """Too many non-finite steps in a row."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run (written to the run folder as ``train_config.json``).

    ``batch_size`` is the global batch (rows per optimizer step, all ranks together).
    :meth:`recipe` is the default policy every training command and task starts from.
    """

    steps: int = 300
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.95)
    grad_clip: float | None = 1.0
    eval_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0
    max_bad_steps: int = 5
    batch_size: int = 16
    decayed: str = "matrices"    # which tensors weight decay shrinks (minillm.core.param_groups)
    lora: str | None = None      # "r,alpha,targets": train LoRA adapters only (minillm.core.lora.LoRAConfig)

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {self.steps!r}")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if self.warmup_steps < 0 or self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps), got {self.warmup_steps} with steps={self.steps}")
        if not self.lr > 0 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"expected lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if self.decayed not in DECAY_RULES:
            raise ValueError(f"decayed must be one of {DECAY_RULES}, got {self.decayed!r}")
        for name in ("eval_every", "checkpoint_every", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.lora is not None:                    # one spelling, so a resume compares equal
            lora = self.lora if isinstance(self.lora, LoRAConfig) else LoRAConfig.parse(self.lora)
            object.__setattr__(self, "lora", str(lora))

    @property
    def lora_config(self) -> LoRAConfig | None:
        """``lora`` parsed (``None``: every parameter trains)."""
        return None if self.lora is None else LoRAConfig.parse(self.lora)

    @classmethod
    def recipe(cls, steps: int, lr: float, *, batch_size: int = 16, warmup_steps: int | None = None,
               eval_every: int | None = None, checkpoint_every: int | None = None,
               min_lr: float | None = None, weight_decay: float = 0.01, grad_clip: float | None = 1.0,
               seed: int = 0, **kwargs) -> "TrainConfig":
        """The default training policy, written once (the CLI, the demo and every task
        start from it); each argument left at ``None`` takes its rule:

        - ``warmup_steps``: 5% of ``steps`` (at least 1, at most ``steps - 1``);
        - ``min_lr``: ``lr / 10``, the floor of the cosine decay;
        - ``eval_every``: ``steps / 4`` (at least 1): four evaluations per run;
        - ``checkpoint_every``: ``eval_every``.

        ``kwargs``: the other fields (``betas``, ``max_bad_steps``) as in the class.
        """
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        if warmup_steps is None:
            warmup_steps = max(1, steps // 20) if steps > 1 else 0
        every = eval_every if eval_every is not None else max(1, steps // 4)
        return cls(steps=steps, lr=lr, min_lr=lr / 10 if min_lr is None else min_lr,
                   warmup_steps=min(warmup_steps, steps - 1), weight_decay=weight_decay,
                   grad_clip=grad_clip, eval_every=every,
                   checkpoint_every=every if checkpoint_every is None else checkpoint_every,
                   seed=seed, batch_size=batch_size, **kwargs)

    def lr_at(self, step: int) -> float:
        # step + 1: the first update already moves (a warmup starting at 0 wastes it)
        return warmup_cosine(step + 1, max_lr=self.lr, warmup_steps=self.warmup_steps,
                             total_steps=self.steps, min_lr=self.min_lr)

    def optimizer(self, runtime, model):
        """The AdamW this config describes, over ``model``'s parameters in ``runtime``'s
        backend (its rate is then set each step from :meth:`lr_at`), in two groups
        (:func:`~minillm.core.param_groups.decay_groups`): with ``decayed="matrices"``
        (the default, nanoGPT's rule) ``weight_decay`` shrinks the tensors of two or more
        dimensions (linear weights, embeddings) and never biases or LayerNorm gains;
        ``decayed="all"`` shrinks every tensor. A model with LoRA adapters gives the
        optimizer only what trains (:func:`~minillm.store.lora_adapters.trainable_parameters`:
        the adapters' A and B, and a new head)."""
        groups = decay_groups(trainable_parameters(model), self.weight_decay, self.decayed)
        opt = runtime.module.AdamW(groups, lr=self.lr, betas=tuple(self.betas), weight_decay=self.weight_decay)
        return runtime.prepare_optimizer(opt)   # torch: the runtime's path (foreach step or not)


@dataclass
class TrainResult:
    step: int
    last_loss: float
    best_val: float | None
    skipped_steps: int
    run_dir: Path | None
    losses: list = field(default_factory=list)   # (step, loss) of this call's steps


class Trainer:
    """Trains ``model`` on ``train_data`` with ``optimizer`` in ``runtime``.

    ``task`` names the run (its checkpoints record it; ``load_run`` reads it back);
    ``eval_data`` is a list of batches (the model's keyword arguments), scored by
    ``score(runtime, model, eval_data) -> {"loss": ..., ...}`` (default: the LM's loss and
    perplexity; a task's own: :attr:`minillm.train.entry.TaskSpec.score`) every
    ``eval_every`` steps and at the end. ``best_by = (key, "min" | "max")`` chooses
    ``checkpoints/best``: the evaluation with the lowest (highest) ``scores[key]``, ties
    broken by the lower loss (a task's own: :attr:`minillm.train.spec.TaskSpec.best_by`);
    ``loss_per`` (``"token"`` or ``"example"``) says what the loss is a mean over, for
    ``loss.png`` (:func:`minillm.core.plots.loss_figure`). With
    ``run_dir`` the trainer writes ``metrics.jsonl``, ``checkpoints/{last,best}``,
    ``loss.png`` and ``train_config.json`` there; ``tokenizer`` (its ``to_dict()``) and
    ``metadata`` (the task's settings, label names) go into every checkpoint, so a
    checkpoint folder is all that generation, evaluation and serving need. ``run_dir`` may
    be a :class:`~minillm.store.run_folder.RunFolder` already claimed (and checked for a
    resume) by :func:`minillm.train.entry.train`; the trainer then does neither again.

    The runtime decides the torch backend's path: the trainer passes ``model`` and
    ``optimizer`` through ``runtime.prepare`` / ``runtime.prepare_optimizer``, so a
    default ``Runtime("torch")`` trains on the fast path (torch's kernels, the foreach
    Adam step) and ``Runtime("torch", fused=False)`` on the explicit formulas.

    ``progress``: ``True`` reports on stderr (:class:`~minillm.core.progress.Progress`: the bar
    in a terminal, a line every 10 s elsewhere), ``False`` is silent, and a
    :class:`~minillm.core.progress.Progress` reports as it is set up (stream, interval,
    clock). Only rank 0 reports.
    """

    def __init__(self, runtime, model, optimizer, train_data: BatchSource, config: TrainConfig, *,
                 task: str = "causal_lm", eval_data=None, run_dir=None, metadata: dict | None = None,
                 tokenizer: dict | None = None, score: Callable = evaluate_lm,
                 best_by: tuple[str, str] = ("loss", "min"), loss_per: str = "token",
                 progress: bool | Progress = True, on_step: Callable[[int, float], None] | None = None,
                 objective: Callable | None = None):
        if not isinstance(task, str) or not task:
            raise ValueError(f"expected task as a non-empty str (the run's task name), got {task!r}")
        if (not isinstance(best_by, tuple) or len(best_by) != 2 or not isinstance(best_by[0], str)
                or best_by[1] not in ("min", "max")):
            raise ValueError(f"expected best_by as (score name, 'min' or 'max'), got {best_by!r}")
        if loss_per not in LOSS_UNITS:
            raise ValueError(f"expected loss_per in {LOSS_UNITS}, got {loss_per!r}")
        model, optimizer = runtime.prepare(model), runtime.prepare_optimizer(optimizer)
        self.runtime, self.model, self.optimizer = runtime, model, optimizer
        self.train_data, self.eval_data, self.config, self.task = train_data, eval_data, config, task
        self.folder = None if run_dir is None else run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
        self.run_dir = None if self.folder is None else self.folder.path
        self.metadata, self.tokenizer = dict(metadata or {}), tokenizer
        self.score, self.best_by, self.progress, self.on_step = score, best_by, progress, on_step
        self.objective = objective           # objective(model, **batch) -> loss; None: model(**batch)[1]
        self.loss_per = loss_per             # "token" or "example": what loss.png says the loss is a mean over
        self.step, self.skipped_steps, self.best_val = 0, 0, None   # best_val: the best's validation loss
        self.best_step: int | None = None    # the step of checkpoints/best (chosen by best_by)
        self.best_scores: dict | None = None  # its validation scores
        self.last_eval: dict = {}            # the latest evaluation's scores
        # the collaborators (minillm.train.collaborators): ranks, metrics files, checkpoints
        self.distribution = Distribution(runtime)
        self.metrics = MetricsFiles(self.run_dir, runtime.is_main)
        self.checkpoints = Checkpoints(self.run_dir, runtime.is_main)
        self._ddp_model = self.distribution.wrap(model)

    @property
    def _writes(self) -> bool:
        return self.run_dir is not None and self.runtime.is_main

    def _ckpt(self, name: str) -> Path:
        return self.checkpoints.folder(name)

    # -- one step ---------------------------------------------------------------------
    def _inputs(self, batch: Mapping[str, np.ndarray]) -> dict:
        return {k: self.runtime.tensor(v) for k, v in batch.items()}

    def _train_step(self, step: int) -> tuple[float, float, int]:
        with self.runtime.threads():                 # torch: NumPy's BLAS off its cores
            batch = self.train_data.batch(step)      # this rank's rows of the global batch
            tokens = int(np.asarray(batch["idx"]).size) * self.runtime.world_size
            self.optimizer.lr = self.config.lr_at(step)
            loss_value = self.loss_and_gradients(batch)
            clip = self.config.grad_clip if self.config.grad_clip is not None else math.inf
            grad_norm = float(self.runtime.module.clip_grad_norm(trainable_parameters(self.model), clip))
            if math.isfinite(loss_value) and math.isfinite(grad_norm):
                self.optimizer.step()
            self.optimizer.zero_grad()
        return loss_value, grad_norm, tokens

    def loss_and_gradients(self, batch: Mapping[str, np.ndarray]) -> float:
        """The loss of the global batch (this rank holds ``batch``, its rows of it), and
        its gradient left in every parameter's ``.grad``: under ``torchrun`` each rank
        backpropagates its share, summed over the ranks
        (:class:`~minillm.train.collaborators.Distribution`), so the step equals the
        single-process step on the global batch."""
        self.model.train()
        with self.runtime.autocast():
            if self.objective is None:
                _, loss = self._ddp_model(**self._inputs(batch))
            else:
                loss = self.objective(self._ddp_model, **self._inputs(batch))
        loss = self.distribution.share(loss, counted(batch))   # this rank's sum / the global count
        loss.backward()
        return self.distribution.sum(loss.item())

    # -- evaluation -------------------------------------------------------------------
    def evaluate(self) -> dict:
        if not self.eval_data:
            return {}
        return self.score(self.runtime, self.model, self.eval_data)

    # -- files: the collaborators write them ------------------------------------------
    def _log(self, record: dict) -> None:
        self.metrics.append(record)

    def save(self, name: str = "last") -> None:
        """Write ``checkpoints/<name>``: the model, the optimizer, the step, the tokenizer,
        and what a resumed run and ``load_run`` need (task, counters, configs, metadata)."""
        extra = {"task": self.task, "skipped_steps": self.skipped_steps, "best_val": self.best_val,
                 "best_step": self.best_step, "best_scores": self.best_scores,
                 "train_config": _jsonable(asdict(self.config)), **self.metadata}
        self.checkpoints.save(name, self.model, self.optimizer, step=self.step, tokenizer=self.tokenizer,
                              extra=extra)

    def _resume(self) -> None:
        folder = self._ckpt("last")
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"--resume: no checkpoint to resume from: expected {folder}/config.json")
        if not self.folder.resume_checked:
            self.folder.check_resume(_jsonable(asdict(self.config)))
        ckpt = self.checkpoints.resume(self.model, self.optimizer)
        self.step = int(ckpt.step)
        extra = ckpt.extra or {}
        self.skipped_steps = int(extra.get("skipped_steps", 0))
        self.best_val = extra.get("best_val")
        self.best_step = extra.get("best_step")
        self.best_scores = extra.get("best_scores")
        self.metrics.truncate(self.step)
        if self.step >= self.config.steps:
            logger.warning("the run in %s is finished: it is at step %d of %d already, so there is "
                           "nothing to train (its checkpoints and metrics are unchanged)",
                           self.run_dir, self.step, self.config.steps)
        else:
            logger.info("resumed from %s at step %d", folder, self.step)

    # -- the loop ---------------------------------------------------------------------
    def fit(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        """Train to ``config.steps``. With a ``run_dir`` that already holds a run
        (metrics, checkpoints), ``resume=True`` continues it from ``checkpoints/last`` and
        ``overwrite=True`` deletes it first (:meth:`RunFolder.claim`); neither is a
        :class:`~minillm.store.run_folder.RunExists` error, so a finished run is never
        replaced silently. A folder claimed by the caller is not claimed again."""
        cfg = self.config
        if self.run_dir is not None:
            if self._writes and not self.folder.claimed:
                self.folder.claim(resume=resume, overwrite=overwrite)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if resume:
                self._resume()
            if self._writes:
                (self.run_dir / "train_config.json").write_text(
                    json.dumps(_jsonable(asdict(cfg)), indent=2), encoding="utf-8")
        elif resume or overwrite:
            raise ValueError(f"{'resume' if resume else 'overwrite'}=True needs a run_dir, got run_dir=None")

        progress = self._progress()
        losses, bad_in_a_row, loss_value = [], 0, float("nan")
        interrupted, restore_sigint = _defer_sigint()
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                loss_value, grad_norm, tokens = self._train_step(self.step)   # batch and lr of index self.step
                self.runtime.synchronize()
                dt = time.perf_counter() - t0
                done = self.step + 1        # steps done with this one: what metrics, progress and checkpoints say
                finite = math.isfinite(loss_value) and math.isfinite(grad_norm)
                record = {"step": done, "loss": loss_value if finite else None,
                          "lr": self.optimizer.lr, "grad_norm": grad_norm if finite else None,
                          "tokens_per_s": tokens / dt if dt > 0 else None}
                if not finite:
                    self.skipped_steps += 1
                    bad_in_a_row += 1
                    record["skipped"] = True
                    logger.warning("step %d: non-finite loss or gradient (loss=%s, grad norm=%s); "
                                   "step skipped (%d in a row)", done, loss_value, grad_norm, bad_in_a_row)
                    if bad_in_a_row >= cfg.max_bad_steps:
                        self._log(record)
                        raise TrainingDiverged(self._diverged_message(bad_in_a_row, done))
                else:
                    bad_in_a_row = 0
                    losses.append((done, loss_value))
                self.step += 1
                if progress is not None:
                    progress.update(self.step, loss_value, tokens, self.optimizer.lr, dt)
                # a skipped step (the weights may be wrecked: NaN logits) is neither evaluated nor saved
                if bad_in_a_row and (self.step % cfg.eval_every == 0 or self.step % cfg.checkpoint_every == 0
                                     or self.step == cfg.steps):
                    logger.warning("step %d was skipped: no evaluation and no checkpoint after it", self.step)
                elif (self.step % cfg.eval_every == 0 or self.step == cfg.steps) and self.runtime.is_main:
                    self._evaluate_and_keep_best(record, progress)   # other ranks wait at the next step
                self._log(record)
                if not bad_in_a_row and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps):
                    self.save("last")
                if self.on_step is not None:
                    self.on_step(self.step, loss_value)
                if interrupted:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            # raised at a step boundary, so the saved state is exactly `self.step` steps in
            logger.warning("interrupted after step %d: saving the last checkpoint", self.step)
            self.save("last")
            raise
        finally:
            restore_sigint()
            if progress is not None:
                progress.close()
        self._report_best(progress)
        self._plot()
        return TrainResult(self.step, loss_value, self.best_val, self.skipped_steps, self.run_dir, losses)

    def _evaluate_and_keep_best(self, record: dict, progress: Progress | None = None) -> None:
        t0 = time.perf_counter()
        scores = self.evaluate()
        if not scores:
            return
        if progress is not None:
            progress.evaluated(self.step, scores, time.perf_counter() - t0)
        self.last_eval = scores
        record["val_loss"] = scores["loss"]
        for key in ("perplexity", "accuracy", "f1"):
            if key in scores:
                record[f"val_{key}"] = scores[key]
        if self._is_better(scores):
            self.best_val, self.best_step = scores["loss"], self.step
            self.best_scores = {k: float(v) for k, v in scores.items()     # the figures, not a confusion matrix
                                if isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.save("best")

    def _is_better(self, scores: dict) -> bool:
        """Whether ``scores`` beat those of ``checkpoints/best`` by ``best_by`` (ties: the lower loss)."""
        key, mode = self.best_by
        if key not in scores:
            raise ValueError(f"best_by={self.best_by!r}: the scores have no {key!r}, got {sorted(scores)}")
        if self.best_scores is None:
            return True
        new, old = scores[key], self.best_scores[key]
        if new != old:
            return new > old if mode == "max" else new < old
        return scores["loss"] < self.best_scores["loss"]

    @property
    def best_rule(self) -> str:
        """How ``checkpoints/best`` is chosen, in words (from ``best_by``)."""
        key, mode = self.best_by
        return f"{'highest' if mode == 'max' else 'lowest'} validation {key}" + \
            ("" if key == "loss" else ", ties: lowest loss")

    def best_description(self) -> str | None:
        """Which checkpoint was kept as ``best``, why, and its validation scores, in a line
        (``None``: no evaluation, no best checkpoint)."""
        if self.best_step is None:
            return None
        figures = "  ".join(f"{k} {v:.4g}" for k, v in self.best_scores.items())
        return (f"kept checkpoints/best: step {self.best_step}/{self.config.steps} ({self.best_rule}): "
                f"validation {figures}")

    def _report_best(self, progress: Progress | None) -> None:
        line = self.best_description()
        if line is None or not self.runtime.is_main:
            return
        if progress is not None:
            progress.note(line)
        else:
            logger.info("%s", line)

    def _diverged_message(self, bad_in_a_row: int, done: int) -> str:
        """What a run stopped for non-finite steps says: only checkpoints that exist."""
        head = (f"{bad_in_a_row} steps in a row had a non-finite loss or gradient (the last: step {done}); "
                f"stopping.")
        last = None if self.run_dir is None else self._ckpt("last")
        if last is None:
            return f"{head} No checkpoint is kept (no run folder); try a lower lr or a smaller grad_clip."
        if not (last / "config.json").exists():
            return (f"{head} No checkpoint was written (the first is due after step "
                    f"{min(self.config.checkpoint_every, self.config.steps)}, and none is saved after a skipped "
                    f"step). Start again with a lower --lr (or a smaller --grad-clip) and --overwrite.")
        step = json.loads((last / "trainer_state.json").read_text(encoding="utf-8"))["step"]
        return (f"{head} The last checkpoint, {last}, is of step {step} (its weights may already be "
                f"harmed: --resume replays the same learning rate). Start again with a lower --lr (or a "
                f"smaller --grad-clip) and --overwrite.")

    def _progress(self) -> Progress | None:
        """The run's reporter, started at the current step (rank 0 only)."""
        if not self.progress or not self.runtime.is_main:
            return None
        name = self.metadata.get("task", self.task)      # translation, question_answering: theirs
        progress = self.progress if isinstance(self.progress, Progress) else Progress(str(name))
        progress.start(self.config.steps, initial=self.step)
        return progress

    def _plot(self) -> None:
        self.metrics.plot(f"{self.task} ({self.runtime.backend})", self.loss_per)


class _Flag:
    def __init__(self):
        self.set = False

    def __bool__(self):
        return self.set


def _defer_sigint():
    """Ctrl-C during a step is held until the step is done (so the checkpoint written
    on interrupt is a consistent state); a second Ctrl-C interrupts at once.

    Returns ``(flag, restore)``. Outside the main thread, signals cannot be caught and
    Ctrl-C behaves as usual."""
    flag = _Flag()
    if threading.current_thread() is not threading.main_thread():
        return flag, lambda: None
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if flag.set:
            raise KeyboardInterrupt
        flag.set = True
        logger.warning("Ctrl-C: stopping after this step (press again to stop at once)")

    signal.signal(signal.SIGINT, handler)
    return flag, lambda: signal.signal(signal.SIGINT, previous)


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
