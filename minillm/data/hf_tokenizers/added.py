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
    if pattern is None:
        return [text] if text else []
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
            out.append(text[start_offset:start])
        out.append(token)
        start_offset = stop
    if start_offset < len(text):
        out.append(text[start_offset:])
    return out
