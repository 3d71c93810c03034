"""The tracking event: four pandas tables in the TrackML layout.

One event is what the TrackML challenge files hold (Amrouche et al., arXiv:1904.06778),
so that colliderlab's simulated events and the public TrackML files go through the same
code. Units: mm, GeV, elementary charge.

``hits``      hit_id (int64, 1..N), x, y, z (float32), volume_id, layer_id, module_id (int)
``cells``     hit_id, ch0, ch1 (int), value (float32): the pixels/strips of each hit (optional)
``particles`` particle_id (int64, > 0), vx, vy, vz, px, py, pz (float32), q (int), nhits (int)
``truth``     hit_id, particle_id (0 for noise), tx, ty, tz, tpx, tpy, tpz (float32), weight

A track finder's output (a *submission* in TrackML words) is a table ``hit_id, track_id``
with one row per hit of the event; ``track_id`` 0 may be used for unassigned hits.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

HIT_COLUMNS = ("hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id")
CELL_COLUMNS = ("hit_id", "ch0", "ch1", "value")
PARTICLE_COLUMNS = ("particle_id", "vx", "vy", "vz", "px", "py", "pz", "q", "nhits")
TRUTH_COLUMNS = ("hit_id", "particle_id", "tx", "ty", "tz", "tpx", "tpy", "tpz", "weight")
SUBMISSION_COLUMNS = ("hit_id", "track_id")
DETECTOR_COLUMNS = (
    "volume_id",
    "layer_id",
    "module_id",
    "cx",
    "cy",
    "cz",
    "rot_xu",
    "rot_xv",
    "rot_xw",
    "rot_yu",
    "rot_yv",
    "rot_yw",
    "rot_zu",
    "rot_zv",
    "rot_zw",
    "module_t",
    "module_minhu",
    "module_maxhu",
    "module_hv",
    "pitch_u",
    "pitch_v",
)


@dataclasses.dataclass
class TrackingEvent:
    """One event in the TrackML layout (see the module docstring for the columns).

    ``cells`` is ``None`` when the event has no cell information. ``particles`` may carry
    extra columns (the public files add ``particle_type``; colliderlab adds ``pileup``, the
    index of the interaction: 0 for the hard scatter).
    """

    event_id: int
    hits: pd.DataFrame
    particles: pd.DataFrame
    truth: pd.DataFrame
    cells: pd.DataFrame | None = None

    @property
    def n_hits(self) -> int:
        return len(self.hits)
