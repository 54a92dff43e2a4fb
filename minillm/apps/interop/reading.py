"""A local Hugging Face model folder into minillm's config and state (:func:`read_hf`), and
into a model of either backend (:func:`load_hf`). Each family's own reading is its module
(:mod:`.families`); this is what they share: the folder, the files, the name tables."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

from ...core.config import ModelConfig
from . import sentence_transformers
from .families import family_of
from .files import read_json, read_tensors, to_state
from .sentence_transformers import SentenceSettings

log = logging.getLogger("minillm")


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


def read_hf(folder, *, dtype: str = "float32", allow_bin: bool = False) -> HFCheckpoint:
    """Read a local Hugging Face folder of a known family (GPT-2, BERT, a
    sentence-transformers folder around a BERT, Llama, Qwen 2, Qwen 3) into minillm's
    config and state.

    Every tensor the architecture needs must be present with the shape ``config.json``
    implies; otherwise a ``ValueError`` names the file, the tensor, and the expected and
    found shapes. Tensors the model does not use are listed in ``ignored``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"expected a Hugging Face model folder, got {folder}, which is not a folder")
    body, sentence = sentence_transformers.read_settings(folder)
    hf = read_json(body / "config.json")
    family, arch = family_of(hf, body / "config.json")     # before the tensors are read
    tensors, source = read_tensors(body, allow_bin)
    arch = arch or family.guess(tensors)
    config, rows, tensors = family.read(arch, hf, tensors, dtype)
    state, used = to_state(rows, tensors, source, arch, dtype)
    ignored = tuple(sorted(k for k in tensors if k not in used and not family.is_buffer(k)))
    if ignored:
        log.info("%s: %d tensors not used by minillm: %s", source, len(ignored), ", ".join(ignored))
    pooling, normalize = None, False
    if sentence is not None:
        sentence_transformers.check_settings(sentence, config, body)
        pooling = sentence.pooling[0] if len(sentence.pooling) == 1 else sentence.pooling
        normalize = sentence.normalize
    return HFCheckpoint(arch, family.model_class, config, state, pooling, normalize, ignored, sentence)


def load_hf(folder, backend="numpy", *, dtype: str = "float32", allow_bin: bool = False):
    """Build the minillm model of a Hugging Face folder in ``backend`` (``"numpy"`` or
    ``"torch"``) with its weights, in eval mode.
    Returns ``(model, checkpoint)``; see :func:`read_hf`."""
    from ...store.runtime import load_backend

    ckpt = read_hf(folder, dtype=dtype, allow_bin=allow_bin)
    model = getattr(load_backend(backend), ckpt.model_class)(ckpt.config)
    model.load_state_dict(ckpt.state)
    model.eval()
    return model, ckpt
