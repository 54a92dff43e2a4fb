"""Run under torchrun by tests/train/test_distributed.py (and usable by hand):

    torchrun --nproc_per_node 2 tests/scripts/ddp_tasks_worker.py OUT

For every task, the first step's loss and gradients of a tiny float64 model on a global
batch of GLOBAL_BATCH rows, built as :func:`minillm.train.entry.train` builds them (the
task's own batch source, split by rank). Each rank writes OUT/<task>.rank<r>.npz: the
gradients by parameter name, the loss and this rank's count of counted targets.
"""
import dataclasses
import sys
from pathlib import Path
from types import MappingProxyType

import numpy as np

import minillm.apps.question_answering as qa
import minillm.apps.translation as translation
from minillm import ModelConfig
from minillm.data import CharTokenizer, Splits, WordTokenizer, sentiment
from minillm.store.runtime import Runtime
from minillm.train.entry import TaskInputs, task_spec
from minillm.train.run_config import RunConfig
from minillm.train.tasks import counted
from minillm.train.training import TrainConfig, Trainer

GLOBAL_BATCH = 8
TASKS = ("causal_lm", "masked_lm", "classification", "translation", "question_answering")
TEXT = "the cat sat on the mat. the dog sat on the log. " * 30
SMALL = dict(d_model=16, n_heads=2, n_layers=1, d_ff=32, dtype="float64", dropout=0.0)


def _inputs(task: str, runtime) -> TaskInputs:
    """The data, tokenizer and run configuration of ``task``, the same on every rank."""
    data = tok = None
    options = dict(task_spec(task).options)
    if task in ("causal_lm", "masked_lm"):
        tok = CharTokenizer.train(TEXT)
        ids = np.asarray(tok.encode(TEXT), dtype=np.int64)
        data, config = Splits(ids[:1000], ids[1000:1200], ids[1200:1400]), ModelConfig(
            vocab_size=tok.vocab_size, block_size=8, **SMALL)
    elif task == "classification":
        data = sentiment(n=200, seed=0)
        tok = WordTokenizer.train("\n".join(data.train.texts), max_size=200)
        config = ModelConfig(vocab_size=tok.vocab_size, block_size=24, **SMALL)
    elif task == "translation":
        config = dataclasses.replace(translation.TRANSLATION_CONFIG, **SMALL)
        options.update(n_train=64, n_test=4)
    else:
        config = dataclasses.replace(qa.QA_CONFIG, **SMALL)
        options.update(n_train=64, n_test=4)
    tc = TrainConfig.recipe(2, 1e-2, batch_size=GLOBAL_BATCH)
    return TaskInputs(data=data, tokenizer=tok, run_config=RunConfig(config, tc, backend="torch"),
                      runtime=runtime, options=MappingProxyType(options))


def first_step(task: str, runtime, part: tuple[int, int] | None = None) -> dict:
    """``{"grads": {name: array}, "loss": float, "count": int, "batch": dict}`` of step 0
    on this rank. ``part=(r, world_size)`` (one process): the batch rank r of world_size
    would take, its mean loss and gradient alone (what each rank computed before the
    loss was normalised by the global count)."""
    inputs = _inputs(task, runtime)
    spec, tc = task_spec(task), inputs.run_config.train
    setup_rt = inputs.runtime if part is None else Runtime("torch", rank=part[0], world_size=part[1])
    parts = spec.setup(dataclasses.replace(inputs, runtime=setup_rt))
    model = getattr(runtime.module, spec.model_class)(inputs.run_config.model, seed=0, **dict(parts.model_kwargs))
    model = runtime.prepare(model)
    trainer = Trainer(runtime, model, tc.optimizer(runtime, model), parts.train, tc, task=task,
                      score=spec.score, progress=False)
    batch = parts.train.batch(0)
    loss = trainer.loss_and_gradients(batch)
    grads = {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    return {"grads": grads, "loss": loss, "count": counted(batch), "batch": batch}


def main(out):
    out = Path(out)
    runtime = Runtime.from_env("torch")
    for task in TASKS:
        r = first_step(task, runtime)
        np.savez(out / f"{task}.rank{runtime.rank}.npz", loss=r["loss"], count=r["count"], **r["grads"])


if __name__ == "__main__":
    main(sys.argv[1])
