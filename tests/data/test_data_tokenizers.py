"""Tokenizers (minillm/data/{word_tokenizer,char_tokenizer,bpe,tokenizer_base}.py).

Promises tested: decode(encode(s)) == s for every Unicode string (Char with byte
fallback, BPE), for every string whose pieces are known (Word); same special ids
everywhere; JSON save/load gives the same tokenizer; BPE's incremental training
learns exactly the merges of the textbook algorithm that recounts every pair.
"""
import re
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import assume, given, strategies as st

from minillm.data import (BPETokenizer, CharTokenizer, Tokenizer, WordTokenizer, load_tokenizer,
                          pretokenize, python_docs, word_tokenize)
from minillm.data.bpe import N_BASE

CORPUS = python_docs()[:40_000]
BPE = BPETokenizer.train(CORPUS, vocab_size=600)
CHAR = CharTokenizer.train(CORPUS)
CHAR_UNK = CharTokenizer.train(CORPUS, byte_fallback=False)
WORD = WordTokenizer.train([CORPUS, "the <eos> end"])
ALL = {"word": WORD, "char": CHAR, "char_unk": CHAR_UNK, "bpe": BPE}

# text that mixes ASCII, whitespace, punctuation and far-away code points (emoji, CJK, combining marks)
mixed_text = st.lists(st.sampled_from(list("ab the\n\t .,;'\"-_()0123") + ["é", "e\u0301", "日本", "🙂", "\u2028", "ß"])).map("".join)


# --- round trips ---------------------------------------------------------------

@given(st.text())
def test_bpe_round_trips_every_string(s):
    assert BPE.decode(BPE.encode(s)) == s


@given(mixed_text)
def test_bpe_round_trips_mixed_text(s):
    assert BPE.decode(BPE.encode(s)) == s


@given(st.text())
def test_char_with_byte_fallback_round_trips_every_string(s):
    assert CHAR.decode(CHAR.encode(s)) == s


@given(st.text(min_size=1))
def test_tokenizers_trained_on_a_string_round_trip_it(s):
    assume(s.strip())
    assert BPETokenizer.train(s, vocab_size=N_BASE + 20, min_frequency=1).decode(
        BPETokenizer.train(s, vocab_size=N_BASE + 20, min_frequency=1).encode(s)) == s
    char = CharTokenizer.train(s, byte_fallback=False)       # every character is known
    assert char.decode(char.encode(s)) == s
    word = WordTokenizer.train(s)                             # every piece is known
    assert word.decode(word.encode(s)) == s
    assert "".join(word.tokenize(s)) == s


@given(st.lists(st.sampled_from(WORD.tokenize(CORPUS[:3000])), max_size=30))
def test_word_round_trips_text_made_of_known_pieces(pieces):
    s = "".join(pieces)
    ids = WORD.encode(s)
    if WORD.unk_id not in ids:       # re-splitting can form an unseen piece; that is the documented loss
        assert WORD.decode(ids) == s


@given(mixed_text)
def test_word_pieces_always_concatenate_to_the_text(s):
    assert "".join(WORD.tokenize(s)) == s


def test_unknown_input_is_lossy_exactly_where_documented():
    assert CHAR_UNK.encode("a\u4e2d") == [CHAR_UNK.encode("a")[0], CHAR_UNK.unk_id]
    assert CHAR_UNK.decode(CHAR_UNK.encode("a\u4e2d")) == "a<unk>"
    ids = CHAR.encode("\u4e2d")                                   # not in the corpus: 3 UTF-8 bytes
    assert len(ids) == 3 and all(7 <= i < 7 + 256 for i in ids)
    word_ids = WORD.encode("the zyzzyva")
    assert WORD.unk_id in word_ids and WORD.decode(word_ids) == "the <unk>"


def test_lone_surrogates_are_rejected_clearly():
    for tok in (BPE, CHAR):
        with pytest.raises(ValueError, match="lone surrogate"):
            tok.encode("a\ud800b")


def test_word_tokenizer_splits_like_treebank_without_punkt():
    assert word_tokenize("I don't like it. Not good!") == ["I", "do", "n't", "like", "it", ".", "Not", "good", "!"]
    assert WordTokenizer.train("Hello, world.\nBye  now").tokenize("Hello, world.\nBye  now") == \
        ["Hello", ",", " world", ".", "\n", "Bye", " ", " now"]


def test_word_tokenizer_says_how_to_install_nltk(monkeypatch):
    monkeypatch.setitem(sys.modules, "nltk", None)
    monkeypatch.setitem(sys.modules, "nltk.tokenize", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'minillm[pipeline]'")):
        WordTokenizer.train("some text")


def test_importing_minillm_data_does_not_import_nltk():
    code = "import sys, minillm.data; assert 'nltk' not in sys.modules, 'nltk imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the shared interface ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ALL))
def test_special_ids_are_the_same_everywhere(name):
    tok = ALL[name]
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id, tok.mask_id, tok.cls_id, tok.sep_id) == tuple(range(7))
    assert [tok.id_to_token(i) for i in range(7)] == ["<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "<cls>", "<sep>"]
    ids = tok.encode("the <eos> end", add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.eos_id not in ids[1:-1], "literal '<eos>' text must not become the special id"
    assert tok.decode(ids) == "<bos>the <eos> end<eos>"
    assert tok.decode(ids, skip_special_tokens=True) == "the <eos> end"
    assert max(tok.encode(CORPUS[:2000])) < tok.vocab_size
    with pytest.raises(ValueError, match=rf"token id must be in \[0, {tok.vocab_size}\), got {tok.vocab_size}"):
        tok.decode([tok.vocab_size])


@pytest.mark.parametrize("name", sorted(ALL))
def test_save_and_load_give_the_same_tokenizer(name, tmp_path):
    tok = ALL[name]
    path = tmp_path / f"{name}.json"
    tok.save(path)
    for loaded in (type(tok).load(path), load_tokenizer(path), Tokenizer.load(path)):
        assert type(loaded) is type(tok) and loaded == tok
        assert loaded.vocab_size == tok.vocab_size
        assert loaded.encode(CORPUS[-3000:]) == tok.encode(CORPUS[-3000:])
    other = BPETokenizer if isinstance(tok, CharTokenizer) else CharTokenizer
    with pytest.raises(ValueError, match=f"expected a {other.kind} JSON"):
        other.load(path)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        BPETokenizer.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json: not a tokenizer JSON"):
        load_tokenizer(bad)


@pytest.mark.parametrize("cls", [WordTokenizer, CharTokenizer, BPETokenizer])
@pytest.mark.parametrize("text", ["", "   \n\t", ["", " "]])
def test_training_on_empty_text_is_refused(cls, text):
    with pytest.raises(ValueError, match="expected non-empty training text"):
        cls.train(text)


def test_vocab_size_limits():
    assert CharTokenizer.train(CORPUS, max_size=7 + 256 + 10).vocab_size == 7 + 256 + 10
    assert WordTokenizer.train(CORPUS, max_size=50).vocab_size == 50
    assert BPE.vocab_size == 600
    with pytest.raises(ValueError, match="vocab_size must be >= 263"):
        BPETokenizer.train(CORPUS, vocab_size=100)


# --- BPE ------------------------------------------------------------------------

@given(st.text())
def test_pretokenize_covers_every_character(s):
    assert "".join(pretokenize(s)) == s


def textbook_bpe(text, vocab_size, min_frequency):
    """Reference BPE: recount every pair after every merge (slow, obviously right)."""
    words = Counter(pretokenize(text))
    seqs = {w: [7 + b for b in w.encode()] for w in words}
    pieces = [b""] * 7 + [bytes([b]) for b in range(256)]
    known = {p: i for i, p in enumerate(pieces) if i >= 7}
    merges = []
    while len(known) + 7 < vocab_size:
        counts = Counter()
        for w, seq in seqs.items():
            for pair in zip(seq, seq[1:]):
                counts[pair] += words[w]
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], pieces[p[0]], pieces[p[1]], p))
        if counts[pair] < min_frequency:
            break
        joined = pieces[pair[0]] + pieces[pair[1]]
        if joined not in known:
            known[joined] = len(pieces)
            pieces.append(joined)
        new = known[joined]
        merges.append((pair[0], pair[1], new))
        for w, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
                    out.append(new)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
    return merges


@given(st.text(alphabet="aab b\nc.", min_size=1, max_size=200), st.integers(N_BASE, N_BASE + 40), st.integers(1, 3))
def test_incremental_bpe_training_learns_the_textbook_merges(text, vocab_size, min_frequency):
    assume(text.strip())
    fast = BPETokenizer.train(text, vocab_size=vocab_size, min_frequency=min_frequency)
    assert fast.merges == textbook_bpe(text, vocab_size, min_frequency)


def test_bpe_textbook_agreement_on_real_text():
    text = CORPUS[:5000]
    assert BPETokenizer.train(text, vocab_size=400).merges == textbook_bpe(text, 400, 2)


def test_bpe_compresses_real_text():
    held_out = python_docs()[-20_000:]
    n_bytes = len(held_out.encode())
    assert len(BPE.encode(held_out)) < 0.5 * n_bytes   # 600 tokens learned on 40 kB: > 2 bytes/token
