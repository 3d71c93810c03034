"""The in-memory event model: awkward arrays of records, with ``vector`` behaviour on read.

Collections of four-momenta (``particles``, ``truth``, ``vistau``) carry the record name
``Momentum4D`` when read through :func:`with_vector`, so ``events.particles.pt``,
``.eta``, ``.mass`` and sums of particles work as in ``vector``.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

#: Collections whose records are four-momenta (fields px, py, pz, E).
MOMENTUM_COLLECTIONS = ("particles", "truth", "vistau")
#: Reconstructed collections with pt, eta, phi, mass fields.
RECO_COLLECTIONS = (
    "Track",
    "PFCand",
    "Electron",
    "Muon",
    "Photon",
    "Jet",
    "FatJet",
    "Tau",
    "GenJet",
    "GenPart",
    "GenVisTau",
)


def jagged(columns: dict[str, np.ndarray], counts: np.ndarray) -> ak.Array:
    content = ak.zip({k: ak.Array(v) for k, v in columns.items()}, depth_limit=1)
    return ak.unflatten(content, np.asarray(counts, dtype=np.int64))


def build_events(columns: dict[str, Any], event_id: np.ndarray) -> ak.Array:
    """Assemble flat columns (see :mod:`colliderlab.generate.engine`) into an event array."""
    fields: dict[str, Any] = {"event_id": ak.Array(event_id)}
    fields.update({k: ak.Array(v) for k, v in columns["event"].items()})
    for name in ("vertices", "particles", "truth", "vistau"):
        cols, counts = columns[name]
        fields[name] = jagged(cols, counts)
    return ak.zip(fields, depth_limit=1)


def with_vector(events: ak.Array) -> ak.Array:
    """Give the momentum collections ``vector``'s ``Momentum4D`` behaviour."""
    import vector

    vector.register_awkward()
    out = events
    for name in (*MOMENTUM_COLLECTIONS, *RECO_COLLECTIONS):
        if name in events.fields:
            out = ak.with_field(out, ak.with_name(events[name], "Momentum4D"), name)
    return ak.Array(out, behavior=vector.backends.awkward.behavior)


def without_vector_names(events: ak.Array) -> ak.Array:
    """The same events without record names (behaviours are attached on read, never stored)."""
    return ak.Array(ak.without_parameters(events))
