"""The typed, validated run configuration: YAML -> dataclasses, with ``--set`` overrides.

Every section has defaults, so an empty file (or none) is a valid config. Unknown keys, wrong types and
out-of-range values raise :class:`ConfigError` naming the dotted key, before any pipeline is built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import yaml

from tailguard.transforms.anchors import AnchorsConfig
from tailguard.transforms.dedup import DedupConfig
from tailguard.transforms.diversity import ReportConfig
from tailguard.transforms.ingest import IngestConfig
from tailguard.transforms.langid import LanguageIdConfig
from tailguard.transforms.rarity import RarityConfig
from tailguard.transforms.settings import ConfigError
from tailguard.transforms.sink import SinkConfig
from tailguard.transforms.synthetic import SyntheticConfig, shipped_drop_threshold


@dataclass
class CurateConfig:
    """One section per stage, in pipeline order."""

    ingest: IngestConfig = field(default_factory=IngestConfig)
    langid: LanguageIdConfig = field(default_factory=LanguageIdConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    rarity: RarityConfig = field(default_factory=RarityConfig)
    anchors: AnchorsConfig = field(default_factory=AnchorsConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def validate(self) -> None:
        if self.anchors.max_synthetic_score is None:
            self.anchors.max_synthetic_score = (self.synthetic.max_score if self.synthetic.max_score is not None
                                                else shipped_drop_threshold(self.synthetic.models_path()))
        if self.anchors.enabled and self.anchors.min_share > 0 and not self.rarity.enabled:
            # The minimum anchor share is met by weighting; without weights nothing could enforce it.
            if self.anchors.enforce:
                raise ConfigError("anchors.enforce", "needs rarity.enabled: true (the share is met by weights)")


def load_config(path: str | None = None, overrides: list[str] | None = None) -> CurateConfig:
    """Read YAML (if given), apply ``dotted.key=value`` overrides, and build the validated config."""
    raw: Any = {}
    if path:
        try:
            raw = yaml.safe_load(_read_config_text(path))
        except (OSError, IOError) as e:
            raise ConfigError("--config", f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError("--config", f"{path} is not valid YAML: {e}") from None
        if raw is None:
            raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("<root>", f"the config must be a mapping of sections, got {type(raw).__name__}")
    for item in overrides or []:
        apply_override(raw, item)
    return build(CurateConfig, raw, "")


def _read_config_text(path: str) -> str:
    """Local paths directly; ``gs://`` and other Beam filesystems through ``FileSystems``."""
    if "://" not in path:
        with open(path, encoding="utf-8") as f:
            return f.read()
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as f:
            return f.read().decode("utf-8")
    except Exception as e:  # Beam wraps storage errors in several types
        raise OSError(f"{type(e).__name__}: {e}") from None


def apply_override(raw: dict, item: str) -> None:
    """``a.b.c=value``: value parsed as YAML (so ``true``, ``0.5``, ``[en, fr]`` have their types)."""
    if "=" not in item:
        raise ConfigError(item, "--set takes dotted.key=value")
    key, _, text = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(key or item, "--set takes dotted.key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(key, f"value {text!r} is not valid YAML: {e}") from None
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(".".join(parts[: i + 1]), "is not a section, cannot set a key inside it")
        node = child
    node[parts[-1]] = value


def build(cls: type, data: Any, prefix: str) -> Any:
    """Construct dataclass ``cls`` from mapping ``data``, checking every key and type, then ``validate()``."""
    where = prefix or "<root>"
    if not isinstance(data, dict):
        raise ConfigError(where, f"must be a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(_join(prefix, str(unknown[0])), f"unknown key; valid keys here: {', '.join(names)}")
    kwargs = {name: _coerce(hints[name], value, _join(prefix, name)) for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as e:  # a required field without default
        raise ConfigError(where, str(e)) from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as e:
            raise e.under(prefix) from None
    return obj


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, key)
            except ConfigError as e:
                errors.append(e.message)
        raise ConfigError(key, " or ".join(errors))
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list, got {type(value).__name__} {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a mapping, got {type(value).__name__} {value!r}")
        return {_coerce(args[0], k, f"{key}.{k}"): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {type(value).__name__} {value!r}")
        return value
    if hint is Any:
        return value
    raise ConfigError(key, f"unsupported config type {hint!r}")  # a programming error in a section


def config_to_dict(config: CurateConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_hash(config: CurateConfig) -> str:
    canonical = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
