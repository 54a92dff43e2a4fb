"""``--resume``: the options left out take the values the run recorded, and a recorded
setting is named in messages by the option that sets it.

What a run recorded is read once, through :meth:`RunConfig.recorded` (the training and
model settings of ``checkpoints/last``) and the run's data contract (``data.json``: the
corpus, the prepared folder or the labelled file, with its columns), and becomes the
value of every option the command left out (:func:`minillm.cli.options.fill_defaults`);
a typed option that differs is refused by the library (``ResumeMismatch``).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..core.config import ARCHITECTURES, architecture_of
from ..train.run_config import RunConfig

__all__ = ["recorded_options", "as_option", "as_arch"]

OPTION_OF = {"checkpoint_every": "eval_every"}          # recorded setting -> the option that sets it


def recorded_options(out) -> dict:
    """``{dest: value}`` of what the run in ``out`` recorded: its training and model
    settings (``dest`` as the CLI names them) and its data (``corpus`` or ``data``;
    ``dataset``, ``text_column``, ``label_column``); empty where nothing is recorded."""
    values: dict = {}
    recorded = RunConfig.recorded(out)
    if recorded is not None:
        values.update(dataclasses.asdict(recorded.train))
        values.update({k: v for k, v in recorded.model.to_dict().items() if k != "vocab_size"})  # the tokenizer's
        values["post_norm"] = not recorded.model.norm_first
        arch = architecture_of(recorded.model)
        if arch is not None:                  # else --arch's default, refused as a mismatch
            values["arch"] = arch
    try:
        contract = json.loads((Path(out) / "data.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        contract = {}
    dataset = contract.get("dataset") or {}
    source = dataset.get("source")
    if source:
        kind = dataset.get("kind")
        if kind == "prepared":
            values["data"] = Path(source)
        elif kind == "text":
            values["corpus"] = source
        elif kind == "labelled":
            values.update(dataset=source, text_column=dataset.get("text_column", "text"),
                          label_column=dataset.get("label_column", "label"))
    return values


def as_option(key: str, value, options) -> str:
    """A recorded setting as the option that sets it (``--steps 600``), else as itself;
    ``options``: the dests the command has."""
    if key == "norm_first":
        return "pre-norm blocks" if value else "--post-norm"
    key = OPTION_OF.get(key, key)
    shown = f"{value:g}" if isinstance(value, float) else value
    if key in options:
        return f"--{key.replace('_', '-')} {shown}"
    return f"{key}={shown!r}" + (" (--lr / 10)" if key == "min_lr" else "")


# the fields only --arch sets (--activation and --positional are options of their own)
_PRESET_ONLY = (set().union(*ARCHITECTURES.values()) - {"activation", "positional", "kv_group"}) | {"n_kv_heads"}


def as_arch(differences: dict, out, arch) -> dict:
    """``differences`` (``{setting: (recorded, given)}``) with the fields that only --arch
    sets named as one ``arch`` difference, where the run was started with another preset
    than ``arch`` (else unchanged)."""
    run = RunConfig.recorded(out)
    recorded = architecture_of(run.model) if run is not None else None
    if arch is None or recorded is None or recorded == arch or not _PRESET_ONLY & set(differences):
        return differences
    return {"arch": (recorded, arch), **{k: v for k, v in differences.items() if k not in _PRESET_ONLY}}
