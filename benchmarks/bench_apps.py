"""Applications: translation of dates and extractive question answering, both backends.

Targets (issue: "the chapter's applications"): with the torch backend on 2 CPU cores in
a few minutes, translation reaches >= 95% exact sequences on its held-out split (400
dates whose source sentence never occurs in training) and QA >= 90% exact match on its
held-out split (400 questions); the NumPy reference reaches the same numbers on a
shorter run.

    python benchmarks/bench_apps.py [--backends torch numpy] [--threads 2]
        [--tr-steps 400 --tr-steps-numpy 250 --qa-steps 2000 --qa-steps-numpy 1500]

Prints a table; ``--json PATH`` also writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import time

TARGET_EXACT, TARGET_EM = 0.95, 0.90


def run_translation(backend: str, steps: int, seed: int = 0) -> dict:
    from minillm.apps.translation import TRANSLATION_CONFIG, TRANSLATION_TASK, evaluate_translation
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    t0 = time.perf_counter()
    r = train("translation", None, RunConfig(TRANSLATION_CONFIG, TRANSLATION_TASK.train_config(steps, seed=seed),
                                             backend=backend), progress=False, evaluate_test=False)
    seconds = time.perf_counter() - t0
    test = r.data[1]
    greedy = evaluate_translation(r.model, r.runtime, r.tokenizer, test)
    beam = evaluate_translation(r.model, r.runtime, r.tokenizer, test[:100], beam_size=4)
    return {"task": "translation", "backend": backend, "steps": steps, "seconds": round(seconds, 1),
            "score": greedy["exact"], "bleu": greedy["bleu"], "beam4_exact_first100": beam["exact"],
            "target": TARGET_EXACT, "met": greedy["exact"] >= TARGET_EXACT}


def run_qa(backend: str, steps: int, seed: int = 0) -> dict:
    from minillm.apps.question_answering import QA_CONFIG, QA_TASK, evaluate_qa
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    t0 = time.perf_counter()
    r = train("question_answering", None, RunConfig(QA_CONFIG, QA_TASK.train_config(steps, seed=seed), backend=backend),
              progress=False, evaluate_test=False)
    seconds = time.perf_counter() - t0
    scores = evaluate_qa(r.model, r.runtime, r.tokenizer, r.data[1])
    return {"task": "question answering", "backend": backend, "steps": steps, "seconds": round(seconds, 1),
            "score": scores["exact_match"], "f1": scores["f1"], "target": TARGET_EM,
            "met": scores["exact_match"] >= TARGET_EM}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["torch", "numpy"])
    parser.add_argument("--tasks", nargs="+", default=["translation", "qa"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tr-steps", type=int, default=400)
    parser.add_argument("--tr-steps-numpy", type=int, default=250)
    parser.add_argument("--qa-steps", type=int, default=None,
                        help="default: minillm.apps.question_answering.QA_RECIPE's (2000)")
    parser.add_argument("--qa-steps-numpy", type=int, default=1500)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    if "torch" in args.backends:
        import torch
        torch.set_num_threads(args.threads)
    from minillm.apps.question_answering import QA_RECIPE     # after the thread settings: imports numpy
    args.qa_steps = QA_RECIPE["steps"] if args.qa_steps is None else args.qa_steps
    rows = []
    for backend in args.backends:
        numpy = backend == "numpy"
        if "translation" in args.tasks:
            rows.append(run_translation(backend, args.tr_steps_numpy if numpy else args.tr_steps))
        if "qa" in args.tasks:
            rows.append(run_qa(backend, args.qa_steps_numpy if numpy else args.qa_steps))
    print(f"{args.threads} threads")
    print("| task | backend | steps | seconds | held-out score | other | target | met |")
    print("|---|---|---:|---:|---:|---|---:|---|")
    for r in rows:
        other = (f"BLEU {r['bleu']:.1f}; beam 4 exact {100 * r['beam4_exact_first100']:.0f}% (first 100)"
                 if r["task"] == "translation" else f"F1 {100 * r['f1']:.1f}%")
        name = "exact sequences" if r["task"] == "translation" else "exact match"
        print(f"| {r['task']} | {r['backend']} | {r['steps']} | {r['seconds']} | {name} {100 * r['score']:.1f}% "
              f"| {other} | {100 * r['target']:.0f}% | {'yes' if r['met'] else 'NO'} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
