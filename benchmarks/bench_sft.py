"""Instruction tuning (issue 26) on the demo-size GPT: the held-out exact match per task
after SFT (packing against padding: bench_packing.py).

A demo-size GPT (4 layers, d_model 128, 4 heads; block 128, since an extractive-QA
   conversation takes 85 tokens on average with that BPE, more than the demo's 64) pretrained
   on the Python docs (or the run given with ``--base``), then tuned with ``minillm sft``'s
   task on the embedded set; prints each task's exact match on its 50 held-out rows (goal:
   >= 0.9 each) and the seconds each stage took.

    python benchmarks/bench_sft.py [--threads 2] [--pretrain-steps 1200] [--sft-steps 600]
        [--base RUN] [--out runs/bench-sft]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser  # noqa: E402

GOAL = 0.9



def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--pretrain-steps", type=int, default=1200)
    p.add_argument("--sft-steps", type=int, default=600)
    p.add_argument("--base", type=Path, default=None, help="a causal_lm run to tune (default: pretrain one)")
    p.add_argument("--out", type=Path, default=Path("runs/bench-sft"))
    a = p.parse_args()

    from minillm.core.threads import thread_limit
    from minillm.data import python_docs, split_contiguous
    from minillm.train import pipeline

    with thread_limit(a.threads):
        text = python_docs()
        tok = pipeline.train_tokenizer("bpe", text, vocab_size=1024)
        import minillm.apps  # noqa: F401  (registers sft)
        from minillm.core.config import ModelConfig
        from minillm.train.entry import train
        from minillm.train.run_config import RunConfig
        from minillm.train.training import TrainConfig

        t0 = time.perf_counter()
        base = a.base
        if base is None:
            ids = np.asarray(tok.encode(text), dtype=np.int64)
            cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=128, d_model=128, n_heads=4, n_layers=4,
                              dropout=0.1)
            base = a.out / "gpt"
            train("causal_lm", base, RunConfig(cfg, TrainConfig.recipe(a.pretrain_steps, 3e-3, batch_size=16),
                                               backend="torch", device=a.device),
                  data=split_contiguous(ids, (0.9, 0.05, 0.05)), tokenizer=tok, overwrite=True, progress=True)
        t1 = time.perf_counter()
        from minillm.apps.sft import SFT_TASK, read_source
        config = read_source(base).config
        run = train("sft", a.out / "sft", RunConfig(config, SFT_TASK.train_config(a.sft_steps), backend="torch",
                                                     device=a.device), base=base, overwrite=True, progress=True)
        t2 = time.perf_counter()
        tasks = run.test["tasks"]
        print(json.dumps({"pretrain_seconds": round(t1 - t0), "sft_seconds": round(t2 - t1), "threads": a.threads,
                          "sft_steps": a.sft_steps, "held_out": tasks, "examples": run.test["examples"],
                          "goal_met": all(t["exact"] >= GOAL for t in tasks.values())}, indent=1))


if __name__ == "__main__":
    main()
