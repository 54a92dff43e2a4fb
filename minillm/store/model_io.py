"""Saving and loading a model with its optimizer, step and RNG state, in either backend.

A checkpoint is a folder written by :mod:`minillm.store.checkpoint` (safetensors weights,
JSON, atomic): this module decides what goes in it and how it comes back:

- ``model.safetensors`` — ``model.state_dict()`` as NumPy arrays, names as in
  ``named_parameters()`` (the same in both backends);
- ``config.json`` — the ``ModelConfig``, the model class and its extra arguments;
- the optimizer state (``opt.state_dict()``, plain Python and NumPy in both backends);
- ``step``, the model's dropout generator state and any ``extra`` JSON the caller adds
  (data position, data RNG state).

What one backend saves the other loads: nothing in the folder depends on torch, and
nothing is a pickle. :func:`load_model` builds the saved model in the backend asked for;
:func:`resume` loads into an existing model and optimizer after checking the
configuration, so a checkpoint of another configuration is a ``ValueError``.

:func:`as_numpy_state` and :func:`check_model_state`, which both backends'
``load_state_dict`` use, live in :mod:`minillm.core.state` (the backends import nothing
above the base layer) and are re-exported here. This module never imports torch.
"""
from __future__ import annotations

import inspect
from collections import OrderedDict

import numpy as np

from ..core.config import ModelConfig
from ..core.state import as_numpy_state, check_model_state
from .lora_adapters import add_lora, lora_record
from .peft_adapters import adapter_files, peft_layout
from .runtime import load_backend

__all__ = ["as_numpy_state", "check_model_state", "save_checkpoint", "load_model", "resume",
           "model_state", "model_kind", "model_arguments"]


# ----------------------------------------------------------------------------------------
# whole checkpoints

MODEL_KEY = "minillm_model"   # in the checkpoint's ``extra``: the model class and its arguments
LORA_KEY = "lora"             # in it: the LoRA adapters, attached again before the weights load


def model_arguments(model) -> dict:
    """The constructor arguments of ``model`` beyond ``config`` and ``seed``, read back from
    the attributes of the same names (``SequenceClassifier``: ``n_classes``, ``pooling``;
    ``EncoderDecoder``: ``label_smoothing``): what any model class, a new one included,
    needs to be built again. Each must be JSON (a number, a string, a bool)."""
    args = {}
    for name in list(inspect.signature(type(model).__init__).parameters)[1:]:
        if name in ("config", "seed") or not hasattr(model, name):
            continue
        value = getattr(model, name)
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"{type(model).__name__}: constructor argument {name!r} must be kept as a JSON "
                             f"number, string or bool to be saved, got {type(value).__name__}")
        args[name] = value
    return args


def model_kind(model) -> dict:
    """The model's class name, seed and constructor arguments beyond the config, and its
    LoRA adapters where it has some (``"lora"``: :func:`~minillm.store.lora_adapters.lora_record`),
    as JSON."""
    kind = {"class": type(model).__name__, "seed": int(model.seed), **model_arguments(model)}
    lora = lora_record(model)
    if lora is not None:
        kind[LORA_KEY] = lora
    return kind


def model_state(model) -> "OrderedDict[str, np.ndarray]":
    """``model.state_dict()`` as NumPy arrays, whichever backend the model is."""
    return as_numpy_state(model.state_dict())


def save_checkpoint(folder, model, optimizer=None, step: int = 0, *, data_state=None,
                    rng_state=None, tokenizer=None, extra=None):
    """Save ``model`` (+ ``optimizer``, ``step``, the model's dropout generator, and the
    caller's data position / generators / tokenizer / extra) atomically to ``folder``.

    Works for either backend; returns the folder's path. A model with LoRA adapters saves
    them with its weights (``blocks.0.attn.lora_W_Q.A``, ...) and records them in its kind;
    a GPT-2-style ``GPT``'s checkpoint also holds them alone in PEFT's layout
    (``adapter_config.json``, ``adapter_model.safetensors``: :mod:`minillm.store.peft_adapters`),
    so ``peft.PeftModel.from_pretrained(base, checkpoint)`` reads them onto the model ``save_hf``
    wrote of the base weights.
    """
    from .checkpoint import generator_state, save_checkpoint as write

    extra = dict(extra or {})
    if MODEL_KEY in extra:
        raise ValueError(f"save_checkpoint: the extra key {MODEL_KEY!r} is reserved")
    extra[MODEL_KEY] = model_kind(model)
    rng_state = dict(rng_state or {})
    if "dropout" in rng_state:
        raise ValueError("save_checkpoint: the rng_state key 'dropout' is reserved for the model's")
    rng_state["dropout"] = generator_state(model.dropout_rng)
    return write(folder, weights=dict(model_state(model)), config=model.config.to_dict(),
                 optimizer=None if optimizer is None else optimizer.state_dict(),
                 step=step, rng_state=rng_state, data_state=data_state,
                 tokenizer=tokenizer, extra=extra, files=adapter_files(model) if peft_layout(model) else None)


def load_model(folder, backend="numpy"):
    """Build the saved model in ``backend`` ('numpy' or 'torch') and load its weights.

    Returns ``(model, checkpoint)``; ``checkpoint`` (a :class:`minillm.store.checkpoint.Checkpoint`)
    carries the optimizer state, step, data position and extra for the caller.
    """
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(folder)
    kind = (ckpt.extra or {}).get(MODEL_KEY)
    module = load_backend(backend)
    if not isinstance(kind, dict) or not isinstance(getattr(module, str(kind.get("class")), None), type):
        raise ValueError(f"{folder}: expected the model class in the checkpoint's extra "
                         f"[{MODEL_KEY!r}] as a class of the {backend} backend, got {kind!r}")
    kwargs = {k: v for k, v in kind.items() if k not in ("class", "seed", LORA_KEY)}
    model = getattr(module, kind["class"])(ModelConfig.from_dict(ckpt.config), seed=kind["seed"], **kwargs)
    if kind.get(LORA_KEY):
        add_lora(model, **kind[LORA_KEY])         # the adapters' values come with the weights
    _restore(model, ckpt, None, folder)
    return model, ckpt


def resume(folder, model, optimizer=None):
    """Load a checkpoint into an existing ``model`` (and ``optimizer``), of either backend.

    Checks first that the checkpoint holds the same kind of model with the same
    configuration (``ValueError`` naming the differing fields otherwise), then restores
    weights, optimizer state and the dropout generator. Returns the
    :class:`~minillm.store.checkpoint.Checkpoint` (step, data_state, rng_state, extra).
    """
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(folder)
    saved = ModelConfig.from_dict(ckpt.config)
    if saved != model.config:
        diff = {k: (v, ckpt.config[k]) for k, v in model.config.to_dict().items()
                if ckpt.config.get(k) != v}
        raise ValueError(f"{folder}: a checkpoint of another configuration: "
                         + ", ".join(f"{k} expected {a!r}, got {b!r}" for k, (a, b) in diff.items()))
    kind = (ckpt.extra or {}).get(MODEL_KEY, {})
    mine = model_kind(model)
    for key in sorted((set(kind) | set(mine)) - {"seed"}):
        if kind.get(key) != mine.get(key):
            raise ValueError(f"{folder}: expected a checkpoint of {key}={mine.get(key)!r}, "
                             f"got {kind.get(key)!r}")
    _restore(model, ckpt, optimizer, folder)
    return ckpt


def _restore(model, ckpt, optimizer, folder):
    model.load_state_dict(ckpt.weights)
    if optimizer is not None:
        if ckpt.optimizer is None:
            raise ValueError(f"{folder}: expected optimizer state in the checkpoint, it has none")
        optimizer.load_state_dict(ckpt.optimizer)
    state = (ckpt.rng_state or {}).get("dropout")
    if state is not None:
        # in place: the model's Dropout layers hold this same Generator object
        model.dropout_rng.bit_generator.state = state
