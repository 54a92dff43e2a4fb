"""The three tokenizers behind one interface, and a loader that reads any of them.

=================  ==========================================  ==========================
tokenizer          token                                       decode(encode(s)) == s
=================  ==========================================  ==========================
``WordTokenizer``  a word or punctuation mark (nltk, no data)  when every piece is known
``CharTokenizer``  a Unicode character (byte fallback)         for every string
``BPETokenizer``   a learned byte sequence (byte-level BPE)    for every string
=================  ==========================================  ==========================

All share ids 0..6 for ``<pad> <unk> <bos> <eos> <mask> <cls> <sep>``, ``train``
(classmethod), ``encode``, ``decode``, ``vocab_size``, ``save``/``load`` (JSON).
"""
from __future__ import annotations

import os

from .bpe import BPETokenizer
from .char_tokenizer import CharTokenizer
from .tokenizer_base import Tokenizer
from .word_tokenizer import WordTokenizer

def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer JSON of any type (the file's "type" field says which)."""
    return Tokenizer.load(path)


__all__ = ["Tokenizer", "WordTokenizer", "CharTokenizer", "BPETokenizer", "load_tokenizer"]
