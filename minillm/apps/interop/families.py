"""The model families the readers and the writer know, one module each (:class:`.Family`)."""
from __future__ import annotations

from pathlib import Path

from ...core.config import ModelConfig
from . import bert, gpt2, llama, qwen
from .family import Family

FAMILIES: tuple[Family, ...] = (gpt2.FAMILY, bert.FAMILY, llama.FAMILY, qwen.QWEN2_FAMILY,
                                qwen.QWEN3_FAMILY)


def family_of(hf: dict, where: Path) -> tuple[Family, str | None]:
    """The family of a config.json and its architecture (None when config.json names no
    architecture, only a ``model_type``: the tensors then decide, ``Family.guess``)."""
    archs = hf.get("architectures") or []
    for a in archs:
        for family in FAMILIES:
            if a in family.architectures:
                return family, a
    model_type = hf.get("model_type")
    for family in FAMILIES:
        if not archs and model_type == family.model_type:
            return family, None
    known = [a for family in FAMILIES for a in family.architectures]
    types = " or ".join(repr(family.model_type) for family in FAMILIES)
    raise ValueError(f"{where}: expected one of the architectures {known} "
                     f"(model_type {types}), got architectures={archs}, model_type={model_type!r}")


def family_for(model_class: str, config: ModelConfig) -> Family:
    """The family that writes a minillm model of class ``model_class`` and this ``config``:
    the one whose ``writes`` claims it, else the class's family without ``writes``."""
    mine = [family for family in FAMILIES if family.model_class == model_class]
    for family in mine:
        if family.writes is not None and family.writes(config):
            return family
    for family in mine:
        if family.writes is None:
            return family
    classes = " or ".join(sorted({family.model_class for family in FAMILIES}))
    raise ValueError(f"expected a minillm {classes}, got {model_class}")
