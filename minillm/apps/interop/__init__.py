r"""Hugging Face checkpoints in and out: GPT-2, BERT, Llama and Qwen weights as minillm state dicts.

The chapter's section 7.4 points at pretrained models. This package reads a LOCAL
Hugging Face model folder (nothing is downloaded) and returns a
:class:`~minillm.core.config.ModelConfig` and a state dict of NumPy arrays with minillm's
parameter names, which either backend loads; :func:`save_hf` writes a minillm model
back in the Hugging Face layout.

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
``LlamaForCausalLM``                  ``GPT``                    ``norm="rms"``, ``swiglu``,
                                                                 ``n_kv_heads``, RoPE ``"half"`` of
                                                                 ``rope_theta``, ``bias=False``
``Qwen2ForCausalLM``                  ``GPT``                    the same, ``qkv_bias=True``
``Qwen3ForCausalLM``                  ``GPT``                    the same, ``qk_norm``, ``head_dim``
====================================  =========================  ==================================

Weights in float64, float32, float16 or bfloat16 (read with ``ml_dtypes``, the ``hf``
extra). Nothing is downloaded. Only NumPy is used, except for ``pytorch_model.bin``, a
pickle, read with ``torch.load(weights_only=True)`` and only when ``allow_bin=True``.

One module per job, and one per model family:

=============================  ===============================================================
module                         its job
=============================  ===============================================================
:mod:`.files`                  config.json, the tensors (single, sharded, pickle), name tables
:mod:`.family`                 what a family's module gives: :class:`~.family.Family`
:mod:`.gpt2`, :mod:`.bert`     one family each: its config, its name table, how it is written
:mod:`.llama`, :mod:`.qwen`    Llama; Qwen 2 and Qwen 3 (the Llama layout with their fields)
:mod:`.families`               the families known, found by config.json or by minillm class
:mod:`.sentence_transformers`  a sentence-transformers folder's settings (modules.json, ...)
:mod:`.pooling`                sentence vectors from hidden states (Pooling, Normalize)
:mod:`.reading`                :func:`read_hf`, :func:`load_hf`
:mod:`.writing`                :func:`save_hf`
:mod:`.tokenizer`              :func:`load_hf_tokenizer`, the folder's tokenizer
:mod:`.generate`               :func:`generate_text`, :func:`text_stream` (``minillm generate --from-hf``)
:mod:`.embed`                  :func:`embed_texts` (``minillm embed --from-hf``)
=============================  ===============================================================

A new family (say Mistral) is one module that defines its :class:`~.family.Family` and one
line in ``families.FAMILIES``.

A tied output layer is the token embedding; an untied one becomes ``lm_head.W`` (C, V).
A folder without a head (``GPT2Model``, ``BertModel``) is given a head tied to the token
embedding, as minillm's models always have one; what such a model was trained to give is
its hidden states, ``model.encode(idx, attention_mask, token_type_ids)``.
"""
from .embed import embed_texts
from .families import FAMILIES
from .files import HF_ACTIVATIONS, HF_EXPORT_ACTIVATIONS
from .generate import generate_text, text_stream
from .pooling import POOLING_MODES, sentence_embeddings
from .reading import HFCheckpoint, load_hf, read_hf
from .sentence_transformers import ST_MODULE_TYPES, SentenceSettings
from .tokenizer import load_hf_tokenizer
from .writing import save_hf

__all__ = ["HFCheckpoint", "SentenceSettings", "read_hf", "load_hf", "save_hf",
           "sentence_embeddings", "load_hf_tokenizer", "generate_text", "text_stream", "embed_texts",
           "FAMILIES", "POOLING_MODES", "ST_MODULE_TYPES", "HF_ACTIVATIONS", "HF_EXPORT_ACTIVATIONS"]
