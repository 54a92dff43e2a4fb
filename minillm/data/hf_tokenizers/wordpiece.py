"""BERT's tokenizer: the basic tokenizer (clean-up, CJK splitting, lowercasing, accent
stripping, punctuation splitting) then greedy longest-match-first WordPiece (Devlin et al.
2019, section 3; Wu et al. 2016), with the ids of its files.

The pieces, in the order the ``tokenizers`` library applies them: added tokens that are not
normalized (:mod:`.added`), BERT's normalizer (:meth:`WordPieceTokenizer.normalize`), added
tokens that are, the pre-tokenizer (whitespace and punctuation), WordPiece, then the
post-processor's ``[CLS]`` and ``[SEP]`` around the ids.
"""
from __future__ import annotations

import unicodedata

from .record import record_of
from .added import AddedToken, matcher, split_added
from .files import read_vocab_txt



def _is_whitespace(ch: str) -> bool:
    """Unicode White_Space (Rust's ``char::is_whitespace``, which ``tokenizers`` uses).

    Python's ``str.isspace`` is White_Space plus U+001C..U+001F; those four are controls,
    which the clean-up drops before it asks, so here the two agree."""
    return ch.isspace()


def _is_control(ch: str) -> bool:
    """Control, format and private-use characters (Cc, Cf, Co), which BERT drops. Code
    points unassigned in this Python's Unicode tables (Cn) are kept, as the ``tokenizers``
    library keeps them: they may be letters in a newer Unicode. (Lone surrogates, Cs, have
    no UTF-8 form, so ``tokenizers`` never sees one; they are dropped here.)"""
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs")


def _is_punctuation(ch: str) -> bool:
    """Unicode punctuation, and every non-letter non-digit ASCII symbol ($, +, ^, `)."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    """CJK Unified Ideographs blocks (not Hangul or kana), which BERT splits per character.

    The ``tokenizers`` library, which ``transformers`` uses, starts the Extension E range
    at U+2B920 where Google's original BERT code starts it at U+2B820; this follows
    ``tokenizers``, so ids agree with ``transformers`` (U+2B820..U+2B91F stay in words)."""
    return any(a <= cp <= b for a, b in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


class WordPieceTokenizer:
    """BERT's tokenizer with the ids of ``vocab.txt`` (line ``i`` is token ``i``; or of
    ``tokenizer.json``'s ``model.vocab``).

    Basic tokenization: drop NUL, U+FFFD and control characters, turn whitespace into
    spaces, put spaces around CJK ideographs (``handle_chinese_chars``), strip accents
    (NFD, drop combining marks: ``strip_accents``, by default as ``lowercase``) and
    lowercase (``lowercase``); then cut at whitespace and before and after every
    punctuation character. WordPiece: each word is split greedily into the longest
    vocabulary prefix, then the longest ``##``-continuation, and so on; a word that cannot
    be split (or is longer than ``max_chars_per_word``) is ``[UNK]``.

    ``added_tokens`` (:class:`~.added.AddedToken`) are matched whole first; by default the
    five special tokens the vocabulary has. ``prefix`` / ``suffix``: the ids the
    post-processor puts around the text; by default ``[CLS]`` and ``[SEP]``. A folder is
    read by :func:`~minillm.data.hf_tokenizers.read_tokenizer_folder`.
    """

    kind = "WordPieceTokenizer"

    # the folder's files (hf_tokenizers.record), set by read_tokenizer_folder, and the
    # chat template it carries (its folder's, or an SFT run's): what to_dict records
    record = None
    chat_template = None

    def to_dict(self) -> dict:
        """The folder's files and the chat template (:func:`~.record.record_of`)."""
        return record_of(self)
    SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

    def __init__(self, vocab: list[str], *, lowercase: bool = True, strip_accents: bool | None = None,
                 handle_chinese_chars: bool = True, max_chars_per_word: int = 100,
                 added_tokens=None, prefix: tuple | None = None, suffix: tuple | None = None):
        self.tokens = list(vocab)
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        if "[UNK]" not in self.vocab:
            raise ValueError("WordPieceTokenizer: expected [UNK] in the vocabulary, got none")
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.handle_chinese_chars = handle_chinese_chars
        self.max_chars_per_word = max_chars_per_word
        if added_tokens is None:
            added_tokens = [AddedToken(t, self.vocab[t]) for t in self.SPECIALS if t in self.vocab]
        self.added_tokens = tuple(added_tokens)
        self._names = {i: t for i, t in enumerate(self.tokens)}
        self._names.update({t.id: t.content for t in self.added_tokens})
        self._special_ids = {t.id for t in self.added_tokens if t.special}
        # (pattern, content -> token): the tokens matched in the raw text, and those matched
        # in the normalized text, whose own text is normalized the same way
        raw = [t for t in self.added_tokens if not t.normalized]
        normed = [t._replace(content=self.normalize(t.content)) for t in self.added_tokens if t.normalized]
        self._raw_added = matcher(raw), {t.content: t for t in raw}
        self._normalized_added = matcher(normed), {t.content: t for t in normed}
        self.prefix = tuple(prefix) if prefix is not None else tuple(
            self.vocab[t] for t in ("[CLS]",) if t in self.vocab)
        self.suffix = tuple(suffix) if suffix is not None else tuple(
            self.vocab[t] for t in ("[SEP]",) if t in self.vocab)

    @classmethod
    def from_file(cls, vocab_txt, **options) -> "WordPieceTokenizer":
        """Read ``vocab.txt``, one token a line."""
        return cls(read_vocab_txt(vocab_txt), **options)

    def normalize(self, text: str) -> str:
        """BERT's normalizer, in the order of the ``tokenizers`` library's ``BertNormalizer``:
        drop NUL, U+FFFD and controls, turn whitespace into spaces, put spaces around CJK
        ideographs (``handle_chinese_chars``); then, on the whole text, strip accents (NFD, drop Mn) and lowercase
        one character at a time.

        Per character because ``tokenizers`` lowercases so (Rust's ``char::to_lowercase``):
        Python's ``str.lower`` reads a letter's neighbours for the Greek final sigma
        (``"ΑΣ".lower() == "ας"``), ``tokenizers`` gives ``"ασ"``. Google's original BERT
        code, and ``transformers``' ``BertTokenizerLegacy`` that copies it, lowercase each
        word with ``str.lower`` before stripping accents, so they write the final sigma.
        """
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                chars.append(" ")
            elif self.handle_chinese_chars and _is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        text = "".join(chars)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        if self.lowercase:
            text = "".join(c.lower() for c in text)
        return text

    def basic_tokenize(self, text: str) -> list[str]:
        """The words and punctuation marks WordPiece then splits: :meth:`normalize`, then
        BERT's pre-tokenizer."""
        return self._pre_tokenize(self.normalize(text))

    @staticmethod
    def _pre_tokenize(text: str) -> list[str]:
        """BERT's pre-tokenizer: cut at whitespace, then before and after every
        punctuation character."""
        words = []
        for word in text.split():
            current = ""
            for ch in word:
                if _is_punctuation(ch):
                    words += [current, ch] if current else [ch]
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first split of one word; ``["[UNK]"]`` if impossible."""
        if len(word) > self.max_chars_per_word:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``, as ``transformers``' ``encode`` gives them: added tokens
        matched whole, the rest normalized, pre-tokenized and split by WordPiece, and the
        post-processor's ``prefix`` and ``suffix`` (``[CLS] ... [SEP]``) around it when
        ``add_special_tokens``."""
        if not isinstance(text, str):
            raise TypeError(f"{self.kind}.encode expects a str, got {type(text).__name__}")
        ids = []
        for piece in split_added(text, *self._raw_added):
            if isinstance(piece, AddedToken):
                ids.append(piece.id)
                continue
            for part in split_added(self.normalize(piece), *self._normalized_added):
                if isinstance(part, AddedToken):
                    ids.append(part.id)
                    continue
                for word in self._pre_tokenize(part):
                    ids += [self.vocab[p] for p in self.wordpiece(word)]
        return [*self.prefix, *ids, *self.suffix] if add_special_tokens else ids

    def decode(self, ids, *, skip_special_tokens: bool = False) -> str:
        """Tokens joined by spaces, ``##`` continuations glued to what precedes them."""
        out = []
        for i in ids:
            i = int(i)
            if i not in self._names:
                raise ValueError(f"{self.kind}.decode: token id must be in [0, {self.vocab_size}), got {i}")
            if skip_special_tokens and i in self._special_ids and i != self.unk_id:
                continue
            out.append(self._names[i])
        return " ".join(out).replace(" ##", "")

    @property
    def vocab_size(self) -> int:
        return len(self._names)

    def id_to_token(self, index: int) -> str:
        return self._names[int(index)]

    pad_id = property(lambda self: self.vocab.get("[PAD]"), doc="id of [PAD]")
    unk_id = property(lambda self: self.vocab["[UNK]"], doc="id of [UNK]")
    cls_id = property(lambda self: self.vocab.get("[CLS]"), doc="id of [CLS]")
    sep_id = property(lambda self: self.vocab.get("[SEP]"), doc="id of [SEP]")
    mask_id = property(lambda self: self.vocab.get("[MASK]"), doc="id of [MASK]")
    bos_id = property(lambda self: self.vocab.get("[CLS]"), doc="BERT starts with [CLS]")
    eos_id = property(lambda self: self.vocab.get("[SEP]"), doc="BERT ends with [SEP]")

    def __repr__(self) -> str:
        return f"{self.kind}(vocab_size={self.vocab_size}, lowercase={self.lowercase})"
