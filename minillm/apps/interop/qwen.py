r"""Qwen 2 (``Qwen2ForCausalLM``) and Qwen 3 (``Qwen3ForCausalLM``) as minillm's ``GPT``:
the Llama layout (:mod:`.llama`) with, for Qwen 2, biases on the query, key and value
projections only (``qkv_bias``), and for Qwen 3, QK-norm (``qk_norm``: an RMSNorm of each
head's queries and keys before RoPE) and a head size ``head_dim`` set apart from
``hidden_size / num_attention_heads`` (128 where config.json names none, as
``transformers``' default).

Sliding-window attention (``use_sliding_window``, ``layer_types`` other than
``"full_attention"``) changes which keys a query sees and is refused; a ``sliding_window``
size that no layer uses changes nothing.
"""
from __future__ import annotations

from ...core.config import ModelConfig
from .family import Family
from .llama import is_buffer, read_config, table, write_config

QWEN2, QWEN3 = ("Qwen2ForCausalLM",), ("Qwen3ForCausalLM",)
_FULL_ATTENTION = {"use_sliding_window": (False, False)}


def _no_sliding_layers(hf: dict) -> None:
    layer_types = hf.get("layer_types") or []
    if any(kind != "full_attention" for kind in layer_types):
        raise ValueError(f"config.json: expected layer_types of 'full_attention' only (sliding-window "
                         f"attention is not read by minillm), got {layer_types!r}")


def _read_qwen2(arch: str, hf: dict, tensors: dict, dtype: str):
    _no_sliding_layers(hf)
    config = read_config(hf, dtype, qkv_bias=True, refuse=_FULL_ATTENTION)
    return config, table(config, config.tie_embeddings), tensors


def _read_qwen3(arch: str, hf: dict, tensors: dict, dtype: str):
    _no_sliding_layers(hf)
    config = read_config(hf, dtype, qk_norm=True, head_dim_default=128,
                         refuse={**_FULL_ATTENTION, "attention_bias": (False, False)})
    return config, table(config, config.tie_embeddings), tensors


def _write_qwen2(config: ModelConfig):
    hf = {**write_config(config, QWEN2[0], "qwen2", qkv_bias=True), "use_sliding_window": False}
    return QWEN2[0], hf, table(config, config.tie_embeddings)


def _write_qwen3(config: ModelConfig):
    hf = {**write_config(config, QWEN3[0], "qwen3", qk_norm=True), "use_sliding_window": False,
          "attention_bias": False}
    return QWEN3[0], hf, table(config, config.tie_embeddings)


QWEN2_FAMILY = Family("qwen2", QWEN2, "GPT", lambda tensors: QWEN2[0], _read_qwen2, _write_qwen2,
                      is_buffer, lambda c: c.norm == "rms" and c.qkv_bias)
QWEN3_FAMILY = Family("qwen3", QWEN3, "GPT", lambda tensors: QWEN3[0], _read_qwen3, _write_qwen3,
                      is_buffer, lambda c: c.norm == "rms" and c.qk_norm)
