"""Why question answering stopped at ~80%: a probe of the one skill it lacked.

The errors of ``bench_apps.py``'s QA model were the questions whose context states the
asked relation for another person too ("dana lives in paris . omar lives in lisbon ."
asked "where does omar live ?"). Answering them needs the question's name to be matched
with the fact's subject: an equality of two arbitrary symbols, which no single token
predicts (each name is as often the subject as not). ``--corpus probe`` isolates it:
every context is two people with the same relation, so a model that does not match
names scores 50% and its loss stays at ln 2 = 0.693.

It trains minillm's ``SpanQA`` (torch backend) and, on the same batches, a yardstick
written with ``torch.nn.TransformerEncoder`` (same size, pre-norm, GELU, learned
positions, segment embeddings, torch's default initialisation), so that a plateau
cannot be blamed on minillm's code. ``--init-std`` sets minillm's initial weight scale:
with GPT-2's 0.02 the probe's loss stays at ln 2 for 3,000 steps; with 1/sqrt(d_model)
= 0.125 it leaves the plateau within a few hundred steps.

On the probe every sentence has a fixed length, so the subject of the asked fact stands
at one of two absolute places. ``--corpus full`` trains on ``qa_corpus`` itself (3 to 5
facts of different lengths in random order), where the subject is a few pieces before
the answer at a different place in every context; ``--positional`` then shows that
learned absolute positions stay at ~80% and RoPE, whose scores depend on offsets only,
reaches the target (benchmarks/README.md has the runs).

    python benchmarks/bench_qa_binding.py [--corpus probe|full] [--positional learned|sinusoidal|rope]
        [--init-std 0.125] [--steps 3000] [--batch 128] [--lr 1e-3]
        [--models minillm torch_nn] [--every 250]

Prints the training loss every ``--every`` steps and the held-out exact match (on the
full corpus also on the held-out questions with a same-relation distractor).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np

from minillm.data.parallel import PieceTokenizer
from minillm.core.config import POSITIONALS
from minillm.data.qa import NAMES, RELATIONS, has_distractor, qa_corpus


def binding_examples(n: int, seed: int, n_people: int = 2) -> list[dict]:
    """Contexts of ``n_people`` facts, one per person, all of the same relation."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        fact, question, draw = RELATIONS[list(RELATIONS)[int(rng.integers(len(RELATIONS)))]]
        people = [str(p) for p in rng.choice(NAMES, n_people, replace=False)]
        asked = int(rng.integers(n_people))
        pieces, sentences, start = [], [], None
        for i, person in enumerate(people):
            value = draw(rng)
            if i == asked:
                start, answer = len(pieces) + len(PieceTokenizer.pieces(fact.split("{a}")[0].format(n=person))), value
            sentences.append(fact.format(n=person, a=value))
            pieces += PieceTokenizer.pieces(sentences[-1])
        out.append({"context": " ".join(sentences), "question": question.format(n=people[asked]),
                    "answer": answer, "answer_start": start})
    return out


def torch_nn_yardstick(config, seed: int):
    """A SpanQA of the same size written with ``torch.nn`` modules."""
    import torch
    from torch import nn

    class Yardstick(nn.Module):
        def __init__(self):
            super().__init__()
            c = config
            self.tok = nn.Embedding(c.vocab_size, c.d_model)
            self.pos = nn.Embedding(c.block_size, c.d_model)
            self.typ = nn.Embedding(2, c.d_model)
            layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.d_ff, 0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
            self.ln_f = nn.LayerNorm(c.d_model)
            self.head = nn.Linear(c.d_model, 2)

        def forward(self, idx, attention_mask, token_type_ids):
            T = idx.shape[1]
            h = self.tok(idx) + self.pos(torch.arange(T)) + self.typ(token_type_ids)
            h = self.ln_f(self.blocks(h, src_key_padding_mask=~attention_mask))
            logits = self.head(h).transpose(1, 2)                              # (B, 2, T)
            return logits.masked_fill(~attention_mask[:, None, :], -1e4)

    torch.manual_seed(seed)
    return Yardstick()


def run(name: str, args, train, test, tok) -> dict:
    import torch

    from minillm.apps.question_answering import QA_CONFIG, QAData, evaluate_qa
    from minillm.store.runtime import Runtime

    cfg = dataclasses.replace(QA_CONFIG, init_std=args.init_std, positional=args.positional)
    data = QAData(train, tok, args.batch, args.seed, cfg.block_size)
    if name == "minillm":
        rt = Runtime("torch")
        model = rt.prepare(rt.module.SpanQA(cfg, seed=args.seed))
    else:
        model = torch_nn_yardstick(cfg, args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    curve, t0 = [], time.perf_counter()
    for step in range(args.steps):
        b = {k: torch.from_numpy(v) for k, v in data.batch(step).items()}
        if name == "minillm":
            _, loss = model(b["idx"], b["start_positions"], b["end_positions"],
                            attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"])
        else:
            logits = model(b["idx"], b["attention_mask"], b["token_type_ids"])
            loss = 0.5 * (torch.nn.functional.cross_entropy(logits[:, 0], b["start_positions"])
                          + torch.nn.functional.cross_entropy(logits[:, 1], b["end_positions"]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0 or step == args.steps - 1:
            curve.append((step, loss.item()))
    seconds = time.perf_counter() - t0
    hard = [e for e in test if has_distractor(e)]
    if name == "minillm":
        em, em_hard = (evaluate_qa(model, rt, tok, split)["exact_match"] for split in (test, hard))
    else:
        with torch.no_grad():
            t = {k: torch.from_numpy(v) for k, v in QAData(test, tok, 1, 0, cfg.block_size).arrays.items()}
            logits = model(t["idx"], t["attention_mask"], t["token_type_ids"])
            right = ((logits[:, 0].argmax(-1) == t["start_positions"])
                     & (logits[:, 1].argmax(-1) == t["end_positions"])).numpy()       # (N,)
        em = float(right.mean())
        em_hard = float(right[[has_distractor(e) for e in test]].mean())
    return {"model": name, "curve": curve, "exact_match": em, "exact_match_distractor": em_hard,
            "n_distractor": len(hard), "seconds": seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["minillm", "torch_nn"])
    parser.add_argument("--init-std", type=float, default=0.125,
                        help="minillm's ModelConfig.init_std (GPT-2/BERT use 0.02; 1/sqrt(64) = 0.125)")
    parser.add_argument("--positional", choices=POSITIONALS, default="learned",
                        help="minillm's ModelConfig.positional (the yardstick's are learned)")
    parser.add_argument("--corpus", choices=("probe", "full"), default="probe",
                        help="probe: two people, one relation; full: minillm.data.qa_corpus")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    if args.corpus == "probe":
        train, test = binding_examples(40000, seed=0), binding_examples(400, seed=1)
    else:
        train, test = qa_corpus(40000, 400, seed=0)          # train_qa's split
    tok = PieceTokenizer.train([e[k] for e in train + test for k in ("context", "question")])
    corpus = ("two-person binding probe (chance loss ln 2 = {:.3f})".format(math.log(2))
              if args.corpus == "probe" else "full QA corpus (qa_corpus)")
    print(f"{corpus}: {args.steps} steps, batch {args.batch}, AdamW lr {args.lr} (constant), "
          f"minillm init_std {args.init_std}, positional {args.positional!r}, seed {args.seed}")
    for name in args.models:
        r = run(name, args, train, test, tok)
        losses = " ".join(f"{s}:{l:.3f}" for s, l in r["curve"])
        print(f"{name}: held-out exact match {100 * r['exact_match']:.1f}% "
              f"({100 * r['exact_match_distractor']:.1f}% of the {r['n_distractor']} with a "
              f"same-relation distractor) in {r['seconds']:.0f} s; loss by step {losses}", flush=True)


if __name__ == "__main__":
    main()
