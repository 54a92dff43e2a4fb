"""Files minillm writes get the mode any program's new files get, 0666 less the umask:
tokenizer.json was written through mkstemp and came out 0600, unreadable to the group."""
import os
import stat

import numpy as np
import pytest

from minillm import ModelConfig
from minillm.data import CharTokenizer, split_contiguous
from minillm.train import pipeline
from minillm.train.entry import train
from minillm.train.run_config import RunConfig
from minillm.train.training import TrainConfig


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_every_file_of_a_prepared_corpus_and_a_run_honours_the_umask(tmp_path, umask):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    old = os.umask(umask)
    try:
        pipeline.prepare(str(corpus), tmp_path / "data", tokenizer="char", vocab_size=64)
        text = corpus.read_text(encoding="utf-8")
        tok = CharTokenizer.train(text)
        splits = split_contiguous(np.asarray(tok.encode(text), dtype=np.int64), (0.8, 0.1, 0.1))
        cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=8, d_model=8, n_heads=1, n_layers=1)
        tc = TrainConfig(steps=2, lr=1e-2, min_lr=1e-3, warmup_steps=0, eval_every=2, checkpoint_every=2,
                         batch_size=2)
        train("causal_lm", tmp_path / "run", RunConfig(cfg, tc, backend="numpy"), data=splits, tokenizer=tok,
              progress=False)
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != corpus]
    names = {p.name for p in files}
    assert {"tokenizer.json", "run.json", "prepare.json"} <= names and any(p.suffix == ".safetensors" for p in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, (path, oct(path.stat().st_mode))
