# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. Evaluation: metrics and the confusion matrix
#
# The chapter (section 3.5) names accuracy, precision, recall and F1, but its code never
# computes them, and its validation loss divides a sum of per-batch *means* by a number of
# *tokens*. This notebook defines each metric, computes it by hand beside `minillm.core.metrics`,
# draws a confusion matrix, evaluates a language model by perplexity — and shows that the
# same checkpoint gives the same scores in both backends.
#
# For a class $c$, with TP / FP / FN the true positives, false positives and false negatives:
#
# $$\mathrm{precision}_c = \frac{TP_c}{TP_c + FP_c},\qquad
# \mathrm{recall}_c = \frac{TP_c}{TP_c + FN_c},\qquad
# F1_c = \frac{2\,\mathrm{precision}_c\,\mathrm{recall}_c}{\mathrm{precision}_c + \mathrm{recall}_c},\qquad
# \mathrm{accuracy} = \frac{\#\{\hat y_n = y_n\}}{N}$$

# %%
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.core import metrics
from minillm.core.config import ModelConfig
from minillm.core.plots import plot_confusion_matrix
from minillm.data import CharTokenizer, WordTokenizer, sentiment, split_contiguous, synthetic_language
from minillm.notebook import show, show_image
from minillm.store.runtime import Runtime
from minillm.train import pipeline
from minillm.train.run_evaluation import evaluate
from minillm.train.entry import train
from minillm.train.evaluation import evaluate_lm
from minillm.train.run_config import RunConfig
from minillm.train.tasks import causal_lm_eval_batches
from minillm.train.training import TrainConfig

OUT = Path("runs") / "notebooks" / "08_evaluation"
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The confusion matrix and the metrics, by hand
#
# Row = true class, column = predicted class. Everything else is read off it: the diagonal
# holds the correct answers, column $c$ sums to everything predicted as $c$, row $c$ to
# everything that truly is $c$.

# %%
names = ["cat", "dog", "bird"]
y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2])
y_pred = np.array([0, 0, 1, 2, 1, 1, 1, 1, 0, 1, 2, 1])
cm = metrics.confusion_matrix(y_true, y_pred)                      # (C, C)
print(cm)
tp = np.diag(cm).astype(float)                                     # (C,)
precision = tp / cm.sum(axis=0)                                    # TP / (TP + FP): per column
recall = tp / cm.sum(axis=1)                                       # TP / (TP + FN): per row
f1 = 2 * precision * recall / (precision + recall)
for c, name in enumerate(names):
    print(f"{name:5s} precision {precision[c]:.3f}  recall {recall[c]:.3f}  F1 {f1[c]:.3f}")
report = metrics.classification_metrics(y_true, y_pred, average="macro", label_names=names)
np.testing.assert_allclose([report["per_class"][n]["f1"] for n in names], f1, rtol=1e-12)
np.testing.assert_allclose(report["f1"], f1.mean(), rtol=1e-12)      # macro = unweighted mean
print(f"accuracy {report['accuracy']:.3f} = {np.trace(cm)}/{cm.sum()}; macro F1 {report['f1']:.3f}")
show_image(plot_confusion_matrix(cm, names, OUT / "toy_confusion.png"))

# %% [markdown]
# **Averaging.** *macro* averages the per-class scores (every class counts the same);
# *weighted* weighs them by support; *micro* pools all decisions, and for single-label
# classification micro precision = micro recall = micro F1 = accuracy. *binary* reports the
# positive class only. minillm follows scikit-learn's definitions (the tests compare them on
# random inputs), including `zero_division=0`:

# %%
show(metrics.precision_recall_f1)

# %%
for average in ("macro", "weighted", "micro"):
    s = metrics.precision_recall_f1(y_true, y_pred, average=average)
    print(f"{average:8s} precision {s.precision:.3f}  recall {s.recall:.3f}  F1 {s.f1:.3f}")
np.testing.assert_allclose([s.precision, s.recall, s.f1], report["accuracy"], rtol=1e-12)  # micro = accuracy

# %% [markdown]
# ## A real classifier
#
# A shorter fine-tuning run (notebook 7's model, 700 steps instead of 800, so it still makes mistakes
# worth looking at), then `evaluate` (`minillm.train.run_evaluation`) on the held-out test split: it reloads the
# best checkpoint from the run folder and rebuilds the run's test split from its data
# contract (`dataset=` says how the data was made: the embedded set, its seed and
# split), exactly as `minillm evaluate RUN` does.

# %%
data = sentiment(n=2000, seed=0)
tok = WordTokenizer.train(data.train.texts)
config = ModelConfig(vocab_size=tok.vocab_size, block_size=24, d_model=32, n_heads=2, n_layers=1,
                     positional="sinusoidal")
run = OUT / "classifier"
train_config = TrainConfig(steps=700, lr=5e-3, min_lr=5e-4, warmup_steps=20, weight_decay=0.0, eval_every=100,
                           checkpoint_every=700, seed=0, batch_size=32)
train("classification", run, RunConfig(config, train_config, backend="torch"), data=data, tokenizer=tok,
      dataset=pipeline.labelled_dataset("sentiment", data, seed=0), progress=False)
scores = evaluate(run, Runtime("torch"))
print({k: round(scores[k], 3) for k in ("accuracy", "precision", "recall", "f1", "loss")})
print("scored:", scores["data"], "with", scores["checkpoint"])
assert scores["data"]["split"] == "test" and scores["data"]["runs_own_data"]
assert scores["data"]["rows"] == len(data.test) and scores["checkpoint"]["path"].endswith("best")
assert scores["accuracy"] < 0.9, scores["accuracy"]          # it still makes mistakes worth looking at
print(scores["per_class"])
show_image(plot_confusion_matrix(scores["confusion_matrix"], scores["label_names"],
                                                 OUT / "confusion.png", title="sentiment, test split"))

# %% [markdown]
# ## Language models: the token-weighted mean, perplexity, bits
#
# A language model is scored by its mean cross-entropy per token $\bar\ell$ (nats), or by
# perplexity $e^{\bar\ell}$ — the number of equally likely choices the model is as unsure as —
# or by bits per token $\bar\ell / \ln 2$. The mean must weigh each batch by its number of
# tokens: a short last batch must count less. The chapter divides the *sum of batch means*
# by the number of words, which is not a mean of anything: it is roughly a batch's mean
# loss divided by the batch size, so cutting the same tokens into other batches changes
# it, while the token-weighted mean stays put (the cell re-batches and checks both):

# %%
show(metrics.TokenLoss)

# %%
batch_means = [2.0, 2.2, 5.0]                     # the last batch is short and bad
batch_tokens = [512, 512, 16]
acc = metrics.TokenLoss()
for mean, n in zip(batch_means, batch_tokens):
    acc.add_mean(mean, n)
mean_of_means = np.mean(batch_means)
chapter = sum(batch_means) / sum(batch_tokens)
print(f"token-weighted mean {acc.mean:.4f} nats  (perplexity {acc.perplexity:.2f}, {acc.bits_per_token:.3f} bits)")
print(f"mean of batch means {mean_of_means:.4f}  (overweights the 16-token batch)")
print(f"the chapter's sum / tokens {chapter:.5f}  (not a loss: about a batch mean / the batch size)")
np.testing.assert_allclose(acc.mean, np.dot(batch_means, batch_tokens) / sum(batch_tokens), rtol=1e-12)
np.testing.assert_allclose([acc.perplexity, acc.bits_per_token], [np.exp(acc.mean), acc.mean / np.log(2)], rtol=1e-12)
assert mean_of_means > acc.mean + 0.5                         # the 16-token batch counts as much as 512
# the same tokens cut into bigger batches (the first two merged): a mean must not change
merged_means, merged_tokens = [(2.0 * 512 + 2.2 * 512) / 1024, 5.0], [1024, 16]
merged = metrics.TokenLoss()
for mean, n in zip(merged_means, merged_tokens):
    merged.add_mean(mean, n)
chapter_merged = sum(merged_means) / sum(merged_tokens)
print(f"re-batched: token-weighted mean {merged.mean:.4f}; the chapter's figure {chapter_merged:.5f}")
np.testing.assert_allclose(merged.mean, acc.mean, rtol=1e-12)        # unchanged
assert abs(chapter_merged - chapter) > 0.2 * chapter                 # the chapter's figure moved by > 20%

# %% [markdown]
# A sanity check every LM evaluation should pass: an untrained model (weights of size 0.02)
# predicts nearly uniformly, so its perplexity is close to the vocabulary size $V$ (within
# 5 %, checked).

# %%
lang = synthetic_language(20_000, order=2, alphabet_size=8, seed=0)
char_tok = CharTokenizer.train(lang.text)
ids = np.asarray(char_tok.encode(lang.text), dtype=np.int64)
valid = split_contiguous(ids, (0.9, 0.05, 0.05)).validation
gpt = ref.GPT(ModelConfig(vocab_size=char_tok.vocab_size, block_size=32, d_model=32, n_heads=2, n_layers=2), seed=0)
untrained = evaluate_lm(Runtime("numpy"), gpt, causal_lm_eval_batches(valid, 32, 16))
print(f"untrained GPT: {untrained['loss']:.3f} nats, perplexity {untrained['perplexity']:.1f}; "
      f"V = {char_tok.vocab_size}")
assert abs(untrained["perplexity"] / char_tok.vocab_size - 1) < 0.05   # within 5% of V

# %% [markdown]
# ## Parity check: one checkpoint, two backends, the same scores
#
# The checkpoint written by the torch run is loaded by the NumPy reference and evaluated on
# the same test split. The predictions must be the same, so the confusion matrix must be
# identical; the mean loss is a float32 computation summed in a different order in each
# backend, so it agrees to float32 rounding (rtol $10^{-5}$, a hundred float32 ulps).

# %%
by_backend = {b: evaluate(run, Runtime(b)) for b in ("numpy", "torch")}
assert by_backend["numpy"]["confusion_matrix"] == by_backend["torch"]["confusion_matrix"]
np.testing.assert_allclose(by_backend["numpy"]["loss"], by_backend["torch"]["loss"], rtol=1e-5)
for b, s in by_backend.items():
    print(f"{b:6s} accuracy {s['accuracy']:.4f}  F1 {s['f1']:.4f}  loss {s['loss']:.7f}  cm {s['confusion_matrix']}")

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "core" / "test_metrics.py") + "::test_precision_recall_f1_match_sklearn",
                        str(TESTS / "core" / "test_metrics.py") + "::test_token_weighted_mean_equals_one_big_batch_and_chapter_formula_differs",
                        str(TESTS / "models" / "test_models_checkpoint.py") + "::test_what_one_backend_saves_the_other_loads"])
    assert code == 0, f"the metrics / cross-backend checkpoint tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the check above is the parity check")
