# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Pretraining a tiny GPT and a masked language model
#
# Pretraining (chapter section 3.3) teaches a model the statistics of a language by one of
# two self-supervised objectives:
#
# - **causal LM** (GPT): predict token $t+1$ from tokens $\le t$; attention is causally masked;
# - **masked LM** (BERT): hide 15 % of the tokens and predict them from both sides.
#
# Both minimise the cross-entropy of notebook 3 with the Adam(W) of notebook 4. One training
# step reads the same in both backends:
#
# ```python
# logits, loss = model(idx, targets)
# loss.backward()           # reference: the hand-written backward, layer by layer
# opt.step(); opt.zero_grad()
# ```
#
# We train on a synthetic Markov language whose **entropy rate** is known exactly: it is the
# lowest loss any model can reach, so the loss curve has a floor to aim at. The small models
# use the torch backend for speed; the last section shows the NumPy reference trains
# *the same run*, to float64 rounding (rtol $10^{-8}$ after ten steps, checked).

# %%
import json
import time
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.core.config import ModelConfig
from minillm.core.plots import plot_loss_curves, read_metrics
from minillm.data import CharTokenizer, split_contiguous, synthetic_language
from minillm.notebook import show, show_image
from minillm.train.entry import train
from minillm.train.generation import generate
from minillm.train.run_config import RunConfig
from minillm.train.training import TrainConfig, Trainer

OUT = Path("runs") / "notebooks" / "06_pretraining"
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The data: a language with a known floor
#
# An order-2 Markov chain over 8 letters: each letter depends on the two before it. A model
# that has learned the 64 conditional distributions reaches the entropy rate $H$ (nats per
# letter); nothing can do better.

# %%
lang = synthetic_language(60_000, order=2, alphabet_size=8, seed=0)
tok = CharTokenizer.train(lang.text)
ids = np.asarray(tok.encode(lang.text), dtype=np.int64)
splits = split_contiguous(ids, (0.9, 0.05, 0.05))
print(lang.text[:80])
print(f"entropy rate {lang.entropy_rate:.3f} nats/letter (a uniform guess over 8 letters: {np.log(8):.3f})")
print(f"floor for a 32-letter window (the first two positions see less context): "
      f"{lang.loss_floor(32):.3f}")
assert lang.entropy_rate < lang.loss_floor(32) < np.log(8)

# %% [markdown]
# ## The training step, as the trainer runs it
#
# `minillm.train.training.Trainer` runs the step above with gradient clipping and a warm-up +
# cosine learning-rate schedule, evaluates every `eval_every` steps, and writes a run
# folder: `metrics.jsonl`, `checkpoints/{last,best}` (safetensors + JSON, no pickle),
# `loss.png`. `minillm.train.entry.train(task, out, RunConfig(model, train, backend=...),
# data=..., tokenizer=...)` builds the model and the batches of the task and calls it; it
# returns a `TrainedRun` with the run's figures and the live model:

# %%
show(Trainer._train_step)

# %% [markdown]
# ## A tiny GPT

# %%
gpt_config = ModelConfig(vocab_size=tok.vocab_size, block_size=32, d_model=48, n_heads=4, n_layers=2)
train_config = TrainConfig(steps=300, lr=1e-2, min_lr=1e-3, warmup_steps=15, eval_every=50,
                           checkpoint_every=300, seed=0, batch_size=32)
start = time.perf_counter()
gpt = train("causal_lm", OUT / "gpt", RunConfig(gpt_config, train_config, backend="torch"),
            data=splits, tokenizer=tok, progress=False)
n_params = sum(p.numel() for p in gpt.model.parameters())
print(f"{n_params:,} parameters, {train_config.steps} steps in {time.perf_counter() - start:.1f} s")
print(f"validation loss {gpt.validation['loss']:.3f} nats/letter "
      f"(floor {lang.loss_floor(32):.3f}, uniform {np.log(8):.3f}); "
      f"perplexity {gpt.validation['perplexity']:.2f}")
print("run folder:", sorted(p.name for p in (OUT / "gpt").iterdir()))
train_losses = [r["loss"] for r in read_metrics(OUT / "gpt" / "metrics.jsonl") if "loss" in r and "step" in r]
print(f"first training loss {train_losses[0]:.3f}; log V = log {tok.vocab_size} = {np.log(tok.vocab_size):.3f}")

# %%
show_image(OUT / "gpt" / "loss.png")

# %% [markdown]
# The loss falls from about $\log V$ (every token equally likely, $V$ = the tokenizer's vocabulary
# including byte fallbacks and special tokens) towards the floor, and the validation loss
# ends within 0.2 nats above it (a validation set of a few thousand letters estimates a
# loss to about $\pm 0.03$, so it may sit a hair below the floor, never far). What is left
# above the floor is what 300 steps of a 2-layer model have not learned yet.

# %%
# the first step sees near-uniform predictions (weights of size 0.02); the logits' small
# spread adds about half their variance to log V (0.07 here), so: within 0.15
assert abs(train_losses[0] - np.log(tok.vocab_size)) < 0.15, train_losses[0]
assert lang.loss_floor(32) - 0.05 < gpt.validation["loss"] < lang.loss_floor(32) + 0.2, gpt.validation

# %% [markdown]
# Sampling from the model (temperature 0.8) produces text with the language's local
# statistics. The language's own transition table says how likely each letter is after the
# two before it, so it can score the sample: its text scores the entropy rate, the model's
# sample stays below $\log 8$ per letter, and random letters score far worse.

# %%
new = generate(gpt.runtime, gpt.model, tok.encode(lang.text[:10]), 60, temperature=0.8, seed=0)
print("prompt :", lang.text[:10])
print("sample :", tok.decode(new, skip_special_tokens=True))
print("corpus :", lang.text[10:70])


def nats_per_letter(text):
    """The true chain's negative log-likelihood of text (letters after the first two)."""
    ids = [lang.alphabet.index(c) for c in text]
    context = [8 * a + b for a, b in zip(ids, ids[1:])]          # the row of (x_{t-2}, x_{t-1})
    return -np.mean([np.log(lang.transition[c, x]) for c, x in zip(context, ids[2:])])


sample = lang.text[:10] + tok.decode(new, skip_special_tokens=True)
letters = np.random.default_rng(0).choice(list(lang.alphabet), 200)
scores = {"corpus": nats_per_letter(lang.text[:2000]), "model's sample": nats_per_letter(sample),
          "random letters": nats_per_letter("".join(letters))}
print({k: round(v, 2) for k, v in scores.items()}, f"(log 8 = {np.log(8):.2f})")
assert set(sample) <= set(lang.alphabet) and scores["model's sample"] < np.log(8) < scores["random letters"]

# %% [markdown]
# ## A masked language model
#
# The same body without the causal mask (`TransformerEncoder`), trained to recover the
# masked letters from both sides of the gap. Only 15 % of the positions carry a target, and
# a masked letter's neighbours may be masked or swapped too, so with the same 300 steps it
# has learned less than the GPT: its loss on the masked letters is still well above the
# causal model's (more than 0.3 nats, checked below). Give it more steps
# (`TrainConfig(steps=...)`) and watch it fall. Only the task changes:

# %%
mlm = train("masked_lm", OUT / "encoder", RunConfig(gpt_config, train_config, backend="torch"),
            data=splits, tokenizer=tok, progress=False)
print(f"masked LM validation loss on the masked letters: {mlm.validation['loss']:.3f} nats "
      f"(the GPT: {gpt.validation['loss']:.3f})")
assert mlm.validation["loss"] > gpt.validation["loss"] + 0.3
show_image(plot_loss_curves(OUT / "encoder" / "metrics.jsonl", OUT / "encoder_loss.png",
                                            title="masked LM (loss on masked letters only)"))

# %% [markdown]
# ## Pretrained weights: GPT-2 from Hugging Face
#
# Section 7.4 of the chapter points at pretrained models. `minillm.apps.interop` reads a local
# Hugging Face folder (`config.json` + `model.safetensors`) of GPT-2 or BERT into either
# backend, and writes a minillm model back in that layout. GPT-2 is this notebook's GPT with
# biases everywhere, `gelu_tanh` and a tied head; its `Conv1D` weights are already stored as
# $(d_\text{in}, d_\text{out})$, and its `c_attn` holds $[W_Q\,|\,W_K\,|\,W_V]$ side by side.
# First the way there and back with the tiny GPT trained above (nothing to download):

# %%
from minillm.apps.interop import load_hf, read_hf, save_hf
from minillm.store.model_io import as_numpy_state

print(save_hf(gpt.model, OUT / "gpt_hf"), sorted(p.name for p in (OUT / "gpt_hf").iterdir()))
back = read_hf(OUT / "gpt_hf")
ours = as_numpy_state(gpt.model.state_dict())
assert list(back.state) == list(ours) and all(np.array_equal(back.state[k], ours[k]) for k in ours)
print("read back:", back.architecture, "->", back.model_class, f"({len(back.state)} tensors, all equal)")

# %% [markdown]
# With a real GPT-2 folder on disk (saved once, where there is a network, with
# `AutoModelForCausalLM.from_pretrained("gpt2").save_pretrained(folder)` and the same for
# its tokenizer; see the docs page *Pretrained weights*), set `MINILLM_GPT2_FOLDER` to it:
# the cell below loads it into both backends, checks that their logits agree, and lets the
# NumPy reference continue a prompt. Without the variable it only says how.

# %%
import os

from minillm.data.hf_tokenizers import read_tokenizer_folder
from minillm.store.runtime import Runtime

gpt2_folder = os.environ.get("MINILLM_GPT2_FOLDER")
if gpt2_folder and (Path(gpt2_folder) / "config.json").is_file():
    gpt2_tok = read_tokenizer_folder(gpt2_folder)   # a GPT2Tokenizer, in any layout
    prompt = gpt2_tok.encode("The attention mechanism lets a model")
    gpt2_np, info = load_hf(gpt2_folder, "numpy")
    gpt2_t, _ = load_hf(gpt2_folder, "torch")
    with torch.no_grad():
        diff = np.abs(gpt2_np([prompt])[0] - gpt2_t([prompt])[0].numpy()).max()
    print(info.architecture, info.config, f"\nlargest logit difference numpy vs torch: {diff:.1e}")
    new = generate(Runtime("numpy"), gpt2_np, prompt, 20, temperature=0.0)
    print(gpt2_tok.decode(prompt + new))
else:
    print("Set MINILLM_GPT2_FOLDER to a local Hugging Face GPT-2 folder to run GPT-2 here "
          "(or use `minillm generate --from-hf FOLDER`).")

# %% [markdown]
# ## Parity check: the NumPy reference trains the same run
#
# The same `train` call, a float64 model, 10 steps, once with `backend="numpy"` (the
# hand-written backward pass) and once with `backend="torch"` (autograd). Same seed, so the
# same initial weights, the same batches and the same schedule. Each step's gradients agree
# to float64 rounding, and Adam's update $\hat m / (\sqrt{\hat v} + \epsilon)$ does not
# amplify a relative difference by more than about 1 per step, so ten steps must leave the
# losses and every parameter within rtol $10^{-8}$ (atol $10^{-12}$ for entries that cross
# 0) — the tolerance of the project's whole-run parity test.

# %%
tiny = ModelConfig(vocab_size=tok.vocab_size, block_size=16, d_model=16, n_heads=2, n_layers=2, dtype="float64")
short = TrainConfig(steps=10, lr=1e-2, min_lr=1e-3, warmup_steps=2, eval_every=10, checkpoint_every=10, seed=3,
                    batch_size=8)
runs = {backend: train("causal_lm", OUT / f"parity_{backend}", RunConfig(tiny, short, backend=backend),
                       data=splits, tokenizer=tok, progress=False)
        for backend in ("numpy", "torch")}
losses = {b: np.array([r["loss"] for r in read_metrics(OUT / f"parity_{b}" / "metrics.jsonl") if "loss" in r])
          for b in runs}
np.testing.assert_allclose(losses["numpy"], losses["torch"], rtol=1e-8, atol=1e-12)
print("losses (numpy):", losses["numpy"].round(6))
print(f"largest loss difference over 10 steps: {np.abs(losses['numpy'] - losses['torch']).max():.1e}")
state_np = runs["numpy"].model.state_dict()
state_t = {k: v.detach().numpy() for k, v in runs["torch"].model.state_dict().items()}
assert list(state_np) == list(state_t)
for name in state_np:
    np.testing.assert_allclose(state_np[name], state_t[name], rtol=1e-8, atol=1e-12, err_msg=name)
print(f"largest parameter difference: {max(np.abs(state_np[k] - state_t[k]).max() for k in state_np):.1e}")

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "models" / "test_models_training.py") + "::test_whole_run_parity_20_adam_steps"])
    assert code == 0, f"the whole-run parity tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the check above is the parity check")
