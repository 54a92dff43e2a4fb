"""A ``tokenizer.json``'s normalizer, pre-tokenizer and decoder, read into the options of the
BPE tokenizer they describe, or refused naming the field.

Read: GPT-2's (no normalizer, ``ByteLevel`` with its own pattern), Llama 3's and Qwen 2's
(no normalizer or ``NFC``, a ``Sequence`` of ``Split`` with a regex, behaviour ``Isolated``,
and ``ByteLevel`` without its pattern; decoder ``ByteLevel``), and Llama 2's SentencePiece BPE
(the normalizer ``Prepend("▁")`` + ``Replace(" ", "▁")``, or the pre-tokenizer ``Metaspace``
without splitting; decoder ``Replace("▁", " ")``, ``ByteFallback``, ``Fuse``, and maybe
``Strip`` of one leading space).
"""
from __future__ import annotations

from .gpt2 import GPT2_PATTERN
from .sentencepiece import SPACE


def _refuse(path, field: str, value, expected: str):
    raise ValueError(f"{path}: {field} {value!r} is not read by minillm (it reads {expected}); "
                     "the folder is refused")


def byte_level(path, tj: dict) -> dict:
    """``pattern``, ``nfc`` and ``add_prefix_space`` of :class:`~.gpt2.GPT2Tokenizer` from a
    byte-level BPE's ``tokenizer.json``."""
    norm = tj.get("normalizer")
    if norm not in (None, {"type": "NFC"}):
        _refuse(path, "normalizer", norm, "none (GPT-2, Llama 3) or NFC (Qwen 2) with a byte-level BPE")
    pre = tj.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        pattern, add_prefix_space = GPT2_PATTERN, bool(pre.get("add_prefix_space", False))
    elif pre.get("type") == "Sequence" and [p.get("type") for p in pre.get("pretokenizers") or []] == [
            "Split", "ByteLevel"]:
        split, level = pre["pretokenizers"]
        if (set(split.get("pattern") or {}) != {"Regex"} or split.get("behavior") != "Isolated"
                or split.get("invert", False)):
            _refuse(path, "pre_tokenizer.pretokenizers[0]", split,
                    "a Split on a Regex pattern, behavior Isolated, invert false")
        if level.get("use_regex", True) or level.get("add_prefix_space", False):
            _refuse(path, "pre_tokenizer.pretokenizers[1]", level,
                    "ByteLevel with use_regex false and add_prefix_space false after a Split")
        pattern, add_prefix_space = split["pattern"]["Regex"], False
    else:
        _refuse(path, "pre_tokenizer", pre or None, "ByteLevel with use_regex true (GPT-2), or a "
                "Sequence of Split and ByteLevel (Llama 3, Qwen 2)")
    decoder = tj.get("decoder")
    if decoder is not None and decoder.get("type") != "ByteLevel":
        _refuse(path, "decoder", decoder, "ByteLevel with a byte-level BPE")
    return dict(pattern=pattern, nfc=norm is not None, add_prefix_space=add_prefix_space)


_PREPEND_NORMALIZER = [{"type": "Prepend", "prepend": SPACE},
                       {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]
_DECODER = [{"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]
_STRIP = {"type": "Strip", "content": " ", "start": 1, "stop": 0}


def sentencepiece(path, tj: dict) -> dict:
    """``prepend_scheme`` and ``strip_leading_space`` of
    :class:`~.sentencepiece.SentencePieceBPETokenizer` from a byte-fallback BPE's
    ``tokenizer.json``."""
    norm, pre = tj.get("normalizer"), tj.get("pre_tokenizer")
    if norm is not None:
        if norm.get("type") != "Sequence" or norm.get("normalizers") != _PREPEND_NORMALIZER:
            _refuse(path, "normalizer", norm, "none, or the Sequence Prepend('▁'), Replace(' ', '▁') "
                    "of Llama 2")
        if pre is not None:
            _refuse(path, "pre_tokenizer", pre, "none after Llama 2's normalizer")
        scheme = "normalizer"
    else:
        pre = pre or {}
        if pre.get("type") != "Metaspace" or pre.get("replacement") != SPACE or pre.get("split", True):
            _refuse(path, "pre_tokenizer", pre or None, "Metaspace with replacement '▁' and split "
                    "false (Llama), or none after Llama 2's normalizer")
        scheme = pre.get("prepend_scheme") or ("always" if pre.get("add_prefix_space", True) else "never")
        if scheme not in ("always", "first", "never"):
            _refuse(path, "pre_tokenizer.prepend_scheme", scheme, "always, first, never")
    decoder = tj.get("decoder") or {}
    steps = decoder.get("decoders") if decoder.get("type") == "Sequence" else None
    if steps not in (_DECODER, _DECODER + [_STRIP]):
        _refuse(path, "decoder", decoder or None, "the Sequence Replace('▁', ' '), ByteFallback, "
                "Fuse and maybe Strip(' ', 1, 0) of Llama")
    return dict(prepend_scheme=scheme, strip_leading_space=steps == _DECODER + [_STRIP])
