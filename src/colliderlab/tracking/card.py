"""The tracker card: field, material, efficiency, resolution and noise of the TrackML tracker.

The module geometry comes from ``detectors.csv`` (:mod:`colliderlab.tracking.geometry`); the
card holds what the simulation needs beyond it. A card is YAML whose keys are the fields of
:class:`TrackerCard` (see ``tracking/data/trackml.yaml``, the documented default); unknown,
missing or out-of-range keys are :class:`~colliderlab.core.errors.ConfigError` naming the key.

Units: T, GeV, mm; material in fractions of a radiation length.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from colliderlab.core.errors import ConfigError, UnknownNameError, did_you_mean
from colliderlab.tracking.geometry import TECHNOLOGIES

SHIPPED_CARDS = ("trackml",)


@dataclasses.dataclass(frozen=True)
class TrackerCard:
    """Response of a TrackML-like tracker.

    bz : axial field (T).
    pt_min : transverse momentum (GeV) above which charged particles are simulated.
    eta_max : |eta| acceptance of the simulated particles at production.
    max_turns : loopers are followed for at most this many turns of their helix.
    material : x/X0 of one layer (at normal incidence) per technology
        (``pixel``, ``short_strip``, ``long_strip``).
    hit_efficiency : probability that a crossed module records the hit.
    resolution : ``"pitch"`` (pitch / sqrt(12) of each module in u and v) or, per
        technology, ``(sigma_u, sigma_v)`` in mm.
    noise_fraction : mean number of noise hits per event, as a fraction of the particle hits.
    """

    name: str = "trackml"
    description: str = ""
    bz: float = 2.0
    pt_min: float = 0.1
    eta_max: float = 4.0
    max_turns: float = 1.0
    material: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"pixel": 0.015, "short_strip": 0.025, "long_strip": 0.03}
    )
    hit_efficiency: float = 0.99
    resolution: Any = "pitch"
    noise_fraction: float = 0.1

    def __post_init__(self) -> None:
        for key in ("bz", "pt_min", "eta_max", "max_turns", "hit_efficiency", "noise_fraction"):
            _number(getattr(self, key), key)
        if not self.bz > 0:
            raise ConfigError(f"bz must be > 0 T (TrackML: 2.0); got {self.bz}.")
        if not self.eta_max > 0:
            raise ConfigError(f"eta_max must be > 0 (TrackML: 4.0); got {self.eta_max}.")
        if not self.max_turns > 0:
            raise ConfigError(f"max_turns must be > 0 (e.g. 1.0); got {self.max_turns}.")
        if not 0 <= self.hit_efficiency <= 1:
            raise ConfigError(
                f"hit_efficiency is a probability in [0, 1]; got {self.hit_efficiency}."
            )
        material = _per_technology(self.material, "material")
        for tech, x in material.items():
            _number(x, f"material.{tech}")
            if x > 0.5:
                raise ConfigError(
                    f"material.{tech} = {x} X0 per layer is implausible for a silicon layer "
                    "(typical: 0.01-0.04); the unit is a fraction of a radiation length."
                )
        object.__setattr__(self, "material", {k: float(v) for k, v in material.items()})
        if self.resolution != "pitch":
            if not isinstance(self.resolution, dict):
                raise ConfigError(
                    "resolution must be 'pitch' (pitch / sqrt(12) of each module) or a mapping "
                    f"technology -> [sigma_u, sigma_v] in mm; got {self.resolution!r}."
                )
            res = _per_technology(self.resolution, "resolution")
            out = {}
            for tech, pair in res.items():
                if not (isinstance(pair, list | tuple) and len(pair) == 2):
                    raise ConfigError(
                        f"resolution.{tech} must be [sigma_u, sigma_v] in mm; got {pair!r}."
                    )
                for s in pair:
                    _number(s, f"resolution.{tech}")
                out[tech] = (float(pair[0]), float(pair[1]))
            object.__setattr__(self, "resolution", out)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _number(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number; got {value!r}.")
    if value < 0:
        raise ConfigError(f"{key} must be >= 0; got {value!r}.")


def _per_technology(mapping: Any, key: str) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise ConfigError(
            f"{key} must be a mapping with keys {', '.join(TECHNOLOGIES)}; got {mapping!r}."
        )
    for tech in mapping:
        if tech not in TECHNOLOGIES:
            raise ConfigError(
                f"unknown technology {tech!r} in {key}.{did_you_mean(str(tech), TECHNOLOGIES)} "
                f"Valid: {', '.join(TECHNOLOGIES)}."
            )
    missing = [t for t in TECHNOLOGIES if t not in mapping]
    if missing:
        raise ConfigError(f"{key} misses {', '.join(missing)}; give one value per technology.")
    return dict(mapping)


def card_from_dict(data: dict[str, Any]) -> TrackerCard:
    """Build and validate a card from a (YAML-loaded) mapping; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"a tracker card is a mapping of keys; got {type(data).__name__}.")
    names = [f.name for f in dataclasses.fields(TrackerCard)]
    for key in data:
        if key not in names:
            raise ConfigError(
                f"unknown key {key!r} in the tracker card.{did_you_mean(str(key), names)} "
                f"Valid keys: {', '.join(names)}."
            )
    return TrackerCard(**data)


def load_tracker_card(card: str | Path | TrackerCard = "trackml") -> TrackerCard:
    """A tracker card by shipped name (``"trackml"``), by YAML path, or passed through."""
    import yaml

    if isinstance(card, TrackerCard):
        return card
    if str(card) in SHIPPED_CARDS:
        text = resources.files("colliderlab.tracking").joinpath(f"data/{card}.yaml").read_text()
        source = f"shipped card {card!r}"
    else:
        path = Path(card)
        if not path.suffix and not path.exists():
            raise UnknownNameError(
                f"unknown tracker card {str(card)!r}.{did_you_mean(str(card), SHIPPED_CARDS)} "
                f"Shipped cards: {', '.join(SHIPPED_CARDS)}; or give the path of a YAML file."
            )
        try:
            text = path.read_text()
        except FileNotFoundError as err:
            raise ConfigError(
                f"tracker card file {path} not found; shipped cards: {', '.join(SHIPPED_CARDS)}."
            ) from err
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from err
    try:
        return card_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from err


__all__ = ["SHIPPED_CARDS", "TrackerCard", "card_from_dict", "load_tracker_card"]
