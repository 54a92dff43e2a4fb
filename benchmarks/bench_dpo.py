"""Preference tuning (issue 26): SFT -> DPO on the embedded sets, with and without RPO's
term and with LoRA, printing the held-out reward accuracy and each task's exact match.

1. the SFT run: ``--sft RUN`` (an sft run, e.g. bench_sft.py's), else a small chain made
   here: a GPT (2 layers, d_model 64, 4 heads, block 128; BPE of 512 tokens) pretrained on
   the embedded instruction set's training conversations as plain text, then tuned with
   ``minillm sft``'s task (its defaults);
2. from it, ``minillm dpo``'s task on the embedded preference set (its defaults, 600
   training pairs and 50 held-out of each task), in three variants: DPO alone; DPO with
   ``rpo_alpha`` 1 (the chosen answers' cross-entropy added); LoRA (r 8, alpha 16 on W_Q,
   W_V) with ``rpo_alpha`` 1 at a higher rate.

Each line printed is JSON: the SFT run's per-task exact match, then per variant the
held-out reward accuracy (goal: >= 0.9), mean margin, mean chosen reward (below 0: the
chosen answers became less likely than under the reference) and each task's exact match
(goal: none below its SFT figure), with the seconds each stage took.

    python benchmarks/bench_dpo.py [--threads 2] [--sft RUN] [--dpo-steps 150] [--out runs/bench-dpo]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser  # noqa: E402

VARIANTS = (("dpo", None, 5e-4, 0.0), ("dpo+rpo", None, 5e-4, 1.0), ("lora+rpo", "8,16,W_Q,W_V", 2e-3, 1.0))


def _exact(test: dict) -> dict:
    em = test.get("exact_match", test)
    return {"exact": em.get("exact"), "tasks": {k: v["exact"] for k, v in em.get("tasks", {}).items()}}


def main() -> None:
    p = parser(" ".join(__doc__.split("\n\n")[0].split()))   # the first paragraph
    p.add_argument("--sft", type=Path, default=None, help="an sft run to tune (default: make a small one)")
    p.add_argument("--pretrain-steps", type=int, default=150)
    p.add_argument("--sft-steps", type=int, default=300)
    p.add_argument("--dpo-steps", type=int, default=150)
    p.add_argument("--out", type=Path, default=Path("runs/bench-dpo"))
    a = p.parse_args()

    import minillm.apps  # noqa: F401  (registers sft and dpo)
    from minillm import ModelConfig
    from minillm.apps.dpo import read_policy
    from minillm.core.threads import thread_limit
    from minillm.data import split_contiguous
    from minillm.data.chat_template import DEFAULT_CHAT_TEMPLATE, render_chat
    from minillm.data.instructions import instruction_set
    from minillm.train import pipeline
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig

    def config(cfg, steps, lr, lora=None):
        return RunConfig(cfg, TrainConfig.recipe(steps, lr, batch_size=16, lora=lora), backend="torch",
                         device=a.device)

    with thread_limit(a.threads):
        t0 = time.perf_counter()
        sft = a.sft
        if sft is None:
            rows, _ = instruction_set(600, 50, seed=0)
            text = "\n".join(render_chat(DEFAULT_CHAT_TEMPLATE, r["messages"], special_tokens={"eos_token": ""})[0]
                             for r in rows)
            tok = pipeline.train_tokenizer("bpe", text, 512)
            splits = split_contiguous(np.asarray(tok.encode(text), dtype=np.int64), pipeline.TEXT_FRACTIONS)
            cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=128, d_model=64, n_heads=4, n_layers=2)
            train("causal_lm", a.out / "lm", config(cfg, a.pretrain_steps, 3e-3), data=splits, tokenizer=tok,
                  overwrite=True, progress=False)
            run = train("sft", a.out / "sft", config(cfg, a.sft_steps, 1e-3), base=a.out / "lm", overwrite=True,
                        progress=False)
            sft = a.out / "sft"
            print(json.dumps({"sft": _exact(dict(run.test)), "s": round(time.perf_counter() - t0)}), flush=True)
        cfg = read_policy(sft)[0]
        for name, lora, lr, rpo in VARIANTS:
            t = time.perf_counter()
            run = train("dpo", a.out / name, config(cfg, a.dpo_steps, lr, lora), base=sft, rpo_alpha=rpo,
                        overwrite=True, progress=False)
            test = dict(run.test)
            print(json.dumps({name: {"lr": lr, "rpo_alpha": rpo, "lora": lora,
                                     **{k: test[k] for k in ("reward_accuracy", "margin", "chosen_reward")},
                                     **_exact(test)}, "s": round(time.perf_counter() - t)}), flush=True)


if __name__ == "__main__":
    main()
