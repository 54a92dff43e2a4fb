"""Set-up surprises (issue 29 item 8): `minillm --version`; a command that needs an extra
says so before it starts any work; without matplotlib, pretrain says once why no
loss.png is written. Modules are hidden by the hide() fixture of tests/conftest.py
(``sys.modules[name] = None``)."""
import logging

import pytest

from minillm import __version__, cli

TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--block-size", "16", "--batch-size", "4",
        "--backend", "numpy"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(("the cat sat on the mat. the dog sat on the log. " * 60).strip(), encoding="utf-8")
    return path


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"minillm {__version__}\n"


def test_demo_without_nltk_fails_before_training_anything(hide, tmp_path, capsys):
    hide("nltk")
    assert cli.main(["demo", "--quick", "--backend", "numpy", "--out", str(tmp_path / "demo")]) == 2
    assert capsys.readouterr().err == (
        "error: minillm demo (the word tokenizer) needs nltk, which is not installed: "
        "pip install 'minillm[pipeline]' (in a clone of the repository: pip install -e '.[pipeline]')\n")
    assert not (tmp_path / "demo").exists()


def test_pretrain_with_the_word_tokenizer_without_nltk_fails_up_front(hide, corpus, tmp_path, capsys):
    hide("nltk")
    assert cli.main(["pretrain", "--corpus", str(corpus), "--tokenizer", "word", "--steps", "1",
                     "--out", str(tmp_path / "lm"), *TINY]) == 2
    assert "minillm pretrain (the word tokenizer) needs nltk" in capsys.readouterr().err
    assert not (tmp_path / "lm").exists()
    assert cli.main(["pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--steps", "1",
                     "--out", str(tmp_path / "lm"), *TINY]) == 0       # another tokenizer needs no nltk


def test_serve_without_uvicorn_says_so_before_reading_the_run(hide, capsys):
    pytest.importorskip("fastapi")
    hide("uvicorn")
    assert cli.main(["serve", "no/such/run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: minillm serve (the server) needs uvicorn, which is not installed") and \
        "no/such/run" not in err


def test_pretrain_without_matplotlib_says_once_why_there_is_no_loss_png(hide, corpus, tmp_path, capsys, caplog):
    hide("matplotlib")
    out = tmp_path / "lm"
    assert cli.main(["pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--steps", "8",
                     "--eval-every", "2", "--out", str(out), *TINY]) == 0
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "loss.png" in r.getMessage()]
    assert said == ["no loss.png: matplotlib is not installed (pip install 'minillm[pipeline]'); "
                    "the losses are in metrics.jsonl"]
    assert not (out / "loss.png").exists() and (out / "metrics.jsonl").stat().st_size > 0
