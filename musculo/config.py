"""Configuration loading and validation against JSON schemas (with defaults filled in)."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from musculo.errors import ConfigError

SCHEMAS = ("config", "subject")


def schema(name: str) -> dict[str, Any]:
    """Return a packaged JSON schema by name (``config`` or ``subject``)."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r}; known: {SCHEMAS}")
    text = resources.files("musculo").joinpath(f"schemas/{name}.schema.yaml").read_text()
    return yaml.safe_load(text)


def _with_defaults(cls: type[jsonschema.protocols.Validator]) -> type:
    """Extend a validator class so that validation fills in ``default`` values."""
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(
        validator: Any, properties: dict, instance: Any, sch: dict
    ) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, sch)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


_DefaultFilling = _with_defaults(jsonschema.Draft202012Validator)


def describe_error(error: jsonschema.ValidationError) -> str:
    """Turn a schema error into a sentence naming the key at fault."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    where = where.lstrip(".") or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {', '.join(map(repr, extra))} at {where}{hint}"
    if error.validator == "oneOf" and error.context:
        best = min(error.context, key=lambda e: len(list(e.schema_path)))
        return f"{where}: {best.message}"
    return f"{where}: {error.message}"


def validate(instance: Any, name: str, *, source: str | os.PathLike[str]) -> Any:
    """Validate ``instance`` against the schema ``name`` in place, filling defaults.

    Raises :class:`ConfigError` listing every problem with the key that causes it.
    """
    validator = _DefaultFilling(schema(name))
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = "\n  ".join(describe_error(e) for e in errors)
        raise ConfigError(f"{source}: invalid {name} file:\n  {lines}")
    return instance


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_config(
    path: str | os.PathLike[str] = "config/config.yaml",
    overlays: Iterable[str | os.PathLike[str]] = (),
) -> dict[str, Any]:
    """Load the config file plus overlays (merged in order), validated with defaults filled in."""
    merged: dict[str, Any] = {}
    for item in [path, *overlays]:
        p = Path(item)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: a config file must be a mapping of keys to values")
        _merge(merged, data)
    return validate(merged, "config", source=" + ".join(str(p) for p in [path, *overlays]))
