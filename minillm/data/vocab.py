"""A deterministic vocabulary: token <-> id, with special tokens at fixed ids.

The chapter builds its vocabulary as ``{w: i for i, w in enumerate(set(data))}``: the
order of a ``set`` of strings changes with ``PYTHONHASHSEED``, so every run numbers
the words differently and a saved model cannot be reloaded; and an unseen word raises
``KeyError``. Here the order is a pure function of the token counts:

    special tokens at ids 0..6, then tokens by frequency (descending), ties by
    code-point (lexical) order of the token string;

and an unknown token maps to ``<unk>``.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

PAD, UNK, BOS, EOS, MASK, CLS, SEP = "<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "<cls>", "<sep>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS, MASK, CLS, SEP)
"""Special tokens, at ids 0..6 in every minillm vocabulary and tokenizer."""
PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID, CLS_ID, SEP_ID = range(len(SPECIAL_TOKENS))


class Vocabulary:
    """Token strings <-> ids. ``vocab[token]`` never raises: unknown -> ``unk_id``.

    Build with :meth:`build` (from counts or a token stream) or directly from an
    ordered list of ordinary tokens (the specials are always prepended).
    """

    def __init__(self, tokens: Sequence[str] = ()):
        itos = list(SPECIAL_TOKENS)
        seen = set(itos)
        for tok in tokens:
            if not isinstance(tok, str) or tok == "":
                raise ValueError(f"vocabulary tokens must be non-empty str, got {tok!r}")
            if tok in seen:
                raise ValueError(f"token {tok!r} appears twice in the vocabulary")
            seen.add(tok)
            itos.append(tok)
        self._itos: list[str] = itos
        self._stoi: dict[str, int] = {tok: i for i, tok in enumerate(itos)}

    @classmethod
    def build(
        cls,
        tokens_or_counts: Iterable[str] | Mapping[str, int],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> "Vocabulary":
        """Count tokens and keep those seen at least ``min_freq`` times.

        Order: by count descending, then by the token string (code-point order), so the
        ids are the same in every process. ``max_size`` is the total size *including*
        the 7 special tokens (it is the model's ``vocab_size``). A token equal to a
        special token's text is not added twice.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < len(SPECIAL_TOKENS):
            raise ValueError(
                f"max_size counts the {len(SPECIAL_TOKENS)} special tokens, so it must be "
                f">= {len(SPECIAL_TOKENS)}, got {max_size}"
            )
        if isinstance(tokens_or_counts, str):
            raise TypeError("Vocabulary.build expects tokens or counts, got a str; tokenize it first")
        counts = Counter(tokens_or_counts) if not isinstance(tokens_or_counts, Mapping) else tokens_or_counts
        kept = [(tok, n) for tok, n in counts.items() if n >= min_freq and tok not in SPECIAL_TOKENS and tok]
        kept.sort(key=lambda item: (-item[1], item[0]))
        if max_size is not None:
            kept = kept[: max_size - len(SPECIAL_TOKENS)]
        return cls([tok for tok, _ in kept])

    # --- lookup ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: str) -> bool:
        return token in self._stoi

    def __getitem__(self, token: str) -> int:
        return self._stoi.get(token, UNK_ID)

    def token_to_id(self, token: str) -> int:
        """The id of ``token``; ``unk_id`` (1) if it is not in the vocabulary."""
        return self._stoi.get(token, UNK_ID)

    def id_to_token(self, index: int) -> str:
        """The token with id ``index``; ValueError if out of range."""
        if not 0 <= int(index) < len(self._itos):
            raise ValueError(f"token id must be in [0, {len(self._itos)}), got {index}")
        return self._itos[int(index)]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self._stoi.get(tok, UNK_ID) for tok in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.id_to_token(i) for i in ids]

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order (a copy)."""
        return list(self._itos)

    # --- serialisation --------------------------------------------------------
    def to_list(self) -> list[str]:
        """The ordinary (non-special) tokens in id order: what JSON needs to rebuild it."""
        return self._itos[len(SPECIAL_TOKENS):]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._itos == other._itos

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)})"
