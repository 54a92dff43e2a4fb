"""`minillm generate` without bounds (issue 29 item 5) and its sampling defaults (issue 28
item 6): text streamed as it comes, never a broken character; Ctrl-C keeps what was
printed and exits 130; an absurd --max-new-tokens is refused; a prompt over block_size
keeps its last tokens and says so; --top-k 0 and --top-p 1 turn each filter off."""
import numpy as np
import pytest

from minillm.cli import main
from minillm.store.runs import load_run
from minillm.train import generation
from minillm.train.generation import TextStream, generate, generate_text, text_deltas
from minillm.train.sampling import next_token_probs, top_k_filter

TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--block-size", "16", "--batch-size", "4"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("gen")
    corpus = base / "corpus.txt"
    corpus.write_text(("the cat sat on the mat. the dog sat on the log. " * 60).strip(), encoding="utf-8")
    assert main(["prepare", "--corpus", str(corpus), "--tokenizer", "char", "--out", str(base / "data")]) == 0
    assert main(["pretrain", "--data", str(base / "data"), "--backend", "numpy", "--steps", "6",
                 "--out", str(base / "run"), *TINY]) == 0
    return base / "run"


# -- decoding piece by piece ------------------------------------------------------------------

def _bytes_decode(ids):
    return bytes(ids).decode("utf-8", errors="replace")


@pytest.mark.parametrize("window", [2, 3, 64])
def test_text_deltas_never_print_half_a_character(window):
    text = "naïve café: 5 € — 日本語 ok"
    ids = list(text.encode("utf-8"))                        # one token per byte: characters split
    pieces = list(text_deltas(iter(ids), _bytes_decode, window=window))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces) and len(pieces) > 10


def test_text_deltas_keep_the_spacing_of_a_word_tokenizer():
    words = ["the", "cat", "sat", "on", "the", "mat"] * 5
    decode = lambda ids: " ".join(words[i] for i in ids)    # noqa: E731  (words joined by spaces)
    pieces = list(text_deltas(iter(range(len(words))), decode, window=2))
    assert "".join(pieces) == " ".join(words)


def test_text_deltas_end_inside_a_character_as_decode_gives_it():
    ids = list("ab€".encode("utf-8"))[:-1]                  # the euro sign's last byte never comes
    assert "".join(text_deltas(iter(ids), _bytes_decode)) == _bytes_decode(ids)


# -- the command --------------------------------------------------------------------------------

def test_generate_prints_the_stream_which_is_generate_text(lm_run, capsys):
    assert main(["generate", str(lm_run), "--prompt", "the ", "--max-new-tokens", "12", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out == "the " + generate_text(lm_run, "the ", max_new_tokens=12, seed=3) + "\n"
    loaded = load_run(lm_run, task="causal_lm")
    tok = loaded.tokenizer
    new = generate(loaded.runtime, loaded.model, tok.encode("the "), 12, temperature=0.8, top_k=40, seed=3,
                   eos_id=tok.eos_id)
    assert out == "the " + tok.decode(new, skip_special_tokens=True) + "\n"


def test_ctrl_c_keeps_what_was_printed_and_exits_130(lm_run, capsys, monkeypatch):
    step, calls = generation.DecodeBatch.step, []

    def interrupted_step(self):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(generation.DecodeBatch, "step", interrupted_step)
    assert main(["generate", str(lm_run), "--prompt", "the ", "--max-new-tokens", "100000",
                 "--temperature", "0"]) == 130
    out, err = capsys.readouterr()
    monkeypatch.setattr(generation.DecodeBatch, "step", step)
    five = generate_text(lm_run, "the ", max_new_tokens=5, temperature=0)
    # the 5 tokens' text, less a character whose last bytes had not come (never printed broken)
    assert out == "the " + five.rstrip("\ufffd") + "\n" and len(five.rstrip("\ufffd")) > 0
    assert err.strip() == "interrupted"


def test_absurd_max_new_tokens_is_refused_and_help_says_the_limit(lm_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", str(lm_run), "--max-new-tokens", "100000000"])
    assert exit_.value.code == 2
    assert "--max-new-tokens: expected an integer in [0, 100000], got 100000000" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "at most 100000" in text
    assert "0 = off (default: 40)" in text and "1 = off (default: 1.0, off)" in text


def test_a_long_prompt_keeps_its_last_block_size_tokens_and_says_so(lm_run, capsys):
    prompt = "the cat sat on the mat, the dog"                  # 31 characters, block_size 16
    assert main(["generate", str(lm_run), "--prompt", prompt, "--max-new-tokens", "8", "--temperature", "0"]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == ("warning: the prompt has 31 tokens, the model sees at most 16 (block_size): "
                           "its first 15 are left out")
    assert out == prompt + generate_text(lm_run, prompt[-16:], max_new_tokens=8, temperature=0) + "\n"
    stream = TextStream.of_run(lm_run, prompt[-16:], max_new_tokens=1)
    assert stream.dropped == 0


# -- each filter can be turned off ------------------------------------------------------------------

def test_top_k_zero_and_top_p_one_are_off():
    logits = np.random.default_rng(0).normal(size=(3, 50))
    np.testing.assert_array_equal(top_k_filter(logits, 0), logits)
    off = next_token_probs(logits, temperature=0.7, top_k=0, top_p=1.0)
    np.testing.assert_array_equal(off, next_token_probs(logits, temperature=0.7))
    assert (next_token_probs(logits, temperature=0.7, top_k=40) == 0).sum() == 3 * 10


def test_generate_with_both_filters_off_samples_the_whole_vocabulary(lm_run, capsys):
    assert main(["generate", str(lm_run), "--prompt", "the ", "--max-new-tokens", "10", "--top-k", "0",
                 "--top-p", "1", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert out == "the " + generate_text(lm_run, "the ", max_new_tokens=10, top_k=None, top_p=None, seed=4) + "\n"
