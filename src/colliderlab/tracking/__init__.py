"""Charged-particle tracking at HL-LHC pile-up: a TrackML-like detector and track finders.

* :mod:`~colliderlab.tracking.event`: :class:`TrackingEvent`, four tables in the TrackML layout.
* :mod:`~colliderlab.tracking.io`: TrackML CSV files (read, write, validate, detectors.csv).
* :mod:`~colliderlab.tracking.geometry`, :mod:`~colliderlab.tracking.card`,
  :mod:`~colliderlab.tracking.simulate`: the TrackML detector module by module and the
  simulation of ttbar + Poisson(MU) pile-up events.
* :mod:`~colliderlab.tracking.score`: the TrackML score, hit weights, efficiency, fake and
  duplicate rates, the throughput score.
* :mod:`~colliderlab.tracking.finders`: the track-finder registry ("ckf", "dbscan", "gnn");
  :mod:`~colliderlab.tracking.evaluate`: finders side by side, scaling with pile-up.

The finders (numba, scikit-learn, torch) are imported on first use.
"""

from colliderlab.tracking.event import TrackingEvent
from colliderlab.tracking.finders import TrackFinder, finder_names, make_finder
from colliderlab.tracking.io import list_events, read_event, write_event
from colliderlab.tracking.score import track_metrics, trackml_score

__all__ = [
    "TrackFinder",
    "TrackingEvent",
    "finder_names",
    "list_events",
    "make_finder",
    "read_event",
    "track_metrics",
    "trackml_score",
    "write_event",
]
