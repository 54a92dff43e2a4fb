"""Checkpoints: one folder, no pickle, loadable by either backend.

A checkpoint is a folder (docs/architecture.md, "Checkpoints")::

    model.safetensors        the weights, name -> array (dtype kept: float32 stays float32)
    config.json              the model configuration (``ModelConfig.to_dict()``)
    optimizer.json           the optimizer's state dict without its arrays   } only when an
    optimizer.safetensors    the optimizer's arrays (Adam's m and v, ...)    } optimizer is saved
    trainer_state.json       step, RNG state, data position, extra   (+ trainer_state.safetensors
                             when these hold arrays, e.g. an MT19937 key)
    tokenizer.json           the tokenizer, when one is saved
    manifest.json            size and sha256 of every file above, written last

Every array lives in a safetensors file and every other value in JSON, so loading runs
no code from the file. In the JSON files an array is replaced by
``{"__ndarray__": "<name in the .safetensors file>"}``. Tuples come back as lists.

Atomic writes: the new checkpoint is written into a hidden sibling
``.<name>.tmp-<id>`` (each file fsynced, manifest last); then the old folder, if any,
is renamed to ``.<name>.old-<id>``, the new one renamed into place, and the old one
deleted. A crash at any moment leaves the old or the new checkpoint loadable:
``load_checkpoint`` falls back to a complete leftover when the folder itself is
missing, and the next ``save_checkpoint`` tidies the leftovers. One process writes a
given checkpoint folder at a time.

This module needs NumPy only (no torch): the torch backend converts to NumPy first.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.state import check_state_dict
from .safetensors_io import from_bytes, to_bytes

__all__ = [
    "Checkpoint", "save_checkpoint", "load_checkpoint", "check_state_dict",
    "generator_state", "generator_from_state", "FORMAT_VERSION",
]

logger = logging.getLogger("minillm")

FORMAT = "minillm-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_ARRAY_MARK = "__ndarray__"
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns; the fields mirror ``save_checkpoint``'s arguments."""

    path: Path
    weights: dict
    config: dict
    optimizer: dict | None = None
    step: int = 0
    rng_state: dict | None = None
    data_state: dict | None = None
    tokenizer: dict | None = None
    extra: dict | None = None


# ----------------------------------------------------------------------------------
# JSON with arrays set aside

def _split_arrays(obj, path: str, arrays: dict):
    """``obj`` with every array replaced by a reference; the arrays go to ``arrays``."""
    if isinstance(obj, np.ndarray):
        arrays[path] = obj
        return {_ARRAY_MARK: path}
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ValueError(f"checkpoint: expected str keys (JSON), got {key!r} in {path or 'the top level'}")
            if key == _ARRAY_MARK:
                raise ValueError(f"checkpoint: the key {_ARRAY_MARK!r} is reserved, found in {path}")
            out[key] = _split_arrays(value, f"{path}.{key}" if path else key, arrays)
        return out
    if isinstance(obj, (list, tuple)):
        return [_split_arrays(v, f"{path}.{i}", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"checkpoint: expected finite floats (JSON has no nan or inf), got {obj} at {path}")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ValueError(
        f"checkpoint: expected JSON values or NumPy arrays, got {type(obj).__name__} at {path} "
        f"(convert torch tensors with .detach().cpu().numpy())"
    )


def _join_arrays(obj, arrays: dict, where: str):
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY_MARK}:
            if obj[_ARRAY_MARK] not in arrays:
                raise ValueError(f"{where}: refers to array {obj[_ARRAY_MARK]!r}, which is missing")
            return arrays[obj[_ARRAY_MARK]]
        return {k: _join_arrays(v, arrays, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, arrays, where) for v in obj]
    return obj


def _json_bytes(obj, what: str) -> bytes:
    try:
        return json.dumps(obj, indent=1, allow_nan=False).encode("utf-8")
    except ValueError as exc:  # nan / inf are not JSON
        raise ValueError(f"checkpoint: {what} is not valid JSON: {exc}") from None


def _plain_json(obj, what: str) -> bytes:
    """JSON for a value that must not hold arrays (config, tokenizer)."""
    arrays: dict = {}
    plain = _split_arrays(obj, what, arrays)
    if arrays:
        raise ValueError(f"checkpoint: expected {what} to hold JSON values only, got arrays at {sorted(arrays)}")
    return _json_bytes(plain, what)


def _encode_with_arrays(stem: str, obj) -> dict:
    """{file name: bytes}: ``stem.json`` and, if ``obj`` holds arrays, ``stem.safetensors``."""
    arrays: dict = {}
    files = {f"{stem}.json": _json_bytes(_split_arrays(obj, "", arrays), stem)}
    if arrays:
        files[f"{stem}.safetensors"] = to_bytes(arrays)
    return files


# ----------------------------------------------------------------------------------
# Files on disk

def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name == "posix":  # a directory cannot be opened for fsync on Windows
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _leftovers(folder: Path, kind: str) -> list[Path]:
    """Hidden ``.<name>.tmp-*`` or ``.<name>.old-*`` siblings, newest first."""
    found = [p for p in folder.parent.glob(f".{folder.name}.{kind}-*") if p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _read_verified(folder: Path) -> dict[str, bytes]:
    """Every file the manifest lists, checked for size and sha256."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ValueError(f"{folder}: not a complete minillm checkpoint: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        entries = manifest["files"]
        version = manifest["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{manifest_path}: corrupted manifest ({exc})") from None
    if manifest.get("format") != FORMAT or not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{manifest_path}: expected format {FORMAT!r} version <= {FORMAT_VERSION}, got "
            f"{manifest.get('format')!r} version {version!r}"
        )
    files = {}
    for name, info in entries.items():
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path}: missing, although {MANIFEST} lists it (incomplete checkpoint)")
        data = path.read_bytes()
        if len(data) != info["bytes"]:
            raise ValueError(f"{path}: expected {info['bytes']} bytes, got {len(data)} (truncated or altered)")
        digest = hashlib.sha256(data).hexdigest()
        if digest != info["sha256"]:
            raise ValueError(f"{path}: sha256 {digest[:12]}... differs from the manifest's "
                             f"{info['sha256'][:12]}...: the file is corrupted")
        files[name] = data
    for required in ("model.safetensors", "config.json", "trainer_state.json"):
        if required not in files:
            raise ValueError(f"{folder}: expected {required} in the checkpoint, the manifest lacks it")
    return files


def _recover(folder: Path) -> None:
    """Tidy what an interrupted save left beside ``folder`` (called by save only)."""
    if not folder.exists():
        for candidate in _leftovers(folder, "tmp") + _leftovers(folder, "old"):
            try:
                _read_verified(candidate)
            except ValueError:
                continue
            logger.warning("checkpoint %s: restoring it from the interrupted save's %s", folder, candidate.name)
            os.rename(candidate, folder)
            break
    for leftover in _leftovers(folder, "tmp") + _leftovers(folder, "old"):
        logger.info("checkpoint %s: removing leftover %s", folder, leftover.name)
        shutil.rmtree(leftover, ignore_errors=True)


# ----------------------------------------------------------------------------------

def save_checkpoint(folder, *, weights: dict, config: dict, optimizer: dict | None = None,
                    step: int = 0, rng_state: dict | None = None, data_state: dict | None = None,
                    tokenizer: dict | None = None, extra: dict | None = None,
                    files: dict | None = None) -> Path:
    """Write a checkpoint folder atomically (see the module docstring) and return its path.

    Args:
        weights: parameter name -> NumPy array (``model.state_dict()`` in NumPy).
        config: JSON-serialisable dict, e.g. ``ModelConfig.to_dict()``.
        optimizer: ``opt.state_dict()`` of either backend (Python values + NumPy arrays).
        step: the number of optimizer steps taken, an int >= 0.
        rng_state: e.g. ``{"data": generator_state(rng)}``; may hold arrays.
        data_state: where the data loader stands (epoch, position, ...).
        tokenizer: the tokenizer as a JSON-serialisable dict.
        extra: anything else JSON-serialisable (loss history, ...).
        files: more files of the checkpoint, name -> bytes (a LoRA model's adapters in PEFT's layout), written and listed in the manifest with the others.
    """
    folder = Path(folder)
    if not isinstance(weights, dict) or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in weights.items()):
        raise ValueError("save_checkpoint: expected weights as a dict of str -> numpy.ndarray "
                         "(convert torch tensors with .detach().cpu().numpy())")
    for name, value in (("config", config), ("optimizer", optimizer), ("rng_state", rng_state),
                        ("data_state", data_state), ("tokenizer", tokenizer), ("extra", extra)):
        if value is not None and not isinstance(value, dict):
            hint = " (use config.to_dict())" if name == "config" else ""
            raise ValueError(f"save_checkpoint: expected {name} to be a dict{hint}, got {type(value).__name__}")
    if config is None:
        raise ValueError("save_checkpoint: expected config to be a dict, got None")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"save_checkpoint: expected step to be an int >= 0, got {step!r}")

    # encode everything before touching the disk: a bad value fails here, harmlessly
    more, files = files, {"model.safetensors": to_bytes(weights, {"format": FORMAT}),
             "config.json": _plain_json(config, "config")}
    if optimizer is not None:
        files.update(_encode_with_arrays("optimizer", optimizer))
    files.update(_encode_with_arrays("trainer_state", {
        "step": int(step), "rng_state": rng_state, "data_state": data_state, "extra": extra}))
    if tokenizer is not None:
        files["tokenizer.json"] = _plain_json(tokenizer, "tokenizer")
    for name, data in (more or {}).items():
        if name in files or name == MANIFEST or "/" in name or "\\" in name or not isinstance(data, bytes):
            raise ValueError(f"save_checkpoint: expected files as new file names (no folder) -> bytes, "
                             f"got {name!r} ({type(data).__name__})")
        files[name] = data
    manifest = {"format": FORMAT, "version": FORMAT_VERSION,
                "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                          for name, data in files.items()}}

    folder.parent.mkdir(parents=True, exist_ok=True)
    _recover(folder)
    if folder.exists() and not (folder / MANIFEST).is_file() and (
            not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(
            f"save_checkpoint: expected {folder} to be a checkpoint folder, an empty folder or "
            f"absent, got a non-empty folder without {MANIFEST}: refusing to replace it"
        )
    token = uuid.uuid4().hex[:12]
    tmp = folder.parent / f".{folder.name}.tmp-{token}"
    aside = folder.parent / f".{folder.name}.old-{token}"
    tmp.mkdir()
    try:
        for name, data in files.items():
            _write_file(tmp / name, data)
        _write_file(tmp / MANIFEST, _json_bytes(manifest, MANIFEST))  # last: marks it complete
        _fsync_dir(tmp)
        if folder.exists():
            os.rename(folder, aside)
        os.rename(tmp, folder)
        _fsync_dir(folder.parent)
    except BaseException:
        if aside.exists() and not folder.exists():
            os.rename(aside, folder)  # put the previous checkpoint back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    logger.info("saved checkpoint %s (step %d)", folder, step)
    return folder


def load_checkpoint(folder) -> Checkpoint:
    """Read and verify a checkpoint folder written by ``save_checkpoint``.

    Raises FileNotFoundError when there is no checkpoint at ``folder`` (nor a complete
    leftover of an interrupted save), and ValueError naming the file when a file is
    missing, truncated or corrupted. Never writes to disk."""
    folder = Path(folder)
    source = folder
    if folder.is_dir():
        files = _read_verified(folder)
    else:  # an interrupted save: the new (tmp) or the old (old) copy, whichever is whole
        for source in _leftovers(folder, "tmp") + _leftovers(folder, "old"):
            try:
                files = _read_verified(source)
            except ValueError:
                continue
            logger.warning("checkpoint %s is missing; loading %s left by an interrupted save",
                           folder, source.name)
            break
        else:
            raise FileNotFoundError(f"no checkpoint folder at {folder}")

    def json_of(name: str):
        try:
            return json.loads(files[name].decode("utf-8"))
        except ValueError as exc:
            raise ValueError(f"{source / name}: invalid JSON ({exc})") from None

    def with_arrays(stem: str):
        arrays = {}
        if f"{stem}.safetensors" in files:
            arrays = from_bytes(files[f"{stem}.safetensors"], where=str(source / f"{stem}.safetensors"))[0]
        return _join_arrays(json_of(f"{stem}.json"), arrays, str(source / f"{stem}.json"))

    weights, _ = from_bytes(files["model.safetensors"], where=str(source / "model.safetensors"))
    trainer = with_arrays("trainer_state")
    return Checkpoint(
        path=source, weights=weights, config=json_of("config.json"),
        optimizer=with_arrays("optimizer") if "optimizer.json" in files else None,
        step=trainer["step"], rng_state=trainer["rng_state"], data_state=trainer["data_state"],
        tokenizer=json_of("tokenizer.json") if "tokenizer.json" in files else None,
        extra=trainer["extra"],
    )


# ----------------------------------------------------------------------------------

def generator_state(rng: np.random.Generator) -> dict:
    """The state of a NumPy Generator as a dict ``save_checkpoint`` can store."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"generator_state: expected a numpy.random.Generator, got {type(rng).__name__}")
    return rng.bit_generator.state


def generator_from_state(state: dict) -> np.random.Generator:
    """A Generator that continues exactly where the one ``state`` came from stopped."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise ValueError(f"generator_from_state: expected bit_generator in {_BIT_GENERATORS}, got {name!r}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
