"""Typed configs: dataclasses loaded from YAML with ``key=value`` overrides, for every package.

>>> from dataclasses import dataclass
>>> @dataclass
... class C:
...     lr: float = 1e-3
...     steps: int = 10
...     name: str = "x"
>>> load_config(C, None, ["lr=3e-4", "steps=5"])
C(lr=0.0003, steps=5, name='x')
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from core.errors import OncoLoopError

T = TypeVar("T")


# YAML and ``key=value`` overrides give numbers where a string is meant (``run_name=2``): read them as text
_LAX = ConfigDict(coerce_numbers_to_str=True)


@lru_cache(maxsize=None)
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation, config=_LAX)


def _describe(annotation: Any) -> str:
    if annotation is bool:
        return "true or false"
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _prepare(value: Any, annotation: Any) -> Any:
    """What pydantic's lax mode does not read the way a config file means it: ``null``/``none`` for an optional
    field, a comma-separated list, and an integer written as ``1e3`` (YAML reads that as a string)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, str) and value.lower() in ("null", "none") and type(None) in args:
            return None
        return value
    if origin in (list, tuple) and isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if annotation is int and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    return value


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """The YAML/CLI ``value`` as the field's declared type (pydantic, lax mode), or an error that says why not."""
    if annotation is float and isinstance(value, bool):  # lax mode would read true as 1.0
        raise OncoLoopError(f"config field {name!r}: expected float, got {value!r}")
    try:
        return _adapter(annotation).validate_python(_prepare(value, annotation))
    except ValidationError as e:
        reason = e.errors()[0]["msg"]
        raise OncoLoopError(f"config field {name!r}: expected {_describe(annotation)}, got {value!r} ({reason}).") from None


def read_yaml(path: Path, what: str, shipped: str) -> Any:
    """The parsed YAML file ``path``; ``what`` names it and ``shipped`` says where good ones are in errors.

    Raises:
        OncoLoopError: the file is missing or is not valid YAML.
    """
    if not path.is_file():
        raise OncoLoopError(f"{what} {path} not found; {shipped}.")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise OncoLoopError(f"{what} {path} is not valid YAML: {e}") from e


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from a YAML file (optional) and ``key=value`` overrides.

    Raises:
        OncoLoopError: missing or malformed file, unknown key, or a value of the wrong type.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        loaded = read_yaml(path, "config file", "shipped configs are under configs/") or {}
        if not isinstance(loaded, dict):
            raise OncoLoopError(f"config file {path} must be a mapping of key: value lines.")
        values.update(loaded)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise OncoLoopError(f"override {item!r} must look like key=value.")
        values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise OncoLoopError(
            f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; known keys: {', '.join(sorted(fields))}."
        )
    return cls(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})


def config_dict(config: Any) -> dict:
    """A plain dict of a config dataclass, for meta.json and trackers."""
    return dataclasses.asdict(config)
