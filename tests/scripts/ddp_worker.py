"""Run under torchrun by tests/train/test_distributed.py (and usable by hand):

    torchrun --nproc_per_node 2 tests/scripts/ddp_worker.py OUT STEPS

Each rank reads its shard of the global batch; DistributedDataParallel sums the
gradients of the ranks' shares of the loss. Rank 0 writes OUT/grads.npz (the gradients of the first step),
OUT/final.npz (the parameters after STEPS steps) and the run folder OUT/run.
"""
import sys
from pathlib import Path

import numpy as np

from minillm import ModelConfig
from minillm.store.runtime import Runtime
from minillm.train.tasks import CausalLMData
from minillm.train.training import TrainConfig, Trainer

GLOBAL_BATCH = 4
CONFIG = ModelConfig(vocab_size=29, block_size=8, d_model=16, n_heads=2, n_layers=2, dtype="float64")


def build(runtime, steps, run_dir):
    ids = np.random.default_rng(0).integers(0, CONFIG.vocab_size, 5000)
    model = runtime.module.GPT(CONFIG, seed=0)
    tc = TrainConfig(steps=steps, lr=1e-2, min_lr=1e-3, warmup_steps=1, eval_every=1000,
                     checkpoint_every=steps, seed=0)
    opt = runtime.module.AdamW(list(model.parameters()), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay)
    data = CausalLMData(ids, CONFIG.block_size, GLOBAL_BATCH, seed=0,      # the global batch
                        rank=runtime.rank, world_size=runtime.world_size)
    return Trainer(runtime, model, opt, data, tc, run_dir=run_dir, progress=False)


def first_step_grads(trainer):
    trainer.loss_and_gradients(trainer.train_data.batch(0))
    grads = {n: p.grad.detach().numpy().copy() for n, p in trainer.model.named_parameters()}
    trainer.optimizer.zero_grad()
    return grads


def main(out, steps):
    out = Path(out)
    runtime = Runtime.from_env("torch")
    trainer = build(runtime, steps, out / "run")
    grads = first_step_grads(trainer)
    trainer.fit()
    if runtime.is_main:
        np.savez(out / "grads.npz", **grads)
        np.savez(out / "final.npz", **{n: p.detach().numpy() for n, p in trainer.model.named_parameters()})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
