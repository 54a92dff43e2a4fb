r"""The tokenizers of pretrained Hugging Face models, read offline from their vocabulary files.

- :class:`GPT2Tokenizer`: GPT-2's byte-level BPE (Radford et al. 2019, section 2.2) from
  ``vocab.json`` + ``merges.txt``.
- :class:`WordPieceTokenizer`: BERT's basic tokenizer (clean-up, CJK splitting,
  lowercasing, accent stripping, punctuation splitting) followed by greedy
  longest-match-first WordPiece (Devlin et al. 2019, section 3; Wu et al. 2016) from
  ``vocab.txt``.

Ids. These tokenizers keep the ids of the files they read, because a pretrained model's
embedding rows are indexed by them: they do NOT use minillm's special ids 0..6
(``minillm.data.vocab``). So they mirror :class:`~minillm.data.Tokenizer`'s interface
(``encode``, ``decode``, ``vocab_size``, ``id_to_token``, and the special ids as
properties, ``None`` where the model has no such token) without subclassing it, and
they are not trainable or saved as minillm JSON: the vocabulary files are their format.

Special tokens written in the text (``<|endoftext|>``, ``[MASK]``) become their ids, as
``transformers`` does for its special tokens.

Which ``transformers``. Its default tokenizers (``GPT2Tokenizer``, ``BertTokenizer``,
``AutoTokenizer`` in transformers 5) are the Rust ``tokenizers`` library's, so these follow
it rule for rule: GPT-2's pattern with Unicode ``\p{L}``, ``\p{N}`` and ``\s`` (the
``regex`` package, extra ``minillm[hf]``); BERT's normalizer strips accents on the whole
text and then lowercases one character at a time, so no Greek final sigma. ``transformers``'
Python ``BertTokenizerLegacy`` (Google's original rules) lowercases each word with
``str.lower``, which writes the final sigma (``"ΟΔΟΣ"`` -> ``"οδος"``, here ``"οδοσ"``).

Unicode tables. What is left are the tables: ``tokenizers`` classes BERT's characters
(punctuation, marks, controls) with Unicode 8.0 tables and GPT-2's with Oniguruma's; minillm
reads Python's ``unicodedata`` for BERT and the ``regex`` package's tables for GPT-2. So
characters added or recategorised in later Unicode versions can tokenize differently;
``scripts/scan_tokenizer_unicode.py`` counts them and docs/pretrained.md states the count.
"""
from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

__all__ = ["GPT2Tokenizer", "WordPieceTokenizer", "bytes_to_unicode"]


def _read(path: Path, what: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"expected {what} at {path}, but there is no such file")
    return path.read_text(encoding="utf-8")


def _special_splitter(specials):
    """A pattern that cuts the text around literal special tokens (longest first)."""
    if not specials:
        return None
    return re.compile("(" + "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")")


# -- GPT-2: byte-level BPE ------------------------------------------------------------------

@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters.

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``)
    stand for themselves; the other 68 (control bytes, space, ...) are given the
    characters U+0100, U+0101, ... in byte order, so no token contains whitespace or
    control characters and every byte string has a text form.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


# GPT-2's pre-tokenizer, as OpenAI's encoder.py writes it for the ``regex`` package (and the
# ``tokenizers`` library for Oniguruma). The stdlib ``re`` cannot say it: it has no ``\p{L}``
# or ``\p{N}``, and its ``\s`` also matches U+001C..U+001F, which are not Unicode White_Space
# (``regex``'s and Oniguruma's ``\s`` are exactly White_Space).
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


@lru_cache(maxsize=1)
def _gpt2_pattern():
    """GPT-2's pre-tokenizer: contractions | letters | numbers | other symbols (each with
    one optional leading space) | whitespace not followed by a word | whitespace."""
    try:
        import regex
    except ImportError:
        raise ImportError("GPT2Tokenizer needs the `regex` package for GPT-2's pre-tokenizer "
                          "(Unicode classes \\p{L} and \\p{N}, which the stdlib `re` lacks): "
                          "pip install 'minillm[hf]'") from None
    return regex.compile(GPT2_PATTERN)


class GPT2Tokenizer:
    r"""GPT-2's byte-level BPE with the ids of ``vocab.json``.

    A pre-token's UTF-8 bytes, written with :func:`bytes_to_unicode`, start as single
    characters; the adjacent pair with the lowest rank in ``merges.txt`` is merged,
    everywhere in the pre-token, until no ranked pair is left:

    .. math:: (a, b)^* = \arg\min_{(a, b) \in \mathrm{pairs}(w)} \mathrm{rank}(a, b)

    ``<|endoftext|>`` is both ``bos_id`` and ``eos_id``; GPT-2 has no padding or unknown
    token (every byte has a token).
    """

    kind = "GPT2Tokenizer"
    EOT = "<|endoftext|>"

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]):
        self.vocab = dict(vocab)
        self.ranks = {tuple(pair): r for r, pair in enumerate(merges)}
        self._tokens = {i: t for t, i in self.vocab.items()}
        self._byte_char = bytes_to_unicode()
        self._char_byte = {c: b for b, c in self._byte_char.items()}
        self._cache: dict[str, list[str]] = {}
        self._specials = _special_splitter([t for t in self.vocab if t == self.EOT])
        self._pattern = _gpt2_pattern()        # fails here, not at the first encode, without `regex`

    @classmethod
    def from_files(cls, vocab_json, merges_txt) -> "GPT2Tokenizer":
        """Read ``vocab.json`` (token -> id) and ``merges.txt`` (one ``a b`` pair a line,
        best first, after an optional ``#version`` line)."""
        try:
            vocab = json.loads(_read(vocab_json, "GPT-2's vocab.json"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{vocab_json}: expected JSON (token -> id), got a parse error: {e}") from None
        merges = []
        for n, line in enumerate(_read(merges_txt, "GPT-2's merges.txt").splitlines(), start=1):
            if not line.strip() or (n == 1 and line.startswith("#version")):
                continue
            pair = line.split(" ")
            if len(pair) != 2:
                raise ValueError(f"{merges_txt}, line {n}: expected two tokens separated by one "
                                 f"space, got {line!r}")
            merges.append((pair[0], pair[1]))
        return cls(vocab, merges)

    @classmethod
    def from_folder(cls, folder) -> "GPT2Tokenizer":
        """The tokenizer of a Hugging Face GPT-2 folder (its vocab.json and merges.txt)."""
        folder = Path(folder)
        return cls.from_files(folder / "vocab.json", folder / "merges.txt")

    def _bpe(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        symbols = list(word)
        while len(symbols) > 1:
            pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        if len(self._cache) < 1 << 16:
            self._cache[word] = symbols
        return symbols

    def _encode_plain(self, text: str) -> list[int]:
        ids = []
        for piece in self._pattern.findall(text):
            word = "".join(self._byte_char[b] for b in piece.encode("utf-8"))
            for token in self._bpe(word):
                if token not in self.vocab:
                    raise ValueError(f"{self.kind}: the merges produced {token!r}, which vocab.json "
                                     "does not have: expected vocab.json and merges.txt of one model")
                ids.append(self.vocab[token])
        return ids

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Token ids of ``text`` (``transformers``' ``encode`` of GPT-2 adds no special token;
        ``add_bos`` / ``add_eos`` put ``<|endoftext|>`` around it)."""
        if not isinstance(text, str):
            raise TypeError(f"{self.kind}.encode expects a str, got {type(text).__name__}")
        ids = []
        parts = self._specials.split(text) if self._specials else [text]
        for part in parts:
            if part == self.EOT:
                ids.append(self.vocab[part])
            elif part:
                ids += self._encode_plain(part)
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids, *, skip_special_tokens: bool = False) -> str:
        """The text of ``ids``; byte sequences that are not UTF-8 become U+FFFD."""
        out = []
        for i in ids:
            i = int(i)
            if i not in self._tokens:
                raise ValueError(f"{self.kind}.decode: token id must be in [0, {self.vocab_size}), got {i}")
            if skip_special_tokens and self._tokens[i] == self.EOT:
                continue
            out.append(self._tokens[i])
        text = "".join(out)
        return bytes(self._char_byte[c] for c in text).decode("utf-8", errors="replace")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def id_to_token(self, index: int) -> str:
        return self._tokens[int(index)]

    bos_id = eos_id = property(lambda self: self.vocab.get(self.EOT), doc="id of ``<|endoftext|>``")
    pad_id = unk_id = mask_id = cls_id = sep_id = property(lambda self: None, doc="GPT-2 has none")

    def __repr__(self) -> str:
        return f"{self.kind}(vocab_size={self.vocab_size}, merges={len(self.ranks)})"


# -- BERT: basic tokenizer + WordPiece ----------------------------------------------------

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
    """BERT's tokenizer with the ids of ``vocab.txt`` (line ``i`` is token ``i``).

    Basic tokenization: drop NUL, U+FFFD and control characters, turn whitespace into
    spaces, put spaces around CJK ideographs, then per whitespace-separated word:
    lowercase and strip accents (NFD, drop combining marks) when ``lowercase``, and cut
    before and after every punctuation character. WordPiece: each word is split greedily
    into the longest vocabulary prefix, then the longest ``##``-continuation, and so on;
    a word that cannot be split (or is longer than ``max_chars_per_word``) is ``[UNK]``.
    """

    kind = "WordPieceTokenizer"
    SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

    def __init__(self, vocab: list[str], *, lowercase: bool = True, strip_accents: bool | None = None,
                 max_chars_per_word: int = 100):
        self.tokens = list(vocab)
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        if "[UNK]" not in self.vocab:
            raise ValueError("WordPieceTokenizer: expected [UNK] in the vocabulary, got none")
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.max_chars_per_word = max_chars_per_word
        self._specials = _special_splitter([t for t in self.SPECIALS if t in self.vocab])

    @classmethod
    def from_file(cls, vocab_txt, **options) -> "WordPieceTokenizer":
        """Read ``vocab.txt``, one token a line."""
        return cls(_read(vocab_txt, "BERT's vocab.txt").splitlines(), **options)

    @classmethod
    def from_tokenizer_json(cls, path, **options) -> "WordPieceTokenizer":
        """The WordPiece vocabulary of a ``tokenizers`` file, ``tokenizer.json``, which
        ``transformers`` 5 saves instead of vocab.txt: its ``model`` (type ``WordPiece``,
        ``vocab`` token -> id with ids 0..n-1, ``[UNK]``, ``##`` continuations). Its
        normalizer is not read: ``transformers`` 5 rebuilds BERT's from tokenizer_config.json,
        as :meth:`from_folder` does."""
        try:
            model = json.loads(_read(path, "tokenizer.json")).get("model") or {}
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: expected JSON, got a parse error: {e}") from None
        for key, wanted in (("type", "WordPiece"), ("unk_token", "[UNK]"),
                            ("continuing_subword_prefix", "##")):
            if model.get(key, wanted) != wanted:
                raise ValueError(f"{path}: expected model.{key} {wanted!r} (BERT's WordPiece), "
                                 f"got {model.get(key)!r}")
        vocab = model.get("vocab") or {}
        tokens = sorted(vocab, key=vocab.get)
        if [vocab[t] for t in tokens] != list(range(len(tokens))):
            raise ValueError(f"{path}: expected the ids of model.vocab to be 0..{len(tokens) - 1}, "
                             "each once")
        options.setdefault("max_chars_per_word", int(model.get("max_input_chars_per_word", 100)))
        return cls(tokens, **options)

    @classmethod
    def from_folder(cls, folder) -> "WordPieceTokenizer":
        """The tokenizer of a Hugging Face BERT folder: vocab.txt (else the vocabulary of
        tokenizer.json), and ``do_lower_case`` / ``strip_accents`` from
        tokenizer_config.json when it has them."""
        folder = Path(folder)
        options = {}
        cfg = folder / "tokenizer_config.json"
        if cfg.is_file():
            data = json.loads(cfg.read_text(encoding="utf-8"))
            options["lowercase"] = bool(data.get("do_lower_case", True))
            options["strip_accents"] = data.get("strip_accents")
        if not (folder / "vocab.txt").is_file() and (folder / "tokenizer.json").is_file():
            return cls.from_tokenizer_json(folder / "tokenizer.json", **options)
        return cls.from_file(folder / "vocab.txt", **options)

    def normalize(self, text: str) -> str:
        """BERT's normalizer, in the order of the ``tokenizers`` library's ``BertNormalizer``:
        drop NUL, U+FFFD and controls, turn whitespace into spaces, put spaces around CJK
        ideographs; then, on the whole text, strip accents (NFD, drop Mn) and lowercase
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
            elif _is_cjk(cp):
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
        """The words and punctuation marks WordPiece then splits: :meth:`normalize`, cut at
        whitespace, then before and after every punctuation character."""
        words = []
        for word in self.normalize(text).split():
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
        """Token ids of ``text``, as ``[CLS] ... [SEP]`` by default (``transformers``'
        default for BERT)."""
        if not isinstance(text, str):
            raise TypeError(f"{self.kind}.encode expects a str, got {type(text).__name__}")
        ids = []
        parts = self._specials.split(text) if self._specials else [text]
        for part in parts:
            if part in self.vocab and part in self.SPECIALS:
                ids.append(self.vocab[part])
                continue
            for word in self.basic_tokenize(part):
                ids += [self.vocab[p] for p in self.wordpiece(word)]
        if add_special_tokens:
            ids = [self.cls_id] + ids + [self.sep_id]
        return ids

    def decode(self, ids, *, skip_special_tokens: bool = False) -> str:
        """Tokens joined by spaces, ``##`` continuations glued to what precedes them."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"{self.kind}.decode: token id must be in [0, {self.vocab_size}), got {i}")
            token = self.tokens[i]
            if skip_special_tokens and token in self.SPECIALS and token != "[UNK]":
                continue
            out.append(token)
        return " ".join(out).replace(" ##", "")

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def id_to_token(self, index: int) -> str:
        return self.tokens[int(index)]

    pad_id = property(lambda self: self.vocab.get("[PAD]"), doc="id of [PAD]")
    unk_id = property(lambda self: self.vocab["[UNK]"], doc="id of [UNK]")
    cls_id = property(lambda self: self.vocab.get("[CLS]"), doc="id of [CLS]")
    sep_id = property(lambda self: self.vocab.get("[SEP]"), doc="id of [SEP]")
    mask_id = property(lambda self: self.vocab.get("[MASK]"), doc="id of [MASK]")
    bos_id = property(lambda self: self.vocab.get("[CLS]"), doc="BERT starts with [CLS]")
    eos_id = property(lambda self: self.vocab.get("[SEP]"), doc="BERT ends with [SEP]")

    def __repr__(self) -> str:
        return f"{self.kind}(vocab_size={self.vocab_size}, lowercase={self.lowercase})"
