"""The track-finder interface and registry (registry kind ``"track finder"``).

A track finder turns one :class:`~colliderlab.tracking.event.TrackingEvent` into a
submission: a ``hit_id, track_id`` table with one row per hit (``track_id`` 0 = no track).
Finders that learn (the GNN) are trained with :meth:`TrackFinder.fit` on a list of events
with truth; classical finders may use ``fit`` to tune cuts or ignore it. Finders never read
``event.truth`` or ``event.particles`` in :meth:`TrackFinder.find`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from colliderlab.core.errors import ConfigError
from colliderlab.core.registry import lookup, names
from colliderlab.tracking.event import TrackingEvent

KIND = "track finder"

#: The modules that register finders (imported on first use: the GNN imports torch).
_MODULES = (
    "colliderlab.tracking.dbscan",
    "colliderlab.tracking.ckf",
    "colliderlab.tracking.gnn",
)


def _load() -> None:
    import importlib

    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # pragma: no cover - while modules are written
            if exc.name != module:
                raise


class TrackFinder:
    """Base class: ``find(event) -> DataFrame[hit_id, track_id]``."""

    name: str = "base"

    def fit(self, events: Sequence[TrackingEvent]) -> TrackFinder:
        """Learn from events with truth (default: nothing to learn)."""
        return self

    def find(self, event: TrackingEvent) -> pd.DataFrame:
        raise NotImplementedError

    @staticmethod
    def submission(hit_id: np.ndarray, track_id: np.ndarray) -> pd.DataFrame:
        """The submission table from per-hit arrays (``track_id`` 0 = unassigned)."""
        return pd.DataFrame(
            {
                "hit_id": np.asarray(hit_id, dtype=np.int64),
                "track_id": np.asarray(track_id, dtype=np.int64),
            }
        )


def make_finder(name: str, **options) -> TrackFinder:
    """The registered finder ``name`` built with ``options`` (unknown name: a clear error)."""
    import inspect

    _load()
    cls = lookup(KIND, name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        valid = [p for p in inspect.signature(cls).parameters if p not in ("self", "kwargs")]
        raise ConfigError(
            f"track finder {name!r}: {exc}. Its options are: {', '.join(valid) or 'none'}."
        ) from None
    return cls(**options)


def finder_names() -> list[str]:
    _load()
    return names(KIND)
