r"""GPT-2's byte-level BPE (Radford et al. 2019, section 2.2) with the ids of its files,
and the same BPE as Llama 3 and Qwen 2 use it, with their own pre-tokenizer pattern.

The pieces, in the order the ``tokenizers`` library applies them: added tokens that are not
normalized (:mod:`.added`), the normalizer (GPT-2 and Llama 3: none; Qwen 2: Unicode NFC),
added tokens that are, the pre-tokenizer pattern over each remaining piece (a space put in
front of it first when ``add_prefix_space``), each pre-token's UTF-8 bytes written with
:func:`bytes_to_unicode`, BPE merges by rank (a pre-token already in the vocabulary taken
whole first when ``ignore_merges``: Llama 3), then the post-processor's special tokens
around the ids (``prefix``, ``suffix``).
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache

from .record import record_of
from .added import AddedToken, added_pieces, matcher


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


# Llama 3's and Qwen 2's pattern (tokenizer.json's Split pre-tokenizer): contractions in any case,
# a letter run with one leading non-letter non-digit (not a line break), numbers of up to
# three digits (Qwen: one), symbol runs with their line breaks, line breaks with the
# whitespace before them, then GPT-2's whitespace rules.
# Qwen 2's tokenizer class builds it (Llama 3's tokenizer.json has it with \p{N}{1,3}).
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@lru_cache(maxsize=8)
def _pretokenizer_pattern(pattern: str = GPT2_PATTERN):
    """``pattern`` compiled with the ``regex`` package (GPT-2's by default: contractions |
    letters | numbers | other symbols, each with one optional leading space | whitespace
    not followed by a word | whitespace)."""
    try:
        import regex
    except ImportError:
        raise ImportError("GPT2Tokenizer needs the `regex` package for its pre-tokenizer "
                          "(Unicode classes \\p{L} and \\p{N}, which the stdlib `re` lacks): "
                          "pip install 'minillm[hf]'") from None
    return regex.compile(pattern)


def split_isolated_spans(pattern, text: str) -> list[tuple[int, int, str]]:
    """``text`` cut at ``pattern``'s matches, each match a piece and each stretch between
    two matches a piece too (the ``tokenizers`` library's ``Split`` with behaviour
    ``Isolated``; the patterns above match every character, so no such stretch is left):
    ``(start, stop, piece)``."""
    pieces, at = [], 0
    for m in pattern.finditer(text):
        if m.start() > at:
            pieces.append((at, m.start(), text[at:m.start()]))
        if m.end() > m.start():
            pieces.append((m.start(), m.end(), m.group()))
        at = m.end()
    if at < len(text):
        pieces.append((at, len(text), text[at:]))
    return pieces


class GPT2Tokenizer:
    r"""GPT-2's byte-level BPE with the ids of ``vocab.json`` (or of ``tokenizer.json``'s
    ``model.vocab``).

    A pre-token's UTF-8 bytes, written with :func:`bytes_to_unicode`, start as single
    characters; the adjacent pair with the lowest rank in ``merges`` is merged,
    everywhere in the pre-token, until no ranked pair is left:

    .. math:: (a, b)^* = \arg\min_{(a, b) \in \mathrm{pairs}(w)} \mathrm{rank}(a, b)

    ``added_tokens`` (:class:`~.added.AddedToken`) are matched whole first; by default
    ``<|endoftext|>``, when the vocabulary has it. ``add_prefix_space`` puts a space before
    each piece that does not start with one (so the first word is tokenized like the
    others). ``prefix`` / ``suffix``: the ids the post-processor puts around the text
    (GPT-2's: none). ``pattern``: the pre-tokenizer's (GPT-2's, or Llama 3's and Qwen 2's
    from their ``tokenizer.json``); ``nfc``: Unicode NFC before it (Qwen 2);
    ``ignore_merges``: a pre-token the vocabulary holds whole is one token (Llama 3).
    GPT-2's ``<|endoftext|>`` is both ``bos_id`` and ``eos_id``; it has no padding or
    unknown token (every byte has a token). A folder is read by
    :func:`~minillm.data.hf_tokenizers.read_tokenizer_folder`.
    """

    kind = "GPT2Tokenizer"

    # the folder's files (hf_tokenizers.record), set by read_tokenizer_folder, and the
    # chat template it carries (its folder's, or an SFT run's): what to_dict records
    record = None
    chat_template = None

    def to_dict(self) -> dict:
        """The folder's files and the chat template (:func:`~.record.record_of`)."""
        return record_of(self)
    EOT = "<|endoftext|>"

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], *,
                 add_prefix_space: bool = False, added_tokens=None,
                 prefix: tuple = (), suffix: tuple = (), bos_token: str | None = EOT,
                 eos_token: str | None = EOT, pattern: str = GPT2_PATTERN, nfc: bool = False,
                 ignore_merges: bool = False, special_tokens: dict | None = None):
        self.vocab = dict(vocab)
        self.ranks = {tuple(pair): r for r, pair in enumerate(merges)}
        if added_tokens is None:
            added_tokens = [AddedToken(self.EOT, self.vocab[self.EOT])] if self.EOT in self.vocab else []
        self.added_tokens = tuple(added_tokens)
        self._tokens = {i: t for t, i in self.vocab.items()}
        self._tokens.update({t.id: t.content for t in self.added_tokens})
        self.pattern, self.nfc, self.ignore_merges = pattern, nfc, ignore_merges
        # the special tokens by name ("bos_token": "<s>", ...), which chat templates read
        self.special_tokens_map = dict(special_tokens or {})
        # two passes: tokens not normalized in the raw text, the others in the normalized
        # text, whose own text is normalized the same way
        raw = [t for t in self.added_tokens if not t.normalized]
        normed = [t._replace(content=self.normalize(t.content)) for t in self.added_tokens
                  if t.normalized]
        self._raw_added = matcher(raw), {t.content: t for t in raw}
        self._normalized_added = matcher(normed), {t.content: t for t in normed}
        self._special_ids = {t.id for t in self.added_tokens if t.special}
        self.add_prefix_space = add_prefix_space
        self.prefix, self.suffix = tuple(prefix), tuple(suffix)
        ids = {t: i for i, t in self._tokens.items()}
        self._bos, self._eos = ids.get(bos_token), ids.get(eos_token)
        self._added_ids = {t.id for t in self.added_tokens}
        self._byte_char = bytes_to_unicode()
        self._char_byte = {c: b for b, c in self._byte_char.items()}
        self._cache: dict[str, list[str]] = {}
        self._pattern = _pretokenizer_pattern(pattern)   # without `regex`: fails here, not at encode

    def normalize(self, text: str) -> str:
        """The normalizer: Unicode NFC when ``nfc`` (Qwen 2), else none (GPT-2, Llama 3)."""
        return unicodedata.normalize("NFC", text) if self.nfc else text

    def _bpe(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        if self.ignore_merges and word in self.vocab:
            return [word]
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

    def _encode_plain(self, text: str) -> list[tuple[int, int, int]]:
        """(id, start, stop) of each token of ``text``, its characters ``text[start:stop]``."""
        out = []
        for at, _, piece in split_isolated_spans(self._pattern, text):
            data = piece.encode("utf-8")
            char_of_byte = [i for i, ch in enumerate(piece) for _ in ch.encode("utf-8")]
            byte = 0
            for token in self._bpe("".join(self._byte_char[b] for b in data)):
                if token not in self.vocab:
                    raise ValueError(f"{self.kind}: the merges produced {token!r}, which the "
                                     "vocabulary does not have: expected the vocabulary and the "
                                     "merges of one model")
                first, byte = byte, byte + len(token)        # one character per byte
                out.append((self.vocab[token], at + char_of_byte[first], at + char_of_byte[byte - 1] + 1))
        return out

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` without the post-processor's tokens, and each token's
        characters ``(start, stop)`` in ``text``, as the ``tokenizers`` library's offsets
        (where the normalizer changed characters, a token among them covers them all:
        :func:`~.added.alignment`)."""
        if not isinstance(text, str):
            raise TypeError(f"{self.kind}.encode expects a str, got {type(text).__name__}")
        ids, offsets = [], []
        for start, stop, piece, starts, stops in added_pieces(text, self._raw_added,
                                                              self._normalized_added, self.normalize):
            if isinstance(piece, AddedToken):
                ids.append(piece.id)
                offsets.append((start, stop))
                continue
            shift = int(self.add_prefix_space and piece[0] != " ")   # the space put in front
            for i, a, b in self._encode_plain(" " * shift + piece):
                ids.append(i)
                offsets.append((starts(max(a - shift, 0)), stops(max(b - shift, 1))))
        return ids, offsets

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``, as ``transformers``' ``encode`` gives them: added tokens
        matched whole, the rest byte-level BPE, and the post-processor's ``prefix`` and
        ``suffix`` around it when ``add_special_tokens`` (GPT-2's own: none)."""
        ids, _ = self.encode_with_offsets(text)
        return [*self.prefix, *ids, *self.suffix] if add_special_tokens else ids

    def decode(self, ids, *, skip_special_tokens: bool = False) -> str:
        """The text of ``ids``; byte sequences that are not UTF-8 become U+FFFD; added
        tokens are their own text."""
        out = []
        for i in ids:
            i = int(i)
            if i not in self._tokens:
                raise ValueError(f"{self.kind}.decode: token id must be in [0, {self.vocab_size}), got {i}")
            if skip_special_tokens and i in self._special_ids:
                continue
            out.append(self._tokens[i] if i not in self._added_ids else
                       "".join(self._byte_char[b] for b in self._tokens[i].encode("utf-8")))
        text = "".join(out)
        return bytes(self._char_byte[c] for c in text).decode("utf-8", errors="replace")

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def id_to_token(self, index: int) -> str:
        return self._tokens[int(index)]

    bos_id = property(lambda self: self._bos, doc="id of the bos token (``<|endoftext|>``)")
    eos_id = property(lambda self: self._eos, doc="id of the eos token (``<|endoftext|>``)")
    pad_id = unk_id = mask_id = cls_id = sep_id = property(lambda self: None, doc="GPT-2 has none")

    def __repr__(self) -> str:
        return f"{self.kind}(vocab_size={self.vocab_size}, merges={len(self.ranks)})"
