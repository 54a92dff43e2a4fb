# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Fine-tuning a classifier
#
# Fine-tuning (chapter section 3.4) adapts a Transformer to a labelled task. The chapter's
# sample code "fine-tunes" by training the language-model objective again: there is no
# classification head, and accuracy is never computed. minillm's `SequenceClassifier` is the
# encoder body plus a real head:
#
# $$\bar h_b = \frac{\sum_t m_{bt}\, h_{bt}}{\sum_t m_{bt}}\ \ \text{(mean over the real tokens)},
# \qquad \mathrm{logits}_b = \bar h_b W + b,\qquad
# \mathcal{L} = \frac1B \sum_b -\log \mathrm{softmax}(\mathrm{logits}_b)_{y_b}$$
#
# with $m$ the padding mask of notebook 5, so padding never leaks into the sentence vector.
#
# The task: minillm's embedded sentiment set, where word order decides the label ("the plot
# was **not** good", "the acting was bad, **but** the story was great"). Every contrast
# sentence comes with its mirror (the same clauses swapped, the opposite label), so a
# bag-of-words classifier cannot get them both right.

# %%
import time
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.core.config import ModelConfig
from minillm.core.plots import read_metrics
from minillm.data import WordTokenizer, bag_of_words_ceiling, pad_batch, sentiment
from minillm.notebook import show, show_image
from minillm.train.entry import train
from minillm.train.run_config import RunConfig
from minillm.train.training import TrainConfig

OUT = Path("runs") / "notebooks" / "07_finetuning"
OUT.mkdir(parents=True, exist_ok=True)

# %%
data = sentiment(n=2000, seed=0)
tok = WordTokenizer.train(data.train.texts)
print(f"train / validation / test: {len(data.train)} / {len(data.validation)} / {len(data.test)}; "
      f"vocabulary {tok.vocab_size} words")
for text, label in list(zip(data.test.texts, data.test.labels))[:4]:
    print(f"  [{data.test.label_names[label]:8s}] {text}")
ceiling = bag_of_words_ceiling(data.test.texts, data.test.labels)
print(f"the best ANY bag-of-words classifier can do on the test split: {ceiling:.1%}")

# %% [markdown]
# ## The head, beside its formula

# %%
show(ref.SequenceClassifier.forward)

# %% [markdown]
# ## Training
#
# `train("classification", ...)` pads each batch, builds the mask, and runs the same
# trainer as pretraining; at the end it scores the held-out test split with the best
# checkpoint (the highest validation accuracy), the one `minillm evaluate` and `load_run` load.
# A one-layer encoder with fixed sinusoidal positions (a fixed table gives every position a
# distinct vector from the first step; a learned one starts near zero and must be learned
# too), torch backend, 800 steps.

# %%
config = ModelConfig(vocab_size=tok.vocab_size, block_size=24, d_model=32, n_heads=2, n_layers=1,
                     positional="sinusoidal")
train_config = TrainConfig(steps=800, lr=5e-3, min_lr=5e-4, warmup_steps=30, weight_decay=0.0,
                           eval_every=200, checkpoint_every=800, seed=0, batch_size=32)
start = time.perf_counter()
result = train("classification", OUT / "classifier", RunConfig(config, train_config, backend="torch"),
               data=data, tokenizer=tok, progress=False)
print(f"{train_config.steps} steps in {time.perf_counter() - start:.1f} s; "
      f"scored: the checkpoint of step {result.checkpoint['step']}")
test = result.test
assert result.checkpoint["path"].endswith("best") and test["split"] == "test"
print(f"test accuracy {test['accuracy']:.1%}  precision {test['precision']:.3f}  "
      f"recall {test['recall']:.3f}  F1 {test['f1']:.3f}   (bag-of-words ceiling {ceiling:.1%})")
show_image(OUT / "classifier" / "loss.png")
assert test["accuracy"] > ceiling                     # beats every bag-of-words classifier

# %% [markdown]
# Small Transformers learn rules such as negation abruptly: the loss sits near $\log 2$ for
# a while (here the first 300 steps average within 0.05 of it), then drops (the last 100
# average below 0.3). How long the plateau lasts varies with the seed (not shown here: try
# another `seed`); with another seed or fewer steps the same model can still be at chance.
# Evaluate before you believe.

# %%
losses = np.array([r["loss"] for r in read_metrics(OUT / "classifier" / "metrics.jsonl")])  # one per step
plateau, end = losses[:300].mean(), losses[-100:].mean()
print(f"mean training loss, steps 0-299: {plateau:.3f} (log 2 = {np.log(2):.3f}); last 100 steps: {end:.3f}")
assert len(losses) == train_config.steps and abs(plateau - np.log(2)) < 0.05 and end < 0.3

# %% [markdown]
# ## Asking the model

# %%
model = result.model                   # the best checkpoint's weights, the model scored above
model.eval()
probes = ["the plot was really good.", "the plot was not really good.",
          "the acting was bad, but the music was great.", "the music was great, but the acting was bad.",
          "the cast did not feel very dull.", "the plot was good.", "the plot was not good."]
ids, mask = pad_batch([tok.encode(s) for s in probes], pad_id=tok.pad_id)
with torch.no_grad():
    logits, _ = model(ids, attention_mask=mask)
probs = tb.softmax(logits, axis=-1).numpy()
for s, p in zip(probes, probs):
    print(f"P(positive) = {p[1]:.2f}   {s}")
p_pos = probs[:, 1]
# intensified, negated and "but" sentences: right, and sure of it (on the right side of 0.25 / 0.75)
assert p_pos[0] > 0.75 and p_pos[1] < 0.25 and p_pos[2] > 0.75 and p_pos[3] < 0.25 and p_pos[4] > 0.75, p_pos
assert (np.abs(p_pos[5:] - 0.5) < 0.25).all(), p_pos[5:]   # the short forms: unsure

# %% [markdown]
# Negations and "but" are handled — and so the model beats every bag-of-words classifier —
# yet look at the last two probes: without an intensifier ("was good", "was not good") it
# is unsure (both between 0.25 and 0.75), and may even get one wrong. Those short forms are a small share of the
# training sentences. A test accuracy is an average; probing where a model fails is part of
# evaluation (notebook 8).

# %% [markdown]
# ## Starting from a pretrained encoder
#
# In the chapter's recipe the classifier starts from a pretrained encoder (notebook 6):
# `train("classification", ..., encoder_state=encoder.state_dict())` copies every body
# weight and keeps the new head's initialisation. `load_encoder_state` does the copying:

# %%
encoder = ref.TransformerEncoder(config, seed=5)                # stands in for a pretrained one
classifier = ref.SequenceClassifier(config, n_classes=2, seed=0)
classifier.load_encoder_state(encoder.state_dict())
body = [n for n, _ in classifier.named_parameters() if not n.startswith("head.")]
assert all(np.array_equal(classifier.state_dict()[n], encoder.state_dict()[n]) for n in body)
print(f"copied {len(body)} body tensors; the head {[n for n, _ in classifier.named_parameters() if n.startswith('head.')]} is new")

# %% [markdown]
# ## Parity check: the classifier in both backends
#
# The same seed gives the same weights in both backends. On a padded batch, float64: the
# logits, the loss and the gradient of every parameter (the reference's hand-written
# backward through the head, the masked mean pooling and the encoder) must agree with
# autograd within the parity contract of `docs/architecture.md`, rtol $10^{-7}$, atol
# $10^{-9}$.

# %%
cfg64 = ModelConfig(vocab_size=tok.vocab_size, block_size=24, d_model=16, n_heads=2, n_layers=2,
                    positional="sinusoidal", dtype="float64")
labels = np.array([1, 0, 1, 0, 1, 1, 0])                     # one per probe sentence
ours, theirs = ref.SequenceClassifier(cfg64, seed=1), tb.SequenceClassifier(cfg64, seed=1)
logits_r, loss_r = ours(ids, labels=labels, attention_mask=mask)
loss_r.backward()
logits_t, loss_t = theirs(ids, labels=labels, attention_mask=mask)
loss_t.backward()
np.testing.assert_allclose(logits_r, logits_t.detach().numpy(), rtol=1e-7, atol=1e-9)
np.testing.assert_allclose(float(loss_r), loss_t.item(), rtol=1e-7, atol=1e-9)
worst = 0.0
for (name, p_r), (name_t, p_t) in zip(ours.named_parameters(), theirs.named_parameters()):
    assert name == name_t
    np.testing.assert_allclose(p_r.grad, p_t.grad.numpy(), rtol=1e-7, atol=1e-9, err_msg=name)
    worst = max(worst, float(np.abs(p_r.grad - p_t.grad.numpy()).max()))
print(f"logits, loss and {len(list(ours.parameters()))} gradients agree; largest gradient difference {worst:.1e}")

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "models" / "test_models_parity.py") + "::test_logits_loss_and_every_gradient_agree",
                        str(TESTS / "models" / "test_models_checkpoint.py") + "::test_classifier_starts_from_a_pretrained_encoder"])
    assert code == 0, f"the classifier parity tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the check above is the parity check")
