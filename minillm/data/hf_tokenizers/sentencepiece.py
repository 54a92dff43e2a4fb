r"""SentencePiece's BPE with byte fallback (Kudo and Richardson 2018; Llama 2, TinyLlama,
Mistral 7B v0.1), as a ``tokenizer.json`` writes it, with the ids of its files.

The pieces, in the order the ``tokenizers`` library applies them: added tokens that are not
normalized (:mod:`.added`), the normalizer, added tokens that are, the pre-tokenizer, BPE
merges by rank, then the post-processor's special tokens around the ids (``prefix``,
``suffix``). Spaces are the character ``▁`` (U+2581), written in one of two ways that differ
where a piece already starts with a space (:attr:`SentencePieceBPETokenizer.prepend_scheme`):

- ``"normalizer"``: the normalizer ``Prepend("▁")`` + ``Replace(" ", "▁")`` of Llama 2's
  ``tokenizer.json`` (transformers 4's conversion): ``▁`` before every piece, then each
  space a ``▁``: ``" hi"`` -> ``"▁▁hi"``;
- ``"always"``, ``"first"``, ``"never"``: the pre-tokenizer ``Metaspace`` (``split: false``)
  that transformers 5's ``LlamaTokenizer`` builds: each space a ``▁``, then ``▁`` before a
  piece that does not start with one, for every piece (``always``), only the piece at the
  start of the text (``first``: a piece after an added token gets none) or none: ``" hi"`` ->
  ``"▁hi"``.

No pre-tokenization into words: the whole piece is one BPE word, so merges may cross ``▁``.
(When none of the merges joins a symbol to a following ``▁...`` one, as in SentencePiece's
vocabularies, trained on words, no token can cross the start of a word, and BPE runs on each
word alone: the same tokens, sooner.)
A character the vocabulary lacks becomes the tokens of its UTF-8 bytes, ``<0x00>`` ..
``<0xFF>`` (byte fallback), which the vocabulary must hold, all 256 of them: so no text
reaches an unknown token.

Decoding (the decoder ``Replace("▁", " ")``, ``ByteFallback``, ``Fuse``, ``Strip``): each
``▁`` a space, each run of byte tokens its bytes read as UTF-8 (a run that is not UTF-8: one
U+FFFD per byte), then one leading space dropped when ``strip_leading_space``.
"""
from __future__ import annotations

from .record import record_of
from .added import AddedToken, added_pieces, matcher

SPACE = "\u2581"                                     # ▁, SentencePiece's space
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))
PREPEND_SCHEMES = ("normalizer", "always", "first", "never")


class SentencePieceBPETokenizer:
    r"""SentencePiece-style BPE with byte fallback, with the ids of ``tokenizer.json``'s
    ``model.vocab``.

    A piece of text (``▁`` for each space, module docstring) starts as its characters, each
    character the vocabulary lacks replaced by its UTF-8 byte tokens ``<0xNN>``; the
    adjacent pair with the lowest rank in ``merges`` is merged, everywhere, until no ranked
    pair is left:

    .. math:: (a, b)^* = \arg\min_{(a, b) \in \mathrm{pairs}(w)} \mathrm{rank}(a, b)

    ``prepend_scheme``: how ``▁`` is put before a piece (module docstring).
    ``strip_leading_space``: decoding drops the first space (the decoder's ``Strip``).
    ``added_tokens``, ``prefix``, ``suffix``, ``bos_token``, ``eos_token``, ``unk_token``: as
    :class:`~.gpt2.GPT2Tokenizer`'s. A folder is read by
    :func:`~minillm.data.hf_tokenizers.read_tokenizer_folder`.
    """

    kind = "SentencePieceBPETokenizer"

    # the folder's files (hf_tokenizers.record), set by read_tokenizer_folder, and the
    # chat template it carries (its folder's, or an SFT run's): what to_dict records
    record = None
    chat_template = None

    def to_dict(self) -> dict:
        """The folder's files and the chat template (:func:`~.record.record_of`)."""
        return record_of(self)

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], *,
                 prepend_scheme: str = "first", strip_leading_space: bool = True, added_tokens=(),
                 prefix: tuple = (), suffix: tuple = (), bos_token: str | None = "<s>",
                 eos_token: str | None = "</s>", unk_token: str | None = "<unk>",
                 special_tokens: dict | None = None):
        if prepend_scheme not in PREPEND_SCHEMES:
            raise ValueError(f"prepend_scheme must be one of {PREPEND_SCHEMES}, got {prepend_scheme!r}")
        missing = [b for b in BYTE_TOKENS if b not in vocab]
        if missing:
            raise ValueError(f"{self.kind}: byte fallback needs the 256 byte tokens <0x00> .. <0xFF> "
                             f"in the vocabulary; {len(missing)} are missing, first {missing[0]!r}")
        self.vocab = dict(vocab)
        self.ranks = {tuple(pair): r for r, pair in enumerate(merges)}
        # No merge joins a symbol ending in another character to one starting with ▁ (true
        # of SentencePiece, which trains on words): then no token crosses the start of a
        # word, and BPE on each word alone gives the same tokens, fast and cached.
        self._by_word = not any(b.startswith(SPACE) and not a.endswith(SPACE) for a, b in self.ranks)
        self._cache: dict[str, list] = {}
        self.prepend_scheme, self.strip_leading_space = prepend_scheme, strip_leading_space
        # the special tokens by name ("bos_token": "<s>", ...), which chat templates read
        self.special_tokens_map = dict(special_tokens or {})
        self.added_tokens = tuple(added_tokens)
        self._tokens = {i: t for t, i in self.vocab.items()}
        self._tokens.update({t.id: t.content for t in self.added_tokens})
        raw = [t for t in self.added_tokens if not t.normalized]
        normed = [t._replace(content=self.normalize(t.content)) for t in self.added_tokens
                  if t.normalized]
        self._raw_added = matcher(raw), {t.content: t for t in raw}
        self._normalized_added = matcher(normed), {t.content: t for t in normed}
        self._special_ids = {t.id for t in self.added_tokens if t.special}
        self.prefix, self.suffix = tuple(prefix), tuple(suffix)
        ids = {t: i for i, t in self._tokens.items()}
        self._bos, self._eos, self._unk = ids.get(bos_token), ids.get(eos_token), ids.get(unk_token)
        self._byte_ids = {self.vocab[b]: b_value for b_value, b in enumerate(BYTE_TOKENS)}

    def normalize(self, text: str) -> str:
        """The normalizer: ``▁`` + the text with each space a ``▁`` (``"normalizer"``), else none."""
        if self.prepend_scheme == "normalizer" and text:
            return SPACE + text.replace(" ", SPACE)
        return text

    def _align(self, raw: str, normed: str):
        """The normalizer (``"normalizer"``) keeps each character in place but for the ``▁``
        put first, which belongs to the first character."""
        shift = len(normed) - len(raw)                  # 1, or 0 for no normalizer
        return (lambda p: max(p - shift, 0)), (lambda p: max(p - shift, min(shift, 1)))

    def _metaspace(self, piece: str, at_start: bool) -> tuple[str, int]:
        """The pre-tokenizer ``Metaspace`` (``split: false``) on one piece, and whether it put
        a ``▁`` first; ``at_start``: the piece begins the text."""
        if self.prepend_scheme == "normalizer":
            return piece, 0                             # the normalizer did it
        piece = piece.replace(" ", SPACE)
        if not piece.startswith(SPACE) and (self.prepend_scheme == "always"
                                            or self.prepend_scheme == "first" and at_start):
            return SPACE + piece, 1
        return piece, 0

    def _bpe(self, text: str) -> list[tuple[str, int, int]]:
        """The tokens of ``text``, each ``(token, start, stop)`` in ``text``'s characters: of
        each word (a ``▁`` after another character starts one) alone when no merge crosses
        a word's start, else of the whole text."""
        if not self._by_word:
            return self._bpe_word(text)
        out, start = [], 0
        for stop in [i for i in range(1, len(text)) if text[i] == SPACE != text[i - 1]] + [len(text)]:
            word = text[start:stop]
            if word not in self._cache:
                if len(self._cache) >= 1 << 16:
                    self._cache.clear()
                self._cache[word] = self._bpe_word(word)
            out += [(token, start + a, start + b) for token, a, b in self._cache[word]]
            start = stop
        return out

    def _bpe_word(self, word: str) -> list[tuple[str, int, int]]:
        symbols = []
        for i, ch in enumerate(word):                   # byte fallback for unknown characters
            symbols += ([(ch, i, i + 1)] if ch in self.vocab else
                        [(BYTE_TOKENS[b], i, i + 1) for b in ch.encode("utf-8")])
        while len(symbols) > 1:
            pairs = {(a[0], b[0]) for a, b in zip(symbols, symbols[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i][0], symbols[i + 1][0]) == best:
                    merged.append((best[0] + best[1], symbols[i][1], symbols[i + 1][2]))
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` without the post-processor's tokens, and each token's
        characters ``(start, stop)`` in ``text``, as the ``tokenizers`` library's offsets
        (a ``▁`` put first belongs to the first character: a token of it alone is ``(0, 1)``)."""
        if not isinstance(text, str):
            raise TypeError(f"{self.kind}.encode expects a str, got {type(text).__name__}")
        ids, offsets = [], []
        for start, stop, piece, starts, stops in added_pieces(
                text, self._raw_added, self._normalized_added, self.normalize, self._align):
            if isinstance(piece, AddedToken):
                ids.append(piece.id)
                offsets.append((start, stop))
                continue
            word, shift = self._metaspace(piece, at_start=start == 0)
            for token, a, b in self._bpe(word):
                if token not in self.vocab:
                    raise ValueError(f"{self.kind}: the merges produced {token!r}, which the "
                                     "vocabulary does not have: expected the vocabulary and the "
                                     "merges of one model")
                ids.append(self.vocab[token])
                offsets.append((starts(max(a - shift, 0)), stops(max(b - shift, 1))))
        return ids, offsets

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``, as ``transformers``' ``encode`` gives them: added tokens
        matched whole, the rest SentencePiece BPE, and the post-processor's ``prefix``
        (Llama's ``<s>``) and ``suffix`` around it when ``add_special_tokens``."""
        ids, _ = self.encode_with_offsets(text)
        return [*self.prefix, *ids, *self.suffix] if add_special_tokens else ids

    def decode(self, ids, *, skip_special_tokens: bool = False) -> str:
        """The text of ``ids`` (module docstring: each ``▁`` a space, byte tokens read as
        UTF-8, one leading space dropped when ``strip_leading_space``)."""
        out, pending = [], bytearray()
        for i in ids:
            i = int(i)
            if i not in self._tokens:
                raise ValueError(f"{self.kind}.decode: token id must be in [0, {self.vocab_size}), got {i}")
            if skip_special_tokens and i in self._special_ids:
                continue
            if i in self._byte_ids:
                pending.append(self._byte_ids[i])
                continue
            out.append(_bytes_text(pending))
            pending = bytearray()
            out.append(self._tokens[i].replace(SPACE, " "))
        out.append(_bytes_text(pending))
        text = "".join(out)
        return text[1:] if self.strip_leading_space and text.startswith(" ") else text

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def id_to_token(self, index: int) -> str:
        return self._tokens[int(index)]

    bos_id = property(lambda self: self._bos, doc="id of the bos token (Llama's ``<s>``)")
    eos_id = property(lambda self: self._eos, doc="id of the eos token (Llama's ``</s>``)")
    unk_id = property(lambda self: self._unk, doc="id of the unknown token (Llama's ``<unk>``)")
    pad_id = mask_id = cls_id = sep_id = property(lambda self: None, doc="Llama has none")

    def __repr__(self) -> str:
        return f"{self.kind}(vocab_size={self.vocab_size}, merges={len(self.ranks)})"


def _bytes_text(data: bytearray) -> str:
    """A run of byte tokens as text: its UTF-8, or one U+FFFD per byte where it is not UTF-8
    (the ``ByteFallback`` decoder)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "\ufffd" * len(data)
