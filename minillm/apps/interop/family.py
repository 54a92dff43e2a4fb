"""What a model family's module gives the readers and the writer: one :class:`Family`.

Adding a family (say Mistral) is one module that builds its ``FAMILY`` from the pieces
below, and one line in ``families.FAMILIES``; :func:`~minillm.apps.interop.read_hf`,
:func:`~minillm.apps.interop.load_hf` and :func:`~minillm.apps.interop.save_hf` then
read and write it.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from ...core.config import ModelConfig


class Family(NamedTuple):
    """One Hugging Face model family.

    - ``model_type``: config.json's ``model_type`` (read when ``architectures`` is absent);
    - ``architectures``: the config.json ``architectures`` it reads;
    - ``model_class``: the minillm class it builds (``"GPT"``, ``"TransformerEncoder"``);
    - ``guess(tensors) -> architecture``: for a config.json that names none, from the
      tensor names;
    - ``read(architecture, config_json, tensors, dtype) -> (config, rows, tensors)``: the
      minillm config (every field that changes the result read, or a ``ValueError``
      naming it), the name table (:mod:`.files`) and the tensors under the table's names;
    - ``write(config) -> (architecture, config_json, rows)``: how a minillm model of
      ``model_class`` is written; a config the architecture cannot express: ``ValueError``;
    - ``is_buffer(name)``: saved tensors that are not weights (masks, position ids, a
      head that repeats the tied embedding), left out of ``HFCheckpoint.ignored``.
    """

    model_type: str
    architectures: tuple
    model_class: str
    guess: Callable[[dict], str]
    read: Callable[[str, dict, dict, str], tuple[ModelConfig, list, dict]]
    write: Callable[[ModelConfig], tuple[str, dict, list]]
    is_buffer: Callable[[str], bool]
    writes: Callable[[ModelConfig], bool] | None = None
