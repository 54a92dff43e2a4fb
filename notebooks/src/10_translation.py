# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10. Translation with an encoder-decoder
#
# The chapter draws the Transformer as an encoder and a decoder (section 2.3) and names
# machine translation as an application (section 6.2). This notebook builds the missing
# piece, **cross-attention**, checks its hand-written backward, trains an encoder-decoder
# with teacher forcing and label smoothing on an embedded parallel corpus, decodes greedily
# and with beam search, and scores the result with BLEU computed from scratch.
#
# Cross-attention is attention whose queries come from the decoder and whose keys and
# values come from the encoder's output $M$ (the "memory"), with the source's padding
# mask:
#
# $$Q = XW_Q,\quad K = MW_K,\quad V = MW_V,\qquad
# \mathrm{Cross}(X, M) = \mathrm{softmax}\Big(\frac{QK^\top}{\sqrt{d_k}} + M_{pad}\Big)V\,W_O$$

# %%
import time
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.core.config import ModelConfig
from minillm.data import PieceTokenizer, dates_corpus
from minillm.notebook import show
from minillm.core.text_metrics import corpus_bleu, ngram_counts
from minillm.apps.translation import TRANSLATION_TASK, encode_pairs, translate
from minillm.store.runs import load_run
from minillm.store.runtime import Runtime
from minillm.train.entry import train
from minillm.train.run_config import RunConfig

torch.manual_seed(0)
OUT = Path("runs") / "notebooks" / "10_translation"

# %% [markdown]
# ## The corpus: dates in words, and in digits
#
# Three word orders on the source side, ISO 8601 on the target side. The year's words
# become four digits that depend on several words at once, the month a number, and the
# order changes with the source's form: a real sequence-to-sequence mapping, not a
# word-for-word substitution. The held-out split holds dates whose source sentence never
# occurs in training.

# %%
train_pairs, test_pairs = dates_corpus(1500, 200, seed=0)
for src, tgt in train_pairs[:6]:
    print(f"{src:55s} -> {tgt}")
tok = PieceTokenizer.train([s for pair in train_pairs + test_pairs for s in pair])
print("vocabulary:", tok.vocab_size, "pieces;", tok.pieces(train_pairs[0][0]), tok.pieces(train_pairs[0][1]))
assert not {src for src, _ in test_pairs} & {src for src, _ in train_pairs}   # no held-out source occurs in training

# %% [markdown]
# ## Teacher forcing
#
# The decoder reads the reference shifted right, starting with `<bos>`, and learns to
# predict the next piece; the targets end with `<eos>` and padding is `-100` (not counted).

# %%
batch = encode_pairs(train_pairs[:2], tok, 16)
for key in ("idx", "attention_mask", "tgt_idx", "targets"):
    print(f"{key:15s}", batch[key][0].astype(int).tolist())
print("decoder reads:   ", [tok.itos[i] for i in batch["tgt_idx"][0]])
print("and must predict:", [tok.itos[i] if i >= 0 else "-100" for i in batch["targets"][0]])
for tgt_in, tgt_out in zip(batch["tgt_idx"], batch["targets"]):
    n = int((tgt_out != -100).sum())                     # counted targets; the rest is padding
    assert tgt_in[0] == tok.bos_id and tgt_out[n - 1] == tok.eos_id and (tgt_out[n:] == -100).all()
    assert (tgt_in[1:n] == tgt_out[:n - 1]).all()        # the reference, shifted right by one

# %% [markdown]
# ## Cross-attention and its backward
#
# Cross-attention is `MultiHeadAttention` called with a memory: queries from the decoder,
# keys and values from the encoder's output. The key and value projections both read the
# memory, so their input gradients add up into
# $\partial L/\partial M$; the query projection gives $\partial L/\partial X$. Every decoder
# block reads the same memory, so the model sums those gradients over the blocks before it
# runs the encoder's backward.

# %%
show(ref.MultiHeadAttention.backward)
show(ref.DecoderBlock.forward)

# %% [markdown]
# Finite differences confirm it, with a random upstream gradient (never all ones, which
# would hide a transposition):

# %%
rng = np.random.default_rng(0)
layer = ref.MultiHeadAttention(8, 2, "float64")
for p in layer.parameters():
    p.data[...] = rng.standard_normal(p.data.shape) * 0.5
x, memory = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 5, 8))
mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)[:, None, None, :]
dy = rng.standard_normal((2, 3, 8))
layer(x, mask, memory=memory)
dx, dmemory = layer.backward(dy)
h, i = 1e-6, (1, 0, 3)
up, down = memory.copy(), memory.copy()
up[i] += h
down[i] -= h
numeric = ((layer(x, mask, memory=up) - layer(x, mask, memory=down)) * dy).sum() / (2 * h)
print(f"dL/dM{i}: hand-written {dmemory[i]:.10f}, finite difference {numeric:.10f}")
print("masked memory positions get no gradient:", np.all(dmemory[1, 2:] == 0))
# central differences in float64, h = 1e-6: truncation ~1e-12, rounding ~1e-10 (|L| a few units)
np.testing.assert_allclose(dmemory[i], numeric, rtol=1e-6)
assert (dmemory[1, 2:] == 0).all()

# %% [markdown]
# ## Training: teacher forcing and label smoothing
#
# Label smoothing (Szegedy et al. 2016) mixes the one-hot target with the uniform
# distribution, $\ell = (1-\varepsilon)(-\log p_y) + \varepsilon\,\frac1V\sum_c(-\log p_c)$,
# so the loss cannot reach 0 — the model is discouraged from ever being fully certain. Its
# lowest possible value is the entropy of the smoothed target $q$ ($q_y = 1 - \varepsilon +
# \varepsilon/V$, every other $q_c = \varepsilon/V$), about 0.80 nats for $\varepsilon = 0.1$
# over the model's $V = 128$ outputs; the cell checks the loss stays above it.
# A small one-layer model, 300 steps with the torch backend, on the pairs above with their
# tokenizer. Importing `minillm.apps.translation` declares the `"translation"` task, whose
# recipe (`TRANSLATION_TASK.train_config`: a 10 % warm-up, no weight decay, one evaluation
# at the end) we keep with fewer steps. At the end `train` scores the held-out dates:

# %%
config = ModelConfig(vocab_size=128, block_size=16, d_model=32, n_heads=2, n_layers=1, d_ff=64)
start = time.perf_counter()
run_config = RunConfig(config, TRANSLATION_TASK.train_config(300, 3e-3, batch_size=32), backend="torch")
run = train("translation", OUT, run_config, data=(train_pairs, test_pairs), tokenizer=tok,
            label_smoothing=0.1, progress=False)
print(f"{time.perf_counter() - start:.1f} s, last loss {run.train_loss:.3f} (label smoothing keeps it above 0)")
print(run_config.train)
assert (run_config.train.warmup_steps, run_config.train.weight_decay, run_config.train.eval_every) == (30, 0.0, 300)
model, rt = run.model, run.runtime
eps_ls, V = 0.1, config.vocab_size
q = np.full(V, eps_ls / V)
q[0] += 1 - eps_ls                              # the smoothed target (which class is y does not matter)
floor = -(q * np.log(q)).sum()                  # min over p of the smoothed cross-entropy = H(q)
print(f"the lowest a smoothed loss can go: H(q) = {floor:.3f} nats")
assert run.train_loss > floor - 1e-4, (run.train_loss, floor)         # 1e-4: float32 rounding of the loss

# %% [markdown]
# ## Decoding: greedy and beam search
#
# Greedy takes the most likely piece at each step. Beam search keeps the $K$ best
# prefixes and scores a finished one by $\log p(y\mid x)/\mathrm{lp}(y)$ with
# $\mathrm{lp}(y) = ((5+|y|)/6)^\alpha$ (Wu et al. 2016), so that short outputs do not win
# only by being short.

# %%
sources = ["the first of may , two thousand nine", "december twenty-fifth , nineteen eighty-four",
           "twenty forty-two , july the fourth"]
for src, g, b in zip(sources, translate(model, rt, tok, sources),
                     translate(model, rt, tok, sources, beam_size=4, length_penalty=0.6)):
    print(f"{src:45s} greedy {g}   beam {b}")

# %% [markdown]
# ## BLEU from scratch
#
# Modified n-gram precisions (each hypothesis n-gram counted at most as often as in the
# reference), summed over the corpus, their geometric mean, and a brevity penalty:
# $\mathrm{BLEU} = \mathrm{BP}\cdot\exp(\frac14\sum_{n=1}^4 \log p_n)$. By hand for one pair,
# then `minillm.core.text_metrics.corpus_bleu` (which the tests check against sacrebleu),
# which `train` used to score the held-out dates, greedily decoded:

# %%
hyp, refr = list("1994-03-28"), list("1994-03-23")
p = [sum(min(c, ngram_counts(refr, n)[g]) for g, c in ngram_counts(hyp, n).items()) / (len(hyp) - n + 1)
     for n in range(1, 5)]
print("p_n:", [round(x, 3) for x in p], " BLEU by hand:", round(100 * np.exp(np.mean(np.log(p))), 3),
      " corpus_bleu:", round(corpus_bleu([hyp], [refr]), 3))
# equal lengths: brevity penalty 1, so the geometric mean is the whole score (float64 rounding)
np.testing.assert_allclose(corpus_bleu([hyp], [refr]), 100 * np.exp(np.mean(np.log(p))), rtol=1e-12)
scores = run.test
print(f"held-out: {100 * scores['exact']:.1f}% exact dates, BLEU {scores['bleu']:.1f} ({scores['n']} dates)")
assert scores["n"] == len(test_pairs)

# %% [markdown]
# ## Parity check
#
# The run folder loaded into the NumPy reference (`load_run(folder, Runtime("numpy"))`: the
# checkpoint the torch run saved) translates the same way, and the project's
# parity tests for the encoder-decoder run (logits, loss and every gradient vs torch,
# finite differences, a 15-step run with dropout and label smoothing).

# %%
twin = load_run(OUT, Runtime("numpy"))
print(f"loaded {twin.checkpoint} (step {twin.step}) as {type(twin.model).__module__}.{type(twin.model).__name__}")
assert twin.task == "translation" and twin.step == run.steps and isinstance(twin.model, ref.EncoderDecoder)
assert twin.tokenizer.itos == tok.itos
assert translate(twin.model, twin.runtime, twin.tokenizer, sources) == translate(model, rt, tok, sources)
print("numpy reference and torch backend: the same translations")

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "models" / "test_seq2seq_models.py") + "::test_encoder_decoder_logits_loss_and_every_gradient",
                        str(TESTS / "models" / "test_seq2seq_models.py") + "::test_cross_attention_backward_against_finite_differences_and_torch",
                        str(TESTS / "models" / "test_seq2seq_models.py") + "::test_whole_run_parity_15_adam_steps_with_dropout_and_label_smoothing"])
    assert code == 0, f"the encoder-decoder parity tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the check above is the parity check")
