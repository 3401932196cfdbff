"""YAML reading with one-line errors that name the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import ConfigError


def load_yaml(path: Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{line} invalid YAML ({problem})") from None


def parse_scalar(text: str) -> Any:
    """A --set value: YAML scalar or flow collection ('3e-5', 'true', '[1, 2]')."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML 1.1 reads '3e-5' as a string; accept the float people mean.
    if isinstance(value, str):
        try:
            return float(value) if any(ch in value for ch in ".eE") else value
        except ValueError:
            return value
    return value
