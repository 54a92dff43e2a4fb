"""`minillm evaluate RUN` says what it wrote into the run folder (eval.json, a
classifier's confusion.png), of which split and checkpoint, and which earlier
evaluation it replaced; stdout stays the scores' JSON alone."""
import json

import pytest

from minillm import ModelConfig
from minillm.cli import main
from minillm.data import WordTokenizer
from minillm.train import pipeline
from minillm.train.entry import train
from minillm.train.run_config import RunConfig
from minillm.train.training import TrainConfig


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "cls"
    data = pipeline.load_labelled("sentiment")
    tok = WordTokenizer.train("\n".join(data.train.texts), max_size=200)
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=24, d_model=16, n_heads=2, n_layers=1)
    train("classification", out, RunConfig(cfg, TrainConfig.recipe(4, 1e-2, batch_size=8), backend="numpy"),
          data=data, tokenizer=tok, progress=False, source="sentiment",
          dataset=pipeline.labelled_dataset("sentiment", data))
    return out


def test_evaluate_says_what_it_wrote_and_what_it_replaced(cls_run, capsys):
    pytest.importorskip("matplotlib")
    assert main(["evaluate", str(cls_run), "--backend", "numpy"]) == 0
    first = capsys.readouterr()
    scores = json.loads(first.out)                         # stdout: the scores alone
    assert json.loads((cls_run / "eval.json").read_text()) == scores
    step = scores["checkpoint"]["step"]
    assert first.err.splitlines() == [
        f"wrote {cls_run / 'eval.json'}: the test split of sentiment ({scores['data']['rows']} rows), "
        f"checkpoint {cls_run / 'checkpoints' / 'best'} (step {step})",
        f"wrote {cls_run / 'confusion.png'}"]

    assert main(["evaluate", str(cls_run), "--backend", "numpy", "--split", "validation"]) == 0
    second = capsys.readouterr()
    rows = json.loads(second.out)["data"]["rows"]
    assert second.err.splitlines() == [
        f"wrote {cls_run / 'eval.json'}: the validation split of sentiment ({rows} rows), "
        f"checkpoint {cls_run / 'checkpoints' / 'best'} (step {step}); it replaces the previous evaluation, "
        f"of the test split of sentiment ({scores['data']['rows']} rows), checkpoint "
        f"{cls_run / 'checkpoints' / 'best'} (step {step})",
        f"wrote {cls_run / 'confusion.png'} (replacing the previous one)"]
    assert json.loads((cls_run / "eval.json").read_text())["split"] == "validation"
