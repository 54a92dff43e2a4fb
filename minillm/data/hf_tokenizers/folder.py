"""A Hugging Face tokenizer folder, in every layout transformers 4 and 5 write, read as
transformers 5 (the installed oracle) reads it, or refused naming the file and the field.

Layouts (docs/pretrained.md shows them):

- ``tokenizer.json`` + ``tokenizer_config.json``, nothing else: what transformers 5's
  ``save_pretrained`` writes, for GPT-2 and BERT alike;
- ``vocab.json`` + ``merges.txt`` (GPT-2) or ``vocab.txt`` (BERT), with or without
  ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``: transformers 4,
  and the ``tokenizers`` library's ``save_model``.

Which tokenizer: ``tokenizer_config.json``'s ``tokenizer_class``, else the model's
``config.json`` ``model_type``, else the files; as transformers 5 decides, a ``qwen2`` model
always gets ``Qwen2Tokenizer`` and a ``LlamaTokenizer`` whose ``tokenizer.json`` is byte-level
(Llama 3 folders say so) is read whole. transformers 5 builds the named classes
(``GPT2Tokenizer``, ``BertTokenizer``, ``LlamaTokenizer``, ``Qwen2Tokenizer`` and their 4.x
names with ``Fast``) from ``tokenizer_config.json``'s settings and takes only the vocabulary,
the merges, the added tokens and (not BERT) the post-processor from ``tokenizer.json``;
``PreTrainedTokenizerFast`` (``TokenizersBackend``) takes ``tokenizer.json`` whole: a
byte-level BPE (GPT-2, Llama 3, Qwen 2: :class:`GPT2Tokenizer` with the file's pattern) or a
SentencePiece BPE with byte fallback (Llama 2: :class:`SentencePieceBPETokenizer`). minillm
reads the same fields. A ``tokenizer.json`` field that transformers 5 does not read for the class and that says
something else than the class builds (a folder whose ids transformers 4 and 5 disagree on)
is logged as a warning naming it.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from ..chat_template import read_chat_template
from .added import AddedToken
from .files import (added_tokens, bpe_model, post_processor, read_json_object, read_merges_txt,
                    read_vocab_json, read_vocab_txt, wordpiece_model)
from .gpt2 import QWEN2_PATTERN, GPT2Tokenizer
from .pipeline import byte_level, sentencepiece
from .record import FILES, KIND, folder_record
from .sentencepiece import SPACE, SentencePieceBPETokenizer
from .wordpiece import WordPieceTokenizer

log = logging.getLogger("minillm")

BPE_CLASSES = ("GPT2Tokenizer", "GPT2TokenizerFast")
WORDPIECE_CLASSES = ("BertTokenizer", "BertTokenizerFast")
LLAMA_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast")
QWEN2_CLASSES = ("Qwen2Tokenizer", "Qwen2TokenizerFast")
JSON_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")
CLASSES = BPE_CLASSES + WORDPIECE_CLASSES + LLAMA_CLASSES + QWEN2_CLASSES + JSON_CLASSES
# config.json's model_type -> the class transformers 5 builds when tokenizer_config.json names none
MODEL_TYPES = {"gpt2": "GPT2Tokenizer", "bert": "BertTokenizer", "llama": "TokenizersBackend",
               "qwen2": "Qwen2Tokenizer", "qwen3": "Qwen2Tokenizer"}
MODEL_KINDS = {"BPE": GPT2Tokenizer, "WordPiece": WordPieceTokenizer}   # tokenizer.json model.type
TYPE_OF = {GPT2Tokenizer: "BPE", SentencePieceBPETokenizer: "BPE", WordPieceTokenizer: "WordPiece"}

# tokenizer_config.json (and special_tokens_map.json): the fields minillm reads ...
SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token", "cls_token", "sep_token",
                 "mask_token")
READ = ("tokenizer_class", "add_prefix_space", "add_bos_token", "add_eos_token", "legacy", "do_lower_case",
        "strip_accents", "tokenize_chinese_chars", "split_special_tokens", "added_tokens_decoder",
        "additional_special_tokens", "extra_special_tokens", *SPECIAL_NAMES)
# ... and those that change no id of ``encode``: lengths and sides of truncation and padding
# (applied only when asked for), decoding, the chat template (read by .chat_template),
# bookkeeping, and the options of transformers 4's slow Python BERT and SentencePiece
# tokenizers that their fast ones, and transformers 5, ignore.
NO_ID_CHANGE = ("model_max_length", "padding_side", "truncation_side", "clean_up_tokenization_spaces",
                "errors", "backend", "is_local", "local_files_only", "name_or_path", "model_input_names",
                "special_tokens_map_file", "max_length", "stride", "pad_to_multiple_of",
                "pad_token_type_id", "truncation_strategy", "processor_class", "chat_template",
                "do_basic_tokenize", "never_split", "trim_offsets", "use_fast", "tokenizer_file",
                "vocab_file", "merges_file", "spaces_between_special_tokens",
                "use_default_system_prompt", "sp_model_kwargs")
# tokenizer.json's top-level fields; truncation and padding are reset by every transformers
# call (encode truncates and pads only when asked), so they change no id of ``encode``
JSON_FIELDS = ("version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
               "post_processor", "decoder", "model")


def _fields(path: Path, data: dict, known) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{path}: field {unknown[0]!r} is not read by minillm (it reads "
                         f"{sorted(READ)}); it may change the ids, so the folder is refused")


def _token_name(value):
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


def _class_name(folder: Path, config: dict, config_path: Path) -> tuple[str, str]:
    """(tokenizer class, why): the class transformers 5's AutoTokenizer would build."""
    model_config = folder / "config.json"
    model_type = (read_json_object(model_config, "config.json").get("model_type")
                  if model_config.is_file() else None)
    named = config.get("tokenizer_class")
    if named is not None:
        if model_type == "qwen2" and named not in QWEN2_CLASSES:
            return "Qwen2Tokenizer", (f"{model_config.name}'s model_type 'qwen2', whose "
                                      f"tokenizer_class {named!r} transformers 5 overrides")
        tj_path = folder / "tokenizer.json"
        byte_level_json = tj_path.is_file() and '"ByteLevel"' in tj_path.read_text(encoding="utf-8")
        if named in LLAMA_CLASSES and byte_level_json:
            return "TokenizersBackend", (f"{config_path.name}'s tokenizer_class {named!r} with a "
                                         f"byte-level {tj_path.name}, which transformers 5 reads whole")
        return named, f"{config_path.name}'s tokenizer_class"
    if model_config.is_file():
        if model_type in MODEL_TYPES:
            return MODEL_TYPES[model_type], f"{model_config.name}'s model_type {model_type!r}"
        if model_type is not None:
            raise ValueError(f"{model_config}: model_type {model_type!r} has a tokenizer minillm "
                             f"does not read (it reads those of {sorted(MODEL_TYPES)}), and "
                             f"{config_path.name} names no tokenizer_class")
    if (folder / "tokenizer.json").is_file():
        return "TokenizersBackend", f"{folder / 'tokenizer.json'} alone"
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return "GPT2Tokenizer", "vocab.json + merges.txt"
    if (folder / "vocab.txt").is_file():
        return "BertTokenizer", "vocab.txt"
    raise ValueError(f"expected a tokenizer in {folder}: tokenizer.json, vocab.json + merges.txt "
                     "(GPT-2) or vocab.txt (BERT), found none of them")


def _warn_if_unread(path: Path, tj: dict, field: str, built: dict | None, class_name: str) -> None:
    """A tokenizer.json field the class rebuilds from tokenizer_config.json instead."""
    theirs = tj.get(field)
    same = (theirs is None and built is None) or (
        theirs is not None and built is not None
        and all(theirs.get(k, v) == v for k, v in built.items()))
    if not same:
        log.warning("%s: %s is %r, but transformers 5 builds %s's own (%r) from "
                    "tokenizer_config.json and ignores it, and so does minillm (transformers 4 "
                    "applied it)", path, field, theirs, class_name, built)


def read_tokenizer_folder(folder, expect: type | None = None):
    """The tokenizer of a Hugging Face folder: :class:`GPT2Tokenizer` (byte-level BPE: GPT-2,
    Llama 3, Qwen 2), :class:`SentencePieceBPETokenizer` (byte fallback: Llama 2) or
    :class:`WordPieceTokenizer`, with every setting that changes the ids read, as
    transformers 5 reads them (module docstring). ``expect``: the class the caller wants;
    a folder of the other kind is refused, naming what it holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"expected a tokenizer folder, got {folder}, which is not a folder")
    config_path, map_path = folder / "tokenizer_config.json", folder / "special_tokens_map.json"
    config = read_json_object(config_path, "tokenizer_config.json") if config_path.is_file() else {}
    _fields(config_path, config, READ + NO_ID_CHANGE)
    special_map = read_json_object(map_path, "special_tokens_map.json") if map_path.is_file() else {}
    _fields(map_path, special_map, SPECIAL_NAMES + ("additional_special_tokens", "extra_special_tokens"))
    settings = {**special_map, **config}
    class_name, why = _class_name(folder, config, config_path)
    tj_path = folder / "tokenizer.json"
    tj = read_json_object(tj_path, "tokenizer.json") if tj_path.is_file() else None
    if tj is not None:
        _fields(tj_path, tj, JSON_FIELDS)
    model_type = (tj.get("model") or {}).get("type") if tj is not None else None
    if class_name in JSON_CLASSES:
        if tj is None:
            raise ValueError(f"{folder}: tokenizer_class {class_name!r} needs tokenizer.json, which "
                             "the folder does not have")
        if model_type not in MODEL_KINDS:
            raise ValueError(f"{tj_path}: model.type {model_type!r} is not read by minillm (it reads "
                             f"{sorted(MODEL_KINDS)}: byte-level and SentencePiece BPE, BERT's WordPiece)")
        kind = MODEL_KINDS[model_type]
        if (tj.get("model") or {}).get("byte_fallback"):
            kind = SentencePieceBPETokenizer
    elif class_name in BPE_CLASSES + QWEN2_CLASSES + LLAMA_CLASSES + WORDPIECE_CLASSES:
        kind = (WordPieceTokenizer if class_name in WORDPIECE_CLASSES else
                SentencePieceBPETokenizer if class_name in LLAMA_CLASSES else GPT2Tokenizer)
        if class_name in LLAMA_CLASSES and tj is None:
            raise ValueError(f"{folder}: {why} makes it a {class_name!r}, whose vocabulary minillm "
                             "reads from tokenizer.json, which the folder does not have (SentencePiece's "
                             "tokenizer.model is not read)")
        if tj is not None and model_type != TYPE_OF[kind]:
            raise ValueError(f"{folder}: {why} makes it a {class_name!r}, but {tj_path.name}'s model.type "
                             f"is {model_type!r}; expected {TYPE_OF[kind]!r} for that class")
    else:
        raise ValueError(f"{config_path}: tokenizer_class {class_name!r} is not read by minillm "
                         f"(it reads {list(CLASSES)})")
    if expect is not None and kind is not expect:
        raise ValueError(f"{folder} holds a {kind.kind} ({why}), not a {expect.kind}")
    whole = class_name in JSON_CLASSES                   # tokenizer.json read whole
    build = {SentencePieceBPETokenizer: _sentencepiece, GPT2Tokenizer: _gpt2}.get(kind, _wordpiece)
    tok = build(folder, settings, tj, tj_path, whole, class_name)
    tok.record = folder_record(folder)
    tok.chat_template = _chat_template(folder)
    return tok


def _chat_template(folder: Path) -> str | None:
    """The folder's default chat template, where it has one (else None)."""
    try:
        return read_chat_template(folder)
    except ValueError:
        return None


def _added(settings: dict, tj: dict | None, tj_path: Path, config_path: Path, vocab: dict,
           defaults: dict) -> list:
    """Every added token: tokenizer.json's, tokenizer_config.json's added_tokens_decoder
    (transformers 4), and the special tokens the settings name (or the class's defaults),
    which transformers adds as special, not normalized, at their vocabulary id."""
    found = {}
    for t in added_tokens(tj_path, "added_tokens", (tj or {}).get("added_tokens")):
        found[t.content] = t
    for t in added_tokens(config_path, "added_tokens_decoder", settings.get("added_tokens_decoder")):
        found.setdefault(t.content, t)
    names = [_token_name(settings.get(k, defaults.get(k))) for k in SPECIAL_NAMES]
    for key in ("additional_special_tokens", "extra_special_tokens"):
        extra = settings.get(key) or []
        names += [_token_name(v) for v in (extra.values() if isinstance(extra, dict) else extra)]
    for name in names:
        if name is None or name in found:
            continue
        if name not in vocab:
            raise ValueError(f"{config_path}: the special token {name!r} is in neither the "
                             "vocabulary nor the added tokens; transformers would give it a new "
                             "id the model has no embedding for, so the folder is refused")
        found[name] = AddedToken(name, vocab[name], special=True, normalized=False)
    tokens = list(found.values())
    if settings.get("split_special_tokens"):           # special tokens are text like any other
        tokens = [t for t in tokens if not t.special]
    return tokens


def _special_map(settings: dict, defaults: dict) -> dict:
    """The special tokens by name, as transformers' ``special_tokens_map`` (chat templates
    read them): tokenizer_config.json's, else the class's defaults."""
    names = {key: _token_name(settings.get(key, defaults.get(key))) for key in SPECIAL_NAMES}
    return {key: name for key, name in names.items() if name is not None}


def _prefix_suffix(settings: dict, tj, tj_path: Path, ids: dict, bos, eos) -> tuple[tuple, tuple]:
    """The ids a class-built tokenizer puts around the text: tokenizer.json's post-processor
    where there is a tokenizer.json (transformers 5 then drops tokenizer_config.json's
    ``add_bos_token`` / ``add_eos_token``), else those two, when it says either."""
    if tj is None and ("add_bos_token" in settings or "add_eos_token" in settings):
        return ((ids[bos],) if settings.get("add_bos_token") and bos is not None else (),
                (ids[eos],) if settings.get("add_eos_token") and eos is not None else ())
    return post_processor(tj_path, (tj or {}).get("post_processor"), ids.__getitem__)


def _gpt2(folder: Path, settings: dict, tj, tj_path: Path, whole: bool, class_name: str):
    """GPT-2's, Llama 3's and Qwen 2's byte-level BPE."""
    config_path = folder / "tokenizer_config.json"
    ignore_merges = False
    if tj is not None:
        vocab, merges, _, ignore_merges = bpe_model(tj_path, tj.get("model") or {})
    else:
        vocab, merges = read_vocab_json(folder / "vocab.json"), read_merges_txt(folder / "merges.txt")
    eot = GPT2Tokenizer.EOT
    qwen = class_name in QWEN2_CLASSES
    defaults = ({} if whole else
                {"eos_token": eot, "unk_token": eot, "pad_token": eot} if qwen else
                {"bos_token": eot, "eos_token": eot, "unk_token": eot})
    added = _added(settings, tj, tj_path, config_path, vocab, defaults)
    ids = {**vocab, **{t.content: t.id for t in added}}
    bos = _token_name(settings.get("bos_token", defaults.get("bos_token")))
    eos = _token_name(settings.get("eos_token", defaults.get("eos_token")))
    if whole:
        options = byte_level(tj_path, tj)
        prefix, suffix = post_processor(tj_path, tj.get("post_processor"), ids.__getitem__)
    else:
        ignore_merges = False                          # the class builds its BPE without it
        add_prefix_space = bool(settings.get("add_prefix_space", False))
        if qwen:
            if add_prefix_space:
                raise ValueError(f"{config_path}: add_prefix_space true with {class_name} (a space "
                                 "before each pre-token of its Split) is not read by minillm; the "
                                 "folder is refused")
            options = dict(pattern=QWEN2_PATTERN, nfc=True, add_prefix_space=False)
            built = ({"type": "NFC"}, {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated",
                 "invert": False}, {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]})
        else:
            options = dict(add_prefix_space=add_prefix_space)
            built = (None, {"type": "ByteLevel", "use_regex": True, "add_prefix_space": add_prefix_space})
        if tj is not None:
            _warn_if_unread(tj_path, tj, "normalizer", built[0], class_name)
            _warn_if_unread(tj_path, tj, "pre_tokenizer", built[1], class_name)
        prefix, suffix = _prefix_suffix(settings, tj, tj_path, ids, bos, eos)
    return GPT2Tokenizer(vocab, merges, added_tokens=added, prefix=prefix, suffix=suffix,
                         bos_token=bos, eos_token=eos, ignore_merges=ignore_merges,
                         special_tokens=_special_map(settings, defaults), **options)


def _sentencepiece(folder: Path, settings: dict, tj, tj_path: Path, whole: bool, class_name: str):
    """Llama 2's SentencePiece BPE with byte fallback (tokenizer.json only)."""
    config_path = folder / "tokenizer_config.json"
    vocab, merges, byte_fallback, ignore_merges = bpe_model(tj_path, tj.get("model") or {})
    defaults = {} if whole else {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
    added = _added(settings, tj, tj_path, config_path, vocab, defaults)
    ids = {**vocab, **{t.content: t.id for t in added}}
    bos = _token_name(settings.get("bos_token", defaults.get("bos_token")))
    eos = _token_name(settings.get("eos_token", defaults.get("eos_token")))
    unk = _token_name(settings.get("unk_token", defaults.get("unk_token")))
    if whole:
        if ignore_merges:
            raise ValueError(f"{tj_path}: model.ignore_merges true with byte_fallback is not read by "
                             "minillm (Llama 2 has none); the folder is refused")
        options = sentencepiece(tj_path, tj)
        prefix, suffix = post_processor(tj_path, tj.get("post_processor"), ids.__getitem__)
    else:                                              # transformers 5's LlamaTokenizer
        add_prefix_space = settings.get("add_prefix_space")
        add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
        scheme = ("always" if settings.get("legacy", False) else "first") if add_prefix_space else "never"
        options = dict(prepend_scheme=scheme, strip_leading_space=add_prefix_space)
        _warn_if_unread(tj_path, tj, "normalizer", None, class_name)
        _warn_if_unread(tj_path, tj, "pre_tokenizer", {"type": "Metaspace", "replacement": SPACE,
                                                       "prepend_scheme": scheme, "split": False},
                        class_name)
        prefix, suffix = _prefix_suffix(settings, tj, tj_path, ids, bos, eos)
    return SentencePieceBPETokenizer(vocab, merges, added_tokens=added, prefix=prefix, suffix=suffix,
                                     bos_token=bos, eos_token=eos, unk_token=unk,
                                     special_tokens=_special_map(settings, defaults), **options)


def _wordpiece(folder: Path, settings: dict, tj, tj_path: Path, whole: bool, class_name: str):
    config_path = folder / "tokenizer_config.json"
    if tj is not None:
        tokens, max_chars = wordpiece_model(tj_path, tj.get("model") or {})
    else:
        tokens, max_chars = read_vocab_txt(folder / "vocab.txt"), 100
    vocab = {t: i for i, t in enumerate(tokens)}
    defaults = {} if whole else {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                                 "cls_token": "[CLS]", "mask_token": "[MASK]"}
    unk = _token_name(settings.get("unk_token", defaults.get("unk_token")))
    if unk not in (None, "[UNK]"):
        raise ValueError(f"{config_path}: expected unk_token '[UNK]' (BERT's), got {unk!r}")
    added = _added(settings, tj, tj_path, config_path, vocab, defaults)
    ids = {**vocab, **{t.content: t.id for t in added}}
    if whole:
        norm = tj.get("normalizer") or {}
        if norm.get("type") != "BertNormalizer" or not norm.get("clean_text", True):
            raise ValueError(f"{tj_path}: expected normalizer BertNormalizer with clean_text true "
                             f"(BERT's), got {tj.get('normalizer')!r}")
        options = dict(lowercase=bool(norm.get("lowercase", True)), strip_accents=norm.get("strip_accents"),
                       handle_chinese_chars=bool(norm.get("handle_chinese_chars", True)))
        pre = tj.get("pre_tokenizer") or {}
        if pre.get("type") != "BertPreTokenizer":
            raise ValueError(f"{tj_path}: expected pre_tokenizer BertPreTokenizer (BERT's), got {pre!r}")
        prefix, suffix = post_processor(tj_path, tj.get("post_processor"), ids.__getitem__)
    else:
        options = dict(lowercase=bool(settings.get("do_lower_case", True)),
                       strip_accents=settings.get("strip_accents"),
                       handle_chinese_chars=bool(settings.get("tokenize_chinese_chars", True)))
        if tj is not None:
            _warn_if_unread(tj_path, tj, "normalizer", {
                "type": "BertNormalizer", "clean_text": True, "lowercase": options["lowercase"],
                "strip_accents": options["strip_accents"],
                "handle_chinese_chars": options["handle_chinese_chars"]}, class_name)
            _warn_if_unread(tj_path, tj, "pre_tokenizer", {"type": "BertPreTokenizer"}, class_name)
        cls_name = _token_name(settings.get("cls_token", "[CLS]"))
        sep_name = _token_name(settings.get("sep_token", "[SEP]"))
        prefix, suffix = (ids.get(cls_name, 2),), (ids.get(sep_name, 3),)   # BertTokenizer's own
    return WordPieceTokenizer(tokens, max_chars_per_word=max_chars, added_tokens=added,
                              prefix=prefix, suffix=suffix, **options)


def read_record(record: dict):
    """The tokenizer of a record (:func:`~.record.record_of`), its chat template set."""
    files = record.get("files") if isinstance(record, dict) else None
    if record.get("kind") != KIND or not isinstance(files, dict) or not set(files) <= set(FILES):
        raise ValueError(f"expected a {KIND} record with files among {list(FILES)}, got "
                         f"{sorted(files) if isinstance(files, dict) else type(files).__name__}")
    template = record.get("chat_template")
    if template is not None and not isinstance(template, str):
        raise ValueError(f"expected chat_template a string (a Jinja template), got {type(template).__name__}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        tok = read_tokenizer_folder(tmp)
    tok.record = {"kind": KIND, "files": dict(files)}
    tok.chat_template = template
    return tok
