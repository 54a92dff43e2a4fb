r"""GPT-2's byte-level BPE (Radford et al. 2019, section 2.2) with the ids of its files.

The pieces, in the order the ``tokenizers`` library applies them: added tokens
(:mod:`.added`), GPT-2's pre-tokenizer pattern over each remaining piece (a space put in
front of it first when ``add_prefix_space``), each pre-token's UTF-8 bytes written with
:func:`bytes_to_unicode`, BPE merges by rank, then the post-processor's special tokens
around the ids (``prefix``, ``suffix``). No normalizer: GPT-2 has none.
"""
from __future__ import annotations

from functools import lru_cache

from .added import AddedToken, matcher, split_added


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
    (GPT-2's: none). ``<|endoftext|>`` is both ``bos_id`` and ``eos_id``; GPT-2 has no
    padding or unknown token (every byte has a token). A folder is read by
    :func:`~minillm.data.hf_tokenizers.read_tokenizer_folder`.
    """

    kind = "GPT2Tokenizer"
    EOT = "<|endoftext|>"

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], *,
                 add_prefix_space: bool = False, added_tokens=None,
                 prefix: tuple = (), suffix: tuple = (), bos_token: str | None = EOT,
                 eos_token: str | None = EOT):
        self.vocab = dict(vocab)
        self.ranks = {tuple(pair): r for r, pair in enumerate(merges)}
        if added_tokens is None:
            added_tokens = [AddedToken(self.EOT, self.vocab[self.EOT])] if self.EOT in self.vocab else []
        self.added_tokens = tuple(added_tokens)
        self._tokens = {i: t for t, i in self.vocab.items()}
        self._tokens.update({t.id: t.content for t in self.added_tokens})
        self._added = {t.content: t for t in self.added_tokens}   # no normalizer: one pass
        self._added_pattern = matcher(self.added_tokens)
        self._special_ids = {t.id for t in self.added_tokens if t.special}
        self.add_prefix_space = add_prefix_space
        self.prefix, self.suffix = tuple(prefix), tuple(suffix)
        ids = {t: i for i, t in self._tokens.items()}
        self._bos, self._eos = ids.get(bos_token), ids.get(eos_token)
        self._added_ids = {t.id for t in self.added_tokens}
        self._byte_char = bytes_to_unicode()
        self._char_byte = {c: b for b, c in self._byte_char.items()}
        self._cache: dict[str, list[str]] = {}
        self._pattern = _gpt2_pattern()        # fails here, not at the first encode, without `regex`

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
                    raise ValueError(f"{self.kind}: the merges produced {token!r}, which the "
                                     "vocabulary does not have: expected the vocabulary and the "
                                     "merges of one model")
                ids.append(self.vocab[token])
        return ids

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``, as ``transformers``' ``encode`` gives them: added tokens
        matched whole, the rest byte-level BPE, and the post-processor's ``prefix`` and
        ``suffix`` around it when ``add_special_tokens`` (GPT-2's own: none)."""
        if not isinstance(text, str):
            raise TypeError(f"{self.kind}.encode expects a str, got {type(text).__name__}")
        ids = []
        for piece in split_added(text, self._added_pattern, self._added):
            if isinstance(piece, AddedToken):
                ids.append(piece.id)
            else:
                ids += self._encode_plain(" " + piece if self.add_prefix_space and piece[0] != " "
                                          else piece)
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
