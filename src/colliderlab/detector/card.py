"""The detector card: geometry and response of a detector, as typed, validated data.

A card is a YAML file whose structure is the dataclasses below; every number carries its unit
in the field's comment (GeV, mm, T, rad). Unknown keys, missing keys, wrong types, negative
resolutions and geometry outside the detector volume are errors that name the key and the fix.
``load_card("generic_lhc")`` loads a card shipped with colliderlab; any path works too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from colliderlab.core.errors import ConfigError, UnknownNameError, did_you_mean

SHIPPED_CARDS = ("generic_lhc",)


# ----------------------------------------------------------------------------- building blocks
@dataclasses.dataclass(frozen=True)
class Binned:
    """A quantity (an efficiency, a rate) tabulated in bins of |eta| and pT (GeV).

    ``values[i][j]`` holds for ``eta_edges[i] <= |eta| < eta_edges[i+1]`` and
    ``pt_edges[j] <= pT < pt_edges[j+1]``; outside the table the value is 0.
    """

    eta_edges: tuple[float, ...]
    pt_edges: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]

    def validate(self, where: str) -> None:
        _increasing(self.eta_edges, f"{where}.eta_edges")
        _increasing(self.pt_edges, f"{where}.pt_edges")
        shape = (len(self.eta_edges) - 1, len(self.pt_edges) - 1)
        if len(self.values) != shape[0] or any(len(r) != shape[1] for r in self.values):
            raise ConfigError(
                f"{where}.values must be a table of {shape[0]} rows (|eta| bins) x {shape[1]} "
                f"columns (pT bins); got {[len(r) for r in self.values]}."
            )
        if any(not 0.0 <= v <= 1.0 for row in self.values for v in row):
            raise ConfigError(f"{where}.values are probabilities: each must be in [0, 1].")

    def __call__(self, pt: np.ndarray, abseta: np.ndarray) -> np.ndarray:
        table = np.pad(np.asarray(self.values, dtype=float), 1)  # zero outside
        i = np.searchsorted(self.eta_edges, abseta, side="right")
        j = np.searchsorted(self.pt_edges, pt, side="right")
        return table[i, j]


@dataclasses.dataclass(frozen=True)
class PtResolution:
    """Relative transverse-momentum resolution sigma(pT)/pT = sqrt(a^2 + (b pT)^2), per |eta| bin.

    ``a`` (dimensionless) is the multiple-scattering term, ``b`` (1/GeV) the curvature term.
    """

    eta_edges: tuple[float, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]

    def validate(self, where: str) -> None:
        _increasing(self.eta_edges, f"{where}.eta_edges")
        _per_bin(self, ("a", "b"), where)

    def __call__(self, pt: np.ndarray, abseta: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(self.eta_edges, abseta, side="right") - 1, 0, len(self.a) - 1)
        return np.sqrt(np.asarray(self.a)[i] ** 2 + (np.asarray(self.b)[i] * pt) ** 2)


@dataclasses.dataclass(frozen=True)
class EnergyResolution:
    """Calorimeter resolution sigma(E) = sqrt((c E)^2 + s^2 E + n^2) in GeV, per |eta| bin.

    ``stochastic`` s in GeV^1/2, ``noise`` n in GeV, ``constant`` c dimensionless.
    """

    eta_edges: tuple[float, ...]
    stochastic: tuple[float, ...]
    noise: tuple[float, ...]
    constant: tuple[float, ...]

    def validate(self, where: str) -> None:
        _increasing(self.eta_edges, f"{where}.eta_edges")
        _per_bin(self, ("stochastic", "noise", "constant"), where)

    def sigma(self, energy: np.ndarray, abseta: np.ndarray) -> np.ndarray:
        i = np.clip(
            np.searchsorted(self.eta_edges, abseta, side="right") - 1, 0, len(self.noise) - 1
        )
        s, n, c = (np.asarray(getattr(self, k))[i] for k in ("stochastic", "noise", "constant"))
        return np.sqrt((c * energy) ** 2 + s**2 * np.maximum(energy, 0.0) + n**2)


@dataclasses.dataclass(frozen=True)
class TowerGrid:
    """A uniform grid of towers between ``eta_min`` and ``eta_max`` (both signs of eta)."""

    eta_min: float
    eta_max: float
    n_eta: int  # towers in eta per side
    n_phi: int  # towers in phi (2 pi / n_phi wide)

    def validate(self, where: str) -> None:
        if not 0 <= self.eta_min < self.eta_max:
            raise ConfigError(
                f"{where} needs 0 <= eta_min < eta_max; got {self.eta_min}, {self.eta_max}."
            )
        if self.n_eta <= 0 or self.n_phi <= 0:
            raise ConfigError(f"{where}.n_eta and n_phi must be positive.")


@dataclasses.dataclass(frozen=True)
class Depth:
    """Longitudinal segmentation of a calorimeter.

    ``edges`` are the segment boundaries from the front face, in radiation lengths
    (``unit: X0``, electromagnetic shower profile) or nuclear interaction lengths
    (``unit: lambda``, hadronic profile); the last segment also collects the tail.
    ``critical_energy`` (GeV) of the absorber sets the depth of electromagnetic showers.
    """

    unit: str
    edges: tuple[float, ...]
    critical_energy: float  # GeV

    UNITS = ("X0", "lambda")

    def validate(self, where: str) -> None:
        if self.unit not in self.UNITS:
            raise ConfigError(
                f"{where}.unit must be one of {', '.join(self.UNITS)}; got {self.unit!r}."
                f"{did_you_mean(self.unit, self.UNITS)}"
            )
        _increasing(self.edges, f"{where}.edges")
        if self.edges[0] != 0:
            raise ConfigError(
                f"{where}.edges must start at the front face, 0; got {self.edges[0]}."
            )
        if not (math.isfinite(self.critical_energy) and self.critical_energy > 0):
            raise ConfigError(
                f"{where}.critical_energy must be a positive energy in GeV (PbWO4: 0.0085); "
                f"got {self.critical_energy}."
            )

    @property
    def n_segments(self) -> int:
        return len(self.edges) - 1


@dataclasses.dataclass(frozen=True)
class Calorimeter:
    """A sampling calorimeter: tower grids, resolution, lateral spread, thresholds, depth
    segments and the electronic noise of each tower."""

    grids: tuple[TowerGrid, ...]
    resolution: EnergyResolution
    energy_min: float  # GeV: towers below are dropped
    significance_min: float  # PF neutrals need excess / sigma(expected charged deposit) above
    lateral_spread: float  # Gaussian width of a shower in (eta, phi) units; 0 = one tower
    tower_noise: tuple[float, ...]  # GeV: noise of one tower, per resolution |eta| bin
    depth: Depth

    def validate(self, where: str) -> None:
        for k, g in enumerate(self.grids):
            g.validate(f"{where}.grids[{k}]")
        self.resolution.validate(f"{where}.resolution")
        for key in ("energy_min", "significance_min", "lateral_spread"):
            _non_negative(getattr(self, key), f"{where}.{key}")
        n = len(self.resolution.eta_edges) - 1
        if len(self.tower_noise) != n:
            raise ConfigError(
                f"{where}.tower_noise needs one value per |eta| bin of {where}.resolution ({n}); "
                f"got {len(self.tower_noise)}."
            )
        for v in self.tower_noise:
            _non_negative(v, f"{where}.tower_noise")
        self.depth.validate(f"{where}.depth")

    def noise_sigma(self, abseta: np.ndarray) -> np.ndarray:
        """Electronic noise (GeV) of one tower at |eta|."""
        edges = self.resolution.eta_edges
        i = np.clip(np.searchsorted(edges, abseta, side="right") - 1, 0, len(self.tower_noise) - 1)
        return np.asarray(self.tower_noise)[i]

    @property
    def eta_max(self) -> float:
        return max(g.eta_max for g in self.grids)


@dataclasses.dataclass(frozen=True)
class Field:
    """The solenoid: axial field ``bz`` (T) in a cylinder of ``radius``, ``half_length`` (mm)."""

    bz: float
    radius: float
    half_length: float

    def validate(self, where: str) -> None:
        for key in ("bz", "radius", "half_length"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{where}.{key} must be > 0; got {getattr(self, key)}.")


@dataclasses.dataclass(frozen=True)
class Tracker:
    """Silicon tracker: acceptance, efficiencies, momentum resolution and layers (mm)."""

    eta_max: float
    pt_min: float  # GeV
    efficiency: dict[str, Binned]  # keys: hadron, electron, muon
    resolution: dict[str, PtResolution]  # keys: hadron, electron, muon
    z_resolution: float  # mm: longitudinal impact-parameter resolution of tracks
    barrel_radii: tuple[float, ...]  # mm
    barrel_half_length: float  # mm
    endcap_z: tuple[float, ...]  # mm (both signs)
    endcap_radius: tuple[float, float]  # mm: inner, outer radius of the disks
    hit_resolution: tuple[float, float]  # mm: (r-phi, z) of a barrel hit / (r-phi, r) of a disk hit
    hit_efficiency: float
    layer_x0: float  # material per layer, fraction of a radiation length
    noise_hits: float  # mean number of random noise hits per layer and event

    def validate(self, where: str, field: Field) -> None:
        for kind in ("hadron", "electron", "muon"):
            for table in ("efficiency", "resolution"):
                if kind not in getattr(self, table):
                    raise ConfigError(f"{where}.{table} needs an entry {kind!r}.")
                getattr(self, table)[kind].validate(f"{where}.{table}.{kind}")
        for key in (
            "pt_min",
            "z_resolution",
            "hit_efficiency",
            "layer_x0",
            "eta_max",
            "noise_hits",
        ):
            _non_negative(getattr(self, key), f"{where}.{key}")
        _non_negative(min(self.hit_resolution), f"{where}.hit_resolution")
        _increasing(self.barrel_radii, f"{where}.barrel_radii")
        for r in self.barrel_radii:
            if not 0 < r < field.radius:
                raise ConfigError(
                    f"{where}.barrel_radii: a layer at r = {r} mm lies outside the tracking volume "
                    f"(0 < r < field.radius = {field.radius} mm). Move the layer or enlarge the "
                    "field volume."
                )
        for z in (*self.endcap_z, self.barrel_half_length):
            if not 0 < z < field.half_length:
                raise ConfigError(
                    f"{where}: a layer at |z| = {z} mm lies outside the tracking volume "
                    f"(0 < |z| < field.half_length = {field.half_length} mm)."
                )
        if not 0 <= self.endcap_radius[0] < self.endcap_radius[1] < field.radius:
            raise ConfigError(
                f"{where}.endcap_radius must satisfy 0 <= inner < outer < field.radius."
            )
        if self.hit_efficiency > 1:
            raise ConfigError(f"{where}.hit_efficiency is a probability (<= 1).")


@dataclasses.dataclass(frozen=True)
class LeptonId:
    """Identification of a lepton or photon: acceptance, efficiency, relative isolation."""

    eta_max: float
    pt_min: float  # GeV
    efficiency: Binned
    isolation_dr: float  # cone radius
    isolation_pt_min: float  # GeV: candidates counted in the cone
    isolation_max: float  # maximal sum pT (cone) / pT
    energy_scale: tuple[float, ...]  # calibration: reco energy /= scale, per |eta| bin
    scale_eta_edges: tuple[float, ...]

    def validate(self, where: str) -> None:
        self.efficiency.validate(f"{where}.efficiency")
        _increasing(self.scale_eta_edges, f"{where}.scale_eta_edges")
        if len(self.energy_scale) != len(self.scale_eta_edges) - 1 or min(self.energy_scale) <= 0:
            raise ConfigError(
                f"{where}.energy_scale needs one positive value per |eta| bin of "
                f"scale_eta_edges ({len(self.scale_eta_edges) - 1})."
            )
        for key in ("eta_max", "pt_min", "isolation_dr", "isolation_pt_min", "isolation_max"):
            _non_negative(getattr(self, key), f"{where}.{key}")

    def scale(self, abseta: np.ndarray) -> np.ndarray:
        """Energy-scale calibration factor at |eta| (reco energies are divided by it)."""
        i = np.searchsorted(self.scale_eta_edges, abseta, side="right") - 1
        return np.asarray(self.energy_scale)[np.clip(i, 0, len(self.energy_scale) - 1)]


@dataclasses.dataclass(frozen=True)
class Jets:
    """Jet reconstruction (anti-kt with FastJet) and its energy-scale calibration."""

    r_small: float
    pt_min_small: float  # GeV
    r_large: float
    pt_min_large: float  # GeV
    eta_max: float
    pileup_dz_max: float  # mm: charged candidates farther from the PV in z are pile-up (CHS)
    calibration: tuple[float, ...]  # response r(pT) = c0 + c1 / ln(pT) ...; jet pT /= r(pT)

    def validate(self, where: str) -> None:
        for key in (
            "r_small",
            "r_large",
            "pt_min_small",
            "pt_min_large",
            "eta_max",
            "pileup_dz_max",
        ):
            _non_negative(getattr(self, key), f"{where}.{key}")
        if not self.calibration:
            raise ConfigError(f"{where}.calibration needs at least one coefficient (e.g. [1.0]).")


@dataclasses.dataclass(frozen=True)
class FlavourTag:
    """A tagger working point: efficiency for b, c and light jets, in bins of |eta| and pT."""

    dr: float  # ghost-association is used for the truth flavour; dr for taus
    b: Binned
    c: Binned
    light: Binned

    def validate(self, where: str) -> None:
        _non_negative(self.dr, f"{where}.dr")
        for k in ("b", "c", "light"):
            getattr(self, k).validate(f"{where}.{k}")


@dataclasses.dataclass(frozen=True)
class TauTag:
    """Hadronic-tau tagging of jets matched to a visible tau (and fake rate of other jets)."""

    dr: float
    pt_min: float  # GeV
    eta_max: float
    efficiency: float
    fake_rate: float
    # the charge and prong count come from the tracks in the signal cone (as in CMS's
    # hadrons-plus-strips taus): tracks above track_pt_min GeV within signal_cone of the axis
    signal_cone: float = 0.1
    track_pt_min: float = 1.0

    def validate(self, where: str) -> None:
        for key in ("dr", "pt_min", "eta_max", "signal_cone", "track_pt_min"):
            _non_negative(getattr(self, key), f"{where}.{key}")
        for key in ("efficiency", "fake_rate"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"{where}.{key} is a probability in [0, 1].")


@dataclasses.dataclass(frozen=True)
class DetectorCard:
    """A whole detector. See ``cards/generic_lhc.yaml`` for the documented default."""

    name: str
    description: str
    field: Field
    tracker: Tracker
    ecal: Calorimeter
    hcal: Calorimeter
    muon: LeptonId
    electron: LeptonId
    photon: LeptonId
    jets: Jets
    btag: FlavourTag
    tau: TauTag
    pv_z_resolution: float  # mm

    def validate(self) -> DetectorCard:
        self.field.validate("field")
        self.tracker.validate("tracker", self.field)
        for key in ("ecal", "hcal"):
            getattr(self, key).validate(key)
        for key in ("muon", "electron", "photon"):
            getattr(self, key).validate(key)
        self.jets.validate("jets")
        self.btag.validate("btag")
        self.tau.validate("tau")
        _non_negative(self.pv_z_resolution, "pv_z_resolution")
        return self

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


# ----------------------------------------------------------------------------- parsing
def _increasing(seq, where: str) -> None:
    if len(seq) < 2 or any(not b > a for a, b in itertools.pairwise(seq)):
        raise ConfigError(f"{where} must be at least two increasing numbers; got {list(seq)}.")
    if seq[0] < 0:
        raise ConfigError(f"{where} must start at a value >= 0; got {seq[0]}.")


def _non_negative(value: float, where: str) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"{where} must be a finite number >= 0; got {value!r}.")


def _per_bin(obj, keys, where: str) -> None:
    n = len(obj.eta_edges) - 1
    for k in keys:
        vals = getattr(obj, k)
        if len(vals) != n:
            raise ConfigError(f"{where}.{k} needs one value per |eta| bin ({n}); got {len(vals)}.")
        for v in vals:
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(
                    f"{where}.{k} must be >= 0 (a resolution term cannot be negative); got {v}."
                )


def _build(tp: Any, value: Any, where: str) -> Any:
    """Convert YAML ``value`` to type ``tp`` (dataclasses, tuples, dicts, numbers, strings)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where or 'the card'} must be a mapping of keys; got {value!r}.")
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        for key in value:
            if key not in names:
                raise ConfigError(
                    f"unknown key {_join(where, key)!r} in the detector card."
                    f"{did_you_mean(str(key), names)} Valid keys here: {', '.join(names)}."
                )
        missing = [n for n in names if n not in value]
        if missing:
            raise ConfigError(
                f"the detector card misses {_join(where, missing[0])!r}"
                f"{' (and ' + str(len(missing) - 1) + ' more)' if len(missing) > 1 else ''}; "
                "copy it from the generic_lhc card and adapt it."
            )
        return tp(**{n: _build(hints[n], value[n], _join(where, n)) for n in names})
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list; got {value!r}.")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} values; got {value!r}.")
        return tuple(
            _build(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping; got {value!r}.")
        return {str(k): _build(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number; got {value!r}.")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer; got {value!r}.")
        return value
    if tp is str:
        return str(value)
    if isinstance(tp, types.UnionType):  # pragma: no cover - not used by the card
        raise TypeError(tp)
    return value


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def card_from_dict(data: dict[str, Any]) -> DetectorCard:
    """Build and validate a card from a (YAML-loaded) mapping."""
    return _build(DetectorCard, data, "").validate()


def load_card(card: str | Path | DetectorCard = "generic_lhc") -> DetectorCard:
    """A card by shipped name (``"generic_lhc"``), by YAML path, or passed through."""
    import yaml

    if isinstance(card, DetectorCard):
        return card
    text: str
    if str(card) in SHIPPED_CARDS:
        text = resources.files("colliderlab.detector.cards").joinpath(f"{card}.yaml").read_text()
        source = f"shipped card {card!r}"
    else:
        path = Path(card)
        if not path.is_file():
            raise UnknownNameError(
                f"no detector card {str(card)!r}: neither a shipped card "
                f"({', '.join(SHIPPED_CARDS)}){did_you_mean(str(card), SHIPPED_CARDS)} nor a "
                "YAML file."
            )
        text = path.read_text()
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"the detector card {source} is not valid YAML: {err}") from err
    try:
        return card_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"detector card {source}: {err}") from None
