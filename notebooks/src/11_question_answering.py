# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 11. Extractive question answering
#
# Question answering is the other application the chapter names (section 6.3). In its
# extractive form (BERT, Devlin et al. 2019, section 4.2) the answer is a span of a given
# context: the encoder reads `<cls> question <sep> context <sep>`, and a linear head gives
# every position a start logit $s_t$ and an end logit $e_t$. Training maximises the
# likelihood of the true span $[i, j]$:
#
# $$[s_t, e_t] = h_t W + b,\qquad
# L = \tfrac12\big(-\log\mathrm{softmax}(s)_i - \log\mathrm{softmax}(e)_j\big)$$
#
# and the prediction is the best span $\arg\max_{i \le j} s_i + e_j$ inside the context.

# %%
import time
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.data import PieceTokenizer, has_distractor, qa_corpus
from minillm.core.init import rotary_tables
from minillm.notebook import show
from minillm.core.plots import read_metrics
from minillm.apps.question_answering import QA_CONFIG, QA_TASK, answer_spans, best_span, encode_qa, evaluate_qa
from minillm.store.runs import load_run
from minillm.store.runtime import Runtime
from minillm.core.text_metrics import exact_match, normalize_answer, token_f1
from minillm.train.entry import train
from minillm.train.run_config import RunConfig

torch.manual_seed(0)
OUT = Path("runs") / "notebooks" / "11_question_answering"

# %% [markdown]
# ## The examples
#
# Each context states a few facts about two or three people; the question asks for one
# fact about one of them. The same relation appears for other people, and the same person
# has other facts, so the model must match both the person and the relation.

# %%
train_examples, test_examples = qa_corpus(20000, 200, seed=0)
for e in train_examples[:3]:
    print(e["context"], "\n  Q:", e["question"], "  A:", e["answer"], " (starts at piece", e["answer_start"], ")")
tok = PieceTokenizer.train([e[k] for e in train_examples + test_examples for k in ("context", "question")])
arrays = encode_qa(train_examples[:1], tok, 64)
ids = arrays["idx"][0]
i, j = arrays["start_positions"][0], arrays["end_positions"][0]
print("\ninput:", " ".join(tok.itos[t] for t in ids))
print("span [i, j] =", (int(i), int(j)), "->", tok.decode(ids[i:j + 1]))
assert tok.decode(ids[i:j + 1]) == train_examples[0]["answer"]

# %% [markdown]
# ## Which person? Positions as rotations
#
# About half of the questions (45 % of the training set, checked below) have a
# *distractor*: the asked relation is stated for
# another person too, so the answer is the value of the sentence whose subject is the
# question's name. The subject stands a few pieces before the answer ("omar lives in
# **lisbon**": three back; "dana was born in **1 9 8 7**": four back), at a different
# place in every context. With a position vector added to each embedding (the chapter's
# way, section 2.3) the model must learn "three back" anew for every place; every such
# model we trained stopped near 80% exact match, right on the distractor questions and at
# chance on the others (benchmarks/README.md).
#
# Rotary position embedding (RoPE, Su et al. 2021) adds nothing to the embeddings.
# Inside attention it rotates every pair $(x_{2i}, x_{2i+1})$ of a query or key at
# position $m$ by the angle $m\theta_i$, $\theta_i = 10000^{-2i/D}$:
#
# $$y_{2i} = x_{2i}\cos m\theta_i - x_{2i+1}\sin m\theta_i,\qquad
# y_{2i+1} = x_{2i}\sin m\theta_i + x_{2i+1}\cos m\theta_i$$
#
# Two rotations compose, so $R_m q \cdot R_n k = q \cdot R_{n-m} k$: the score depends on
# the offset $n - m$ only. The backward is the rotation back, by $-m\theta_i$:

# %%
show(ref.rope_forward)
show(ref.rope_backward)
share = np.mean([has_distractor(e) for e in train_examples])
pieces = {s: tok.pieces(s) for s in ("omar lives in lisbon", "dana was born in 1987")}
print(f"questions with a distractor: {share:.1%}; pieces: {pieces}")
assert 0.35 < share < 0.65
assert pieces["omar lives in lisbon"].index("lisbon") == 3                 # the answer: three back from the name
assert pieces["dana was born in 1987"].index("1") == 4                     # four back
assert pieces["dana was born in 1987"][-4:] == ["1", "9", "8", "7"]

# %%
cos, sin = rotary_tables(64, 8, "float64")
rng = np.random.default_rng(0)
q, k = rng.standard_normal(8), rng.standard_normal(8)


def rotated(x, m):
    return ref.rope(x[None], cos[m:m + 1], sin[m:m + 1])[0]


offset_scores = {}
for m, n in [(3, 7), (20, 24), (50, 54), (50, 51)]:
    offset_scores[m, n] = rotated(q, m) @ rotated(k, n)
    print(f"query at {m:2d}, key at {n:2d} (offset {n - m}): score {offset_scores[m, n]:+.6f}")
same_offset = [offset_scores[3, 7], offset_scores[20, 24], offset_scores[50, 54]]
np.testing.assert_allclose(same_offset, same_offset[0], rtol=1e-12)   # float64 rounding of cos / sin
assert abs(offset_scores[50, 51] - same_offset[0]) > 0.1                # another offset, another score
print("hand-written backward vs torch autograd:")
x = rng.standard_normal((2, 5, 8))
dy = rng.standard_normal(x.shape)
_, cache = ref.rope_forward(x, cos[:5], sin[:5])
xt = torch.tensor(x, requires_grad=True)
(tb.rope(xt, torch.tensor(cos[:5]), torch.tensor(sin[:5])) * torch.tensor(dy)).sum().backward()
print("  largest difference", np.abs(ref.rope_backward(dy, cache) - xt.grad.numpy()).max())
np.testing.assert_allclose(ref.rope_backward(dy, cache), xt.grad.numpy(), rtol=1e-7, atol=1e-9)  # the parity contract

# %% [markdown]
# `QA_CONFIG` uses `positional="rope"` and an initial weight scale of $1/\sqrt{d_{model}}$
# (`init_std`; GPT-2's 0.02 was made for $d_{model} = 768$ and leaves a 64-wide model's
# attention almost uniform for too long: in the benchmark's probe a 64-wide model with 0.02
# was still at chance, loss 0.69, after 3,000 steps, and solved it within 1,000 with
# $1/\sqrt{d_{model}}$; benchmarks/README.md):

# %%
print(QA_CONFIG)
assert QA_CONFIG.positional == "rope" and QA_CONFIG.init_std == 1 / np.sqrt(QA_CONFIG.d_model)

# %% [markdown]
# ## The span head
#
# `SpanQA` is the encoder body with a two-column linear head; padded positions get
# $-10^4$ added to their logits, so no probability — and no gradient — reaches them
# (checked on the trained model below). The loss is the model's cross-entropy over
# positions, the start and end rows averaged. Its hand-written backward only has to
# transpose $\partial L/\partial \text{logits}$ back through the head:

# %%
show(ref.SpanQA.forward)
show(ref.SpanQA._backward)

# %% [markdown]
# Decoding: the best pair with $i \le j$ and a bounded length, never in the question.

# %%
show(best_span)
s = np.array([1, 5, 0, 0, 9, 0.0])
e = np.array([9, 0, 0, 4, 0, 2.0])
print("best span:", best_span(s, e, 0, 6), "— (4, 0) would score 18 but ends before it starts")
assert s[4] + e[0] == 18 and tuple(best_span(s, e, 0, 6)) == (4, 5)     # 9 + 2 = 11, the best with i <= j

# %% [markdown]
# ## Training
#
# `QA_CONFIG` with the torch backend, on the 20,000 examples above, 1,200 steps of the
# task's recipe (`QA_TASK.train_config`: batch 64, a constant rate after a short warm-up, no
# weight decay). Importing `minillm.apps.question_answering` declares the task; its
# defaults, what `minillm answer --train` and the benchmark (`benchmarks/bench_apps.py`)
# run, are 2,000 steps on 40,000 examples. The loss first
# sits near 0.33 — the distractor questions answered at chance — until the model has
# learned to match names, then falls towards 0 (checked on the logged losses below). This
# is the longest training of the notebooks; the cell prints how long it took here:

# %%
assert (QA_TASK.steps, QA_TASK.options["n_train"]) == (2000, 40000)      # the task's defaults
config = QA_CONFIG
run_config = RunConfig(config, QA_TASK.train_config(1200), backend="torch")
print(run_config.train)
assert (run_config.train.batch_size, run_config.train.min_lr, run_config.train.weight_decay) == (64, 1e-3, 0.0)
start = time.perf_counter()
run = train("question_answering", OUT, run_config, data=(train_examples, test_examples), tokenizer=tok,
            progress=False)
print(f"{time.perf_counter() - start:.1f} s, last loss {run.train_loss:.3f}")
losses = np.array([r["loss"] for r in read_metrics(OUT / "metrics.jsonl")])
windows = losses.reshape(-1, 100).mean(axis=1)                  # mean loss of each 100 steps
print("mean loss per 100 steps:", windows.round(3))
# a plateau at 0.33 (some 100-step window within 0.04 of it, before the end), then towards 0
assert len(losses) == 1200 and (np.abs(windows[:-2] - 0.33) < 0.04).any() and windows[-1] < 0.02, windows
model, rt = run.model, run.runtime
ctx = "alice lives in paris . bruno works as a chef . alice has a red cat ."
for q in ("where does alice live ?", "what is the job of bruno ?", "what pet does alice have ?"):
    print(f"{q:30s} ->", answer_spans(model, rt, tok, [ctx], [q])[0])

batch = encode_qa(test_examples[:8], tok, config.block_size)            # padded to the longest input
real = batch["attention_mask"].astype(bool)                           # (B, T) True at real pieces
model.eval()
with rt.no_grad():
    logits, _ = model(rt.tensor(batch["idx"]), attention_mask=rt.tensor(real),
                      token_type_ids=rt.tensor(batch["token_type_ids"]))
probs = tb.softmax(logits.double(), axis=-1).numpy()                  # (B, 2, T) over positions
on_padding = probs.transpose(0, 2, 1)[~real]                          # (padded positions, 2)
assert (~real).any() and (on_padding == 0).all()                      # exp(-1e4) underflows to exactly 0
print(f"{int((~real).sum())} padded positions in the batch; their largest start/end probability: 0.0")

# %% [markdown]
# ## Exact match and token F1
#
# SQuAD's two scores (Rajpurkar et al. 2016): answers are normalised (lower case, no
# punctuation, no articles), exact match compares them whole, F1 compares their tokens as
# multisets: $P = |p\cap g|/|p|$, $R = |p\cap g|/|g|$, $F_1 = 2PR/(P+R)$.

# %%
pred, gold = "The red dog.", "red cat"
p_tokens, g_tokens = normalize_answer(pred).split(), normalize_answer(gold).split()
common = len(set(p_tokens) & set(g_tokens))
P, R = common / len(p_tokens), common / len(g_tokens)
print(f"by hand: EM {float(p_tokens == g_tokens)}, F1 {2 * P * R / (P + R):.3f};",
      f"minillm: EM {exact_match(pred, gold)}, F1 {token_f1(pred, gold):.3f}")
assert exact_match(pred, gold) == float(p_tokens == g_tokens) == 0.0
np.testing.assert_allclose(token_f1(pred, gold), 2 * P * R / (P + R), rtol=1e-12)
scores = run.test                     # what `train` scored at the end: evaluate_qa on the held-out examples
print(f"held-out: exact match {100 * scores['exact_match']:.1f}%, F1 {100 * scores['f1']:.1f}% "
      f"({scores['n']} questions)")
assert scores["n"] == len(test_examples)
hard = [e for e in test_examples if has_distractor(e)]
print(f"the {len(hard)} held-out questions with a distractor: exact match "
      f"{100 * evaluate_qa(model, rt, tok, hard)['exact_match']:.1f}%")

# %% [markdown]
# ## Parity check
#
# The run folder loaded into the NumPy reference (`load_run(folder, Runtime("numpy"))`: the
# checkpoint the torch run saved) gives the same spans, and the project's parity
# test for `SpanQA` (logits, loss and every gradient against torch) runs.

# %%
twin = load_run(OUT, Runtime("numpy"))
print(f"loaded {twin.checkpoint} (step {twin.step}) as {type(twin.model).__module__}.{type(twin.model).__name__}")
assert twin.task == "question_answering" and twin.step == run.steps and isinstance(twin.model, ref.SpanQA)
questions = [e["question"] for e in test_examples[:20]]
contexts = [e["context"] for e in test_examples[:20]]
assert (answer_spans(twin.model, twin.runtime, twin.tokenizer, contexts, questions)
        == answer_spans(model, rt, tok, contexts, questions))
print("numpy reference and torch backend: the same spans")

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "models" / "test_seq2seq_models.py") + "::test_span_qa_logits_loss_and_every_gradient",
                        str(TESTS / "core" / "test_text_metrics.py")])
    assert code == 0, f"the span-QA parity / metric tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the check above is the parity check")
