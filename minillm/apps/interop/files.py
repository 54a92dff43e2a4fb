r"""The files of a Hugging Face model folder, shared by every family's reader.

``config.json`` (:func:`read_json`), the tensors of ``model.safetensors``, of its shards
(``model.safetensors.index.json``) or of a ``pytorch_model.bin`` (:func:`read_tensors`),
in float64, float32, float16 or bfloat16 (:func:`read_safetensors`), and the conversion between a family's name table and minillm's state dict
(:func:`to_state`, :func:`from_state`).

A name table is a list of rows ``(Hugging Face name, minillm name, how, HF shape)``; how:
``"copy"`` (same layout), ``"T"`` (transpose: ``nn.Linear`` stores ``(out, in)``), or
``"qkv0"``/``"qkv1"``/``"qkv2"`` (a third, along the last axis, of a fused
:math:`[W_Q\,|\,W_K\,|\,W_V]`).
"""
from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import numpy as np

from ...core._optional import import_optional
from ...core.config import ModelConfig
from ...store import safetensors_io

log = logging.getLogger("minillm")

# config.json's activation names -> minillm's, and back
HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
                  "relu": "relu", "silu": "silu"}
HF_EXPORT_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}  # ours -> config.json's


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"expected {path.name} in {path.parent}, but there is no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: expected JSON, got a parse error: {e}") from None


def read_safetensors(path: Path) -> dict:
    """The arrays of one safetensors file (name -> NumPy array). A bfloat16 tensor (what
    most current checkpoints hold; NumPy has no such dtype) comes as float32, which holds
    every bfloat16 value exactly: its bits are read as ``ml_dtypes.bfloat16`` and cast.
    A dtype other than safetensors_io's and BF16 (say F8_E4M3) is refused, naming the
    file, the tensor and the dtype."""
    data = path.read_bytes()
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n].decode("utf-8"))
        entries = {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}
    except (struct.error, ValueError, TypeError, KeyError, AttributeError):
        return safetensors_io.from_bytes(data, str(path))[0]   # its error says what is wrong
    known = sorted(safetensors_io.DTYPES) + ["BF16"]
    for name, code in entries.items():
        if code not in known:
            raise ValueError(f"{path}: tensor {name!r} has dtype {code!r}; expected one of {known}")
    bf16 = [name for name, code in entries.items() if code == "BF16"]
    if bf16:                 # read the raw 16 bits as U16 (every check of from_bytes kept) ...
        for name in bf16:
            header[name] = {**header[name], "dtype": "U16"}
        text = json.dumps(header).encode("utf-8")
        text += b" " * (-len(text) % 8)
        data = struct.pack("<Q", len(text)) + text + data[8 + n:]
    tensors = safetensors_io.from_bytes(data, str(path))[0]
    if bf16:                 # ... then give them their dtype, and float32's exact value
        ml_dtypes = import_optional("ml_dtypes", "reading bfloat16 weights")
        for name in bf16:
            tensors[name] = tensors[name].view(ml_dtypes.bfloat16).astype(np.float32)
    return tensors


def _read_shards(folder: Path, index: Path) -> dict:
    """The tensors of every shard ``model.safetensors.index.json`` names; a shard missing,
    or one that lacks a tensor the index puts in it, is refused naming both files."""
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index}: expected a non-empty 'weight_map' of tensor name -> shard file, "
                         f"got {weight_map!r}")
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        if not (folder / shard).is_file():
            raise ValueError(f"{index} names the shard {shard}, which is not in {folder}")
        tensors.update(read_safetensors(folder / shard))
    for name, shard in weight_map.items():
        if name not in tensors:
            raise ValueError(f"{index} puts tensor {name!r} in {shard}, which does not hold it")
    return tensors


def read_tensors(folder: Path, allow_bin: bool) -> tuple[dict, str]:
    """All tensors of the folder (name -> NumPy array) and the file(s) they came from."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return read_safetensors(single), str(single)
    if index.is_file():
        return _read_shards(folder, index), str(index)
    pickle = folder / "pytorch_model.bin"
    if pickle.is_file():
        if not allow_bin:
            raise ValueError(f"{folder} has only pytorch_model.bin, a pickle; expected "
                             "model.safetensors. Pass allow_bin=True (--allow-bin) to read it "
                             "with torch.load(weights_only=True)")
        torch = import_optional("torch", "reading pytorch_model.bin (--allow-bin)")  # only this path needs torch

        state = torch.load(pickle, map_location="cpu", weights_only=True)
        return {k: t.detach().float().numpy() if t.dtype == torch.bfloat16 else t.detach().numpy()
                for k, t in state.items()}, str(pickle)
    raise ValueError(f"expected model.safetensors (or model.safetensors.index.json, or "
                     f"pytorch_model.bin with allow_bin=True) in {folder}, found none of them")


def strip_prefix(tensors: dict, prefix: str) -> dict:
    """The tensors with ``prefix`` taken off the names that have it (a head class's
    ``transformer.`` or ``bert.``), when any name has it."""
    if any(k.startswith(prefix) for k in tensors):
        return {(k[len(prefix):] if k.startswith(prefix) else k): a for k, a in tensors.items()}
    return tensors


def norm_rows(theirs: str, ours: str, C: int) -> list:
    """A LayerNorm's rows: ``weight``/``bias`` are minillm's ``gamma``/``beta``."""
    return [(f"{theirs}.weight", f"{ours}.gamma", "copy", (C,)),
            (f"{theirs}.bias", f"{ours}.beta", "copy", (C,))]


def to_state(rows, tensors: dict, source: str, arch: str, dtype: str) -> tuple[dict, set]:
    """minillm's state dict from the folder's tensors by the name table ``rows``, and the
    Hugging Face names used. A missing tensor or a shape other than config.json implies is
    refused, naming the file and the tensor."""
    state, used = {}, set()
    for theirs, ours, how, shape in rows:
        if theirs not in tensors:
            raise ValueError(f"{source}: missing tensor {theirs!r} (minillm {ours!r}), which "
                             f"{arch} with this config.json needs")
        a = np.asarray(tensors[theirs])
        if tuple(a.shape) != shape:
            raise ValueError(f"{source}: tensor {theirs!r} has shape {tuple(a.shape)}, but "
                             f"config.json implies {shape} (minillm {ours!r})")
        used.add(theirs)
        if how == "T":
            a = a.T
        elif how.startswith("qkv"):
            a = np.split(a, 3, axis=-1)[int(how[3])]
        state[ours] = np.ascontiguousarray(a, dtype=dtype)
    return state, used


def from_state(rows, state: dict) -> dict:
    """The Hugging Face tensors of minillm's ``state`` by the name table ``rows``."""
    tensors: dict = {}
    for theirs, ours, how, _ in rows:
        a = state[ours]
        if how == "T":
            a = a.T
        elif how.startswith("qkv"):
            a = np.concatenate([state[ours[:-1] + q] for q in "QKV"], axis=-1)  # (.., 3C)
        tensors[theirs] = np.ascontiguousarray(a)
    return tensors


def write_folder(folder, hf_config: dict, tensors: dict, dtype: str) -> None:
    """config.json + model.safetensors, as ``transformers`` writes them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hf_config = {**hf_config, "torch_dtype": dtype}
    (folder / "config.json").write_text(json.dumps(hf_config, indent=2), encoding="utf-8")
    safetensors_io.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def require(config: ModelConfig, arch: str, **wanted) -> None:
    """Refuse a config that ``arch`` cannot express, naming the field."""
    config.require_classic(arch)
    for key, value in wanted.items():
        if getattr(config, key) != value:
            raise ValueError(f"{arch} needs ModelConfig.{key}={value!r}, got {getattr(config, key)!r}")


def untied(config: ModelConfig) -> ModelConfig:
    return ModelConfig.from_dict({**config.to_dict(), "tie_embeddings": False})
