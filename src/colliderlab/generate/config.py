"""The configuration of a generation run: frozen, validated, hashable, written beside the data."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from colliderlab.core.errors import ConfigError
from colliderlab.generate.processes import get_process

FORMATS = ("parquet", "root")

#: Version of the on-disk event layout; readers refuse datasets of another major version.
SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True)
class VertexSpread:
    """Gaussian luminous region: widths of the interaction-vertex distribution.

    sigma_xy : transverse width in mm (LHC: ~0.01-0.02 mm).
    sigma_z : longitudinal width in mm (LHC Run 3: ~35-50 mm).
    sigma_t : time spread in ns (0: all interactions at t = 0; HL-LHC: ~0.18 ns).
    """

    sigma_xy: float = 0.015
    sigma_z: float = 50.0
    sigma_t: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ConfigError(
                    f"vertex spread {f.name} must be a finite number >= 0; got {v!r}."
                )


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """Everything that determines a generated dataset (same config + seed -> same bytes).

    process : name in the process catalogue (``colliderlab generate --list``).
    n_events : number of events (> 0).
    seed : master seed; chunk ``i`` uses ``SeedSequence(seed).spawn(n_chunks)[i]``.
    params : process parameters (e.g. ``{"pthat_min": 500}``).
    settings : extra Pythia settings ``"Key = Value"``, applied after the process's own.
    pileup : mean number of minimum-bias interactions overlaid per event (Poisson).
    chunk_size : events per chunk file (memory per worker scales with it).
    vertex : luminous-region spread applied to every interaction.
    format : ``"parquet"`` (default) or ``"root"``.
    """

    process: str
    n_events: int
    seed: int = 1
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    settings: tuple[str, ...] = ()
    pileup: float = 0.0
    chunk_size: int = 500
    vertex: VertexSpread = dataclasses.field(default_factory=VertexSpread)
    format: str = "parquet"

    def __post_init__(self) -> None:
        if (
            isinstance(self.n_events, bool)
            or not isinstance(self.n_events, int)
            or self.n_events <= 0
        ):
            raise ConfigError(
                f"the number of events must be a positive integer; got {self.n_events!r}. "
                "Use e.g. -n 1000."
            )
        if not isinstance(self.chunk_size, int) or self.chunk_size <= 0:
            raise ConfigError(f"chunk_size must be a positive integer; got {self.chunk_size!r}.")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0; got {self.seed!r}.")
        if not (math.isfinite(self.pileup) and self.pileup >= 0):
            raise ConfigError(f"pile-up mu must be a finite number >= 0; got {self.pileup!r}.")
        if self.format not in FORMATS:
            raise ConfigError(
                f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}."
            )
        object.__setattr__(self, "settings", tuple(normalise_setting(s) for s in self.settings))
        # Resolve now: unknown process / parameter errors surface before any work starts.
        params, _ = get_process(self.process).resolve(self.params)
        object.__setattr__(self, "params", params)

    @property
    def n_chunks(self) -> int:
        return -(-self.n_events // self.chunk_size)

    def chunk_events(self, index: int) -> int:
        """Number of events in chunk ``index``."""
        return min(self.chunk_size, self.n_events - index * self.chunk_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["settings"] = list(self.settings)
        d["params"] = dict(self.params)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GenerationConfig:
        d = dict(d)
        d["vertex"] = VertexSpread(**d.get("vertex", {}))
        d["settings"] = tuple(d.get("settings", ()))
        return cls(**d)

    def digest(self) -> str:
        """sha256 of the canonical JSON of the config: the identity of the dataset."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def normalise_setting(s: str) -> str:
    """``"Key=Value"`` -> ``"Key = Value"``; a string without ``=`` is a clear error."""
    if not isinstance(s, str) or "=" not in s:
        raise ConfigError(
            f"a Pythia setting must look like 'Key = Value' (e.g. 'PhaseSpace:pTHatMin = 200'); "
            f"got {s!r}."
        )
    key, _, value = s.partition("=")
    if not key.strip() or not value.strip():
        raise ConfigError(f"a Pythia setting needs a key and a value; got {s!r}.")
    return f"{key.strip()} = {value.strip()}"


def parse_assignments(items: Sequence[str], what: str) -> dict[str, str]:
    """Parse ``["a=1", "b=x"]`` from the command line into a dict (clear error otherwise)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} must look like NAME=VALUE; got {item!r}.")
        out[key.strip()] = value.strip()
    return out
