"""Messages a new user meets (issue 29 item 9) and the long-input rule in `evaluate` (item 5):
a one-label file names the file and its label column; a corpus too short for a window
says so, with its token count and what is needed; `answer` returns the context's own
characters; a classifier's text over block_size is cut and the cut said."""
import csv

import pytest

from minillm.apps.question_answering import answer_spans
from minillm.cli import main
from minillm.core.config import ModelConfig
from minillm.data import qa_corpus
from minillm.data.parallel import PieceTokenizer
from model_helpers import load_parts, train_task

TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--batch-size", "4", "--backend", "numpy"]


def _csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review", "stars"])
        writer.writerows(rows)
    return path


def test_a_one_label_csv_names_the_file_and_its_label_column(tmp_path, capsys):
    data = _csv(tmp_path / "one.csv", [[f"a film number {i}", "5"] for i in range(20)])
    assert main(["finetune", "--dataset", str(data), "--text-column", "review", "--label-column", "stars",
                 "--tokenizer", "char", "--steps", "1", "--block-size", "16", "--out", str(tmp_path / "cls"),
                 *TINY]) == 2
    assert capsys.readouterr().err == (f"error: {data}: a classifier needs at least 2 different labels, got 1: "
                                       f"['5'] (label column 'stars')\n")
    assert not (tmp_path / "cls" / "run.json").exists()


def test_a_one_line_corpus_says_it_is_too_short_and_what_is_needed(tmp_path, capsys):
    corpus = tmp_path / "one.txt"
    corpus.write_text("a single short line", encoding="utf-8")        # 19 characters: splits 17, 1, 1
    assert main(["pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--steps", "1", "--block-size", "16",
                 "--out", str(tmp_path / "lm"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err == ("error: the corpus is too short for --block-size 16: its 19 tokens are split into train 17, "
                   "validation 1, test 1, and each split must hold --block-size + 1 = 17 tokens (a window and "
                   "its next-token targets); use a corpus of at least 331 tokens\n")
    assert "at most 0" not in err


def test_the_corpus_size_said_is_the_least_that_fits(tmp_path, capsys):
    """The count the message gives is exact: one token fewer is refused, that many trains."""
    for n, status in ((330, 2), (331, 0)):      # 5% of 330 rounds to 16 (half to even), of 331 to 17
        corpus = tmp_path / f"c{n}.txt"
        corpus.write_text(("abcdefghij" * 40)[:n], encoding="utf-8")
        assert main(["pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--steps", "1",
                     "--block-size", "16", "--out", str(tmp_path / f"lm{n}"), *TINY]) == status
    capsys.readouterr()


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("qa") / "qa"
    train_task("question_answering", out, ModelConfig(vocab_size=128, block_size=64, d_model=16, n_heads=2,
                                                      n_layers=1), steps=2, batch_size=8, n_train=50, n_test=5)
    return out


def test_answer_returns_the_contexts_own_characters(qa_run):
    model, rt, tok = load_parts(qa_run, "question_answering")
    context, question = "Alice Lives In Dublin. Bob Lives In Rome.", "Where does Alice live?"
    [(text, i, j)] = answer_spans(model, rt, tok, [context], [question])
    spans = PieceTokenizer.piece_spans(context)
    assert text == context[spans[i][0]:spans[j][1]]
    assert PieceTokenizer.pieces(text) == PieceTokenizer.pieces(context)[i:j + 1]
    words = [w for w in text.split() if w.isalpha()]
    assert all(w[0].isupper() for w in words)      # every word of this context is capitalised: kept so


def test_piece_spans_are_the_pieces_in_the_texts_own_case():
    text = "Dublin, 1994-03-23!"
    spans = PieceTokenizer.piece_spans(text)
    assert [text[a:b] for a, b in spans] == ["Dublin", ",", "1", "9", "9", "4", "-", "0", "3", "-", "2", "3", "!"]
    assert [text[a:b].lower() for a, b in spans] == PieceTokenizer.pieces(text)
    assert PieceTokenizer.piece_spans("İstanbul") is None          # lowercasing lengthens it: no offsets


def test_evaluate_says_when_texts_are_cut_to_block_size(tmp_path, capsys, caplog):
    rows = [[f"a {'good' if i % 2 else 'bad'} film {i}", "pos" if i % 2 else "neg"] for i in range(40)]
    data = _csv(tmp_path / "reviews.csv", rows)
    out = tmp_path / "cls"
    assert main(["finetune", "--dataset", str(data), "--text-column", "review", "--label-column", "stars",
                 "--tokenizer", "char", "--steps", "1", "--block-size", "16", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    long = _csv(tmp_path / "long.csv", [["a good film " * 3, "pos"], ["bad", "neg"]])
    assert main(["evaluate", str(out), "--dataset", str(long)]) == 0
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "1 of 2 texts have more than block_size = 16 tokens: each is cut to its first 16 (as training cut its texts)"]
    caplog.clear()
    short = _csv(tmp_path / "short.csv", [["good", "pos"], ["bad", "neg"]])
    assert main(["evaluate", str(out), "--dataset", str(short)]) == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_resume_of_a_folder_without_a_run_writes_nothing(tmp_path, capsys):
    """`--resume` on a folder with no checkpoint fails before it builds or writes anything,
    so a plain rerun is not refused afterwards as "already holds a run"."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 80, encoding="utf-8")
    out = tmp_path / "never"
    args = ["pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--steps", "2", "--block-size", "8",
            "--out", str(out), *TINY]
    assert main([*args, "--resume"]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    assert main(args) == 0                                   # a plain run is not refused afterwards


def test_a_finished_run_resumed_prints_strict_json(tmp_path, capsys):
    """Resuming a finished run trains no step: its summary says so with null, not NaN."""
    import json
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 80, encoding="utf-8")
    args = ["pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--steps", "2", "--block-size", "8",
            "--out", str(tmp_path / "run"), *TINY]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in the summary"))
    assert summary["train_loss"] is None


def test_finetune_on_a_pretrained_encoder_refuses_model_options(tmp_path, capsys):
    """The encoder decides the model: a model option given with --pretrained is refused,
    not ignored."""
    enc = tmp_path / "enc"
    assert main(["pretrain", "--corpus", "sentiment", "--tokenizer", "word", "--task", "masked_lm", "--steps", "1",
                 "--block-size", "16", "--out", str(enc), *TINY]) == 0
    capsys.readouterr()
    assert main(["finetune", "--pretrained", str(enc), "--arch", "llama", "--steps", "1",
                 "--out", str(tmp_path / "cls"), "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert "the model options are not read; got --arch" in err, err
    assert not (tmp_path / "cls" / "run.json").exists()
