# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. Data preparation: corpora, cleaning, nltk and the tokenizers
#
# Before any formula runs, text must become integer ids (chapter sections 3.1 and 5.1):
# collect a corpus, clean it, split it into tokens, map tokens to ids with a vocabulary, and
# cut the ids into batches. Everything here works offline: no `nltk.download`, no dataset
# hub. `minillm.data` uses only NumPy (and nltk's data-free tokenizers).
#
# Along the way we meet four bugs of the chapter's sample code that minillm avoids: removing
# stopwords before language-model training, a vocabulary built from `set()` (a new order on
# every run), `KeyError` on unknown words, and a last batch whose targets are shorter than
# its inputs.

# %%
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.data import (STOPWORDS, BPETokenizer, CharTokenizer, LMBatches, Tokenizer, WordTokenizer,
                          clean_text, mask_tokens, pad_batch, python_docs, remove_stopwords, sentiment,
                          split_contiguous, synthetic_language, word_tokenize)
from minillm.notebook import show

OUT = Path("runs") / "notebooks" / "05_data_preparation"
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Three corpora that need no download
#
# - `python_docs()`: the English documentation that ships with every CPython
#   (`pydoc_data.topics`), a few hundred kB of real prose (465 kB in Python 3.11; the
#   exact size depends on the Python version);
# - `synthetic_language()`: a seeded Markov chain whose entropy rate — the lowest loss any
#   model can reach — is known exactly;
# - `sentiment()`: labelled sentences whose label depends on word order ("not good",
#   "..., but ...").

# %%
docs = python_docs()
print(f"python_docs: {len(docs):,} characters; it begins:\n{docs[:300]!r}\n")
assert len(docs) > 300_000, len(docs)             # a few hundred kB (the cells below use the first 203 kB)
lang = synthetic_language(5000, order=2, alphabet_size=8, seed=0)
print(f"synthetic language: {lang.text[:60]}...  entropy rate {lang.entropy_rate:.3f} nats/symbol")
data = sentiment(n=400, seed=0)
for text, label in list(zip(data.train.texts, data.train.labels))[:4]:
    print(f"  [{data.train.label_names[label]:8s}] {text}")

# %% [markdown]
# ## Cleaning and stopwords
#
# The chapter lower-cases, replaces non-word characters by spaces and collapses whitespace;
# `clean_text` does the same, each step optional. It is lossy by design: fine for
# bag-of-words features, wrong before a tokenizer whose round trip you rely on.

# %%
show(clean_text)

# %%
sample = "Don't panic!  The   ﬁle was NOT found…"
print(repr(clean_text(sample)))
assert clean_text(sample) == "don t panic the file was not found"
words = word_tokenize("the plot was not good, but the acting was great.")
print("tokens              :", words)
print("stopwords removed   :", remove_stopwords(words))
print(f"'not' is a stopword in minillm? {'not' in STOPWORDS}   (removing it reverses the meaning)")
print("'the plot was good' ->", remove_stopwords(word_tokenize("the plot was good")))
assert "not" not in STOPWORDS and "not" in remove_stopwords(words)
assert remove_stopwords(word_tokenize("the plot was good")) == ["plot", "good"]

# %% [markdown]
# Removing stopwords destroys grammar ("the plot was good" -> "plot good"): a language model
# trained on that text learns a language nobody writes. minillm never removes them before
# language-model training; `remove_stopwords` is for bag-of-words features only.
#
# ## nltk without downloads
#
# The chapter calls `nltk.word_tokenize`, which needs the *punkt* model and so a download
# (it fails offline). The Treebank rules behind it need no data. `word_tokenize` uses them
# through nltk's `NLTKWordTokenizer`:

# %%
from nltk.tokenize import NLTKWordTokenizer, WordPunctTokenizer

text = "Isn't it 3.5x faster? See https://python.org, or e-mail me."
print("nltk Treebank   :", NLTKWordTokenizer().tokenize(text))
print("nltk WordPunct  :", WordPunctTokenizer().tokenize(text))
print("minillm (words) :", word_tokenize(text))
assert word_tokenize(text) == NLTKWordTokenizer().tokenize(text)   # the Treebank rules, no download

# %% [markdown]
# ## Three tokenizers
#
# - `WordTokenizer`: one id per word or punctuation mark (nltk's rules); unknown words map
#   to `<unk>`, never a `KeyError`;
# - `CharTokenizer`: one id per character, with a byte fallback for characters it never saw;
# - `BPETokenizer`: byte-level byte-pair encoding (GPT-2's scheme): start from the 256 bytes
#   and repeatedly merge the most frequent adjacent pair into a new token.
#
# All three share the special tokens `<pad> <unk> <bos> <eos> <mask> <cls> <sep>` at ids
# 0-6, and a vocabulary built in a deterministic order (count, then the token itself), so
# the same text always gives the same ids.

# %%
train_text = docs[:60_000]
held_out = docs[200_000:203_000]
tokenizers = {
    "word": WordTokenizer.train(train_text, max_size=2000),
    "char": CharTokenizer.train(train_text),
    "bpe": BPETokenizer.train(train_text, vocab_size=512),
}
print(f"{'tokenizer':9s} {'vocab':>6s} {'tokens':>7s} {'chars/token':>12s} {'round trip':>11s}")
n_tokens, round_trip = {}, {}
for name, tok in tokenizers.items():
    ids = tok.encode(held_out)
    n_tokens[name], round_trip[name] = len(ids), tok.decode(ids) == held_out
    print(f"{name:9s} {tok.vocab_size:6d} {len(ids):7d} {len(held_out) / len(ids):12.2f} "
          f"{str(round_trip[name]):>11s}")
for tok in tokenizers.values():                      # the same special tokens at ids 0-6 in all three
    assert [tok.decode([i]) for i in range(7)] == ["<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "<cls>", "<sep>"]

# %%
bpe = tokenizers["bpe"]
ids = bpe.encode("The tokenizer splits unfamiliar words: floccinaucinihilipilification.")
print([bpe.decode([i]) for i in ids])
word = tokenizers["word"]
print("word tokenizer on an unknown word:", word.decode(word.encode("the zyzzyva statement")))
assert len(bpe.encode("The")) == 1 and len(bpe.encode(" floccinaucinihilipilification")) > 10
assert word.decode(word.encode("the zyzzyva statement")) == "the <unk> statement"
assert round_trip == {"word": False, "char": True, "bpe": True}, round_trip
# on the held-out text: char / bpe 2.1x, char / word 4.3x (deterministic: the text and the training are fixed)
assert 1.8 < n_tokens["char"] / n_tokens["bpe"] < 2.5 and n_tokens["char"] / n_tokens["word"] > 4, n_tokens

# %% [markdown]
# BPE keeps common words whole ("The" is one token) and spells rare ones with pieces, so
# it never needs `<unk>` and always round-trips; the word tokenizer loses unknown words;
# the character tokenizer round-trips but makes the held-out text about twice as many
# tokens as BPE (and over four times as many as words), and attention costs $O(T^2)$.
#
# A vocabulary built from `set()` gets a new order in every Python process (string hashing
# is salted), so a saved model would read the wrong ids after a restart. minillm's order is
# fixed; saved as JSON, a tokenizer reloads to the same ids:

# %%
again = BPETokenizer.train(train_text, vocab_size=512)
assert again.encode(held_out) == bpe.encode(held_out)
bpe.save(OUT / "tokenizer.json")
loaded = Tokenizer.load(OUT / "tokenizer.json")
assert loaded.encode(held_out) == bpe.encode(held_out)
print("trained twice: same ids; saved and loaded:", loaded)

# %% [markdown]
# ## From ids to batches
#
# **Language modelling.** Cut the id stream into windows of $T + 1$ tokens; the input is the
# first $T$, the target the last $T$ — the same sequence shifted by one. Every window has
# its full length, so no batch has targets shorter than its inputs. `LMBatches.batch(step)`
# is a pure function of (seed, step), which is what makes training resume exactly.

# %%
ids = np.asarray(bpe.encode(docs[:100_000]), dtype=np.int64)
splits = split_contiguous(ids, (0.9, 0.05, 0.05))
print("train / validation / test tokens:", [len(s) for s in splits])
batches = LMBatches(splits.train, block_size=8, batch_size=2, seed=0)
x, y = batches.batch(step=0)                                   # (B, T), (B, T)
assert x.shape == y.shape == (2, 8)                            # full windows, targets as long as inputs
again_x, again_y = LMBatches(splits.train, block_size=8, batch_size=2, seed=0).batch(step=0)
assert (again_x == x).all() and (again_y == y).all()           # a pure function of (seed, step)
print("x[0]:", x[0], "\ny[0]:", y[0])
assert (x[:, 1:] == y[:, :-1]).all()                           # y is x shifted by one
print("as text:", repr(bpe.decode(x[0])), "->", repr(bpe.decode(y[0])))

# %% [markdown]
# **Masked language modelling** (BERT): pick 15 % of the tokens; of those, 80 % become
# `<mask>`, 10 % a random token, 10 % stay. The targets are the original ids at the picked
# positions and `-100` ("ignore") elsewhere, so the loss counts only those.

# %%
rng = np.random.default_rng(0)
inputs, targets = mask_tokens(x, rng, bpe.mask_id, bpe.vocab_size, bpe.special_ids)
print("inputs :", inputs[0], "\ntargets:", targets[0])
big_inputs, big_targets = mask_tokens(splits.train[:20_000], rng, bpe.mask_id, bpe.vocab_size, bpe.special_ids)
picked = big_targets != -100
share_mask = (big_inputs[picked] == bpe.mask_id).mean()
share_same = (big_inputs[picked] == big_targets[picked]).mean()
print(f"picked {picked.mean():.3f} of the tokens; of those <mask>: {share_mask:.3f}, unchanged: {share_same:.3f}")
# random draws: 20,000 tokens give the 15% a standard error of 0.0025, and ~3,000 picked give
# the 80% and 10% one of ~0.007; the bounds are 4 of those (a random token can also be the
# original one, 1 in 512: negligible)
assert abs(picked.mean() - 0.15) < 0.01 and abs(share_mask - 0.8) < 0.03 and abs(share_same - 0.1) < 0.03

# %% [markdown]
# **Classification.** Sentences have different lengths: right-pad them with `<pad>` and
# keep a mask, `True` at real tokens, that attention uses to ignore the padding.

# %%
words_tok = WordTokenizer.train(data.train.texts)               # the sentiment set's own vocabulary
sentences = data.train.texts[:3]
seqs = [words_tok.encode(s) for s in sentences]
padded, real = pad_batch(seqs, pad_id=words_tok.pad_id)        # (B, T), (B, T)
for s in sentences:
    print(repr(s))
print(padded)
print(real.astype(int))
assert (real == (padded != words_tok.pad_id)).all() and real.sum(axis=1).tolist() == [len(q) for q in seqs]

# %% [markdown]
# ## Parity check: the first op the ids meet, in both backends
#
# The ids go straight into the embedding lookup $\mathrm{out}_p = W_{\mathrm{ids}_p}$, and the
# padding mask into attention. The reference's hand-written embedding backward must add up
# the gradients of repeated ids (the padded batch repeats `<pad>` many times) exactly as
# torch's autograd does; the masks must be the same in both backends. Float64, random
# upstream gradient, the parity contract of `docs/architecture.md` (rtol $10^{-7}$, atol $10^{-9}$).

# %%
rng = np.random.default_rng(1)
W = rng.standard_normal((words_tok.vocab_size, 16))            # (V, C)
dout = rng.standard_normal(padded.shape + (16,))               # (B, T, C) random upstream gradient
out_r, cache = ref.embedding_forward(padded, W)
dW_r = ref.embedding_backward(dout, cache)
W_t = torch.tensor(W, requires_grad=True)
out_t = tb.embedding(torch.from_numpy(padded), W_t)
(out_t * torch.from_numpy(dout)).sum().backward()
np.testing.assert_allclose(out_r, out_t.detach().numpy(), rtol=1e-7, atol=1e-9)
np.testing.assert_allclose(dW_r, W_t.grad.numpy(), rtol=1e-7, atol=1e-9)
print(f"embedding: output difference {np.abs(out_r - out_t.detach().numpy()).max():.1e}, "
      f"dW difference {np.abs(dW_r - W_t.grad.numpy()).max():.1e}; "
      f"<pad> row of dW sums {int((padded == words_tok.pad_id).sum())} positions")
mask_r = ref.padding_mask(padded, words_tok.pad_id)
mask_t = tb.padding_mask(torch.from_numpy(padded), words_tok.pad_id)
assert (mask_r == real).all() and (mask_t.numpy() == mask_r).all()
print("padding masks agree in both backends and with pad_batch's")

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "ops" / "test_ops_parity.py") + "::test_op_parity[embedding]",
                        str(TESTS / "ops" / "test_attention.py") + "::test_masks_parity"])
    assert code == 0, f"the embedding / mask parity tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the checks above are the parity check")
