"""Word-level tokenizer on nltk's data-free tokenizers (no punkt, never nltk.download).

The chapter (section 5.1) calls ``nltk.word_tokenize``, which needs the punkt model
and so a download. ``NLTKWordTokenizer`` (the Treebank rules behind it) and
``WordPunctTokenizer`` need no data; both report character *spans*, so the text
between two tokens is known and can be kept.

Pieces. Each word or punctuation mark becomes one piece; a single space before it is
glued to its front (GPT-2's convention), any other whitespace is a piece of its own:

    "Hello, world.\\n" -> ["Hello", ",", " world", ".", "\\n"]

The pieces concatenate to the text exactly, so decode(encode(s)) == s whenever every
piece of s is in the vocabulary (in particular for every training text when
``min_freq=1`` and no ``max_size``). An unknown piece is lossy: it becomes <unk>
(after a " " piece when it began with a space and " " is known), and decodes as
"<unk>".
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .tokenizer_base import FORMAT_VERSION, Tokenizer, training_texts
from .vocab import SPECIAL_TOKENS, UNK_ID, Vocabulary

SPLITTERS = ("treebank", "wordpunct")


def _nltk_splitter(name: str):
    """An nltk tokenizer with ``span_tokenize``; nltk is imported here, lazily."""
    if name not in SPLITTERS:
        raise ValueError(f"splitter must be one of {SPLITTERS}, got {name!r}")
    try:
        from nltk.tokenize import NLTKWordTokenizer, WordPunctTokenizer
    except ImportError as e:
        raise ImportError(
            "WordTokenizer needs nltk (its data-free tokenizers only): "
            "pip install 'minillm[pipeline]'"
        ) from e
    return NLTKWordTokenizer() if name == "treebank" else WordPunctTokenizer()


_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
"""Whitespace after . ! ? or around a newline: where a sentence (probably) ends."""


def _spans(splitter, fallback, text: str) -> list[tuple[int, int]]:
    """Token spans, increasing and non-overlapping.

    The Treebank rules split a final period only at the end of their input (they
    expect one sentence, which punkt would provide); so the text is first cut at
    likely sentence ends (a rough, data-free stand-in for punkt) and each piece is
    tokenized on its own. If the Treebank aligner fails on unusual input, WordPunct's
    spans are used for that piece.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    breaks = [(m.start(), m.end()) for m in _SENTENCE_BREAK.finditer(text)] + [(len(text), len(text))]
    for end, next_start in breaks:
        chunk = text[start:end]
        if chunk:
            try:
                part = list(splitter.span_tokenize(chunk))
            except (ValueError, IndexError):
                part = None
            if part is None or any(a < b_prev for (a, _), (_, b_prev) in zip(part[1:], part)):
                part = list(fallback.span_tokenize(chunk))
            spans.extend((a + start, b + start) for a, b in part)
        start = next_start
    return spans


def split_pieces(text: str, splitter, fallback) -> list[str]:
    """Cut ``text`` into pieces that concatenate back to it (see the module docstring)."""
    pieces: list[str] = []
    prev = 0
    for a, b in _spans(splitter, fallback, text):
        gap, word = text[prev:a], text[a:b]
        if gap.endswith(" ") and gap.isspace():
            if len(gap) > 1:
                pieces.append(gap[:-1])
            pieces.append(" " + word)
        else:
            if gap:
                pieces.append(gap)    # other whitespace (or, defensively, skipped text)
            pieces.append(word)
        prev = b
    if prev < len(text):
        pieces.append(text[prev:])
    return [p for p in pieces if p]


def word_tokenize(text: str, splitter: str = "treebank") -> list[str]:
    """Words and punctuation of ``text``, whitespace dropped: features for a bag of words.

    The offline replacement for the chapter's ``nltk.word_tokenize`` (no punkt).
    """
    tok = _nltk_splitter(splitter)
    fallback = _nltk_splitter("wordpunct")
    return [text[a:b] for a, b in _spans(tok, fallback, text)]


class WordTokenizer(Tokenizer):
    """Word-level tokenizer: pieces (see module docstring) looked up in a :class:`Vocabulary`."""

    kind = "WordTokenizer"

    def __init__(self, vocab: Vocabulary, splitter: str = "treebank"):
        self.vocab = vocab
        self.splitter = splitter
        self._splitter = _nltk_splitter(splitter)
        self._fallback = _nltk_splitter("wordpunct")
        self._id_bytes = [tok.encode("utf-8") for tok in vocab.tokens]
        self._space_id = vocab.token_to_id(" ") if " " in vocab else None

    @classmethod
    def train(
        cls,
        texts_or_text: str | Iterable[str],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        splitter: str = "treebank",
    ) -> "WordTokenizer":
        """Count the pieces of the texts and build a deterministic vocabulary.

        ``max_size`` is the total vocabulary size, the 7 special tokens included.
        """
        texts = training_texts(texts_or_text, cls.kind)
        tok, fallback = _nltk_splitter(splitter), _nltk_splitter("wordpunct")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(split_pieces(text, tok, fallback))
        return cls(Vocabulary.build(counts, min_freq=min_freq, max_size=max_size), splitter)

    def tokenize(self, text: str) -> list[str]:
        """The pieces of ``text``; ``"".join(pieces) == text`` always."""
        return split_pieces(text, self._splitter, self._fallback)

    def _encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self.tokenize(text):
            i = self.vocab.token_to_id(piece)
            if i == UNK_ID and piece.startswith(" ") and self._space_id is not None:
                ids.append(self._space_id)
                i = self.vocab.token_to_id(piece[1:])
            ids.append(i)
        return ids

    def _to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "version": FORMAT_VERSION, "splitter": self.splitter,
                "special_tokens": list(SPECIAL_TOKENS), "tokens": self.vocab.to_list()}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> "WordTokenizer":
        return cls(Vocabulary(data["tokens"]), data.get("splitter", "treebank"))
