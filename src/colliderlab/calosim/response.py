"""Calorimeter response of single electromagnetic particles, for the detector simulation.

A :class:`CaloResponse` turns incident photons and electrons (energies in GeV) into their
reconstructed, calibrated calorimeter energies (GeV), one independent shower per particle:

* :class:`ReferenceResponse` simulates the showers with the reference simulation
  (:func:`~colliderlab.calosim.shower.simulate_showers`, normal incidence) and sums the voxels;
* :class:`ModelResponse` samples them from a trained generative model (a training directory
  of :func:`~colliderlab.calosim.train.train`) and sums the voxels.

Both divide the visible sum by the same calibration: the mean visible fraction (sum of the
voxels / incident energy, the sampling fraction less the leakage) of the *reference*
simulation for the geometry and particle, :data:`CALIBRATION` (measured with
:func:`measure_calibration`). So the reference response is unbiased, and a model that gets
the energy scale wrong shows it as a scale different from 1.

A model is trained on showers of one particle (``calosim.json`` in its directory, written by
``colliderlab train calosim``, says which; otherwise the directory name
``GEOMETRY-PARTICLE/MODEL`` does): it is used for photons and electrons alike, with the
calibration of that particle. Energies outside the response's range (the model's
conditioning range, 1 GeV - 1 TeV by default; the same for the reference, where the
reference simulation is validated) are refused with :class:`ConfigError`; callers such as the
detector simulation select the particles inside :meth:`CaloResponse.in_range` first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from colliderlab.calosim.geometry import CaloGeometry, geometry_names, get_geometry
from colliderlab.calosim.shower import GEV, simulate_showers
from colliderlab.core.errors import ConfigError, DatasetError

#: Particles a response accepts.
RESPONSE_PARTICLES = ("e-", "gamma")
#: Default energy range of the reference response, GeV (where the reference is validated).
E_MIN_GEV, E_MAX_GEV = 1.0, 1000.0
#: File of a training directory naming the geometry and particle of its showers.
RUN_INFO = "calosim.json"
#: Energies (GeV) and showers per energy of :func:`measure_calibration`.
CALIBRATION_ENERGIES = (4.0, 16.0, 64.0, 256.0)
CALIBRATION_SHOWERS = 500

#: Mean visible fraction of the reference simulation per (geometry, particle), measured with
#: ``measure_calibration(geometry, particle)`` (500 showers at each of 4, 16, 64, 256 GeV,
#: seed 1; statistical uncertainty < 0.05%). Checked in tests/test_calosim_loop.py.
CALIBRATION = {
    ("atlas5", "e-"): 0.216298,
    ("atlas5", "gamma"): 0.216331,
    ("challenge", "e-"): 0.0252513,
    ("challenge", "gamma"): 0.0252475,
}


def measure_calibration(
    geometry: str | CaloGeometry,
    particle: str,
    *,
    energies_gev=CALIBRATION_ENERGIES,
    n: int = CALIBRATION_SHOWERS,
    seed: int = 1,
) -> float:
    """Mean visible fraction (sum of voxels / incident energy) of the reference simulation:
    the average over ``energies_gev`` (GeV) of the mean over ``n`` showers at each energy."""
    _check_particle(particle)
    means = []
    for k, e in enumerate(energies_gev):
        e_mev = np.full(int(n), float(e) * GEV)
        showers = simulate_showers(
            geometry, particle, e_mev, seed=np.random.SeedSequence([seed, k])
        )
        means.append(float(np.mean(showers.sum(axis=1, dtype=np.float64) / e_mev)))
    return float(np.mean(means))


def calibration(geometry: str | CaloGeometry, particle: str) -> float:
    """The calibration (mean visible fraction) of the reference simulation: from
    :data:`CALIBRATION` for a registered geometry, else measured (once per call)."""
    _check_particle(particle)
    geom = get_geometry(geometry)
    key = (geom.name, particle)
    if key in CALIBRATION and get_geometry(geom.name) == geom:
        return CALIBRATION[key]
    return measure_calibration(geom, particle)


def _check_particle(particle: str) -> None:
    if particle not in RESPONSE_PARTICLES:
        raise ConfigError(
            f"particle {particle!r} has no calorimeter response here; valid: "
            f"{', '.join(RESPONSE_PARTICLES)} (photons and electrons)."
        )


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CaloResponse:
    """Reconstructed calorimeter energy of single photons/electrons (base class).

    Subclasses implement :meth:`visible` (the summed voxel energies, MeV) and set ``name``,
    ``geometry``, ``e_min``, ``e_max`` (GeV) and ``trained_on`` (the particle whose
    calibration applies; None: each particle its own).
    """

    name: str
    geometry: CaloGeometry
    e_min: float = E_MIN_GEV
    e_max: float = E_MAX_GEV
    trained_on: str | None = None

    def visible(self, energies_gev: np.ndarray, particle: str, seed: int) -> np.ndarray:
        """(n,) visible energies (sum of the voxels), MeV, of showers of ``energies_gev``."""
        raise NotImplementedError

    def calibration(self, particle: str) -> float:
        """Visible fraction that the response divides by (the reference's, see module)."""
        _check_particle(particle)
        return calibration(self.geometry, self.trained_on or particle)

    def in_range(self, energies_gev) -> np.ndarray:
        """Mask of the energies (GeV) inside ``[e_min, e_max]``."""
        e = np.asarray(energies_gev, dtype=float)
        return (e >= self.e_min) & (e <= self.e_max)

    def __call__(self, energies_gev, particle: str, *, seed: int) -> np.ndarray:
        """Calibrated energies (n,) in GeV of particles of ``energies_gev`` (n,) GeV.

        Raises:
            ConfigError: an unknown particle, or an energy outside ``[e_min, e_max]``.
        """
        _check_particle(particle)
        e = np.asarray(energies_gev, dtype=float).reshape(-1)
        if len(e) == 0:
            return np.zeros(0)
        bad = ~self.in_range(e)
        if bad.any():
            raise ConfigError(
                f"{self.name}: incident energies must lie in [{self.e_min:g}, {self.e_max:g}] "
                f"GeV (the range the response was trained or validated for); got "
                f"{int(bad.sum())} outside (e.g. {e[bad][0]:g} GeV). Select them with "
                "in_range() and treat them otherwise."
            )
        vis = np.asarray(self.visible(e, particle, int(seed)), dtype=float)
        return vis / GEV / self.calibration(particle)

    def digest(self) -> str:
        """sha256 identifying the response (changes with the model or the calibration)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, geometry={self.geometry.name!r}, "
            f"range=[{self.e_min:g}, {self.e_max:g}] GeV)"
        )


class ReferenceResponse(CaloResponse):
    """Showers of the reference simulation in ``geometry`` (default ``atlas5``, Pb/LAr)."""

    def __init__(
        self,
        geometry: str | CaloGeometry = "atlas5",
        *,
        e_min: float = E_MIN_GEV,
        e_max: float = E_MAX_GEV,
    ) -> None:
        self.geometry = get_geometry(geometry)
        if not 0 < e_min < e_max:
            raise ConfigError(f"need 0 < e_min < e_max (GeV); got {e_min}, {e_max}.")
        self.e_min, self.e_max = float(e_min), float(e_max)
        self.name = f"reference:{self.geometry.name}"

    def visible(self, energies_gev, particle, seed):
        showers = simulate_showers(
            self.geometry, particle, np.asarray(energies_gev) * GEV, seed=seed
        )
        return showers.sum(axis=1, dtype=np.float64)

    def digest(self) -> str:
        from colliderlab import __version__

        blob = {
            "response": "reference",
            "geometry": self.geometry.name,
            "range": [self.e_min, self.e_max],
            "calibration": [self.calibration(p) for p in RESPONSE_PARTICLES],
            "version": __version__,  # the reference simulation changes with the package
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def write_run_info(out_dir: str | os.PathLike[str], geometry: str, particle: str) -> Path:
    """Record beside a training the geometry and particle of its showers (``calosim.json``)."""
    from colliderlab.core.files import write_json

    path = Path(out_dir) / RUN_INFO
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"geometry": get_geometry(geometry).name, "particle": particle})
    return path


def _geometry_of_voxels(n_voxels: int) -> str | None:
    found = [g for g in geometry_names() if get_geometry(g).n_voxels == n_voxels]
    return found[0] if len(found) == 1 else None


class ModelResponse(CaloResponse):
    """Showers sampled from the trained model in ``run_dir`` (its last checkpoint).

    Args:
        run_dir: a training directory (``checkpoint.pt``).
        geometry: the geometry the model must belong to (None: the one of its voxel count).
        particle: the particle of its training showers (None: ``calosim.json``, else the
            directory name ``GEOMETRY-PARTICLE/MODEL``).
        batch_size: showers sampled at once.
        threads: torch threads while sampling (restored afterwards).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        geometry: str | CaloGeometry | None = None,
        particle: str | None = None,
        batch_size: int = 2048,
        threads: int = 1,
    ) -> None:
        from colliderlab.calosim.train import CHECKPOINT, load_model

        self.run_dir = Path(run_dir)
        ckpt = self.run_dir / CHECKPOINT
        if not ckpt.is_file():
            raise ConfigError(
                f"calo model {str(run_dir)!r}: no {CHECKPOINT} there. Give a training directory "
                "of `colliderlab train calosim` (or 'reference' for the reference shower "
                "simulation)."
            )
        self.batch_size, self.threads = int(batch_size), int(threads)
        with _torch_threads(self.threads):
            try:
                self.model = load_model(self.run_dir)
            except DatasetError as err:
                raise ConfigError(f"calo model {str(run_dir)!r}: {err}") from err
        n_vox = int(self.model.n_voxels)
        info = self._run_info()
        own = _geometry_of_voxels(n_vox)
        for source, want in (("calosim.json", info.get("geometry")), ("geometry", geometry)):
            if want is None:
                continue
            geom = get_geometry(want)
            if geom.n_voxels != n_vox:
                raise ConfigError(
                    f"calo model {str(ckpt)!r} generates showers of {n_vox} voxels"
                    f"{f' (geometry {own!r})' if own else ''}, but {source} asks for geometry "
                    f"{geom.name!r} ({geom.n_voxels} voxels). Use a model trained on "
                    f"{geom.name!r} showers, or the geometry of this one."
                )
        name = geometry or info.get("geometry") or own
        if name is None:
            raise ConfigError(
                f"calo model {str(ckpt)!r} generates showers of {n_vox} voxels, which matches no "
                f"registered geometry ({', '.join(geometry_names())}); pass geometry=."
            )
        self.geometry = get_geometry(name)
        particle = particle or info.get("particle") or self._particle_from_name()
        if particle is None:
            raise ConfigError(
                f"calo model {str(run_dir)!r}: which particle was it trained on? Write "
                f'{RUN_INFO} there ({{"geometry": ..., "particle": "gamma"}}, see '
                "write_run_info) or pass particle=."
            )
        _check_particle(particle)
        self.trained_on = particle
        self.e_min = self.model.e_min / GEV
        self.e_max = self.model.e_max / GEV
        self.name = str(self.run_dir)
        self._ckpt = ckpt

    def _run_info(self) -> dict:
        path = self.run_dir / RUN_INFO
        if not path.is_file():
            return {}
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path} is not readable JSON ({err}); rewrite it.") from err
        if not isinstance(info, dict):
            raise ConfigError(f"{path} must hold an object with geometry and particle.")
        return info

    def _particle_from_name(self) -> str | None:
        m = re.fullmatch(r"(.+)-(e-|gamma)", self.run_dir.resolve().parent.name)
        return m.group(2) if m else None

    def visible(self, energies_gev, particle, seed):
        import torch

        e_mev = torch.as_tensor(np.asarray(energies_gev) * GEV, dtype=torch.float32)
        out = []
        with _torch_threads(self.threads):
            for k, i in enumerate(range(0, len(e_mev), self.batch_size)):
                x = self.model.sample(e_mev[i : i + self.batch_size], seed=seed + k)
                out.append(x.double().sum(dim=1).numpy())
        return np.concatenate(out)

    def digest(self) -> str:
        h = hashlib.sha256()
        with open(self._ckpt, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(json.dumps([self.geometry.name, self.trained_on, self.e_min, self.e_max]).encode())
        h.update(repr(self.calibration(self.trained_on)).encode())
        return h.hexdigest()


def get_response(spec: str | os.PathLike[str] | CaloResponse, **kwargs) -> CaloResponse:
    """The response named by ``spec``: ``"reference"`` (reference simulation in ``atlas5``),
    ``"reference:GEOMETRY"``, a training directory (:class:`ModelResponse`, ``kwargs`` go to
    it) or a :class:`CaloResponse` (passed through)."""
    if isinstance(spec, CaloResponse):
        return spec
    text = str(spec)
    if text == "reference" or text.startswith("reference:"):
        geometry = text.partition(":")[2] or "atlas5"
        return ReferenceResponse(geometry)
    return ModelResponse(text, **kwargs)
