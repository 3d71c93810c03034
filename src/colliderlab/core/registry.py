"""Explicit registries: ``@register("process", "ttbar")``; nothing is discovered by scanning.

An unknown name raises :class:`~colliderlab.core.errors.UnknownNameError` that lists the valid
names and suggests the closest one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from colliderlab.core.errors import UnknownNameError, did_you_mean

T = TypeVar("T")

_REGISTRIES: dict[str, dict[str, Any]] = {}


def register(kind: str, name: str) -> Callable[[T], T]:
    """Decorator registering ``obj`` under ``name`` in the registry ``kind``."""

    def deco(obj: T) -> T:
        table = _REGISTRIES.setdefault(kind, {})
        if name in table:
            raise ValueError(f"{kind} {name!r} is registered twice")
        table[name] = obj
        return obj

    return deco


def lookup(kind: str, name: str) -> Any:
    """Return the object registered as ``name`` in ``kind``, or raise a helpful error."""
    table = _REGISTRIES.get(kind, {})
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(sorted(table))
        raise UnknownNameError(
            f"unknown {kind} {name!r}.{did_you_mean(name, table)} Valid {kind} names: {valid}."
        ) from None


def names(kind: str) -> list[str]:
    """Sorted names registered in ``kind``."""
    return sorted(_REGISTRIES.get(kind, {}))
