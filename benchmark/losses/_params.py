"""Checking a loss's ``params`` mapping: every error is one line naming its key.

Written by hand: the training core may not depend on pydantic, and the checks
(unknown names, numbers, choices) fit in a few lines.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from benchmark.errors import ConfigError

# A checker turns a raw value into a checked one or returns an error text.
Checker = Callable[[Any], Any]


class _Bad(Exception):
    pass


def number(*, min: float | None = None, min_exclusive: bool = False) -> Checker:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise _Bad(f"expected a finite number, got {v!r}")
        v = float(v)
        if min is not None and (v < min or (min_exclusive and v == min)):
            raise _Bad(f"must be {'>' if min_exclusive else '>='} {min:g}, got {v:g}")
        return v

    return check


def integer(*, min: int | None = None) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"expected an integer, got {v!r}")
        if min is not None and v < min:
            raise _Bad(f"must be >= {min}, got {v}")
        return v

    return check


def boolean() -> Checker:
    def check(v: Any) -> bool:
        if not isinstance(v, bool):
            raise _Bad(f"expected true/false, got {v!r}")
        return v

    return check


def choice(*options: str) -> Checker:
    def check(v: Any) -> str:
        if v not in options:
            raise _Bad(f"expected one of {', '.join(map(repr, options))}, got {v!r}")
        return v

    return check


def resolve(
    params: Mapping[str, Any] | None,
    spec: Mapping[str, tuple[Any, Checker]],
    where: str,
    what: str,
) -> dict[str, Any]:
    """Defaults from ``spec`` overridden by ``params``; ``where`` is e.g. ``loss.params``.

    Raises ConfigError ``<where>.<key>: ...`` for unknown names and bad values.
    """
    params = dict(params or {})
    out = {k: default for k, (default, _) in spec.items()}
    for key, value in params.items():
        if key not in spec:
            known = ", ".join(spec) if spec else "none"
            raise ConfigError(f"{where}.{key}: unknown parameter for {what} (known: {known})")
        try:
            out[key] = spec[key][1](value)
        except _Bad as exc:
            raise ConfigError(f"{where}.{key}: {exc}") from None
    return out
