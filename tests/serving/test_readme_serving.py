"""README's "Serving: the OpenAI API" snippets run as written: the `curl` line with the
shell, the `openai` client snippet with Python, each against a real `minillm serve` app on
a free loopback port (the README's 127.0.0.1:8000 replaced by it) serving a run folder
named `gpt`, and each answer checked against the library's tokens with the same seed."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from minillm import ModelConfig  # noqa: E402
from minillm.data import WordTokenizer, python_docs, split_contiguous  # noqa: E402
from minillm.serving import create_app  # noqa: E402
from minillm.store.runtime import Runtime  # noqa: E402
from minillm.train.entry import train  # noqa: E402
from minillm.train.generation import generate  # noqa: E402
from minillm.train.run_config import RunConfig  # noqa: E402
from minillm.train.training import TrainConfig  # noqa: E402

from test_serving import live_server  # noqa: E402  (tests/serving is on sys.path, as pytest puts it)

README = Path(__file__).resolve().parents[2] / "README.md"


def snippets() -> dict[str, str]:
    """The section's fenced blocks by language: its one bash block and its one python block."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Serving: the OpenAI API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S)
    assert sorted(lang for lang, _ in blocks) == ["bash", "python"], blocks
    return dict(blocks)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A run folder named gpt (2 training steps), served by the numpy backend."""
    folder = tmp_path_factory.mktemp("readme_serving") / "gpt"
    text = python_docs()[:20000]
    tok = WordTokenizer.train(text, max_size=300)
    splits = split_contiguous(np.asarray(tok.encode(text), dtype=np.int64), (0.8, 0.1, 0.1))
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=16, d_model=16, n_heads=2, n_layers=1)
    tc = TrainConfig(steps=2, lr=1e-2, min_lr=1e-3, warmup_steps=0, eval_every=2, checkpoint_every=2, batch_size=4)
    train("causal_lm", folder, RunConfig(cfg, tc, backend="numpy"), data=splits, tokenizer=tok, progress=False)
    app = create_app(folder, Runtime("numpy"))
    with live_server(app) as url:
        yield url, app.state.minillm


def expected_text(served_run, prompt, max_tokens, seed):
    """The library's continuation with the API's defaults (temperature 1, no top-k, no top-p)."""
    tok = served_run.tokenizer
    new = generate(served_run.runtime, served_run.model, tok.encode(prompt) or [tok.bos_id], max_tokens,
                   temperature=1.0, seed=seed, eos_id=tok.eos_id)
    return tok.decode(new, skip_special_tokens=True)


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_readme_curl_line_runs_as_written(served):
    url, served_run = served
    command = snippets()["bash"].replace("http://127.0.0.1:8000", url)
    assert command != snippets()["bash"]
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, check=True).stdout
    answer = json.loads(out)
    assert answer["object"] == "text_completion" and answer["model"] == "gpt"
    assert answer["choices"][0]["text"] == expected_text(served_run, "The ", 20, seed=0)


def test_readme_openai_snippet_runs_as_written(served):
    url, served_run = served
    code = snippets()["python"].replace("http://127.0.0.1:8000", url)
    assert code != snippets()["python"]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out == expected_text(served_run, "The ", 20, seed=0) + "\n"
    assert len(out) > 10
