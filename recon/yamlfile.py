"""YAML read strictly: PyYAML's safe types only, and a key given twice in one mapping is an
error (plain ``yaml.safe_load`` silently keeps the last, so a config that sets ``photons:``
twice would run with whichever came second). Merge keys (``<<: *base``) may still be
overridden, as YAML allows.
"""
from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from recon.errors import FlytomoError

__all__ = ["ConfigModel", "load_yaml", "read_yaml_mapping", "yaml_problem"]


class _StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python objects built) that refuses duplicate keys."""


def _mapping_without_duplicates(loader: _StrictSafeLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        line = key_node.start_mark.line
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key}' is given twice, on lines {first + 1} and {line + 1}; keep one")
        seen[key] = line
    return loader.construct_mapping(node, deep=True)


_StrictSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                  _mapping_without_duplicates)


def load_yaml(text: str) -> Any:
    """Parse YAML ``text`` with safe types only; a duplicate key raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_problem(err: Exception) -> str:
    """One line for a YAML parse error: 'line L, column C: what is wrong'."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        context = f" ({err.context})" if err.context else ""
        return f"{where}{err.problem}{context}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def read_yaml_mapping(path: str | os.PathLike, what: str, keys: str = "") -> dict:
    """The YAML file at ``path`` as a dict, read with :func:`load_yaml`.

    what : the kind of file, for messages ("experiment config").  keys : a hint at its keys
    for the not-a-mapping message ("scans:, output:, ...").
    Raises FlytomoError(path, one line) when the file is missing, a folder, unreadable, not
    YAML, empty, or not a mapping.
    """
    path = Path(path)
    try:
        raw = load_yaml(path.read_text())
    except FileNotFoundError:
        raise FlytomoError(path, f"no such {what}") from None
    except IsADirectoryError:
        raise FlytomoError(path, f"is a folder, not the {what} (a YAML file)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise FlytomoError(path, f"not readable YAML ({yaml_problem(err)})") from None
    if raw is None:
        raise FlytomoError(path, f"the {what} is empty")
    if not isinstance(raw, dict):
        raise FlytomoError(path, f"the {what} must be a mapping of keys" + (f" ({keys})" if keys else ""))
    return raw


def _numeric_not_bool(annotation: Any) -> bool:
    """Whether a field's type takes numbers (int or float, also inside unions and tuples) but
    not booleans."""
    seen, stack = set(), [annotation]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        stack.extend(typing.get_args(t))
    return bool(seen & {int, float}) and bool not in seen and Any not in seen


class ConfigModel(BaseModel):
    """Base of the models that read YAML configs: unknown keys are refused, and so is a
    boolean where a number belongs. YAML reads ``yes``, ``no``, ``on`` and ``off`` as true and
    false, and pydantic would take those as 1 and 0 (``iterations: yes`` running one MLEM
    iteration without a word)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        items = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(v, bool) for v in items) and info.field_name is not None \
                and _numeric_not_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"must be a number, got {value!r} (YAML reads yes/no/on/off as true/false)")
        return value
