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
from pathlib import Path
from typing import Any, TypeVar

import yaml

from core.errors import OncoLoopError

T = TypeVar("T")


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Turn a YAML/CLI value into the field's declared type, or say why not."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            if type(None) in args:
                return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(name, value, arg)
            except OncoLoopError:
                continue
        raise OncoLoopError(f"config field {name!r}: cannot read {value!r} as {annotation}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise OncoLoopError(f"config field {name!r}: expected a list, got {value!r}")
        inner = args[0] if args else str
        return origin(_coerce(name, v, inner) for v in value)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise OncoLoopError(f"config field {name!r}: expected a mapping, got {value!r}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise OncoLoopError(f"config field {name!r}: expected true or false, got {value!r}")
    if annotation in (int, float, str):
        try:
            if annotation is int and isinstance(value, (str, float)):
                value = float(value)  # YAML reads "1e3" as a string
                if not value.is_integer():
                    raise ValueError
                return int(value)
            if annotation is float and isinstance(value, bool):
                raise ValueError
            return annotation(value)
        except (TypeError, ValueError):
            raise OncoLoopError(f"config field {name!r}: expected {annotation.__name__}, got {value!r}") from None
    return value


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
