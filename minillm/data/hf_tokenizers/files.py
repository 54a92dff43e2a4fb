"""The files of a tokenizer folder, each read or refused by name: ``vocab.json`` and
``merges.txt`` (byte-level BPE), ``vocab.txt`` (WordPiece), and the parts of a
``tokenizers`` file, ``tokenizer.json``: its model, its added tokens, its post-processor."""
from __future__ import annotations

import json
from pathlib import Path

from .added import AddedToken


def read_text(path: Path, what: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"expected {what} at {path}, but there is no such file")
    return path.read_text(encoding="utf-8")


def read_json_object(path: Path, what: str) -> dict:
    try:
        data = json.loads(read_text(path, what))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: expected JSON, got a parse error: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_vocab_json(path) -> dict:
    """``vocab.json``: token -> id."""
    vocab = read_json_object(path, "GPT-2's vocab.json")
    return vocab


def read_merges_txt(path) -> list:
    """``merges.txt``: one ``a b`` pair a line, best first, after an optional ``#version`` line."""
    merges = []
    for n, line in enumerate(read_text(path, "GPT-2's merges.txt").splitlines(), start=1):
        if not line.strip() or (n == 1 and line.startswith("#version")):
            continue
        pair = line.split(" ")
        if len(pair) != 2:
            raise ValueError(f"{path}, line {n}: expected two tokens separated by one "
                             f"space, got {line!r}")
        merges.append((pair[0], pair[1]))
    return merges


def read_vocab_txt(path) -> list:
    """``vocab.txt``: one token a line, line i is token i."""
    return read_text(path, "BERT's vocab.txt").splitlines()


def _expect(path, where: str, data: dict, key: str, allowed, why: str) -> None:
    if data.get(key, allowed[0]) not in allowed:
        raise ValueError(f"{path}: expected {where}.{key} {' or '.join(map(repr, allowed))} "
                         f"({why}), got {data.get(key)!r}")


def bpe_model(path, model: dict) -> tuple[dict, list, bool, bool]:
    """(vocab, merges, byte_fallback, ignore_merges) of a ``BPE`` ``model``: GPT-2's, Llama
    3's and Qwen 2's byte-level BPE (no byte fallback; Llama 3 ignores the merges for a
    pre-token in the vocabulary), or Llama 2's SentencePiece BPE (byte fallback). Any other
    option that changes the ids is refused by name; ``unk_token`` and ``fuse_unk`` change
    none, as every character has a token (its bytes')."""
    _expect(path, "model", model, "type", ("BPE",), "a byte-level or SentencePiece BPE")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        _expect(path, "model", model, key, ("", None), "GPT-2's and Llama's BPE have none")
    _expect(path, "model", model, "dropout", (None, 0, 0.0), "BPE dropout samples the merges")
    _expect(path, "model", model, "byte_fallback", (False, True), "a boolean")
    _expect(path, "model", model, "ignore_merges", (False, True), "a boolean")
    vocab, merges = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict) or not isinstance(merges, list):
        raise ValueError(f"{path}: expected model.vocab an object (token -> id) and model.merges "
                         f"a list, got {type(vocab).__name__} and {type(merges).__name__}")
    pairs = []
    for m in merges:
        pair = m.split(" ") if isinstance(m, str) else list(m)
        if len(pair) != 2:
            raise ValueError(f"{path}: expected each of model.merges a pair, got {m!r}")
        pairs.append(tuple(pair))
    return vocab, pairs, bool(model.get("byte_fallback", False)), bool(model.get("ignore_merges", False))


def wordpiece_model(path, model: dict) -> tuple[list, int]:
    """(tokens in id order, max_input_chars_per_word) of a WordPiece ``model``."""
    _expect(path, "model", model, "type", ("WordPiece",), "BERT's WordPiece")
    _expect(path, "model", model, "unk_token", ("[UNK]",), "BERT's unknown token")
    _expect(path, "model", model, "continuing_subword_prefix", ("##",), "BERT's continuations")
    vocab = model.get("vocab") or {}
    tokens = sorted(vocab, key=vocab.get)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError(f"{path}: expected the ids of model.vocab to be 0..{len(tokens) - 1}, "
                         "each once")
    return tokens, int(model.get("max_input_chars_per_word", 100))


_ADDED_KEYS = ("id", "content", "single_word", "lstrip", "rstrip", "normalized", "special")


def added_tokens(path, where: str, entries) -> list:
    """:class:`AddedToken` of ``tokenizer.json``'s ``added_tokens`` (a list with ids) or
    ``tokenizer_config.json``'s ``added_tokens_decoder`` (id -> token)."""
    if isinstance(entries, dict):
        entries = [{**v, "id": int(k)} for k, v in entries.items()]
    out = []
    for e in entries or []:
        unknown = sorted(set(e) - set(_ADDED_KEYS) - {"__type"})
        if unknown:
            raise ValueError(f"{path}: {where} field {unknown[0]!r} of {e.get('content')!r} is not "
                             "read by minillm; it may change the ids, so the folder is refused")
        if e.get("single_word"):
            raise ValueError(f"{path}: {where} {e['content']!r} has single_word true (match only "
                             "outside words), which minillm does not read; the folder is refused")
        out.append(AddedToken(e["content"], int(e["id"]), bool(e.get("special", False)),
                              bool(e.get("normalized", not e.get("special", False))),
                              bool(e.get("lstrip", False)), bool(e.get("rstrip", False))))
    return out


def post_processor(path, post: dict | None, ids_of) -> tuple[tuple, tuple]:
    """(prefix ids, suffix ids) the post-processor puts around one text. ``ids_of(token)``
    gives a token's id. ``TemplateProcessing`` (its ``single`` template), ``BertProcessing``
    and ``RobertaProcessing`` (``cls`` ... ``sep``), ``ByteLevel`` (offsets only: no ids) and a
    ``Sequence`` of them are read; any other type is refused by name."""
    if post is None:
        return (), ()
    kind = post.get("type")
    if kind == "ByteLevel":
        return (), ()
    if kind in ("BertProcessing", "RobertaProcessing"):
        return (int(post["cls"][1]),), (int(post["sep"][1]),)
    if kind == "TemplateProcessing":
        single, specials = post.get("single") or [], post.get("special_tokens") or {}
        sequences = [i for i, piece in enumerate(single) if "Sequence" in piece]
        if len(sequences) != 1 or single[sequences[0]]["Sequence"].get("id") != "A":
            raise ValueError(f"{path}: expected post_processor.single to hold the text ($A) once, "
                             f"got {single!r}")
        ids = []
        for piece in single:
            if "SpecialToken" in piece:
                name = piece["SpecialToken"]["id"]
                ids.append(tuple(int(i) for i in specials[name]["ids"]) if name in specials
                           else (ids_of(name),))
            else:
                ids.append(None)
        cut = sequences[0]
        return (tuple(i for part in ids[:cut] for i in part),
                tuple(i for part in ids[cut + 1:] for i in part))
    if kind == "Sequence":
        found = [post_processor(path, p, ids_of) for p in post.get("processors") or []]
        adding = [f for f in found if f != ((), ())]
        if len(adding) > 1:
            raise ValueError(f"{path}: post_processor is a Sequence with more than one step "
                             "that adds tokens, which minillm does not read; the folder is refused")
        return adding[0] if adding else ((), ())
    raise ValueError(f"{path}: post_processor type {kind!r} is not read by minillm (it reads "
                     "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence); "
                     "the folder is refused")
