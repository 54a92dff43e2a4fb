"""Vocabulary (minillm/data/vocab.py): fixed special ids, deterministic order, no KeyError."""
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

from minillm.data import SPECIAL_TOKENS, Vocabulary


def test_special_tokens_have_fixed_ids():
    assert SPECIAL_TOKENS == ("<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "<cls>", "<sep>")
    vocab = Vocabulary.build("b a b c".split())
    assert [vocab[t] for t in SPECIAL_TOKENS] == list(range(7))


def test_order_is_frequency_then_lexical_and_unknown_maps_to_unk():
    vocab = Vocabulary.build("the cat the dog the cat ant".split())
    # the:3, cat:2, then ant/dog (1 each) in code-point order
    assert vocab.tokens[7:] == ["the", "cat", "ant", "dog"]
    assert vocab["zebra"] == vocab["<unk>"] == 1
    assert vocab.encode(["the", "zebra"]) == [7, 1]
    assert vocab.decode([7, 1]) == ["the", "<unk>"]


def test_min_freq_and_max_size():
    tokens = "a a a b b c".split()
    assert Vocabulary.build(tokens, min_freq=2).tokens[7:] == ["a", "b"]
    assert Vocabulary.build(tokens, max_size=8).tokens[7:] == ["a"]        # max_size counts the specials
    with pytest.raises(ValueError, match="max_size counts the 7 special tokens"):
        Vocabulary.build(tokens, max_size=3)
    with pytest.raises(ValueError, match="min_freq must be >= 1"):
        Vocabulary.build(tokens, min_freq=0)
    with pytest.raises(ValueError, match=r"token id must be in \[0, 10\), got 10"):
        Vocabulary.build(tokens).id_to_token(10)


@given(st.lists(st.text(min_size=1, max_size=4), max_size=40), st.randoms(use_true_random=False))
def test_order_does_not_depend_on_input_order(tokens, rnd):
    shuffled = list(tokens)
    rnd.shuffle(shuffled)
    a, b = Vocabulary.build(tokens), Vocabulary.build(shuffled)
    assert a == b
    assert all(a[t] == i for i, t in enumerate(a.tokens))                 # stoi inverts itos


_SCRIPT = r"""
import json, sys
from minillm.data import BPETokenizer, CharTokenizer, Vocabulary, WordTokenizer
text = open(sys.argv[1], encoding="utf-8").read()
words = text.split()
counts = {w: words.count(w) for w in set(words)}
stream = [w for w in set(words) for _ in range(counts[w])]      # hash-seed dependent order
print(json.dumps({
    "set_order": list(set(words)),
    "vocab": Vocabulary.build(stream).tokens,
    "word": WordTokenizer.train(text).to_dict(),
    "char": CharTokenizer.train(text).to_dict(),
    "bpe": BPETokenizer.train(text, vocab_size=300).to_dict(),
}))
"""


def test_same_ids_in_two_processes_with_different_hash_seeds(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog; a dog, a fox, a cat.\n" * 3
                      + " ".join(f"w{i % 37} v{i % 11}" for i in range(400)), encoding="utf-8")
    outputs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", _SCRIPT, str(corpus)], env=env,
                              capture_output=True, text=True, check=True)
        outputs.append(json.loads(done.stdout))
    first, second = outputs
    assert first["set_order"] != second["set_order"], "the hash seeds did not change set order; test has no teeth"
    for key in ("vocab", "word", "char", "bpe"):
        assert first[key] == second[key], f"{key} differs between processes"
