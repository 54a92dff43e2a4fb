"""The thread count a run depends on is recorded, and a resume at another is reported
(issue 28, item 4: the same seed gives the same run at the same thread count only)."""
import json
import logging

import numpy as np
import pytest

from minillm import ModelConfig
from minillm.core.threads import check_resume_threads, training_threads
from minillm.data import CharTokenizer, Splits
from minillm.train.entry import train
from minillm.train.run_config import RunConfig
from minillm.train.training import TrainConfig

torch = pytest.importorskip("torch")
TEXT = "the cat sat on the mat. the dog sat on the log. " * 20


def test_the_torch_count_is_torchs_intra_op_threads():
    assert training_threads("torch") == torch.get_num_threads()


def test_a_resume_at_another_count_is_warned_about_naming_both(caplog):
    with caplog.at_level(logging.WARNING, logger="minillm"):
        assert check_resume_threads(1, 2, "runs/x") is True
    assert "runs/x was trained at 1 threads and resumes at 2" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="minillm"):
        assert check_resume_threads(2, 2, "runs/x") is False
        assert check_resume_threads(None, 2, "runs/x") is False      # a run recorded before the count
    assert caplog.text == ""


def test_a_run_records_its_threads_and_its_resume_checks_them(tmp_path, caplog):
    tok = CharTokenizer.train(TEXT)
    ids = np.asarray(tok.encode(TEXT), dtype=np.int64)
    splits = Splits(ids[:600], ids[600:800], ids[800:])
    config = ModelConfig(vocab_size=tok.vocab_size, block_size=8, d_model=16, n_heads=2, n_layers=1)
    rc = RunConfig(config, TrainConfig.recipe(2, 1e-2, batch_size=4), backend="torch")
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    try:
        train("causal_lm", tmp_path, rc, data=splits, tokenizer=tok, progress=False)
        assert json.loads((tmp_path / "run.json").read_text())["threads"] == before
        torch.set_num_threads(other)
        with caplog.at_level(logging.WARNING, logger="minillm"):
            train("causal_lm", tmp_path, rc, data=splits, tokenizer=tok, progress=False, resume=True)
    finally:
        torch.set_num_threads(before)
    assert f"trained at {before} threads and resumes at {other}" in caplog.text
