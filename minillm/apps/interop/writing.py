"""A minillm model out as a Hugging Face folder that ``transformers`` loads (:func:`save_hf`)."""
from __future__ import annotations

from .families import family_for
from .files import from_state, write_folder


def save_hf(model, folder) -> str:
    """Write a minillm ``GPT`` (as ``GPT2LMHeadModel``; with ``norm="rms"`` as
    ``LlamaForCausalLM``, ``Qwen2ForCausalLM`` with ``qkv_bias``, ``Qwen3ForCausalLM`` with
    ``qk_norm``) or ``TransformerEncoder`` (as
    ``BertForMaskedLM`` with ``lm_head_transform``, else ``BertModel``) to ``folder`` as
    ``config.json`` + ``model.safetensors``, which ``transformers`` loads. Returns the
    architecture name. The model's config must be one the architecture can express;
    nothing is written otherwise."""
    from ...core.state import as_numpy_state

    family = family_for(type(model).__name__, model.config)
    arch, hf, rows = family.write(model.config)
    tensors = from_state(rows, as_numpy_state(model.state_dict()))
    write_folder(folder, hf, tensors, model.config.dtype)
    return arch
