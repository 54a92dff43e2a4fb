"""What :class:`~minillm.train.training.Trainer` calls around its loop, one job each.

- :class:`Distribution`: the model as the step runs it (DistributedDataParallel under
  ``torchrun``, its gradients summed over the ranks; the model itself otherwise) and the
  sum of a number over the ranks;
- :class:`MetricsFiles`: ``metrics.jsonl`` (one JSON record per step, ``step`` the steps
  done, from 1; on resume the records of steps to be done again are dropped) and ``loss.png``;
- :class:`Checkpoints`: ``checkpoints/{last,best}`` written through
  :mod:`minillm.store.model_io` (atomic folders), and resuming from ``last``.

Each writes only where the trainer writes: a run folder, on rank 0 (``enabled``). The
trainer keeps the loop: the step, the schedule, skipping non-finite steps, Ctrl-C,
evaluation and the choice of the best checkpoint, progress.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..store import model_io

__all__ = ["Distribution", "MetricsFiles", "Checkpoints"]

logger = logging.getLogger("minillm")


class Distribution:
    r"""The runtime's ranks, as the trainer sees them (one rank: nothing to do).

    A distributed step computes the single-process step's loss over the global batch,
    the mean over its N counted targets (:func:`~minillm.train.tasks.counted`), whatever
    the split of those targets between the ranks (a masked-LM batch has 4 masked tokens
    on one rank and 3 on the other):

    .. math::

        L = \frac{1}{N} \sum_r S_r, \qquad N = \sum_r n_r

    with S_r the summed loss of rank r's n_r targets. So each rank backpropagates
    ``S_r / N = mean_r * n_r / N`` (:meth:`share`) and the gradients are *summed* over
    the ranks (:meth:`wrap`), not averaged: the mean of the ranks' means weighs a rank's
    target more where it has fewer.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    @property
    def active(self) -> bool:
        return self.runtime.world_size > 1

    def wrap(self, model):
        """``model`` in DistributedDataParallel on more than one rank, its gradients
        summed over the ranks in ``backward`` (DDP's default divides by the world size:
        a communication hook that only sums replaces it), else ``model`` itself."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel
        device = str(self.runtime.device)
        ids = [int(device.split(":")[-1] or 0)] if device.startswith("cuda") else None
        ddp = DistributedDataParallel(model, device_ids=ids)
        ddp.register_comm_hook(None, _all_reduce_sum)
        return ddp

    def sum(self, value: float) -> float:
        """The sum of ``value`` over the ranks (all-reduce, float64); ``value`` on one rank."""
        if not self.active:
            return value
        import torch
        import torch.distributed as dist
        t = torch.tensor([value], dtype=torch.float64, device=self.runtime.device)
        dist.all_reduce(t)
        return float(t.item())

    def share(self, loss, n_local: int):
        """This rank's part of the global batch's mean loss: ``loss`` (the mean over this
        rank's ``n_local`` counted targets) times ``n_local / N``, N the count over all
        ranks (0 where no rank has a counted target); ``loss`` itself on one rank."""
        if not self.active:
            return loss
        n_global = self.sum(float(n_local))
        return loss * (n_local / n_global if n_global else 0.0)


def _all_reduce_sum(state, bucket):
    """DDP communication hook: the bucket's gradients summed over the ranks (torch's
    default hook also divides them by the world size)."""
    import torch.distributed as dist
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda fut: fut.value()[0])


class MetricsFiles:
    """``run_dir/metrics.jsonl`` and ``run_dir/loss.png``; nothing without ``enabled``."""

    def __init__(self, run_dir, enabled: bool):
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.enabled = enabled and self.run_dir is not None
        self._no_plot_said = False           # "no loss.png, because ..." is said once per run

    @property
    def path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def append(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def truncate(self, after_step: int) -> None:
        """On resume from a checkpoint of ``after_step`` steps done: drop the records of
        steps ``> after_step`` (a record's ``step`` counts the steps done, from 1), which
        are done again."""
        if not self.enabled or not self.path.exists():
            return
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= after_step]
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def plot(self, title: str, loss_per: str = "token") -> None:
        """``loss.png`` from the records, its loss the mean per ``loss_per`` (``"token"``:
        with a perplexity axis; ``"example"``: a classifier's, with its validation accuracy);
        without matplotlib, skipped with a warning, once."""
        if not self.enabled:
            return
        try:
            from ..core.plots import plot_loss_curves
            plot_loss_curves(self.path, self.run_dir / "loss.png", title=title, loss_per=loss_per)
        except ImportError:
            if not self._no_plot_said:
                self._no_plot_said = True
                logger.warning("no loss.png: matplotlib is not installed (pip install 'minillm[pipeline]'); "
                               "the losses are in metrics.jsonl")


class Checkpoints:
    """``run_dir/checkpoints/<name>`` (``last``, ``best``); writes nothing without ``enabled``."""

    def __init__(self, run_dir, enabled: bool):
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.enabled = enabled and self.run_dir is not None

    def folder(self, name: str) -> Path:
        return self.run_dir / "checkpoints" / name

    def save(self, name: str, model, optimizer, *, step: int, tokenizer, extra: dict) -> None:
        if self.enabled:
            model_io.save_checkpoint(self.folder(name), model, optimizer, step=step, tokenizer=tokenizer,
                                     extra=extra)

    def resume(self, model, optimizer):
        """Load ``checkpoints/last`` into ``model`` and ``optimizer`` (every rank); returns
        the checkpoint (its step and extra)."""
        folder = self.folder("last")
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"--resume: no checkpoint to resume from: expected {folder}/config.json")
        return model_io.resume(folder, model, optimizer)
