r"""GPT-2 (``GPT2Model``, ``GPT2LMHeadModel``) as minillm's ``GPT``.

Pre-norm, ``gelu_tanh`` (GPT-2's ``gelu_new``), learned positions, a head tied to the
token embedding (an untied ``lm_head.weight`` becomes ``lm_head.W``). GPT-2's ``Conv1D``
stores its weight as ``(in, out)``, as minillm does: copied as is. Its ``c_attn`` holds
:math:`[W_Q\,|\,W_K\,|\,W_V]` side by side, ``(C, 3C)``: split.
Dimension legend: C d_model, F d_ff, V vocab.
"""
from __future__ import annotations

import numpy as np

from ...core.config import ModelConfig
from .family import Family
from .files import HF_ACTIVATIONS, HF_EXPORT_ACTIVATIONS, norm_rows, require, strip_prefix, untied

ARCHITECTURES = ("GPT2Model", "GPT2LMHeadModel")


def _table(c: ModelConfig, tied: bool) -> list:
    C, F, V = c.d_model, c.d_ff, c.vocab_size
    rows = [("wte.weight", "tok_emb.W", "copy", (V, C)),
            ("wpe.weight", "pos_emb.W", "copy", (c.block_size, C))]
    for i in range(c.n_layers):
        h, b = f"h.{i}", f"blocks.{i}"
        rows += norm_rows(f"{h}.ln_1", f"{b}.ln1", C)
        for j, q in enumerate("QKV"):
            rows += [(f"{h}.attn.c_attn.weight", f"{b}.attn.W_{q}", f"qkv{j}", (C, 3 * C)),
                     (f"{h}.attn.c_attn.bias", f"{b}.attn.b_{q}", f"qkv{j}", (3 * C,))]
        rows += [(f"{h}.attn.c_proj.weight", f"{b}.attn.W_O", "copy", (C, C)),
                 (f"{h}.attn.c_proj.bias", f"{b}.attn.b_O", "copy", (C,))]
        rows += norm_rows(f"{h}.ln_2", f"{b}.ln2", C)
        rows += [(f"{h}.mlp.c_fc.weight", f"{b}.ffn.W1", "copy", (C, F)),
                 (f"{h}.mlp.c_fc.bias", f"{b}.ffn.b1", "copy", (F,)),
                 (f"{h}.mlp.c_proj.weight", f"{b}.ffn.W2", "copy", (F, C)),
                 (f"{h}.mlp.c_proj.bias", f"{b}.ffn.b2", "copy", (C,))]
    rows += norm_rows("ln_f", "ln_f", C)
    if not tied:
        rows.append(("lm_head.weight", "lm_head.W", "T", (V, C)))
    return rows


def _config(hf: dict, dtype: str) -> ModelConfig:
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


def _guess(tensors: dict) -> str:
    return "GPT2LMHeadModel" if any(k.startswith("transformer.") for k in tensors) else "GPT2Model"


def _read(arch: str, hf: dict, tensors: dict, dtype: str):
    tensors = strip_prefix(tensors, "transformer.")
    config = _config(hf, dtype)
    tied = "lm_head.weight" not in tensors or np.array_equal(tensors["lm_head.weight"],
                                                              tensors.get("wte.weight"))
    return (config if tied else untied(config)), _table(config, tied), tensors


def _write(config: ModelConfig):
    arch = "GPT2LMHeadModel"
    require(config, arch, norm_first=True, positional="learned", type_vocab_size=0,
            embedding_norm=False, lm_head_transform=False, lm_head_bias=False)
    rows = [("transformer." + t if not t.startswith("lm_head") else t, o, how, s)
            for t, o, how, s in _table(config, config.tie_embeddings)]
    hf = {"architectures": [arch], "model_type": "gpt2", "vocab_size": config.vocab_size,
          "n_positions": config.block_size, "n_embd": config.d_model,
          "n_head": config.n_heads, "n_layer": config.n_layers, "n_inner": config.d_ff,
          "activation_function": HF_EXPORT_ACTIVATIONS[config.activation],
          "layer_norm_epsilon": config.layer_norm_eps, "resid_pdrop": config.dropout,
          "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
          "tie_word_embeddings": config.tie_embeddings}
    return arch, hf, rows


def _is_buffer(name: str) -> bool:
    """GPT-2's causal-mask tables (``attn.bias``, ``attn.masked_bias``), and an
    ``lm_head.weight`` that repeats the tied embedding."""
    return (name.endswith(("attn.bias", "attn.masked_bias")) and "c_attn" not in name
            or name == "lm_head.weight")


FAMILY = Family("gpt2", ARCHITECTURES, "GPT", _guess, _read, _write, _is_buffer)
