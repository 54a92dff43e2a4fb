# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 9. Deployment: a REST server and its clients
#
# The last step of the chapter (sections 3.6 and 5.6) puts the trained model behind an HTTP
# API. The chapter's Flask server runs with `debug=True` (which lets anyone who reaches it
# run code) and loads a pickle with `torch.load` (which runs code from the file).
# `minillm serve` runs a FastAPI app under uvicorn instead, bound to 127.0.0.1, and loads
# the safetensors checkpoint (weights only, no code) once at start-up, in either backend:
#
# | endpoint | for | answers |
# |---|---|---|
# | `POST /v1/generate` | causal LM runs | the continuation of a prompt |
# | `POST /v1/score` | causal LM runs | the text's loss and perplexity |
# | `POST /v1/classify` | fine-tuned runs | the label and the class probabilities |
# | `GET /v1/model`, `GET /health` | any run | what is served; liveness |
#
# This notebook trains a tiny GPT and a classifier, starts `minillm serve` on each, queries
# them with nothing but the standard library (`urllib`), and checks that the server answers
# what the library computes directly.
#
# (Needs the `serve` extra: `pip install 'minillm[serve]'`.)

# %%
import atexit
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.core.config import ModelConfig
from minillm.data import BPETokenizer, WordTokenizer, python_docs, sentiment, split_contiguous
from minillm.store.runs import load_run
from minillm.store.runtime import Runtime
from minillm.train.entry import train
from minillm.train.generation import generate
from minillm.train.run_config import RunConfig
from minillm.train.training import TrainConfig

OUT = Path("runs") / "notebooks" / "09_deployment"
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Two runs to serve
#
# A tiny GPT on the first 100 kB of the Python documentation (byte-level BPE), and notebook
# 7's sentiment classifier. Each run folder holds everything the server needs: the
# tokenizer, the config and the weights.

# %%
text = python_docs()[:100_000]
bpe = BPETokenizer.train(text, vocab_size=512)
splits = split_contiguous(np.asarray(bpe.encode(text), dtype=np.int64), (0.9, 0.05, 0.05))
start = time.perf_counter()
gpt_config = RunConfig(ModelConfig(vocab_size=bpe.vocab_size, block_size=64, d_model=64, n_heads=4, n_layers=2),
                       TrainConfig(steps=250, lr=1e-2, min_lr=1e-3, warmup_steps=10, eval_every=250,
                                   checkpoint_every=250, seed=0, batch_size=16), backend="torch")
train("causal_lm", OUT / "gpt", gpt_config, data=splits, tokenizer=bpe, progress=False)
data = sentiment(n=2000, seed=0)
words = WordTokenizer.train(data.train.texts)
classifier_config = RunConfig(ModelConfig(vocab_size=words.vocab_size, block_size=24, d_model=32, n_heads=2,
                                          n_layers=1, positional="sinusoidal"),
                              TrainConfig(steps=800, lr=5e-3, min_lr=5e-4, warmup_steps=30, weight_decay=0.0,
                                          eval_every=800, checkpoint_every=800, seed=0, batch_size=32),
                              backend="torch")
train("classification", OUT / "classifier", classifier_config, data=data, tokenizer=words, progress=False)
print(f"trained both in {time.perf_counter() - start:.0f} s")
print(sorted(p.name for p in (OUT / "gpt" / "checkpoints" / "best").iterdir()))


# %% [markdown]
# ## Starting the server
#
# In a terminal it is one command (`--backend numpy` serves with the NumPy reference,
# `--backend torch` with PyTorch):
#
# ```
# minillm serve runs/notebooks/09_deployment/gpt --port 8000 --backend numpy
# ```
#
# Here we start that same command as a background process on a free port of this machine
# (127.0.0.1 only), and wait until `/health` answers.

# %%
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run, port):
    """`minillm serve RUN --port PORT --backend numpy`, run with this notebook's Python."""
    cmd = [sys.executable, "-c", "import sys; from minillm.cli import main; sys.exit(main())",
           "serve", str(run), "--port", str(port), "--backend", "numpy"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    atexit.register(proc.terminate)                  # never outlive the notebook
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}:\n{proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise TimeoutError("the server did not answer /health within 60 s")


gpt_port, cls_port = free_port(), free_port()
servers = [start_server(OUT / "gpt", gpt_port), start_server(OUT / "classifier", cls_port)]
print(f"GPT on http://127.0.0.1:{gpt_port}, classifier on http://127.0.0.1:{cls_port}")


# %% [markdown]
# ## Querying it
#
# A client needs nothing but HTTP and JSON. (With `curl`:
# `curl -s localhost:8000/v1/generate -H 'content-type: application/json' -d '{"prompt": "The "}'`.)

# %%
def call(port, path, body=None):
    """GET (body None) or POST JSON; returns (status, parsed JSON answer)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:              # 4xx: the error is JSON too
        return e.code, json.loads(e.read())

status, info = call(gpt_port, "/v1/model")
print(status, json.dumps({k: info[k] for k in ("task", "backend", "tokenizer", "limits")}, indent=1))
assert status == 200 and info["task"] == "causal_lm" and info["backend"] == "numpy", info

# %%
status, answer = call(gpt_port, "/v1/generate",
                      {"prompt": "The ", "max_new_tokens": 40, "temperature": 0.8, "top_k": 40, "seed": 0})
print(status, repr("The " + answer["text"]))
print("finish:", answer["finish_reason"], "| seed:", answer["seed"])
perplexity = {}
for sentence in ("The function returns a list of the values.", "qxz vvk jjj wpp zzq"):
    status, s = call(gpt_port, "/v1/score", {"text": sentence})
    perplexity[sentence] = s["perplexity"]
    print(f"{status} loss {s['loss']:.2f} nats, perplexity {s['perplexity']:8.1f}  <- {sentence!r}")
english, soup = perplexity.values()
assert 10 * english < soup, perplexity

# %% [markdown]
# English-like text scores a much lower perplexity than letter soup (over ten times lower,
# checked above): the model has learned something about its corpus, and `/v1/score` is a
# cheap way to ask it how surprising a text is. The classifier answers with its label (the
# most probable class) and the softmax probabilities:

# %%
for sentence in ("the acting was bad, but the music was great.", "the plot was not really good."):
    status, c = call(cls_port, "/v1/classify", {"text": sentence})
    print(status, c["label"], {k: round(v, 3) for k, v in c["probabilities"].items()}, "<-", repr(sentence))
    assert status == 200 and c["label"] == max(c["probabilities"], key=c["probabilities"].get)
    np.testing.assert_allclose(sum(c["probabilities"].values()), 1.0, atol=1e-6)   # float32 softmax, summed

# %% [markdown]
# Bad requests get a 4xx with a message, never a traceback or a 500: a wrong type, too
# many new tokens, an unknown field, the wrong task for this run.

# %%
for port, path, body in [(gpt_port, "/v1/generate", {"prompt": "x", "temperature": "hot"}),
                         (gpt_port, "/v1/generate", {"prompt": "x", "max_new_tokens": 10**6}),
                         (gpt_port, "/v1/generate", {"prompt": "x", "file": "/etc/passwd"}),
                         (cls_port, "/v1/generate", {"prompt": "x"})]:
    status, err = call(port, path, body)
    assert 400 <= status < 500, (status, err)
    print(status, err["error"], "-", err["message"][:90])

# %% [markdown]
# A text longer than the model's window is not refused: the server keeps what fits (for a
# text to classify, its first `block_size` tokens, the way training cut its texts), says
# so in `truncated_tokens`, and `/v1/model` states the rule as `long_input`. Here a text of
# 100 words meets a window of 24 tokens:

# %%
long_text = "the plot " * 50
status, c = call(cls_port, "/v1/classify", {"text": long_text})
status_m, m = call(cls_port, "/v1/model")
print(status, c["label"], "tokens", c["tokens"], "truncated_tokens", c["truncated_tokens"])
print("rule:", m["long_input"])
assert status == 200 and status_m == 200 and m["long_input"]
assert c["tokens"] == 24 and c["tokens"] + c["truncated_tokens"] == len(words.encode(long_text))

# %% [markdown]
# ## Parity check: the server answers what the library computes — in the other backend
#
# The servers run the NumPy reference (`--backend numpy`, checked below). Here the same
# checkpoints are loaded with the **torch** backend (`load_run(folder, Runtime("torch"))`)
# and asked the same questions directly:
#
# - generation with the same seed must give the same tokens (sampling draws from one seeded
#   NumPy generator in both backends; the two float32 models' logits differ by rounding
#   only, far below the gaps between the probabilities of different tokens);
# - the score must be the same loss to float32 rounding (rtol $10^{-5}$, about a hundred
#   float32 ulps for a mean over a few dozen tokens);
# - the class probabilities likewise (atol $10^{-5}$).

# %%
run = load_run(OUT / "gpt", Runtime("torch"))       # the run's best checkpoint, as the server loads it
rt, gpt, tok = run.runtime, run.model, run.tokenizer
prompt_ids = tok.encode("The ")
direct = generate(rt, gpt, prompt_ids, 40, temperature=0.8, top_k=40, seed=0, eos_id=tok.eos_id)
_, served = call(gpt_port, "/v1/generate",
                 {"prompt": "The ", "max_new_tokens": 40, "temperature": 0.8, "top_k": 40, "seed": 0})
assert served["tokens"] == direct, (served["tokens"], direct)
print(f"generate: the server (numpy) and the torch backend chose the same {len(direct)} tokens")

sentence = "The function returns a list of the values."
ids = tok.encode(sentence)
with torch.no_grad():
    _, loss_t = gpt(np.asarray([ids[:-1]]), np.asarray([ids[1:]]))
_, s = call(gpt_port, "/v1/score", {"text": sentence})
np.testing.assert_allclose(s["loss"], loss_t.item(), rtol=1e-5)
print(f"score: server {s['loss']:.7f}, torch {loss_t.item():.7f}")

run_c = load_run(OUT / "classifier", Runtime("torch"))
classifier, words_tok = run_c.model, run_c.tokenizer
sentence = "the acting was bad, but the music was great."
ids = words_tok.encode(sentence)
with torch.no_grad():
    logits, _ = classifier(np.asarray([ids]))
p_direct = tb.softmax(logits.double(), axis=-1).numpy()[0]
_, c = call(cls_port, "/v1/classify", {"text": sentence})
p_served = np.array([c["probabilities"][name] for name in run_c.label_names])
np.testing.assert_allclose(p_served, p_direct, atol=1e-5)
print("classify: server", p_served.round(6), "torch", p_direct.round(6))

# %%
for proc in servers:                                  # stop the servers
    proc.terminate()
    proc.wait(timeout=10)
print("servers stopped:", [proc.returncode for proc in servers])

# %% [markdown]
# And the project's own server tests (a live uvicorn, the same tokens over HTTP as from the
# library in both backends, every error a clean 4xx), when the repository's `tests/` folder
# is next to the package:

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if (TESTS / "serving" / "test_serving.py").is_file():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        *(str(TESTS / "serving" / "test_serving.py") + "::" + name for name in (
                            "test_generate_gives_the_library_tokens", "test_both_backends_answer_the_same_tokens",
                            "test_score_is_the_models_loss", "test_classify_gives_the_models_probabilities"))])
    assert code == 0, f"the serving tests failed (pytest exit code {code})"
else:
    print("no tests/serving/test_serving.py next to minillm: the checks above are the parity check")
