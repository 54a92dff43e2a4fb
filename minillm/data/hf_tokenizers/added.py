"""Added tokens: strings matched whole in the text before the model sees it.

A tokenizer folder lists them in ``tokenizer.json``'s ``added_tokens`` (and, written by
transformers 4, ``tokenizer_config.json``'s ``added_tokens_decoder``); the special tokens
(``<|endoftext|>``, ``[CLS]``, ...) are among them. The ``tokenizers`` library cuts the text
in two passes, and so does :func:`split_added`'s caller:

1. tokens with ``normalized: false`` are matched in the raw text;
2. each piece left over is normalized (lower-cased, ...), then the tokens with
   ``normalized: true`` are matched in it, their own text normalized the same way.

At each position the longest token wins, leftmost first. ``lstrip`` / ``rstrip`` let a
match take the whitespace on its left / right with it. ``single_word`` (match only outside
words) is not read: a folder that sets it is refused, naming the token.
"""
from __future__ import annotations

import re
from typing import NamedTuple


class AddedToken(NamedTuple):
    """One added token: its ``content``, its ``id``, and the flags of ``tokenizer.json``."""

    content: str
    id: int
    special: bool = True
    normalized: bool = False
    lstrip: bool = False
    rstrip: bool = False


def _is_white_space(ch: str) -> bool:
    """Unicode White_Space (the ``tokenizers`` library's ``\\s``): ``str.isspace`` without
    U+001C..U+001F, which Unicode classes as controls."""
    return ch.isspace() and not "\x1c" <= ch <= "\x1f"


def matcher(tokens) -> re.Pattern | None:
    """A pattern matching any of ``tokens``' contents, longest first at each position."""
    contents = sorted({t.content for t in tokens if t.content}, key=len, reverse=True)
    return re.compile("|".join(re.escape(c) for c in contents)) if contents else None


def split_added(text: str, pattern: re.Pattern | None, by_content: dict) -> list:
    """``text`` cut at the added tokens ``pattern`` matches: a list of strings (the pieces
    between, never empty) and :class:`AddedToken` (each match), in order."""
    return [piece for _, _, piece in split_added_spans(text, pattern, by_content)]


def split_added_spans(text: str, pattern: re.Pattern | None, by_content: dict) -> list:
    """:func:`split_added` with where each piece is: ``(start, stop, piece)``, ``text[start:stop]``
    being the piece (for a token, its match with the whitespace it strips)."""
    if pattern is None:
        return [(0, len(text), text)] if text else []
    out, start_offset = [], 0
    for m in pattern.finditer(text):
        token = by_content[m.group()]
        start, stop = m.start(), m.end()
        if token.lstrip:
            while start > start_offset and _is_white_space(text[start - 1]):
                start -= 1
        if token.rstrip:
            while stop < len(text) and _is_white_space(text[stop]):
                stop += 1
        if start < start_offset:        # an earlier rstrip took these characters already
            start = start_offset
        if start_offset < start:
            out.append((start_offset, start, text[start_offset:start]))
        out.append((start, stop, token))
        start_offset = stop
    if start_offset < len(text):
        out.append((start_offset, len(text), text[start_offset:]))
    return out


def alignment(raw: str, normed: str):
    """Where each position of ``normed`` (``raw`` normalized) was in ``raw``: two maps, for a
    token's start and for its end. The characters the normalizer left alone at both ends map
    exactly; a position inside the part it changed maps to that whole part (the start of it
    for a start, the end for an end), so a token there covers all of it."""
    n = min(len(raw), len(normed))
    head = next((i for i in range(n) if raw[i] != normed[i]), n)
    tail = next((i for i in range(n - head) if raw[-1 - i] != normed[-1 - i]), n - head)
    cut = len(normed) - tail                          # normed[cut:] == raw[len(raw) - tail:]

    def start(p: int) -> int:
        return p if p <= head else len(raw) - (len(normed) - p) if p >= cut else head

    def stop(p: int) -> int:
        return p if p <= head else len(raw) - (len(normed) - p) if p >= cut else len(raw) - tail
    return start, stop


def added_pieces(text: str, raw_added, normalized_added, normalize, align=alignment):
    """``text`` cut at the added tokens in the two passes of the ``tokenizers`` library
    (module docstring): ``(start, stop, piece, starts, stops)``, ``piece`` an
    :class:`AddedToken` or a normalized string, ``text[start:stop]`` where it came from, and
    ``starts`` / ``stops`` mapping a position in ``piece`` to one in ``text`` (through
    ``align(raw, normalized)``, :func:`alignment` by default)."""
    out = []
    for start, stop, raw in split_added_spans(text, *raw_added):
        if isinstance(raw, AddedToken):
            out.append((start, stop, raw, None, None))
            continue
        normed = normalize(raw)
        to_start, to_stop = align(raw, normed)
        for a, b, piece in split_added_spans(normed, *normalized_added):
            starts = (lambda p, a=a, start=start, to_start=to_start: start + to_start(a + p))
            stops = (lambda p, a=a, start=start, to_stop=to_stop: start + to_stop(a + p))
            out.append((starts(0), stops(b - a), piece, starts, stops))
    return out
