"""Typed configuration helpers: dataclass <-> dict / YAML, dotted-key overrides, validation errors.

Every config section is a plain ``@dataclass`` whose ``__post_init__`` validates its fields and raises
:class:`ConfigError` with a one-line message that names the offending field (``model.num_heads``...). Config
files are YAML serialisations of these dataclasses; text is never ``eval``-ed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the field and how to fix it."""


def check(condition: bool, field: str, message: str) -> None:
    """Raise :class:`ConfigError` naming ``field`` unless ``condition`` holds.

    Args:
        condition: the invariant that must hold.
        field: dotted name of the field, e.g. ``"token_moe.top_k"``.
        message: what is wrong and how to fix it.
    """
    if not condition:
        raise ConfigError(f"config field '{field}': {message}")


def to_dict(cfg: Any) -> Any:
    """Recursively convert a dataclass instance (or containers of them) to plain Python data."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def _convert(tp: Any, value: Any, field: str) -> Any:
    """Convert plain data ``value`` to annotated type ``tp`` (dataclasses, lists, tuples, optionals)."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, field) if len(args) == 1 else value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config field '{field}': expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, prefix=field)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config field '{field}': expected a list, got {type(value).__name__}")
        (inner, *_) = get_args(tp) or (Any,)
        items = [_convert(inner, v, f"{field}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config field '{field}': expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads "5e-4" (no dot) as a string
    if tp is str and isinstance(value, bool):
        raise ConfigError(
            f"config field '{field}': expected str, got {value!r} (YAML reads yes / no / on / off as booleans: "
            f"quote the word, e.g. {field.rsplit('.', 1)[-1]}: 'no')"
        )
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"config field '{field}': expected {tp.__name__}, got {value!r}")
    return value


_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from plain data, rejecting unknown keys with the key's dotted name.

    Args:
        cls: the dataclass type.
        data: mapping of field name -> plain value.
        prefix: dotted path of ``cls`` inside the root config (for error messages).

    Returns:
        An instance of ``cls`` (validated by its ``__post_init__``).

    Raises:
        ConfigError: unknown key, wrong type, or a failed validation.
    """
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"config field '{dotted}': unknown key (valid keys: {', '.join(sorted(names))})")
        kwargs[key] = _convert(hints[key], value, dotted)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        # a section's own checks may name a bare field ('codebook_dim'); qualify it with the section's path
        match = re.match(r"config field '([^'.]+)'", str(err))
        if prefix and match:
            raise ConfigError(str(err).replace(f"'{match.group(1)}'", f"'{prefix}.{match.group(1)}'", 1)) from None
        raise


def _parse_scalar(text: str) -> Any:
    """Parse a CLI override value with YAML's safe scalar rules (``1e-4``, ``true``, ``[1, 2]``)."""
    return yaml.safe_load(text)


def apply_overrides(cfg: T, overrides: list[str] | dict[str, Any]) -> T:
    """Return a copy of ``cfg`` with dotted-key overrides applied (``"model.num_layers=4"``).

    Args:
        cfg: a dataclass config instance.
        overrides: ``["a.b=1", ...]`` strings or a ``{"a.b": 1}`` mapping.

    Returns:
        A new, re-validated config instance.

    Raises:
        ConfigError: malformed override or unknown key.
    """
    data = to_dict(cfg)
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
    for key, value in items:
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"config field '{'.'.join(parts[: i + 1])}': unknown key in override '{key}'")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"config field '{key}': unknown key in override")
        node[parts[-1]] = value
    return from_dict(type(cfg), data)


def _split_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like 'section.field=value'")
    key, value = text.split("=", 1)
    return key.strip(), _parse_scalar(value)


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Load a YAML or JSON config file into dataclass ``cls`` and apply overrides.

    A file may start from another one with a top-level ``base: OTHER.yaml`` key (a path relative to the file's own
    folder, or absolute): the base is loaded first (bases may chain) and the file's own values are merged over it —
    mappings key by key, everything else (scalars, lists such as ``stages``) replaced whole.

    Raises:
        FileNotFoundError: the file or one of its bases does not exist (message names it).
        ConfigError: a file is malformed, the ``base`` chain loops, or a value is invalid.
    """
    data = _read_config_file(Path(path), ())
    cfg = from_dict(cls, data)
    return apply_overrides(cfg, overrides) if overrides else cfg


def _read_config_file(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """Read one config file into a mapping, resolving its ``base`` chain."""
    if not path.is_file():
        via = f" (the base of {chain[-1]})" if chain else ""
        raise FileNotFoundError(f"config file not found: {path}{via}")
    try:
        data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    if "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"config file {path}: 'base' must be a file name or path, got {base!r}")
    base_path = Path(base) if Path(base).is_absolute() else path.parent / base
    resolved = tuple(p.resolve() for p in (*chain, path))
    if base_path.resolve() in resolved:
        loop = " -> ".join(p.name for p in (*chain, path, base_path))
        raise ConfigError(f"config file {path}: the 'base' chain loops ({loop}); remove one 'base' key")
    return _merge_mappings(_read_config_file(base_path, (*chain, path)), data)


def _merge_mappings(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: nested mappings merge key by key, any other value replaces the base's."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_mappings(merged[key], value)
        else:
            merged[key] = value
    return merged


def save_config(cfg: Any, path: str | Path) -> None:
    """Write ``cfg`` as YAML (``.yaml``/``.yml``) or JSON (anything else), atomically."""
    from unif2ace.utils.io import atomic_write_text

    path = Path(path)
    data = to_dict(cfg)
    text = yaml.safe_dump(data, sort_keys=False) if path.suffix in (".yaml", ".yml") else json.dumps(data, indent=2)
    atomic_write_text(path, text)


def resolve_config_path(name: str, prefix: str = "") -> Path:
    """A config file path, or the name of a config shipped in ``unif2ace/configs`` (``vq_faces_64``).

    Args:
        name: a path to an existing file, or a shipped config's name.
        prefix: the family of shipped configs to list in the error (``"train_"`` recipes, ``"vq_"`` tokenizers).

    Raises:
        FileNotFoundError: neither a file nor a shipped config of that name (message lists the shipped ones).
    """
    path = Path(name)
    if path.is_file():
        return path
    shipped = resources.files("unif2ace") / "configs"
    candidate = shipped / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if candidate.is_file():
        return Path(str(candidate))
    names = sorted(p.name[:-5] for p in shipped.iterdir() if p.name.startswith(prefix) and p.name.endswith(".yaml"))
    raise FileNotFoundError(f"config not found: {name} (a YAML path, or a shipped config: {', '.join(names)})")
