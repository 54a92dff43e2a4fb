"""The safetensors file format, read and written with NumPy alone.

A safetensors file holds named arrays and nothing executable, which is why checkpoints
use it instead of a pickle. The layout (https://github.com/huggingface/safetensors)::

    [8 bytes]  N, the header length, an unsigned little-endian 64-bit integer
    [N bytes]  a UTF-8 JSON object, padded with spaces to a multiple of 8 bytes:
               {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
                ..., "__metadata__": {"key": "value", ...}}   (metadata optional)
    [rest]     the arrays' bytes, little-endian, C order; offsets count from the start
               of this block, and the arrays tile it with no gap and no overlap.

The tests check that the ``safetensors`` package reads what this module writes and the
other way round. Supported dtypes: F64, F32, F16, I64, I32, I16, I8, U64, U32, U16,
U8, BOOL (bfloat16 has no NumPy dtype and is refused with a clear error).
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

__all__ = ["to_bytes", "from_bytes", "save_file", "load_file", "DTYPES"]

# safetensors dtype code -> little-endian NumPy dtype
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODE_OF = {(dt.kind, dt.itemsize): code for code, dt in DTYPES.items()}
_MAX_HEADER = 100_000_000  # the safetensors package refuses larger headers too


def _code(name: str, array: np.ndarray) -> str:
    code = _CODE_OF.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"safetensors: expected {name!r} to have one of the dtypes "
            f"{sorted(str(d) for d in set(DTYPES.values()))}, got {array.dtype}"
        )
    return code


def to_bytes(tensors: dict, metadata: dict | None = None) -> bytes:
    """The safetensors encoding of ``tensors`` (name -> array) and string ``metadata``.

    Arrays are written in the dict's order (which reading gives back), each in C order
    and little-endian."""
    if not isinstance(tensors, dict):
        raise ValueError(f"safetensors: expected a dict of name -> array, got {type(tensors).__name__}")
    header: dict = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError(f"safetensors: expected metadata of str -> str, got {metadata!r}")
        header["__metadata__"] = dict(metadata)
    blobs, offset = [], 0
    for name in tensors:
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"safetensors: expected a non-empty str name other than '__metadata__', got {name!r}")
        array = np.asarray(tensors[name])
        code = _code(name, array)
        raw = np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # pad so the data block starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def from_bytes(data: bytes, where: str = "<bytes>") -> tuple[dict, dict]:
    """Decode a safetensors buffer into (name -> writable array, metadata).

    Every length, offset, dtype and shape is checked; a truncated or altered buffer
    raises ValueError naming ``where`` (the file) instead of returning garbage."""
    def bad(why: str) -> ValueError:
        return ValueError(f"{where}: not a valid safetensors file: {why}")

    if len(data) < 8:
        raise bad(f"expected at least 8 bytes, got {len(data)}")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise bad(f"header length {n} does not fit in a file of {len(data)} bytes (truncated?)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise bad(f"expected the header to be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad(f"expected __metadata__ to map str -> str, got {metadata!r}")
    body = memoryview(data)[8 + n:]
    tensors, spans = {}, []
    for name, info in header.items():
        try:
            dtype = DTYPES[info["dtype"]]
            shape = tuple(info["shape"])
            begin, end = info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise bad(f"entry {name!r} is malformed or has an unsupported dtype: {info!r}") from None
        if not all(isinstance(d, int) and d >= 0 for d in shape) or not (
                isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= len(body)):
            raise bad(f"entry {name!r} has shape {shape} and offsets {[begin, end]} outside the "
                      f"{len(body)} data bytes (truncated?)")
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if end - begin != expected:
            raise bad(f"entry {name!r} of dtype {info['dtype']} and shape {list(shape)} needs "
                      f"{expected} bytes, its offsets give {end - begin}")
        array = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
        tensors[name] = array.astype(dtype.newbyteorder("="), copy=True)  # native, writable
        spans.append((begin, end))
    covered = 0
    for begin, end in sorted(spans):
        if begin != covered:
            raise bad(f"the arrays leave a gap or overlap at data byte {covered}")
        covered = end
    if covered != len(body):
        raise bad(f"the arrays cover {covered} of {len(body)} data bytes")
    return tensors, metadata


def save_file(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write ``tensors`` to ``path`` atomically: a temporary file, fsync, then rename."""
    path = Path(path)
    data = to_bytes(tensors, metadata)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_file(path) -> dict:
    """The arrays of the safetensors file at ``path`` (name -> NumPy array)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no safetensors file at {path}")
    return from_bytes(path.read_bytes(), where=str(path))[0]
