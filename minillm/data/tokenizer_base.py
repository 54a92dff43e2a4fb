"""What every minillm tokenizer shares: special-token ids, decode, JSON save/load.

Every tokenizer numbers its tokens the same way at the start:

    ids 0..6   <pad> <unk> <bos> <eos> <mask> <cls> <sep>   (``vocab.SPECIAL_TOKENS``)

and then its own tokens. Each token id stands for a byte string
(``self._id_bytes[i]``), so ``decode`` is one function for all of them: join the
bytes, decode as UTF-8. The special tokens stand for their own text ("<eos>"), which
``decode(..., skip_special_tokens=True)`` leaves out.

``encode`` reads literal "<eos>" in a text as ordinary characters; ``encode_with_offsets``,
what a chat template's text goes through (:mod:`minillm.data.chat_template`), matches the
special tokens' text whole, as a Hugging Face tokenizer matches its added tokens, since the
template writes ``{{ eos_token }}`` to end an answer.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from .vocab import BOS_ID, CLS_ID, EOS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS, UNK_ID

N_SPECIAL = len(SPECIAL_TOKENS)
FORMAT_VERSION = 1
# the special tokens' text, matched whole by encode_with_offsets (the longest first)
_SPECIAL_PATTERN = re.compile("|".join(re.escape(t) for t in sorted(SPECIAL_TOKENS, key=len, reverse=True)))


def byte_token(b: int) -> str:
    """The display name of the token for byte ``b``: ``<0x41>``."""
    return f"<0x{b:02X}>"


def training_texts(texts_or_text: str | Iterable[str], who: str) -> list[str]:
    """Normalise ``train``'s input to a list of str; reject empty or whitespace-only input."""
    texts = [texts_or_text] if isinstance(texts_or_text, str) else list(texts_or_text)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{who}.train expects str or an iterable of str; item {i} is {type(t).__name__}")
    if not any(t.strip() for t in texts):
        raise ValueError(
            f"{who}.train expected non-empty training text, got "
            f"{len(texts)} text(s) that are empty or whitespace only"
        )
    return texts


def utf8(text: str, who: str) -> bytes:
    """``text`` as UTF-8; a clear error for lone surrogates, which have no UTF-8 form."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{who}: the text has a lone surrogate {text[e.start]!r} at index {e.start}, "
            "which is not valid Unicode text and has no UTF-8 encoding"
        ) from None


class Tokenizer:
    """Base class: ``train`` (classmethod), ``encode``, ``decode``, ``vocab_size``,
    ``save``/``load`` (JSON), and the special-token ids."""

    kind: ClassVar[str] = "Tokenizer"
    _id_bytes: list[bytes]     # id -> the bytes the token stands for
    # kind -> subclass, filled as each subclass is defined: what ``Tokenizer.from_dict``
    # dispatches on (the base class needs no import of its subclasses)
    types: ClassVar[dict[str, type["Tokenizer"]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Tokenizer.types[cls.kind] = cls

    # --- to be provided by subclasses ------------------------------------------
    @classmethod
    def train(cls, texts_or_text: str | Iterable[str], **kwargs: Any) -> "Tokenizer":
        raise NotImplementedError

    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def _to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> "Tokenizer":
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------
    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Token ids of ``text`` (ordinary tokens only; optionally <bos> ... <eos>).

        Literal text such as "<eos>" inside ``text`` is ordinary text, never a special id.
        """
        if not isinstance(text, str):
            raise TypeError(f"{self.kind}.encode expects a str, got {type(text).__name__}")
        ids = self._encode(text)
        return ([BOS_ID] if add_bos else []) + ids + ([EOS_ID] if add_eos else [])

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` with the special tokens' text ("<eos>") matched whole as
        their ids, and each token's characters ``(start, stop)`` in ``text``: what
        :func:`~minillm.data.chat_template.apply_chat_template` needs (the interface of the
        Hugging Face tokenizers' method of the same name). The text between special tokens
        is encoded as :meth:`encode` encodes it and must come back from the token bytes:
        a ``WordTokenizer`` meeting an unknown word (``<unk>``) cannot say where it is."""
        if not isinstance(text, str):
            raise TypeError(f"{self.kind}.encode_with_offsets expects a str, got {type(text).__name__}")
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        at = 0
        for match in [*_SPECIAL_PATTERN.finditer(text), None]:
            stop = len(text) if match is None else match.start()
            if stop > at:
                self._segment_offsets(text[at:stop], at, ids, offsets)
            if match is not None:
                ids.append(SPECIAL_TOKENS.index(match.group()))
                offsets.append(match.span())
                at = match.end()
        return ids, offsets

    def _segment_offsets(self, segment: str, at: int, ids: list, offsets: list) -> None:
        """Append the ids of ``segment`` (no special token in it) and their characters,
        counted from ``at``, found by walking the token bytes along the segment's UTF-8."""
        data = utf8(segment, self.kind)
        char_of_byte = [i for i, ch in enumerate(segment) for _ in ch.encode("utf-8")]
        byte = 0
        for i in self._encode(segment):
            piece = self._id_bytes[i]
            if i < N_SPECIAL or data[byte:byte + len(piece)] != piece:
                raise ValueError(f"{self.kind}: the tokens of {segment!r} do not spell it again (a token "
                                 f"{self.id_to_token(i)!r} at byte {byte}); chat needs a tokenizer whose "
                                 "decode(encode(text)) == text on the text given: BPETokenizer, CharTokenizer "
                                 "with byte_fallback, or a WordTokenizer that knows every word")
            ids.append(i)
            offsets.append((at + char_of_byte[byte], at + char_of_byte[byte + len(piece) - 1] + 1))
            byte += len(piece)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The special tokens by the names a chat template reads (``bos_token``,
        ``eos_token``, ``pad_token``, ``unk_token``, ``mask_token``, ``cls_token``,
        ``sep_token``), as ``transformers``' ``special_tokens_map``."""
        return {f"{t[1:-1]}_token": t for t in SPECIAL_TOKENS}

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        """The text of ``ids``. Special tokens appear as their text ("<eos>"), or are left
        out with ``skip_special_tokens=True`` (except <unk>, which stands for content).
        Byte sequences that are not valid UTF-8 (possible for sampled ids) become U+FFFD.
        """
        V = self.vocab_size
        parts = []
        for i in ids:
            i = int(i)
            if not 0 <= i < V:
                raise ValueError(f"{self.kind}.decode: token id must be in [0, {V}), got {i}")
            if skip_special_tokens and i < N_SPECIAL and i != UNK_ID:
                continue
            parts.append(self._id_bytes[i])
        return b"".join(parts).decode("utf-8", errors="replace")

    @property
    def vocab_size(self) -> int:
        """Number of token ids, specials included: ids are ``0 .. vocab_size - 1``."""
        return len(self._id_bytes)

    def id_to_token(self, index: int) -> str:
        """A readable name for token ``index`` (bytes shown as ``<0x..>`` if not UTF-8)."""
        raw = self._id_bytes[index]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "".join(byte_token(b) for b in raw)

    # the chat template of a model tuned on conversations (an SFT run's), else None; saved
    # with the tokenizer (to_dict), so load_run(...).tokenizer.chat_template gives it back
    chat_template: str | None = None
    special_tokens: ClassVar[tuple[str, ...]] = SPECIAL_TOKENS
    pad_id = property(lambda self: PAD_ID, doc="id of <pad> (0)")
    unk_id = property(lambda self: UNK_ID, doc="id of <unk> (1)")
    bos_id = property(lambda self: BOS_ID, doc="id of <bos> (2)")
    eos_id = property(lambda self: EOS_ID, doc="id of <eos> (3)")
    mask_id = property(lambda self: MASK_ID, doc="id of <mask> (4)")
    cls_id = property(lambda self: CLS_ID, doc="id of <cls> (5)")
    sep_id = property(lambda self: SEP_ID, doc="id of <sep> (6)")

    @property
    def special_ids(self) -> tuple[int, ...]:
        """All special ids, (0, ..., 6)."""
        return tuple(range(N_SPECIAL))

    # --- JSON -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The tokenizer as JSON: its own fields, and ``chat_template`` where one is set."""
        data = self._to_dict()
        if self.chat_template is not None:
            data["chat_template"] = self.chat_template
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Tokenizer":
        """Rebuild from :meth:`to_dict`'s output (``Tokenizer.from_dict`` dispatches on "type")."""
        kind = data.get("type") if isinstance(data, dict) else None
        template = data.get("chat_template") if isinstance(data, dict) else None
        if template is not None and not isinstance(template, str):
            raise ValueError(f"expected chat_template a string (a Jinja template), got {type(template).__name__}")
        if cls is Tokenizer:
            if kind not in Tokenizer.types:
                raise ValueError(f"unknown tokenizer type {kind!r}; expected one of {sorted(Tokenizer.types)}")
            return Tokenizer.types[kind].from_dict(data)
        if kind != cls.kind:
            raise ValueError(f"expected a {cls.kind} JSON (\"type\": \"{cls.kind}\"), got type {kind!r}")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{cls.kind}: unsupported format version {data.get('version')!r}, expected {FORMAT_VERSION}")
        if list(data.get("special_tokens", SPECIAL_TOKENS)) != list(SPECIAL_TOKENS):
            raise ValueError(f"{cls.kind}: special tokens {data['special_tokens']} differ from {list(SPECIAL_TOKENS)}")
        tok = cls._from_dict(data)
        tok.chat_template = template
        return tok

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as JSON, atomically (temp file, fsync, rename)."""
        path = Path(path)
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1)
        # a fresh name next to the target, created as open() creates files (0666 less the
        # umask): mkstemp's 0600 would stick to tokenizer.json through the rename
        tmp = str(path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "x", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Read a tokenizer saved with :meth:`save` (``Tokenizer.load`` accepts any type)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such tokenizer file (expected JSON written by save())")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a tokenizer JSON file ({e})") from None
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{self.kind}(vocab_size={self.vocab_size})"
