"""What a stage's config section may rely on: the error type that names the offending key.

Each stage declares its own config dataclass beside its code (``IngestConfig`` in ``ingest.py``, ...);
``pipelines/config.py`` composes them, checks types from the annotations and calls each section's
``validate()``. A ``validate()`` raises :class:`ConfigError` with the key *relative to its section*; the
loader prefixes the section path, so the user sees e.g. ``langid.min_score``.
"""

from __future__ import annotations


class ConfigError(ValueError):
    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"config key '{key}': {message}")

    def under(self, prefix: str) -> "ConfigError":
        return ConfigError(f"{prefix}.{self.key}" if prefix else self.key, self.message)


def require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)


def require_fraction(value: float, key: str, *, allow_zero: bool = True, allow_one: bool = True) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    high_ok = value <= 1 if allow_one else value < 1
    require(low_ok and high_ok, key, f"must be a fraction in {'[' if allow_zero else '('}0, 1"
            f"{']' if allow_one else ')'}, got {value!r}")
