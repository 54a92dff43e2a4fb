"""A whole training run against the ``torch.nn`` yardstick running the same loop (issue 16).

nanoGPT's CPU "baby" recipe: a 4-layer, 4-head, d_model 128 GPT, block 64, batch 12,
AdamW, 2,000 steps, the learning rate warmed up over 100 steps to 1e-3 and cosine-decayed
to 1e-4, gradients clipped at 1.0, character-level text (here the embedded Python
documentation, split 90/5/5 in order by ``minillm prepare``).

1. ``minillm pretrain`` trains it on the torch backend's fast path (the default), as a
   user runs it: progress, validation every 500 steps, ``metrics.jsonl``, checkpoints;
2. the yardstick (benchmarks/yardstick.py, a GPT written with ``torch.nn`` modules and,
   as nanoGPT, ``F.scaled_dot_product_attention(is_causal=True)``) starts from the same
   initial weights (copied from minillm's GPT of seed 0) and runs the same loop: the same batches (``minillm.train.tasks.CausalLMData`` with the
   same seed), the same schedule and clipping, ``torch.optim.AdamW`` (foreach), the same
   validation batches at the same steps, and nothing else.

Reported: the wall time of each (the CLI's includes its start-up, data loading,
validation and checkpoints), their ratio (target: at most 1.05), and the final
validation loss of each (target: within 0.02 nats). Thread counts as set by
``--threads`` (NumPy's BLAS and torch alike).

    .venv/bin/python benchmarks/bench_whole_run.py --threads 2 [--steps 2000]
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import _common
from harness.machine import environment  # benchmarks/harness/, beside this script

from minillm.core.threads import thread_limit

RECIPE = {"n_layers": 4, "n_heads": 4, "d_model": 128, "block_size": 64, "batch_size": 12,
          "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 100, "weight_decay": 0.1, "grad_clip": 1.0}


def _warmup(steps: int) -> int:
    """The recipe's 100 warmup steps (5% of 2,000); 5% of a shorter trial run."""
    return min(RECIPE["warmup_steps"], steps // 20)


def minillm_run(data: Path, out: Path, steps: int) -> tuple[float, float]:
    from minillm.cli import main
    r = RECIPE
    args = ["pretrain", "--data", str(data), "--out", str(out), "--steps", str(steps), "--backend", "torch",
            "--n-layers", str(r["n_layers"]), "--n-heads", str(r["n_heads"]), "--d-model", str(r["d_model"]),
            "--block-size", str(r["block_size"]), "--batch-size", str(r["batch_size"]), "--lr", str(r["lr"]),
            "--warmup-steps", str(_warmup(steps)), "--weight-decay", str(r["weight_decay"]),
            "--grad-clip", str(r["grad_clip"])]
    start = time.perf_counter()
    if main(args) != 0:
        raise SystemExit("minillm pretrain failed")
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return wall, float([rec for rec in records if "val_loss" in rec][-1]["val_loss"])


def yardstick_run(data: Path, steps: int) -> tuple[float, float]:
    import numpy as np
    import torch

    from minillm.core.config import ModelConfig
    from minillm.core.schedule import warmup_cosine
    from minillm.store.runtime import Runtime
    from minillm.train.evaluation import EVAL_BATCH, evaluate_lm
    from minillm.train.pipeline import load_prepared
    from minillm.train.tasks import CausalLMData, causal_lm_eval_batches
    from yardstick import PlainGPT

    r = RECIPE
    start = time.perf_counter()
    tok, splits = load_prepared(data)
    config = ModelConfig(vocab_size=tok.vocab_size, block_size=r["block_size"], d_model=r["d_model"],
                         n_heads=r["n_heads"], n_layers=r["n_layers"])
    # the same initial weights as `minillm pretrain --seed 0` (GPT-2's init), so that the
    # two runs differ only in their kernels and optimizer code, and their losses compare
    from minillm import torch_backend
    model = PlainGPT(config, sdpa=True).load_minillm_weights(torch_backend.GPT(config, seed=0).state_dict())
    # nanoGPT's groups, as minillm's trainer: decay the tensors of 2+ dimensions only
    groups = [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": r["weight_decay"]},
              {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=r["lr"], foreach=True)
    batches = CausalLMData(splits.train, r["block_size"], r["batch_size"], seed=0)
    val = causal_lm_eval_batches(splits.validation, r["block_size"], EVAL_BATCH)
    runtime, every, loss = Runtime("torch"), max(1, steps // 4), math.nan
    for step in range(steps):
        lr = warmup_cosine(step + 1, max_lr=r["lr"], warmup_steps=_warmup(steps), total_steps=steps,
                           min_lr=r["min_lr"])
        for group in opt.param_groups:
            group["lr"] = lr
        batch = batches.batch(step)
        _, train_loss = model(torch.from_numpy(np.asarray(batch["idx"])), torch.from_numpy(np.asarray(batch["targets"])))
        train_loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % every == 0 or step + 1 == steps:
            loss = evaluate_lm(runtime, model, val)["loss"]
    return time.perf_counter() - start, float(loss)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (default: %(default)s, the recipe's)")
    a = p.parse_args()
    with thread_limit(a.threads) as info, tempfile.TemporaryDirectory() as tmp:
        from minillm.cli import main as cli
        data = Path(tmp) / "data"
        if cli(["prepare", "--corpus", "python_docs", "--tokenizer", "char", "--out", str(data)]) != 0:
            raise SystemExit("minillm prepare failed")
        yard_wall, yard_loss = yardstick_run(data, a.steps)
        ours_wall, ours_loss = minillm_run(data, Path(tmp) / "run", a.steps)
    env = environment("cpu")
    print(f"Machine: {env}\nthreads: {info}\n")
    print("| run | steps | wall s | validation loss |\n|---|---:|---:|---:|")
    print(f"| torch.nn yardstick, same loop | {a.steps} | {yard_wall:.1f} | {yard_loss:.4f} |")
    print(f"| minillm pretrain (fast path) | {a.steps} | {ours_wall:.1f} | {ours_loss:.4f} |")
    ratio, gap = ours_wall / yard_wall, ours_loss - yard_loss
    print(f"\nwall-time ratio {ratio:.3f} (target <= 1.05; one run of each, so no interval and no verdict: "
          "the ratio's spread needs several runs, as minillm bench's train-step rounds give); "
          f"validation loss difference {gap:+.4f} (target |d| <= 0.02: {'met' if abs(gap) <= 0.02 else 'NOT met'})")


if __name__ == "__main__":
    main()
