"""An endpoint's fields as the pydantic models FastAPI checks requests against and
publishes in ``/openapi.json``.

A task declares its fields in plain Python (:class:`~minillm.train.spec.Endpoint`:
``{name: type}`` or ``{name: (type, constraints)}``); here they become models. Numbers
are strict (``"0.5"`` and ``true`` are not numbers; NaN and infinities are refused);
pydantic's ``str`` refuses lone surrogates (legal in JSON as ``"\\ud800"``, but not
text), so the tokenizer only ever sees text it can encode. Requests forbid unknown
fields. A constraint given as ``"limits.NAME"`` is this server's limit of that name.
"""
from __future__ import annotations

import typing
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, create_model

from .limits import Limits

__all__ = ["model_of", "ErrorResponse", "ERRORS", "schema_name"]

_STRICT = {int: StrictInt, float: StrictFloat, bool: StrictBool}


def _strict(tp):
    """``int`` -> ``StrictInt`` (and float, bool), inside ``Optional[...]`` too."""
    if typing.get_origin(tp) is typing.Union:
        return Optional[tuple(_strict(t) for t in typing.get_args(tp) if t is not type(None))[0]]
    return _STRICT.get(tp, tp)


def _constraints(constraints: dict, limits: Limits, tp, request: bool) -> dict:
    out = {}
    for key, value in constraints.items():
        if isinstance(value, str) and value.startswith("limits."):
            value = getattr(limits, value.removeprefix("limits."))
        out[key] = value
    if "default" in out and callable(out["default"]):       # a default from the limits: default(limits)
        out["default"] = out["default"](limits)
    inner = [t for t in typing.get_args(tp) if t is not type(None)] or [tp]
    if request and float in inner:
        out.setdefault("allow_inf_nan", False)
    return out


def model_of(name: str, fields: dict, limits: Limits, *, request: bool) -> type[BaseModel]:
    """The pydantic model ``name`` of ``fields`` (see the module); a request model forbids
    unknown fields and has strict numbers."""
    spec: dict[str, Any] = {}
    for field_name, declared in fields.items():
        tp, constraints = declared if isinstance(declared, tuple) else (declared, {})
        constraints = _constraints(dict(constraints), limits, tp, request)
        default = constraints.pop("default", ...)
        spec[field_name] = (_strict(tp) if request else tp, Field(default, **constraints))
    config = ConfigDict(extra="forbid") if request else ConfigDict()
    return create_model(name, __config__=config, **spec)


def schema_name(path: str, suffix: str) -> str:
    """``("/v1/generate", "Request")`` -> ``"GenerateRequest"``."""
    return "".join(part.capitalize() for part in path.rstrip("/").rsplit("/", 1)[-1].split("_")) + suffix


class ErrorResponse(BaseModel):
    error: str
    message: str
    details: Optional[list[dict]] = None


ERRORS = {status: {"model": ErrorResponse} for status in (400, 413, 415, 422)}
