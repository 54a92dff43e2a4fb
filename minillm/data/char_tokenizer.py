"""Character-level tokenizer, with a byte fallback so that every string round-trips.

Ids: 0..6 the special tokens; with ``byte_fallback=True`` (the default) 7..262 the 256
byte tokens ``<0x00>``..``<0xFF>``; then the characters of the training text by
frequency (descending), ties by code point.

A character that was not in the training text is written as the byte tokens of its
UTF-8 encoding, so decode(encode(s)) == s for every Unicode string (lone surrogates,
which have no UTF-8 form, are rejected). With ``byte_fallback=False`` the vocabulary
is smaller, an unknown character becomes <unk>, and the round trip holds only for
strings made of known characters.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from .tokenizer_base import FORMAT_VERSION, N_SPECIAL, Tokenizer, byte_token, training_texts, utf8
from .vocab import SPECIAL_TOKENS, UNK_ID


class CharTokenizer(Tokenizer):
    """One token per Unicode code point; unknown characters fall back to bytes or <unk>."""

    kind = "CharTokenizer"

    def __init__(self, chars: list[str], byte_fallback: bool = True):
        for ch in chars:
            if not isinstance(ch, str) or len(ch) != 1:
                raise ValueError(f"CharTokenizer tokens must be single characters, got {ch!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: a character appears twice in the vocabulary")
        self.chars = list(chars)
        self.byte_fallback = byte_fallback
        self._id_bytes = [tok.encode() for tok in SPECIAL_TOKENS]
        if byte_fallback:
            self._id_bytes += [bytes([b]) for b in range(256)]
        self._first_char_id = len(self._id_bytes)
        self._id_bytes += [utf8(ch, self.kind) for ch in self.chars]
        self._char_to_id = {ch: self._first_char_id + k for k, ch in enumerate(self.chars)}

    @classmethod
    def train(
        cls,
        texts_or_text: str | Iterable[str],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        byte_fallback: bool = True,
    ) -> "CharTokenizer":
        """Characters seen at least ``min_freq`` times, most frequent first.

        ``max_size`` is the total vocabulary size (specials and byte tokens included).
        """
        texts = training_texts(texts_or_text, cls.kind)
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text)
        chars = sorted((ch for ch, n in counts.items() if n >= min_freq), key=lambda ch: (-counts[ch], ch))
        if max_size is not None:
            fixed = N_SPECIAL + (256 if byte_fallback else 0)
            if max_size < fixed:
                raise ValueError(f"max_size must be >= {fixed} (special and byte tokens), got {max_size}")
            chars = chars[: max_size - fixed]
        return cls(chars, byte_fallback)

    def _encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for ch in text:
            i = self._char_to_id.get(ch)
            if i is not None:
                ids.append(i)
            elif self.byte_fallback:
                ids.extend(N_SPECIAL + b for b in utf8(ch, self.kind))
            else:
                ids.append(UNK_ID)
        return ids

    def id_to_token(self, index: int) -> str:
        if self.byte_fallback and N_SPECIAL <= index < N_SPECIAL + 256:
            return byte_token(index - N_SPECIAL)
        return super().id_to_token(index)

    def _to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "version": FORMAT_VERSION, "byte_fallback": self.byte_fallback,
                "special_tokens": list(SPECIAL_TOKENS), "chars": self.chars}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> "CharTokenizer":
        return cls(list(data["chars"]), bool(data["byte_fallback"]))
