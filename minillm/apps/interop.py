r"""Hugging Face checkpoints in and out: GPT-2 and BERT weights as minillm state dicts.

The chapter's section 7.4 points at pretrained models. This module reads a LOCAL
Hugging Face model folder (nothing is downloaded) and returns a
:class:`~minillm.core.config.ModelConfig` and a state dict of NumPy arrays with minillm's
parameter names, which either backend loads; :func:`save_hf` writes a minillm model
back in the Hugging Face layout. Only NumPy is used, except for ``pytorch_model.bin``,
a pickle, read with ``torch.load(weights_only=True)`` and only when ``allow_bin=True``.

Supported folders (``config.json`` + ``model.safetensors``, or a sharded
``model.safetensors.index.json``):

====================================  =========================  ==================================
Hugging Face architecture             minillm class              what the config sets
====================================  =========================  ==================================
``GPT2Model``, ``GPT2LMHeadModel``    ``GPT``                    pre-norm, ``gelu_tanh`` (GPT-2's
                                                                 ``gelu_new``), tied LM head
``BertModel``, ``BertForMaskedLM``    ``TransformerEncoder``     post-norm, ``embedding_norm``,
                                                                 ``type_vocab_size``, exact GELU,
                                                                 eps 1e-12; MLM: ``lm_head_transform``
                                                                 and ``lm_head_bias``
sentence-transformers (BERT first)    ``TransformerEncoder``     and :class:`SentenceSettings`:
                                                                 pooling, Normalize, max_seq_length,
                                                                 do_lower_case, truncate_dim
====================================  =========================  ==================================

A sentence-transformers folder (``modules.json``) is read from its JSON files, without
the package: the module types that sentence-transformers up to 5.3
(``sentence_transformers.models.*``), from 5.4 and 6 write (:data:`ST_MODULE_TYPES`),
in the order Transformer, Pooling, optionally Normalize. Every setting that changes the
embeddings is computed as the package computes it, or the folder is refused with a
``ValueError`` naming the file and the field; a field this reader does not know is
refused too (docs/pretrained.md lists both).

Layout differences the conversion handles. Dimension legend: C d_model, F d_ff, V vocab.

- GPT-2's ``Conv1D`` stores its weight as ``(in, out)``, as minillm does: copied as is.
  Its ``c_attn`` holds :math:`[W_Q\,|\,W_K\,|\,W_V]` side by side, ``(C, 3C)``: split.
- BERT's ``nn.Linear`` stores ``(out, in)`` for :math:`y = xW^\top + b`: transposed.
- LayerNorm ``weight``/``bias`` (old BERT files: ``gamma``/``beta``) are ``gamma``/``beta``.
- A tied output layer is the token embedding; an untied one becomes ``lm_head.W`` (C, V).
- BERT's pooler (``pooler.dense``, for next-sentence prediction) has no minillm
  counterpart and is reported in :attr:`HFCheckpoint.ignored`.
- A folder without a head (``GPT2Model``, ``BertModel``) is given a head tied to the token
  embedding, as minillm's models always have one; what such a model was trained to give is
  its hidden states, ``model.encode(idx, attention_mask, token_type_ids)``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core._optional import import_optional
from ..core.config import ModelConfig
from ..store import safetensors_io

__all__ = ["HFCheckpoint", "SentenceSettings", "read_hf", "load_hf", "save_hf",
           "sentence_embeddings", "load_hf_tokenizer", "generate_text", "embed_texts",
           "GPT2_ARCHITECTURES", "BERT_ARCHITECTURES", "POOLING_MODES", "ST_MODULE_TYPES"]

log = logging.getLogger("minillm")

GPT2_ARCHITECTURES = ("GPT2Model", "GPT2LMHeadModel")
BERT_ARCHITECTURES = ("BertModel", "BertForMaskedLM")
HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
                  "relu": "relu", "silu": "silu"}
HF_EXPORT_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}  # ours -> config.json's
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
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
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


class HFCheckpoint(NamedTuple):
    """What :func:`read_hf` found: ``architecture`` (e.g. ``"GPT2LMHeadModel"``),
    ``model_class`` (``"GPT"`` or ``"TransformerEncoder"``), the ``config``, the minillm
    ``state`` (name -> NumPy array), the sentence-transformers ``pooling`` (a mode of
    :data:`POOLING_MODES`, a tuple of them when several are concatenated, or None) and
    ``normalize`` flag, the Hugging Face tensors that were ``ignored``, and all the
    sentence-transformers ``sentence`` settings (None for a plain model folder)."""

    architecture: str
    model_class: str
    config: ModelConfig
    state: dict
    pooling: str | tuple | None
    normalize: bool
    ignored: tuple
    sentence: SentenceSettings | None = None


# -- the name tables: (Hugging Face name, minillm name, how, HF shape) -------------------
# how: "copy" (same layout), "T" (transpose), "qkv0/1/2" (third of GPT-2's c_attn)

def _norm(theirs, ours, C):
    return [(f"{theirs}.weight", f"{ours}.gamma", "copy", (C,)),
            (f"{theirs}.bias", f"{ours}.beta", "copy", (C,))]


def _gpt2_table(c: ModelConfig, tied: bool):
    C, F, V = c.d_model, c.d_ff, c.vocab_size
    rows = [("wte.weight", "tok_emb.W", "copy", (V, C)),
            ("wpe.weight", "pos_emb.W", "copy", (c.block_size, C))]
    for i in range(c.n_layers):
        h, b = f"h.{i}", f"blocks.{i}"
        rows += _norm(f"{h}.ln_1", f"{b}.ln1", C)
        for j, q in enumerate("QKV"):
            rows += [(f"{h}.attn.c_attn.weight", f"{b}.attn.W_{q}", f"qkv{j}", (C, 3 * C)),
                     (f"{h}.attn.c_attn.bias", f"{b}.attn.b_{q}", f"qkv{j}", (3 * C,))]
        rows += [(f"{h}.attn.c_proj.weight", f"{b}.attn.W_O", "copy", (C, C)),
                 (f"{h}.attn.c_proj.bias", f"{b}.attn.b_O", "copy", (C,))]
        rows += _norm(f"{h}.ln_2", f"{b}.ln2", C)
        rows += [(f"{h}.mlp.c_fc.weight", f"{b}.ffn.W1", "copy", (C, F)),
                 (f"{h}.mlp.c_fc.bias", f"{b}.ffn.b1", "copy", (F,)),
                 (f"{h}.mlp.c_proj.weight", f"{b}.ffn.W2", "copy", (F, C)),
                 (f"{h}.mlp.c_proj.bias", f"{b}.ffn.b2", "copy", (C,))]
    rows += _norm("ln_f", "ln_f", C)
    if not tied:
        rows.append(("lm_head.weight", "lm_head.W", "T", (V, C)))
    return rows


def _bert_table(c: ModelConfig, mlm: bool, tied: bool):
    C, F, V = c.d_model, c.d_ff, c.vocab_size
    rows = [("embeddings.word_embeddings.weight", "tok_emb.W", "copy", (V, C)),
            ("embeddings.position_embeddings.weight", "pos_emb.W", "copy", (c.block_size, C)),
            ("embeddings.token_type_embeddings.weight", "type_emb.W", "copy",
             (c.type_vocab_size, C))]
    rows += _norm("embeddings.LayerNorm", "emb_ln", C)
    for i in range(c.n_layers):
        h, b = f"encoder.layer.{i}", f"blocks.{i}"
        for theirs, q in (("self.query", "Q"), ("self.key", "K"), ("self.value", "V"),
                          ("output.dense", "O")):
            rows += [(f"{h}.attention.{theirs}.weight", f"{b}.attn.W_{q}", "T", (C, C)),
                     (f"{h}.attention.{theirs}.bias", f"{b}.attn.b_{q}", "copy", (C,))]
        rows += _norm(f"{h}.attention.output.LayerNorm", f"{b}.ln1", C)
        rows += [(f"{h}.intermediate.dense.weight", f"{b}.ffn.W1", "T", (F, C)),
                 (f"{h}.intermediate.dense.bias", f"{b}.ffn.b1", "copy", (F,)),
                 (f"{h}.output.dense.weight", f"{b}.ffn.W2", "T", (C, F)),
                 (f"{h}.output.dense.bias", f"{b}.ffn.b2", "copy", (C,))]
        rows += _norm(f"{h}.output.LayerNorm", f"{b}.ln2", C)
    if mlm:
        rows = [("bert." + t, o, how, s) for t, o, how, s in rows]
        rows += [("cls.predictions.transform.dense.weight", "lm_transform.W", "T", (C, C)),
                 ("cls.predictions.transform.dense.bias", "lm_transform.b", "copy", (C,))]
        rows += _norm("cls.predictions.transform.LayerNorm", "lm_ln", C)
        rows.append(("cls.predictions.bias", "b_out", "copy", (V,)))
        if not tied:
            rows.append(("cls.predictions.decoder.weight", "lm_head.W", "T", (V, C)))
    return rows


# -- reading -------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"expected {path.name} in {path.parent}, but there is no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: expected JSON, got a parse error: {e}") from None


def _read_tensors(folder: Path, allow_bin: bool) -> tuple[dict, str]:
    """All tensors of the folder (name -> NumPy array) and the file(s) they came from."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return safetensors_io.load_file(single), str(single)
    if index.is_file():
        shards = sorted(set(_read_json(index)["weight_map"].values()))
        tensors = {}
        for shard in shards:
            tensors.update(safetensors_io.load_file(folder / shard))
        return tensors, str(index)
    pickle = folder / "pytorch_model.bin"
    if pickle.is_file():
        if not allow_bin:
            raise ValueError(f"{folder} has only pytorch_model.bin, a pickle; expected "
                             "model.safetensors. Pass allow_bin=True (--allow-bin) to read it "
                             "with torch.load(weights_only=True)")
        torch = import_optional("torch", "reading pytorch_model.bin (--allow-bin)")  # only this path needs torch

        state = torch.load(pickle, map_location="cpu", weights_only=True)
        return {k: t.detach().float().numpy() if t.dtype == torch.bfloat16 else t.detach().numpy()
                for k, t in state.items()}, str(pickle)
    raise ValueError(f"expected model.safetensors (or model.safetensors.index.json, or "
                     f"pytorch_model.bin with allow_bin=True) in {folder}, found none of them")


def _strip(tensors: dict, prefix: str) -> dict:
    if any(k.startswith(prefix) for k in tensors):
        return {(k[len(prefix):] if k.startswith(prefix) else k): a for k, a in tensors.items()}
    return tensors


def _old_layer_norm_names(tensors: dict) -> dict:
    """Early BERT files call LayerNorm's parameters gamma/beta."""
    out = {}
    for k, a in tensors.items():
        if "LayerNorm" in k and k.endswith((".gamma", ".beta")):
            k = k.rsplit(".", 1)[0] + (".weight" if k.endswith(".gamma") else ".bias")
        out[k] = a
    return out


def _gpt2_config(hf: dict, dtype: str) -> ModelConfig:
    for key, wanted in (("scale_attn_by_inverse_layer_idx", False), ("add_cross_attention", False)):
        if hf.get(key, wanted) != wanted:
            raise ValueError(f"config.json: expected {key}={wanted} (plain GPT-2), got {hf[key]!r}")
    act = hf.get("activation_function", "gelu_new")
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"config.json: expected activation_function in {sorted(HF_ACTIVATIONS)}, "
                         f"got {act!r}")
    return ModelConfig(
        vocab_size=hf["vocab_size"], block_size=hf.get("n_positions", 1024),
        d_model=hf["n_embd"], n_heads=hf["n_head"], n_layers=hf["n_layer"],
        d_ff=hf.get("n_inner") or 4 * hf["n_embd"], dropout=float(hf.get("resid_pdrop", 0.0)),
        activation=HF_ACTIVATIONS[act], norm_first=True,
        layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)), tie_embeddings=True,
        dtype=dtype)


def _bert_config(hf: dict, dtype: str, mlm: bool) -> ModelConfig:
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"config.json: expected position_embedding_type='absolute', "
                         f"got {hf['position_embedding_type']!r}")
    if hf.get("is_decoder", False):
        raise ValueError("config.json: expected an encoder (is_decoder=false), got is_decoder=true")
    act = hf.get("hidden_act", "gelu")
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"config.json: expected hidden_act in {sorted(HF_ACTIVATIONS)}, got {act!r}")
    return ModelConfig(
        vocab_size=hf["vocab_size"], block_size=hf.get("max_position_embeddings", 512),
        d_model=hf["hidden_size"], n_heads=hf["num_attention_heads"],
        n_layers=hf["num_hidden_layers"], d_ff=hf["intermediate_size"],
        dropout=float(hf.get("hidden_dropout_prob", 0.0)), activation=HF_ACTIVATIONS[act],
        norm_first=False, layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        tie_embeddings=True, type_vocab_size=hf.get("type_vocab_size", 2),
        embedding_norm=True, lm_head_transform=mlm, lm_head_bias=mlm, dtype=dtype)


def _architecture(hf: dict, tensors: dict, where: Path) -> str:
    archs = hf.get("architectures") or []
    known = GPT2_ARCHITECTURES + BERT_ARCHITECTURES
    for a in archs:
        if a in known:
            return a
    model_type = hf.get("model_type")
    if tensors is None:  # decided from config.json alone, or after reading the tensors
        if not archs and model_type in ("gpt2", "bert"):
            return None
        tensors = {}
    if not archs and model_type == "gpt2":
        return "GPT2LMHeadModel" if any(k.startswith("transformer.") for k in tensors) else "GPT2Model"
    if not archs and model_type == "bert":
        return "BertForMaskedLM" if any(k.startswith("cls.predictions") for k in tensors) else "BertModel"
    raise ValueError(f"{where}: expected one of the architectures {list(known)} "
                     f"(model_type 'gpt2' or 'bert'), got architectures={archs}, "
                     f"model_type={model_type!r}")


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
    config = _read_json(path) if path.is_file() else {}
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
    config = _read_json(path)
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
    config = _read_json(path) if path.is_file() else {}        # older Normalize saved nothing
    _fields(path, config, ("module_input_name", "module_output_name"))
    for key in ("module_input_name", "module_output_name"):
        _expect(path, config, key, ("sentence_embedding",), "'sentence_embedding' (the pooled vector)")


def _st_model(path: Path) -> int | None:
    """truncate_dim of config_sentence_transformers.json, after refusing a default prompt."""
    config = _read_json(path) if path.is_file() else {}
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


def _sentence_transformers(folder: Path) -> tuple[Path, SentenceSettings | None]:
    """(folder of the Transformer module, its settings) of a sentence-transformers folder:
    modules.json must list a Transformer, a Pooling and optionally a Normalize module, in
    this order, with the type names of sentence-transformers 2 to 6; (folder, None) for a
    plain model folder."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return folder, None
    modules = _read_json(modules_file)
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


def read_hf(folder, *, dtype: str = "float32", allow_bin: bool = False) -> HFCheckpoint:
    """Read a local Hugging Face GPT-2 or BERT folder into minillm's config and state.

    Every tensor the architecture needs must be present with the shape ``config.json``
    implies; otherwise a ``ValueError`` names the file, the tensor, and the expected and
    found shapes. Tensors the model does not use are listed in ``ignored``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"expected a Hugging Face model folder, got {folder}, which is not a folder")
    body, sentence = _sentence_transformers(folder)
    hf = _read_json(body / "config.json")
    arch = _architecture(hf, None, body / "config.json")
    tensors, source = _read_tensors(body, allow_bin)
    arch = arch or _architecture(hf, tensors, body / "config.json")
    if arch in GPT2_ARCHITECTURES:
        tensors = _strip(tensors, "transformer.")
        config = _gpt2_config(hf, dtype)
        tied = "lm_head.weight" not in tensors or np.array_equal(tensors["lm_head.weight"],
                                                                  tensors.get("wte.weight"))
        rows, model_class = _gpt2_table(config, tied), "GPT"
    else:
        mlm = arch == "BertForMaskedLM"
        tensors = _old_layer_norm_names(tensors)
        if not mlm:
            tensors = _strip(tensors, "bert.")
        config = _bert_config(hf, dtype, mlm)
        decoder = tensors.get("cls.predictions.decoder.weight")
        tied = decoder is None or np.array_equal(decoder, tensors.get("bert.embeddings.word_embeddings.weight"))
        rows, model_class = _bert_table(config, mlm, tied), "TransformerEncoder"
        if mlm and "cls.predictions.bias" not in tensors and "cls.predictions.decoder.bias" in tensors:
            tensors["cls.predictions.bias"] = tensors["cls.predictions.decoder.bias"]
    if not tied:
        config = ModelConfig.from_dict({**config.to_dict(), "tie_embeddings": False})
    state, used = {}, set()
    for theirs, ours, how, shape in rows:
        if theirs not in tensors:
            raise ValueError(f"{source}: missing tensor {theirs!r} (minillm {ours!r}), which "
                             f"{arch} with this config.json needs")
        a = np.asarray(tensors[theirs])
        if tuple(a.shape) != shape:
            raise ValueError(f"{source}: tensor {theirs!r} has shape {tuple(a.shape)}, but "
                             f"config.json implies {shape} (minillm {ours!r})")
        used.add(theirs)
        if how == "T":
            a = a.T
        elif how.startswith("qkv"):
            a = np.split(a, 3, axis=-1)[int(how[3])]
        state[ours] = np.ascontiguousarray(a, dtype=dtype)
    ignored = tuple(sorted(k for k in tensors if k not in used and not _is_buffer(k)))
    if ignored:
        log.info("%s: %d tensors not used by minillm: %s", source, len(ignored), ", ".join(ignored))
    pooling, normalize = None, False
    if sentence is not None:
        _check_sentence_settings(sentence, config, body)
        pooling = sentence.pooling[0] if len(sentence.pooling) == 1 else sentence.pooling
        normalize = sentence.normalize
    return HFCheckpoint(arch, model_class, config, state, pooling, normalize, ignored, sentence)


def _check_sentence_settings(sentence: SentenceSettings, config: ModelConfig, body: Path) -> None:
    if sentence.embedding_dimension not in (None, config.d_model):
        raise ValueError(f"the Pooling module's config.json: expected embedding_dimension "
                         f"{config.d_model} (the model's hidden size), got {sentence.embedding_dimension}")
    if sentence.max_seq_length is not None and sentence.max_seq_length > config.block_size:
        raise ValueError(f"{body / 'sentence_bert_config.json'}: max_seq_length "
                         f"{sentence.max_seq_length} is more than the model's {config.block_size} "
                         "positions (config.json max_position_embeddings)")


def _is_buffer(name: str) -> bool:
    """Saved buffers that are not weights: GPT-2's causal-mask tables, BERT's position ids,
    the decoder weight/bias that merely repeat tied ones."""
    if name.endswith(("attn.bias", "attn.masked_bias")) and "c_attn" not in name:
        return True
    return name.endswith(("position_ids", "token_type_ids")) or name in (
        "lm_head.weight", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


def load_hf(folder, backend="numpy", *, dtype: str = "float32", allow_bin: bool = False):
    """Build the minillm model of a Hugging Face folder in ``backend`` (``"numpy"`` or
    ``"torch"``) with its weights, in eval mode.
    Returns ``(model, checkpoint)``; see :func:`read_hf`."""
    from ..store.runtime import load_backend

    ckpt = read_hf(folder, dtype=dtype, allow_bin=allow_bin)
    model = getattr(load_backend(backend), ckpt.model_class)(ckpt.config)
    model.load_state_dict(ckpt.state)
    model.eval()
    return model, ckpt


def _pool(h: np.ndarray, m: np.ndarray, mode: str) -> np.ndarray:
    """One pooling mode over hidden states h (B, T, C) with mask m (B, T) of 0/1 -> (B, C)."""
    B, T, _ = h.shape
    rows = np.arange(B)
    first = m.argmax(axis=1)                                          # (B,) first real token
    if mode == "cls":
        return h[rows, first]
    if mode == "lasttoken":
        last = T - 1 - m[:, ::-1].argmax(axis=1)                      # (B,) last real token
        return h[rows, last] * m[rows, last][:, None]                 # no real token: zeros
    w = m[:, :, None]                                                 # (B, T, 1)
    if mode == "max":
        return np.where(w > 0, h, -np.inf).max(axis=1)
    if mode == "weightedmean":                        # weights 1, 2, ... from the first real token
        w = w * (np.arange(1, T + 1)[None, :] - first[:, None]).astype(h.dtype)[:, :, None]
    total = (h * w).sum(axis=1)                                       # (B, C)
    count = np.maximum(w.sum(axis=1), 1e-9)                           # (B, 1)
    return total / (np.sqrt(count) if mode == "mean_sqrt_len_tokens" else count)


def sentence_embeddings(model, idx, attention_mask=None, pooling="mean",
                        normalize: bool = False) -> np.ndarray:
    r"""Sentence vectors from an encoder, as sentence-transformers' Pooling and Normalize
    modules compute them. With :math:`m_{bt}` the attention mask, :math:`f_b` and
    :math:`l_b` the first and last positions of text :math:`b`, :math:`n_b = \max(\sum_t m_{bt}, 10^{-9})`:

    .. math::
        \text{mean: } e_b = \frac{\sum_t m_{bt} h_{bt}}{n_b} \qquad
        \text{mean\_sqrt\_len\_tokens: } e_b = \frac{\sum_t m_{bt} h_{bt}}{\sqrt{n_b}} \qquad
        \text{cls: } e_b = h_{b f_b} \qquad \text{lasttoken: } e_b = h_{b l_b}

        \text{max: } e_{bc} = \max_{t:\, m_{bt} = 1} h_{btc} \qquad
        \text{weightedmean: } e_b = \frac{\sum_t w_{bt} h_{bt}}{\max(\sum_t w_{bt}, 10^{-9})},\
        w_{bt} = m_{bt}\,(t + 1 - f_b)

        \text{normalize: } e_b \leftarrow e_b / \max(\lVert e_b \rVert_2, 10^{-12})

    ``pooling`` is one of :data:`POOLING_MODES` or a sequence of them, whose vectors are
    concatenated in that order. Works with either backend's model (the pooling runs in
    NumPy on its hidden states). Shapes: idx (B, T), attention_mask (B, T) -> (B, C * modes).
    """
    modes = (pooling,) if isinstance(pooling, str) else tuple(pooling)
    if not modes or any(p not in POOLING_MODES for p in modes):
        raise ValueError(f"expected pooling among {list(POOLING_MODES)} (or a sequence of them), "
                         f"got {pooling!r}")
    h = model.encode(idx, attention_mask)                             # (B, T, C)
    h = h.detach().cpu().numpy() if hasattr(h, "detach") else np.asarray(h)
    m = np.ones(h.shape[:2], h.dtype) if attention_mask is None else attention_mask
    m = m.detach().cpu().numpy() if hasattr(m, "detach") else np.asarray(m)
    m = m.astype(h.dtype)                                             # (B, T)
    e = np.concatenate([_pool(h, m, mode) for mode in modes], axis=1)  # (B, C * modes)
    if normalize:
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return e


# -- writing -------------------------------------------------------------------------------

def _require(config: ModelConfig, arch: str, **wanted):
    config.require_classic(arch)
    for key, value in wanted.items():
        if getattr(config, key) != value:
            raise ValueError(f"{arch} needs ModelConfig.{key}={value!r}, got {getattr(config, key)!r}")


def save_hf(model, folder) -> str:
    """Write a minillm ``GPT`` (as ``GPT2LMHeadModel``) or ``TransformerEncoder`` (as
    ``BertForMaskedLM`` with ``lm_head_transform``, else ``BertModel``) to ``folder`` as
    ``config.json`` + ``model.safetensors``, which ``transformers`` loads. Returns the
    architecture name. The model's config must be one the architecture can express."""
    from ..core.state import as_numpy_state

    config, kind = model.config, type(model).__name__
    state = as_numpy_state(model.state_dict())
    if kind == "GPT":
        arch = "GPT2LMHeadModel"
        _require(config, arch, norm_first=True, positional="learned", type_vocab_size=0,
                 embedding_norm=False, lm_head_transform=False, lm_head_bias=False)
        rows = [("transformer." + t if not t.startswith("lm_head") else t, o, how, s)
                for t, o, how, s in _gpt2_table(config, config.tie_embeddings)]
        hf = {"architectures": [arch], "model_type": "gpt2", "vocab_size": config.vocab_size,
              "n_positions": config.block_size, "n_embd": config.d_model,
              "n_head": config.n_heads, "n_layer": config.n_layers, "n_inner": config.d_ff,
              "activation_function": HF_EXPORT_ACTIVATIONS[config.activation],
              "layer_norm_epsilon": config.layer_norm_eps, "resid_pdrop": config.dropout,
              "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
              "tie_word_embeddings": config.tie_embeddings}
    elif kind == "TransformerEncoder":
        mlm = config.lm_head_transform
        arch = "BertForMaskedLM" if mlm else "BertModel"
        _require(config, arch, norm_first=False, positional="learned", embedding_norm=True,
                 lm_head_bias=mlm)
        if config.type_vocab_size < 1:
            raise ValueError(f"{arch} needs ModelConfig.type_vocab_size >= 1, got 0")
        rows = _bert_table(config, mlm, config.tie_embeddings)
        hf = {"architectures": [arch], "model_type": "bert", "vocab_size": config.vocab_size,
              "max_position_embeddings": config.block_size, "hidden_size": config.d_model,
              "num_attention_heads": config.n_heads, "num_hidden_layers": config.n_layers,
              "intermediate_size": config.d_ff, "hidden_act": HF_EXPORT_ACTIVATIONS[config.activation],
              "layer_norm_eps": config.layer_norm_eps, "type_vocab_size": config.type_vocab_size,
              "hidden_dropout_prob": config.dropout, "attention_probs_dropout_prob": config.dropout,
              "tie_word_embeddings": config.tie_embeddings}
    else:
        raise ValueError(f"expected a minillm GPT or TransformerEncoder, got {kind}")
    tensors: dict = {}
    for theirs, ours, how, shape in rows:
        a = state[ours]
        if how == "T":
            a = a.T
        elif how.startswith("qkv"):
            a = np.concatenate([state[ours[:-1] + q] for q in "QKV"], axis=-1)  # (.., 3C)
        tensors[theirs] = np.ascontiguousarray(a)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hf["torch_dtype"] = config.dtype
    (folder / "config.json").write_text(json.dumps(hf, indent=2), encoding="utf-8")
    safetensors_io.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return arch


# -- running a folder: its tokenizer, generation, sentence embeddings ----------------------

def load_hf_tokenizer(folder):
    """The tokenizer of a Hugging Face folder: :class:`~minillm.data.GPT2Tokenizer` from
    vocab.json + merges.txt, or :class:`~minillm.data.WordPieceTokenizer` from vocab.txt or
    tokenizer.json (in a sentence-transformers folder, those of its Transformer module,
    lower-casing the text first when its ``do_lower_case`` says so)."""
    from ..data.hf_tokenizers import GPT2Tokenizer, WordPieceTokenizer

    body, sentence = _sentence_transformers(Path(folder))
    lowercase = sentence is not None and sentence.lowercase
    if (body / "vocab.json").is_file() and (body / "merges.txt").is_file():
        if lowercase:
            raise ValueError(f"{body / 'sentence_bert_config.json'}: do_lower_case is true, but "
                             "minillm's GPT-2 tokenizer does not lower-case")
        return GPT2Tokenizer.from_folder(body)
    if (body / "vocab.txt").is_file() or (body / "tokenizer.json").is_file():
        tok = WordPieceTokenizer.from_folder(body)
        if lowercase:               # the text is lower-cased; accents are stripped only if they were
            tok.lowercase = True
        return tok
    raise ValueError(f"expected a tokenizer in {body}: vocab.json + merges.txt (GPT-2) or "
                     "vocab.txt or tokenizer.json (BERT), found none of them")


def _max_tokens(folder, ckpt: HFCheckpoint) -> int:
    """Tokens per text, [CLS] and [SEP] included, as sentence-transformers cuts them:
    sentence_bert_config.json's max_seq_length, else tokenizer_config.json's
    model_max_length capped at the model's positions, else the model's positions."""
    if ckpt.sentence is not None and ckpt.sentence.max_seq_length is not None:
        return ckpt.sentence.max_seq_length                    # read_hf checked it fits
    body, _ = _sentence_transformers(Path(folder))
    path = body / "tokenizer_config.json"
    limit = _read_json(path).get("model_max_length") if path.is_file() else None
    if limit is None:
        return ckpt.config.block_size
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 2:
        raise ValueError(f"{path}: expected model_max_length a number >= 2 ([CLS] and [SEP]), "
                         f"got {limit!r}")
    return int(min(limit, ckpt.config.block_size))


def generate_text(folder, prompt: str, *, max_new_tokens: int = 50, temperature: float = 0.8,
                  top_k: int | None = 40, top_p: float | None = None, seed: int | None = 0,
                  backend: str = "numpy", device: str = "cpu", use_cache: bool = True,
                  allow_bin: bool = False, fused: bool = True) -> str:
    """Continue ``prompt`` with the GPT-2 of a Hugging Face folder (its own tokenizer);
    returns the new text. Stops after ``<|endoftext|>``."""
    from ..train.generation import generate
    from ..store.runtime import Runtime

    ckpt = read_hf(folder, allow_bin=allow_bin)
    if ckpt.model_class != "GPT":
        raise ValueError(f"{folder}: generation needs a GPT-2 folder, got {ckpt.architecture}")
    tok = load_hf_tokenizer(folder)
    rt = Runtime(backend, device, fused=fused)   # torch: the fast path unless fused=False
    model = rt.module.GPT(ckpt.config)
    model.load_state_dict(ckpt.state)
    model = rt.prepare(model)
    ids = tok.encode(prompt) or [tok.eos_id]
    new = generate(rt, model, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                   seed=seed, eos_id=tok.eos_id, use_cache=use_cache)
    return tok.decode(new, skip_special_tokens=True)


def embed_texts(folder, texts, *, backend: str = "numpy", device: str = "cpu",
                pooling=None, normalize: bool | None = None,
                allow_bin: bool = False, fused: bool = True) -> np.ndarray:
    """Sentence embeddings of ``texts`` with the BERT of a Hugging Face folder, as
    sentence-transformers computes them from that folder: each text is ``[CLS] ... [SEP]``
    cut to the folder's length (:class:`SentenceSettings`; a plain folder: its tokenizer's
    ``model_max_length`` or the model's positions), lower-cased first if the folder says so,
    the batch right-padded, then :func:`sentence_embeddings` with the folder's pooling and
    normalization (a plain folder: mean pooling), then cut to ``truncate_dim``.
    ``pooling`` and ``normalize`` override the folder's. Shapes: -> (len(texts), C * modes).
    ``fused`` picks the torch backend's fast path (torch's kernels) or, False, its
    explicit formulas."""
    from ..store.runtime import Runtime

    ckpt = read_hf(folder, allow_bin=allow_bin)
    if ckpt.model_class != "TransformerEncoder":
        raise ValueError(f"{folder}: sentence embeddings need a BERT folder, got {ckpt.architecture}")
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("expected at least one text to embed, got none")
    tok = load_hf_tokenizer(folder)
    T = _max_tokens(folder, ckpt)
    rows = [tok.encode(t) for t in texts]
    rows = [r if len(r) <= T else r[:T - 1] + [tok.sep_id] for r in rows]
    L = max(len(r) for r in rows)
    pad = tok.pad_id if tok.pad_id is not None else 0
    idx = np.full((len(rows), L), pad, dtype=np.int64)                # (B, L)
    mask = np.zeros((len(rows), L), dtype=bool)                       # (B, L)
    for b, r in enumerate(rows):
        idx[b, :len(r)], mask[b, :len(r)] = r, True
    rt = Runtime(backend, device, fused=fused)   # torch: the fast path unless fused=False
    model = rt.module.TransformerEncoder(ckpt.config)
    model.load_state_dict(ckpt.state)
    model = rt.prepare(model)
    model.eval()
    with rt.no_grad():
        e = sentence_embeddings(model, rt.tensor(idx), rt.tensor(mask),
                                pooling or ckpt.pooling or "mean",
                                ckpt.normalize if normalize is None else normalize)
    if ckpt.sentence is not None and ckpt.sentence.truncate_dim is not None:
        e = e[:, :ckpt.sentence.truncate_dim]                         # after Normalize, as there
    return e
