"""sentence-transformers folders: which settings change the embeddings, read from the JSON.

A sentence-transformers folder (``modules.json``) is read from its JSON files, without
the package: the module types that sentence-transformers up to 5.3
(``sentence_transformers.models.*``), from 5.4 and 6 write (:data:`ST_MODULE_TYPES`),
in the order Transformer, Pooling, optionally Normalize. Every setting that changes the
embeddings is computed as the package computes it, or the folder is refused with a
``ValueError`` naming the file and the field; a field this reader does not know is
refused too (docs/pretrained.md lists both). The model inside is read by its family's
module (BERT).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ...core.config import ModelConfig
from .files import read_json
from .pooling import POOLING_MODES

# modules.json "type" -> module, as written by sentence-transformers up to 5.3
# (sentence_transformers.models.*), 5.4 to 5.x, and 6 (Normalize moved to base.modules).
ST_MODULE_TYPES = {
    "sentence_transformers.models.Transformer": "Transformer",
    "sentence_transformers.base.modules.transformer.Transformer": "Transformer",
    "sentence_transformers.models.Pooling": "Pooling",
    "sentence_transformers.sentence_transformer.modules.pooling.Pooling": "Pooling",
    "sentence_transformers.models.Normalize": "Normalize",
    "sentence_transformers.sentence_transformer.modules.normalize.Normalize": "Normalize",
    "sentence_transformers.base.modules.normalize.Normalize": "Normalize",
}
# the boolean keys of older 1_Pooling/config.json files, in the order their vectors are concatenated
_LEGACY_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                        "pooling_mode_mean_tokens": "mean",
                        "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                        "pooling_mode_weightedmean_tokens": "weightedmean",
                        "pooling_mode_lasttoken": "lasttoken"}




class SentenceSettings(NamedTuple):
    """What a sentence-transformers folder sets beyond the weights, read from its files.

    ``pooling``: the pooling modes (:data:`POOLING_MODES`), whose vectors are concatenated
    in this order; ``normalize``: a Normalize module follows; ``max_seq_length``: tokens per
    text, ``[CLS]`` and ``[SEP]`` included, from ``sentence_bert_config.json`` (None: the
    tokenizer's ``model_max_length``, capped at the model's positions); ``lowercase``:
    ``do_lower_case``, the text is lower-cased before tokenizing; ``truncate_dim``: the
    embeddings keep their first ``truncate_dim`` values (``config_sentence_transformers.json``);
    ``embedding_dimension``: the size the Pooling module was built for."""

    pooling: tuple
    normalize: bool
    max_seq_length: int | None
    lowercase: bool
    truncate_dim: int | None
    embedding_dimension: int | None




def _fields(path: Path, config: dict, known) -> None:
    """Refuse a field this reader does not know: it may change the embeddings."""
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(config).__name__}")
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(f"{path}: unknown field {unknown[0]!r} (minillm reads {sorted(known)}); "
                         "it may change the embeddings, so the folder is refused")


def _expect(path: Path, config: dict, key: str, allowed, what: str) -> None:
    if key in config and config[key] not in allowed:
        raise ValueError(f"{path}: expected {key} {what}, got {config[key]!r}; minillm computes "
                         "only that")


# sentence_bert_config.json: the settings of the Transformer module.
_TEXT_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
_NO_OPTIONS = (None, {})
_ST_TRANSFORMER_KEYS = ("max_seq_length", "do_lower_case", "transformer_task", "modality_config",
                        "module_output_name", "unpad_inputs", "processing_kwargs", "model_args",
                        "model_kwargs", "tokenizer_args", "processor_kwargs", "config_args",
                        "config_kwargs", "query_length", "document_length", "query_expansion")


def _st_transformer(path: Path) -> tuple[int | None, bool]:
    """(max_seq_length, do_lower_case) of sentence_bert_config.json, after refusing every
    setting minillm does not compute."""
    config = read_json(path) if path.is_file() else {}
    _fields(path, config, _ST_TRANSFORMER_KEYS)
    _expect(path, config, "transformer_task", ("feature-extraction",), "'feature-extraction'")
    _expect(path, config, "modality_config", (_TEXT_MODALITY,), f"{_TEXT_MODALITY}")
    _expect(path, config, "module_output_name", ("token_embeddings",), "'token_embeddings'")
    # unpad_inputs only chooses flash attention's unpadded kernels: the same numbers
    for key in ("processing_kwargs", "model_args", "model_kwargs", "tokenizer_args",
                "processor_kwargs", "config_args", "config_kwargs"):
        _expect(path, config, key, _NO_OPTIONS, "empty (options passed to transformers)")
    for key in ("query_length", "document_length", "query_expansion"):
        _expect(path, config, key, (None,), "null (a length for queries or documents only)")
    n = config.get("max_seq_length")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 2):
        raise ValueError(f"{path}: expected max_seq_length an int >= 2 ([CLS] and [SEP]) or null, "
                         f"got {n!r}")
    lower = config.get("do_lower_case", False)
    if not isinstance(lower, bool):
        raise ValueError(f"{path}: expected do_lower_case true or false, got {lower!r}")
    return n, lower


def _st_pooling(path: Path) -> tuple[tuple, int | None]:
    """(modes, embedding_dimension) of a Pooling module's config.json: ``pooling_mode`` (a
    mode or a list), or the older ``pooling_mode_*`` booleans (none set: mean)."""
    config = read_json(path)
    _fields(path, config, ("embedding_dimension", "word_embedding_dimension", "pooling_mode",
                           "include_prompt", *_LEGACY_POOLING_KEYS))
    # include_prompt only matters with a prompt, and minillm adds none (see default_prompt_name)
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = (modes,) if isinstance(modes, str) else tuple(modes) if isinstance(modes, list) else ()
    else:
        modes = tuple(mode for key, mode in _LEGACY_POOLING_KEYS.items() if config.get(key)) or ("mean",)
    bad = [m for m in modes if m not in POOLING_MODES]
    if not modes or bad:
        raise ValueError(f"{path}: expected pooling_mode among {list(POOLING_MODES)}, got "
                         f"{config.get('pooling_mode')!r}")
    return modes, config.get("embedding_dimension", config.get("word_embedding_dimension"))


def _st_normalize(folder: Path) -> None:
    path = folder / "config.json"
    config = read_json(path) if path.is_file() else {}        # older Normalize saved nothing
    _fields(path, config, ("module_input_name", "module_output_name"))
    for key in ("module_input_name", "module_output_name"):
        _expect(path, config, key, ("sentence_embedding",), "'sentence_embedding' (the pooled vector)")


def _st_model(path: Path) -> int | None:
    """truncate_dim of config_sentence_transformers.json, after refusing a default prompt."""
    config = read_json(path) if path.is_file() else {}
    _fields(path, config, ("__version__", "model_type", "prompts", "default_prompt_name",
                           "similarity_fn_name", "truncate_dim"))
    _expect(path, config, "model_type", ("SentenceTransformer",), "'SentenceTransformer'")
    name = config.get("default_prompt_name")
    if name is not None and (config.get("prompts") or {}).get(name, "") != "":
        raise ValueError(f"{path}: default_prompt_name {name!r} puts a prompt before every text; "
                         "minillm adds none, so the folder is refused")
    n = config.get("truncate_dim")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"{path}: expected truncate_dim an int >= 1 or null, got {n!r}")
    return n


def read_settings(folder: Path) -> tuple[Path, SentenceSettings | None]:
    """(folder of the Transformer module, its settings) of a sentence-transformers folder:
    modules.json must list a Transformer, a Pooling and optionally a Normalize module, in
    this order, with the type names of sentence-transformers 2 to 6; (folder, None) for a
    plain model folder."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return folder, None
    modules = read_json(modules_file)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ValueError(f"{modules_file}: expected a list of modules, got {modules!r}")
    for m in modules:
        if m.get("type") not in ST_MODULE_TYPES:
            raise ValueError(f"{modules_file}: unknown module type {m.get('type')!r}; minillm "
                             f"computes only {sorted(ST_MODULE_TYPES)}")
    kinds = [ST_MODULE_TYPES[m["type"]] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ValueError(f"{modules_file}: expected the modules Transformer, Pooling and "
                         f"optionally Normalize, in this order, got {kinds}")
    paths = [folder / m.get("path", "") for m in modules]
    max_seq_length, lowercase = _st_transformer(paths[0] / "sentence_bert_config.json")
    pooling, dimension = _st_pooling(paths[1] / "config.json")
    if len(paths) == 3:
        _st_normalize(paths[2])
    truncate_dim = _st_model(folder / "config_sentence_transformers.json")
    return paths[0], SentenceSettings(pooling, len(paths) == 3, max_seq_length, lowercase,
                                      truncate_dim, dimension)




def check_settings(sentence: SentenceSettings, config: ModelConfig, body: Path) -> None:
    if sentence.embedding_dimension not in (None, config.d_model):
        raise ValueError(f"the Pooling module's config.json: expected embedding_dimension "
                         f"{config.d_model} (the model's hidden size), got {sentence.embedding_dimension}")
    if sentence.max_seq_length is not None and sentence.max_seq_length > config.block_size:
        raise ValueError(f"{body / 'sentence_bert_config.json'}: max_seq_length "
                         f"{sentence.max_seq_length} is more than the model's {config.block_size} "
                         "positions (config.json max_position_embeddings)")

