"""Count the code points on which minillm's Hugging Face tokenizers and ``transformers``'
split text differently: the figure docs/pretrained.md states, rerun by
tests/data/test_hf_tokenizers.py.

    python scripts/scan_tokenizer_unicode.py          # the counts
    python scripts/scan_tokenizer_unicode.py --list   # and the code points

What is compared. For every code point ``c`` (but the surrogates, which have no UTF-8 form)
the text :data:`UNIT` with ``c`` in every position (first, between and after cased letters,
before a digit, a contraction and a run of spaces) goes through both pre-tokenizers, and the pieces
must be equal: GPT-2's pre-token strings (what byte-level BPE then merges) and BERT's
normalized words (what WordPiece then splits, cased and uncased). Equal pieces give equal
ids under any vocabulary, so this is stronger than comparing ids under one.

The oracle is the ``tokenizers`` library: it is what ``transformers`` (5.x) runs for
``GPT2Tokenizer``, ``BertTokenizer`` and ``AutoTokenizer``, with a ``ByteLevel`` and a
``BertNormalizer`` + ``BertPreTokenizer`` built exactly as here.

Speed: the units of 512 code points are joined and compared at once; only the joins that
differ are cut into smaller ones, down to single units. A full scan takes about a minute of
CPU per tokenizer; the test's quick scan (see :func:`code_points`) about a third of that.
"""
from __future__ import annotations

import argparse
import platform
import sys
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minillm.data.hf_tokenizers import (  # noqa: E402
    WordPieceTokenizer, _pretokenizer_pattern, bytes_to_unicode)

UNIT = "{c}A{c}b{c}1{c}'s {c}  x "
KINDS = ("gpt2", "bert-cased", "bert-uncased")
CHUNK = 512


# Planes 4..13 are unassigned in every Unicode version so far, and planes 15 and 16 are
# private use: a quick scan reads every 97th code point of them (and all of planes 0..3, 14).
UNIFORM = (0x40000, 0xE0000), (0xF0000, 0x110000)


def code_points(quick: bool = False) -> list[int]:
    """Every code point but the surrogates; with ``quick``, only a sample of :data:`UNIFORM`."""
    def keep(c):
        if 0xD800 <= c <= 0xDFFF:
            return False
        return not quick or c % 97 == 0 or not any(a <= c < b for a, b in UNIFORM)
    return [c for c in range(0x110000) if keep(c)]


def splitters(kind: str):
    """``(ours, theirs)``: two functions from a text to its list of pieces."""
    from tokenizers import normalizers, pre_tokenizers

    if kind == "gpt2":
        byte_char = bytes_to_unicode()
        pattern = _pretokenizer_pattern()
        theirs_pre = pre_tokenizers.ByteLevel(add_prefix_space=False)

        def ours(text):
            return ["".join(byte_char[b] for b in piece.encode("utf-8")) for piece in pattern.findall(text)]

        def theirs(text):
            return [piece for piece, _ in theirs_pre.pre_tokenize_str(text)]
        return ours, theirs
    if kind in ("bert-cased", "bert-uncased"):
        lowercase = kind == "bert-uncased"
        tok = WordPieceTokenizer(["[UNK]"], lowercase=lowercase)
        norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                          strip_accents=None, lowercase=lowercase)
        pre = pre_tokenizers.BertPreTokenizer()

        def theirs(text):
            return [piece for piece, _ in pre.pre_tokenize_str(norm.normalize_str(text))]
        return tok.basic_tokenize, theirs
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def differing_code_points(kind: str, among=None) -> list[int]:
    """The code points (of ``among``, default all) whose :data:`UNIT` minillm and
    ``tokenizers`` split differently."""
    ours, theirs = splitters(kind)
    bad = []

    def scan(cps, size):
        for i in range(0, len(cps), size):
            chunk = cps[i:i + size]
            text = "".join(UNIT.format(c=chr(c)) for c in chunk)
            if ours(text) == theirs(text):
                continue
            if len(chunk) == 1:
                bad.append(chunk[0])
            else:
                scan(chunk, max(1, size // 16))

    scan(code_points() if among is None else list(among), CHUNK)
    return bad


def versions() -> dict[str, str]:
    """The Unicode tables each side reads (the counts depend on them)."""
    import regex
    import tokenizers
    return {"python": platform.python_version(), "unicodedata": unicodedata.unidata_version,
            "regex": regex.__version__, "tokenizers": tokenizers.__version__}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the code points too")
    args = parser.parse_args(argv)
    print(" ".join(f"{k} {v}" for k, v in versions().items()))
    for kind in KINDS:
        bad = differing_code_points(kind)
        print(f"{kind}: {len(bad)} code points differ")
        if args.list:
            print("  " + " ".join(f"U+{c:04X}" for c in bad))


if __name__ == "__main__":
    main()
