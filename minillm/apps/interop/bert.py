r"""BERT (``BertModel``, ``BertForMaskedLM``) as minillm's ``TransformerEncoder``.

Post-norm, ``embedding_norm``, ``type_vocab_size``, exact GELU, eps 1e-12; the masked-LM
head :math:`\mathrm{LN}(\mathrm{GELU}(hW_t + b_t))E^\top + b` is ``lm_head_transform`` and
``lm_head_bias``. BERT's ``nn.Linear`` stores ``(out, in)`` for :math:`y = xW^\top + b`:
transposed. LayerNorm ``weight``/``bias`` (old BERT files: ``gamma``/``beta``) are
``gamma``/``beta``. The pooler (``pooler.dense``, for next-sentence prediction) has no
minillm counterpart and is reported in ``HFCheckpoint.ignored``.
Dimension legend: C d_model, F d_ff, V vocab.
"""
from __future__ import annotations

import numpy as np

from ...core.config import ModelConfig
from .family import Family
from .files import HF_ACTIVATIONS, HF_EXPORT_ACTIVATIONS, norm_rows, require, strip_prefix, untied

ARCHITECTURES = ("BertModel", "BertForMaskedLM")


def _table(c: ModelConfig, mlm: bool, tied: bool) -> list:
    C, F, V = c.d_model, c.d_ff, c.vocab_size
    rows = [("embeddings.word_embeddings.weight", "tok_emb.W", "copy", (V, C)),
            ("embeddings.position_embeddings.weight", "pos_emb.W", "copy", (c.block_size, C)),
            ("embeddings.token_type_embeddings.weight", "type_emb.W", "copy",
             (c.type_vocab_size, C))]
    rows += norm_rows("embeddings.LayerNorm", "emb_ln", C)
    for i in range(c.n_layers):
        h, b = f"encoder.layer.{i}", f"blocks.{i}"
        for theirs, q in (("self.query", "Q"), ("self.key", "K"), ("self.value", "V"),
                          ("output.dense", "O")):
            rows += [(f"{h}.attention.{theirs}.weight", f"{b}.attn.W_{q}", "T", (C, C)),
                     (f"{h}.attention.{theirs}.bias", f"{b}.attn.b_{q}", "copy", (C,))]
        rows += norm_rows(f"{h}.attention.output.LayerNorm", f"{b}.ln1", C)
        rows += [(f"{h}.intermediate.dense.weight", f"{b}.ffn.W1", "T", (F, C)),
                 (f"{h}.intermediate.dense.bias", f"{b}.ffn.b1", "copy", (F,)),
                 (f"{h}.output.dense.weight", f"{b}.ffn.W2", "T", (C, F)),
                 (f"{h}.output.dense.bias", f"{b}.ffn.b2", "copy", (C,))]
        rows += norm_rows(f"{h}.output.LayerNorm", f"{b}.ln2", C)
    if mlm:
        rows = [("bert." + t, o, how, s) for t, o, how, s in rows]
        rows += [("cls.predictions.transform.dense.weight", "lm_transform.W", "T", (C, C)),
                 ("cls.predictions.transform.dense.bias", "lm_transform.b", "copy", (C,))]
        rows += norm_rows("cls.predictions.transform.LayerNorm", "lm_ln", C)
        rows.append(("cls.predictions.bias", "b_out", "copy", (V,)))
        if not tied:
            rows.append(("cls.predictions.decoder.weight", "lm_head.W", "T", (V, C)))
    return rows


def _old_layer_norm_names(tensors: dict) -> dict:
    """Early BERT files call LayerNorm's parameters gamma/beta."""
    out = {}
    for k, a in tensors.items():
        if "LayerNorm" in k and k.endswith((".gamma", ".beta")):
            k = k.rsplit(".", 1)[0] + (".weight" if k.endswith(".gamma") else ".bias")
        out[k] = a
    return out


def _config(hf: dict, dtype: str, mlm: bool) -> ModelConfig:
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


def _guess(tensors: dict) -> str:
    return "BertForMaskedLM" if any(k.startswith("cls.predictions") for k in tensors) else "BertModel"


def _read(arch: str, hf: dict, tensors: dict, dtype: str):
    mlm = arch == "BertForMaskedLM"
    tensors = _old_layer_norm_names(tensors)
    if not mlm:
        tensors = strip_prefix(tensors, "bert.")
    config = _config(hf, dtype, mlm)
    decoder = tensors.get("cls.predictions.decoder.weight")
    tied = decoder is None or np.array_equal(decoder, tensors.get("bert.embeddings.word_embeddings.weight"))
    if mlm and "cls.predictions.bias" not in tensors and "cls.predictions.decoder.bias" in tensors:
        tensors["cls.predictions.bias"] = tensors["cls.predictions.decoder.bias"]
    return (config if tied else untied(config)), _table(config, mlm, tied), tensors


def _write(config: ModelConfig):
    mlm = config.lm_head_transform
    arch = "BertForMaskedLM" if mlm else "BertModel"
    require(config, arch, norm_first=False, positional="learned", embedding_norm=True,
            lm_head_bias=mlm)
    if config.type_vocab_size < 1:
        raise ValueError(f"{arch} needs ModelConfig.type_vocab_size >= 1, got 0")
    hf = {"architectures": [arch], "model_type": "bert", "vocab_size": config.vocab_size,
          "max_position_embeddings": config.block_size, "hidden_size": config.d_model,
          "num_attention_heads": config.n_heads, "num_hidden_layers": config.n_layers,
          "intermediate_size": config.d_ff, "hidden_act": HF_EXPORT_ACTIVATIONS[config.activation],
          "layer_norm_eps": config.layer_norm_eps, "type_vocab_size": config.type_vocab_size,
          "hidden_dropout_prob": config.dropout, "attention_probs_dropout_prob": config.dropout,
          "tie_word_embeddings": config.tie_embeddings}
    return arch, hf, _table(config, mlm, config.tie_embeddings)


def _is_buffer(name: str) -> bool:
    """Position and token-type id tables, and a decoder that repeats the tied embedding."""
    return name.endswith(("position_ids", "token_type_ids")) or name in (
        "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


FAMILY = Family("bert", ARCHITECTURES, "TransformerEncoder", _guess, _read, _write, _is_buffer)
