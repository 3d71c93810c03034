"""Charged-particle tracking at HL-LHC pile-up: a TrackML-like detector and track finders.

Events live in the TrackML layout (:mod:`~colliderlab.tracking.event`).
"""

from colliderlab.tracking.event import TrackingEvent

__all__ = ["TrackingEvent"]
