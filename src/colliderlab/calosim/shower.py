"""Reference ("full") shower simulation: stochastic, spot-based, in a sampling calorimeter.

This plays the role that Geant4 plays for the CaloChallenge datasets: it produces the
voxelised showers, ``(n, n_voxels)`` float32 arrays of the energy (MeV) deposited in the
active material, that the generative models learn. It is a parametrised simulation in the
spirit of GFlash, but every shower is drawn with its own fluctuations, down to the level of
single energy spots.

Electromagnetic showers (``e-``, ``gamma``) - Grindhammer & Peters, arXiv:hep-ex/0001020,
with the numbers of the Geant4 GFlash tuning (``GVFlashHomoShowerTuning``,
``GFlashSamplingShowerTuning``); ``y = E / E_c``, depths t in X0 and radii in R_M of the
effective medium (:mod:`colliderlab.calosim.material`):

- per shower, ``ln T`` (T = depth of the maximum) and ``ln alpha`` (the Gamma-profile shape)
  are drawn from correlated normal distributions: means
  ``<T_hom> = ln y - 0.812``, ``<alpha_hom> = 0.81 + (0.458 + 2.26 / Z) ln y``, shifted for the
  sampling structure by ``-0.55 F_S^-1 - 0.69 (1 - e/mip)`` (T) and ``-0.476 F_S^-1`` (alpha);
  widths ``sigma(ln T) = 1 / (-2.5 + 1.25 ln y)``, ``sigma(ln alpha) = 1 / (-0.82 + 0.79 ln y)``;
  correlation ``0.784 - 0.023 ln y``. The profile is ``dE/dt ~ (beta t)^(alpha-1) exp(-beta t)``
  with ``beta = (alpha - 1) / T``;
- the energy is carried by ``N = 93.6 (E/GeV)^0.959`` spots (GFlash's sampling spot number,
  10.3 / 0.11 E^0.959), each with depth drawn from the shower's profile, azimuth uniform and
  radius from the two-component profile
  ``f(r) = p 2 r R_C^2 / (r^2 + R_C^2)^2 + (1 - p) 2 r R_T^2 / (r^2 + R_T^2)^2``, whose core
  radius R_C, tail radius R_T and core weight p depend on E and on the depth
  ``tau = t / <t>`` (GFlash homogeneous radial parameters plus the sampling corrections in
  F_S^-1 and 1 - e/mip);
- sampling fluctuations at spot level: the visible energy of a spot carrying e (GeV) is
  ``f_e * Gamma(shape = e / a^2, scale = a^2)``, so the visible sum over a shower fluctuates
  exactly as ``a / sqrt(E)`` (a: the calorimeter's stochastic term). A per-shower response
  factor ``1 + b z`` (z normal; b: the constant term, local response non-uniformity) adds the
  constant term: ``sigma / E = a / sqrt(E) (+) b`` (plus leakage);
- a photon first converts after a depth drawn from an exponential of mean 9/7 X0; the shower
  then develops as an electron's.

Charged pions (``pi+``, ``pi-``), a parametric model with the large event-by-event
fluctuations of hadron showers:

- the pion travels as a mip (visible ``f_mip dE/dx`` per mm, along the axis) up to its first
  nuclear interaction, at a depth drawn from an exponential of mean lambda_I; if that is
  beyond the back of the calorimeter it punches through, if it is beyond its range (kinetic
  energy / dE/dx) it stops. The cascade gets the kinetic energy (``E - m_pi``, m_pi from the
  ``particle`` package) minus what the mip lost. ``pi+`` and ``pi-`` are simulated alike;
- the electromagnetic fraction (pi0s) is drawn per event from a Beta distribution of mean
  ``1 - (E/E0)^(m-1)`` (Groom's parametrisation, E0 = 1 GeV, m = 0.83; PDG review
  "Calorimetry") and width 0.10; it is split (Dirichlet) into ``1 + Poisson(0.7 ln(1 + E_em))``
  photon sub-showers, each starting after an exponential of mean 0.2 lambda_I plus the 9/7 X0
  conversion depth, displaced sideways by that distance times an angle ~ 0.3 GeV / E_sub, and
  simulated as above;
- the non-electromagnetic part follows a Gamma profile in lambda_I units from the interaction
  point, ``a = 0.6165 + 0.3183 ln(E/GeV)`` (times a log-normal factor of width 0.25 per
  event) and ``b = 0.9099 - 0.0237 ln(E/GeV)`` per lambda (Bock et al., NIM 186 (1981) 533),
  a radial profile ``2 r R_h^2 / (r^2 + R_h^2)^2`` with ``R_h = lambda_I (0.12 + 0.08 tau)``
  (tau: depth after the interaction, in lambda_I; 95% of the energy within about one
  lambda_I), 50 (E/GeV)^0.959 spots, and a visible energy scaled by h/e (non-compensation)
  with spot-level fluctuations ``Gamma(e / a_h^2, a_h^2)`` (a_h: the calorimeter's hadronic
  stochastic term, intrinsic + sampling).

Measured with this module in lead / liquid argon (tests/test_calosim_shower.py; ``atlas5``
for the energy scans): electrons sigma/E = 9.8% / sqrt(E) (+) 0.7% (the calorimeter's a = 9.9%,
b = 0.7%) and a response of 0.216 (= f_e) within 1% from 1 GeV to 1 TeV; depth of the maximum
of the mean profile ln(E/E_c) - 1.2 +- 0.1 X0 for electrons (slope 0.99 in ln E) and 1.2-1.4 X0
deeper for photons; 91% of the energy within 1 R_M and 97% within 2 R_M. Pions: sigma/E ~
55% / sqrt(E) (+) 7%, response pi/e = 0.73 at 4 GeV rising to 0.83 at 256 GeV.

Geometry and incidence angle: the particle enters the front face at the origin with
direction ``(sin theta, 0, cos theta)``. A deposit at distance ``s`` along the shower axis and
transverse offsets ``(u, v)`` (u along ``(cos theta, 0, -sin theta)``, v along y) lies at depth
``z = s cos(theta) - u sin(theta)``; its layer follows from z, its voxel from
``r = hypot(u, v)`` and ``alpha = atan2(v, u)``: the voxel grid of each layer lies in the plane
transverse to the particle direction, centred on the shower axis (as the Par04 readout mesh
that follows the particle direction). Deposits outside the voxels (beyond the last radial
edge, behind the last layer or in front of the first) are lost: leakage.

Randomness: every shower has its own counter-based stream (Philox, keyed by the seed,
counter = shower index), so the output depends on the seed and the inputs only, not on how
the work is split into blocks. Spots are processed vectorised in batches of at most
``MAX_SPOTS_PER_BATCH`` (memory stays bounded) and binned with ``np.bincount``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from colliderlab._version import __version__
from colliderlab.calosim.geometry import CaloGeometry, get_geometry
from colliderlab.calosim.material import SamplingCalorimeter
from colliderlab.core.errors import ConfigError, OutputError, did_you_mean
from colliderlab.core.files import atomic_path

logger = logging.getLogger(__name__)

#: Particles the reference simulation knows.
PARTICLES = ("e-", "gamma", "pi+", "pi-")
_EM_PARTICLES = ("e-", "gamma")

#: MeV per GeV.
GEV = 1000.0
#: Largest accepted incidence angle, rad.
MAX_THETA = 1.0
#: Spots handled in one vectorised batch (bounds the memory to ~ 100-200 MB).
MAX_SPOTS_PER_BATCH = 1_000_000

# GFlash longitudinal parameters (individual profiles): homogeneous medium ...
_T_HOM = -0.812  # <T_hom> = ln y + t1
_A_HOM = (0.81, 0.458, 2.26)  # <alpha_hom> = a1 + (a2 + a3 / Z) ln y
# ... and the sampling-calorimeter corrections and fluctuations.
_T_SAM = (-0.55, -0.69)  # T_sam = T_hom + t1 F_S^-1 + t2 (1 - e/mip)
_A_SAM = -0.476  # alpha_sam = alpha_hom + a1 F_S^-1
_SIG_T = (-2.5, 1.25)  # 1 / sigma(ln T) = s1 + s2 ln y
_SIG_A = (-0.82, 0.79)  # 1 / sigma(ln alpha) = s1 + s2 ln y
_RHO = (0.784, -0.023)  # corr(ln T, ln alpha) = r1 + r2 ln y
# GFlash radial parameters (homogeneous) and sampling corrections.
_RC = (0.0251, 0.00319, 0.1162, -0.000381)  # R_C = z1 + z2 tau, z1 = c1 + c2 ln E, z2 = c3 + c4 Z
_RT = (0.659, -0.00309, 0.645, -2.59, 0.3585, 0.0412)  # R_T = k1 (e^{k3(tau-k2)} + e^{k4(tau-k2)})
_WC = (2.632, -0.00094, 0.401, 0.00187, 1.313, -0.0686)  # p = p1 exp((p2-tau)/p3 - e^{(p2-tau)/p3})
_RC_SAM = (-0.0203, 0.0397)  # R_C += c1 (1 - e/mip) + c2 F_S^-1 e^-tau
_RT_SAM = (-0.14, -0.495)  # R_T += t1 (1 - e/mip) + t2 F_S^-1 e^-tau
_WC_SAM = (0.348, -0.642)  # p += (1 - e/mip) (c1 + c2 F_S^-1 e^{-(tau-1)^2})
# Spots: N = n1 (E/GeV)^n2 (GFlash sampling tuning: 10.3 / 0.11 and 0.959).
_SPOTS_N1 = 10.3 / 0.11
_SPOTS_N2 = 0.959
_MIN_SPOTS = 4
#: Mean depth of the first photon conversion, X0.
GAMMA_CONVERSION_X0 = 9.0 / 7.0

# Hadron showers.
_GROOM_E0 = 1.0  # GeV
_GROOM_M = 0.83
_FEM_SIGMA = 0.10
_SUB_MEAN = 0.7  # pi0 sub-showers: 1 + Poisson(0.7 ln(1 + E_em / GeV))
_SUB_MAX = 12
_SUB_DELAY_LAMBDA = 0.2  # sub-shower start: exponential of mean 0.2 lambda after the interaction
_SUB_PT = 0.3  # GeV: transverse momentum scale of the pi0s
_BOCK_A = (0.6165, 0.3183)
_BOCK_D = (0.9099, -0.0237)
_HAD_A_SPREAD = 0.25
_HAD_R = (0.12, 0.08)  # R_h = lambda (r1 + r2 tau)
_HAD_SPOTS_N1 = 50.0


# ====================================================================== public helpers
def sample_incident_energies(
    n: int,
    *,
    e_min: float = 1e3,
    e_max: float = 1e6,
    seed: int | np.random.SeedSequence | np.random.Generator,
) -> np.ndarray:
    """``n`` incident energies (MeV), log-uniform in [e_min, e_max] (float64, shape (n,)).

    The CaloChallenge datasets 2 and 3 use 1 GeV - 1 TeV log-uniform, the defaults here.
    """
    n = _check_count(n, "n")
    _check_energy_range(e_min, e_max)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return np.exp(rng.uniform(math.log(e_min), math.log(e_max), n))


def simulate_showers(
    geometry: str | CaloGeometry,
    particle: str,
    energies,
    *,
    theta=0.0,
    seed: int | np.random.SeedSequence | np.random.Generator,
    block: int = 1000,
) -> np.ndarray:
    """Simulate one shower per incident energy; returns (n, n_voxels) float32, MeV.

    Parameters
    ----------
    geometry:
        A :class:`~colliderlab.calosim.geometry.CaloGeometry` or a registered name
        (``"challenge"``, ``"atlas5"``).
    particle:
        ``"e-"``, ``"gamma"``, ``"pi+"`` or ``"pi-"``.
    energies:
        Incident energies, MeV, shape (n,) (or (n, 1)); finite and positive.
    theta:
        Incidence angle to the detector axis, rad (a number or one per shower), at most
        ``MAX_THETA`` in magnitude.
    seed:
        int, ``SeedSequence`` or ``Generator`` (a Generator is advanced once to derive the key).
        Same seed and inputs give the same array, whatever ``block``.
    block:
        Most showers handled at once (memory); does not change the result.

    Returns
    -------
    numpy.ndarray
        Visible energy (deposited in the active layers), MeV, per voxel in the CaloChallenge
        order of the geometry.
    """
    geom = get_geometry(geometry)
    _check_particle(particle)
    e_mev = _check_energies(energies)
    th = _check_theta(theta, len(e_mev))
    block = _check_count(block, "block", minimum=1)
    key = _stream_key(seed)
    return _simulate(geom, particle, e_mev, th, key, first_index=0, block=block)


# ====================================================================== input checks
def _check_count(n, what: str, minimum: int = 0) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}; got {n!r}")
    return int(n)


def _check_energy_range(e_min: float, e_max: float) -> None:
    if not (0 < e_min <= e_max) or not math.isfinite(e_max):
        raise ConfigError(
            f"e_min and e_max must satisfy 0 < e_min <= e_max (MeV); got e_min={e_min!r}, "
            f"e_max={e_max!r}"
        )


def _check_particle(particle: str) -> None:
    if particle not in PARTICLES:
        raise ConfigError(
            f"unknown particle {particle!r}.{did_you_mean(str(particle), PARTICLES)} "
            f"The reference simulation knows: {', '.join(PARTICLES)}."
        )


def _check_energies(energies) -> np.ndarray:
    e = np.asarray(energies, dtype=float)
    if e.ndim == 2 and e.shape[1] == 1:
        e = e[:, 0]
    if e.ndim != 1:
        raise ConfigError(
            f"energies must be a 1-d array of incident energies in MeV (or (n, 1)); got shape "
            f"{e.shape}"
        )
    bad = ~(np.isfinite(e) & (e > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"energies must be finite and > 0 (MeV); energies[{i}] = {e[i]!r} "
            f"({int(bad.sum())} bad values in all)"
        )
    return e


def _check_theta(theta, n: int) -> np.ndarray:
    th = np.asarray(theta, dtype=float)
    if th.ndim == 0:
        th = np.full(n, float(th))
    if th.shape != (n,):
        raise ConfigError(
            f"theta must be a number or one angle per shower (shape ({n},)); got shape {th.shape}"
        )
    if not np.all(np.isfinite(th)) or np.any(np.abs(th) > MAX_THETA):
        raise ConfigError(
            f"theta (rad) must be finite with |theta| <= {MAX_THETA}; got values from "
            f"{np.nanmin(th) if n else 0:.3g} to {np.nanmax(th) if n else 0:.3g}"
        )
    return th


def _stream_key(seed) -> np.ndarray:
    """The 128-bit Philox key of a seed (int, SeedSequence or Generator)."""
    if isinstance(seed, np.random.Generator):
        seq = np.random.SeedSequence(int(seed.integers(0, 2**63)))
    elif isinstance(seed, np.random.SeedSequence):
        seq = seed
    elif isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0:
        seq = np.random.SeedSequence(int(seed))
    else:
        raise ConfigError(
            f"seed must be a non-negative int, a numpy SeedSequence or Generator; got {seed!r}"
        )
    return seq.generate_state(2, dtype=np.uint64)


def _event_rng(key: np.ndarray, index: int) -> np.random.Generator:
    """The stream of shower ``index``: Philox with the seed's key, counter word 2 = index."""
    return np.random.Generator(np.random.Philox(key=key, counter=int(index) << 128))


# ====================================================================== binning tables
@dataclasses.dataclass(frozen=True)
class _Binning:
    z_edges: np.ndarray  # (n_layers + 1,) mm
    n_layers: int
    n_voxels: int
    offsets: np.ndarray  # (n_layers,)
    n_r: np.ndarray  # (n_layers,)
    n_alpha: np.ndarray  # (n_layers,)
    uniform_dr: float  # > 0 when every layer has the same equally spaced radial edges
    r_keys: np.ndarray  # concatenated r edges, layer k shifted by k * _R_SHIFT
    r_first: np.ndarray  # index of each layer's first edge in r_keys

    @classmethod
    def of(cls, geom: CaloGeometry) -> _Binning:
        r_edges = [np.asarray(r, dtype=float) for r in geom.r_edges]
        first = r_edges[0]
        steps = np.diff(first)
        uniform = all(len(r) == len(first) and np.allclose(r, first) for r in r_edges) and bool(
            np.allclose(steps, steps[0])
        )
        keys = np.concatenate([r + k * _R_SHIFT for k, r in enumerate(r_edges)])
        starts = np.concatenate([[0], np.cumsum([len(r) for r in r_edges])[:-1]])
        return cls(
            z_edges=np.asarray(geom.layer_edges, dtype=float),
            n_layers=geom.n_layers,
            n_voxels=geom.n_voxels,
            offsets=np.asarray(geom.layer_offsets[:-1], dtype=np.int64),
            n_r=np.asarray(geom.n_radial, dtype=np.int64),
            n_alpha=np.asarray(geom.n_alpha, dtype=np.int64),
            uniform_dr=float(steps[0]) if uniform else 0.0,
            r_keys=keys,
            r_first=starts.astype(np.int64),
        )


_R_SHIFT = 1.0e7  # mm; larger than any radial edge


def _voxels(tab: _Binning, z, r, alpha) -> np.ndarray:
    """Voxel index of each deposit, ``tab.n_voxels`` (the overflow slot) when outside."""
    layer = np.searchsorted(tab.z_edges, z, side="right") - 1
    inside = (layer >= 0) & (layer < tab.n_layers)
    layer = np.clip(layer, 0, tab.n_layers - 1)
    n_r = tab.n_r[layer]
    if tab.uniform_dr > 0:
        rbin = np.floor(r * (1.0 / tab.uniform_dr))
        inside &= rbin < n_r
        rbin = np.minimum(rbin, n_r - 1).astype(np.int64)
    else:
        rr = np.minimum(r, 0.5 * _R_SHIFT)
        rbin = np.searchsorted(tab.r_keys, layer * _R_SHIFT + rr, side="right") - 1
        rbin -= tab.r_first[layer]
        inside &= rbin < n_r
    n_a = tab.n_alpha[layer]
    abin = np.minimum(((alpha + math.pi) * (1.0 / (2 * math.pi)) * n_a).astype(np.int64), n_a - 1)
    vox = tab.offsets[layer] + abin * n_r + rbin
    return np.where(inside, vox, tab.n_voxels)


# ====================================================================== parameters
def _n_em_spots(e_gev) -> np.ndarray:
    return np.maximum(np.ceil(_SPOTS_N1 * np.power(e_gev, _SPOTS_N2)), _MIN_SPOTS).astype(np.int64)


def _n_had_spots(e_gev) -> np.ndarray:
    return np.maximum(np.ceil(_HAD_SPOTS_N1 * np.power(e_gev, _SPOTS_N2)), _MIN_SPOTS).astype(
        np.int64
    )


def _em_profiles(cal: SamplingCalorimeter, e_gev, z1, z2):
    """Per (sub-)shower Gamma-profile parameters (T in X0, alpha, beta per X0, tau factor)."""
    ly = np.log(np.maximum(e_gev * GEV / cal.critical_energy, 2.0))
    fs_inv, one_m_ehat, z = cal.inverse_sampling_frequency, 1.0 - cal.e_over_mip, cal.z_eff
    t_hom = ly + _T_HOM
    a_hom = _A_HOM[0] + (_A_HOM[1] + _A_HOM[2] / z) * ly
    t_mean = np.maximum(t_hom + _T_SAM[0] * fs_inv + _T_SAM[1] * one_m_ehat, 0.5)
    a_mean = np.maximum(a_hom + _A_SAM * fs_inv, 1.2)
    sig_t = 1.0 / np.maximum(_SIG_T[0] + _SIG_T[1] * ly, 2.0)
    sig_a = 1.0 / np.maximum(_SIG_A[0] + _SIG_A[1] * ly, 2.0)
    rho = np.clip(_RHO[0] + _RHO[1] * ly, -0.99, 0.99)
    c1, c2 = np.sqrt(0.5 * (1 + rho)), np.sqrt(0.5 * (1 - rho))
    t_max = np.maximum(np.exp(np.log(t_mean) + sig_t * (c1 * z1 + c2 * z2)), 1.0)
    alpha = np.maximum(np.exp(np.log(a_mean) + sig_a * (c1 * z1 - c2 * z2)), 1.1)
    beta = (alpha - 1.0) / t_max
    # tau = t / <t>_shower scaled to the average profile (as GFlash's ComputeTau)
    tau_factor = beta / alpha * a_mean / (a_mean - 1.0)
    return alpha, beta, tau_factor


def _em_radii(cal: SamplingCalorimeter, log_e, tau, u_core, u_r):
    """Radii (in R_M) of spots at depths ``tau`` of showers with ln(E/GeV) = ``log_e``."""
    fs_inv, one_m_ehat, z = cal.inverse_sampling_frequency, 1.0 - cal.e_over_mip, cal.z_eff
    e_tau = np.exp(-tau)
    r_core = (
        (_RC[0] + _RC_SAM[0] * one_m_ehat)
        + _RC[1] * log_e
        + (_RC[2] + _RC[3] * z) * tau
        + (_RC_SAM[1] * fs_inv) * e_tau
    )
    k1 = _RT[0] + _RT[1] * z
    k4 = _RT[4] + _RT[5] * log_e
    r_tail = (
        k1 * (np.exp(_RT[3] * (tau - _RT[2])) + np.exp(k4 * (tau - _RT[2])))
        + _RT_SAM[0] * one_m_ehat
        + (_RT_SAM[1] * fs_inv) * e_tau
    )
    x = (_WC[2] + _WC[3] * z - tau) / (_WC[4] + _WC[5] * log_e)
    p = (_WC[0] + _WC[1] * z) * np.exp(x - np.exp(x)) + one_m_ehat * (
        _WC_SAM[0] + _WC_SAM[1] * fs_inv * np.exp(-((tau - 1.0) ** 2))
    )
    radius = np.where(u_core < p, np.maximum(r_core, 0.01), np.maximum(r_tail, 0.05))
    return radius * np.sqrt(u_r / (1.0 - u_r))


# ====================================================================== per-batch simulation
class _Components:
    """Per-(sub-)shower parameters and per-spot raw random numbers of one batch."""

    def __init__(self) -> None:
        self.em: dict[str, list] = {k: [] for k in ("owner", "e", "start", "u0", "v0", "z1", "z2")}
        self.had: dict[str, list] = {k: [] for k in ("owner", "e", "start", "a", "d")}
        self.mip: dict[str, list] = {k: [] for k in ("owner", "length", "e_vis")}
        self.scale: list[float] = []  # per event: constant-term response factor


class _Constants(NamedTuple):
    """The calorimeter constants that the shower-level draws use."""

    x0: float  # mm
    lam: float  # mm
    b: float  # constant term
    mip_vis: float  # visible mip energy per mm, MeV
    dedx: float  # mip energy loss, MeV/mm
    pion_mass: float  # GeV

    @classmethod
    def of(cls, cal: SamplingCalorimeter, particle: str) -> _Constants:
        return cls(
            x0=cal.radiation_length,
            lam=cal.interaction_length,
            b=cal.constant_term,
            mip_vis=cal.mip_fraction * cal.dedx_mip,
            dedx=cal.dedx_mip,
            pion_mass=_pion_mass_gev() if particle in ("pi+", "pi-") else 0.0,
        )


def _draw_event(
    rng: np.random.Generator,
    i: int,
    particle: str,
    e_gev: float,
    path_max: float,
    k: _Constants,
    comps: _Components,
) -> None:
    """Shower-level random draws of event ``i`` (first pass over its stream)."""
    x0, lam = k.x0, k.lam
    comps.scale.append(1.0 + k.b * float(rng.standard_normal()))
    em = comps.em
    if particle in _EM_PARTICLES:
        z1, z2 = rng.standard_normal(2)
        start = (
            GAMMA_CONVERSION_X0 * x0 * float(rng.standard_exponential())
            if particle == "gamma"
            else 0.0
        )
        for name, v in (("owner", i), ("e", e_gev), ("start", start), ("u0", 0.0), ("v0", 0.0)):
            em[name].append(v)
        em["z1"].append(z1)
        em["z2"].append(z2)
        return
    # ---------------------------------------------------------------- charged pion
    e_kin = max(e_gev - k.pion_mass, 1e-3)
    s_int = lam * float(rng.standard_exponential())
    stop = min(path_max, e_kin * GEV / k.dedx)  # leaves the back, or ranges out
    length = min(s_int, stop)
    comps.mip["owner"].append(i)
    comps.mip["length"].append(length)
    comps.mip["e_vis"].append(k.mip_vis * length)  # MeV
    if s_int >= stop:
        return  # no nuclear interaction: punch-through or a pion that stops
    e_av = max(e_kin - k.dedx * s_int / GEV, 0.0)
    if e_av <= 0.0:
        return
    mean = min(max(1.0 - (max(e_av, 1e-3) / _GROOM_E0) ** (_GROOM_M - 1.0), 0.02), 0.95)
    sigma = min(_FEM_SIGMA, 0.5 * math.sqrt(mean * (1.0 - mean)))
    kappa = mean * (1.0 - mean) / sigma**2 - 1.0
    f_em = float(rng.beta(mean * kappa, (1.0 - mean) * kappa))
    e_em = f_em * e_av
    n_sub = 0
    if e_em > 0.01:
        n_sub = min(1 + int(rng.poisson(_SUB_MEAN * math.log1p(e_em))), _SUB_MAX)
    if n_sub:
        w = rng.standard_exponential(n_sub)
        e_sub = e_em * w / w.sum()
        delay = _SUB_DELAY_LAMBDA * lam * rng.standard_exponential(n_sub)
        delay += GAMMA_CONVERSION_X0 * x0 * rng.standard_exponential(n_sub)
        spread = delay * np.minimum(_SUB_PT / np.maximum(e_sub, 1e-3), 0.5)
        offset = rng.standard_normal((2, n_sub)) * spread
        z = rng.standard_normal((2, n_sub))
        em["owner"].extend([i] * n_sub)
        em["e"].extend(e_sub.tolist())
        em["start"].extend((s_int + delay).tolist())
        em["u0"].extend(offset[0].tolist())
        em["v0"].extend(offset[1].tolist())
        em["z1"].extend(z[0].tolist())
        em["z2"].extend(z[1].tolist())
    e_h = e_av - e_em
    log_e = math.log(max(e_av, 0.05))
    a = max(_BOCK_A[0] + _BOCK_A[1] * log_e, 0.5) * math.exp(
        _HAD_A_SPREAD * float(rng.standard_normal())
    )
    d = max(_BOCK_D[0] + _BOCK_D[1] * log_e, 0.5)
    if e_h > 0.0:
        for name, v in (("owner", i), ("e", e_h), ("start", s_int), ("a", a), ("d", d)):
            comps.had[name].append(v)


@functools.cache
def _pion_mass_gev() -> float:
    """Charged-pion mass, GeV (PDG, through the ``particle`` package)."""
    from particle import Particle

    return Particle.from_name("pi+").mass / GEV


def _arrays(table: dict[str, list]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.int64 if k == "owner" else float) for k, v in table.items()}


def _per_event(owner: np.ndarray, n_events: int) -> list[tuple[int, int]]:
    """For each event, the (first, stop) range of its components (components sorted by owner)."""
    bounds = np.searchsorted(owner, np.arange(n_events + 1))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def _simulate_batch(
    geom: CaloGeometry,
    tab: _Binning,
    particle: str,
    e_mev: np.ndarray,
    theta: np.ndarray,
    key: np.ndarray,
    first_index: int,
) -> np.ndarray:
    """Showers of events ``first_index ... first_index + len(e_mev) - 1``: (n, n_voxels) float64."""
    cal = geom.calorimeter
    x0, lam, rm = cal.radiation_length, cal.interaction_length, cal.moliere_radius
    n_ev = len(e_mev)
    e_gev = e_mev / GEV
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    path_max = geom.depth / cos_t
    consts = _Constants.of(cal, particle)

    # pass 1: shower-level draws, one stream per event
    rngs = [_event_rng(key, first_index + i) for i in range(n_ev)]
    comps = _Components()
    for i, rng in enumerate(rngs):
        _draw_event(rng, i, particle, float(e_gev[i]), float(path_max[i]), consts, comps)
    scale = np.asarray(comps.scale)
    em, had, mip = _arrays(comps.em), _arrays(comps.had), _arrays(comps.mip)

    # vectorised parameters of every component
    em_alpha, em_beta, em_tau = _em_profiles(cal, em["e"], em["z1"], em["z2"])
    em_n = _n_em_spots(em["e"])
    a2 = cal.stochastic_term**2
    em_shape = em["e"] / em_n / a2
    em_vis = cal.sampling_fraction * a2 * GEV * scale[em["owner"]]  # MeV per unit gamma
    had_n = _n_had_spots(had["e"])
    ah2 = cal.hadronic_stochastic_term**2
    had_shape = had["e"] / had_n / ah2
    had_vis = cal.sampling_fraction * cal.h_over_e * ah2 * GEV * scale[had["owner"]]
    mip_n = np.maximum(np.ceil(mip["length"] / x0), 1).astype(np.int64)

    # pass 2: spot-level draws, continuing each event's stream
    em_ranges = _per_event(em["owner"], n_ev)
    had_ranges = _per_event(had["owner"], n_ev)
    mip_ranges = _per_event(mip["owner"], n_ev)
    em_g, em_ge, em_u, had_g, had_ge, had_u, mip_u = [], [], [], [], [], [], []
    f32 = np.float32
    for i, rng in enumerate(rngs):
        lo, hi = em_ranges[i]
        if hi > lo:
            if hi - lo == 1:
                n = int(em_n[lo])
                em_g.append(rng.standard_gamma(em_alpha[lo], n, dtype=f32))
                em_ge.append(rng.standard_gamma(em_shape[lo], n, dtype=f32))
            else:
                counts = em_n[lo:hi]
                em_g.append(rng.standard_gamma(np.repeat(em_alpha[lo:hi], counts), dtype=f32))
                em_ge.append(rng.standard_gamma(np.repeat(em_shape[lo:hi], counts), dtype=f32))
            em_u.append(rng.random((3, int(em_n[lo:hi].sum())), dtype=f32))
        lo, hi = had_ranges[i]
        if hi > lo:
            n = int(had_n[lo])
            had_g.append(rng.standard_gamma(had["a"][lo], n, dtype=f32))
            had_ge.append(rng.standard_gamma(had_shape[lo], n, dtype=f32))
            had_u.append(rng.random((3, n), dtype=f32))
        lo, hi = mip_ranges[i]
        if hi > lo:
            mip_u.append(rng.random((2, int(mip_n[lo])), dtype=f32))

    # vectorised transforms (float32 for the spot arithmetic; sums in float64)
    n_slots = tab.n_voxels + 1
    out = np.zeros(n_ev * n_slots)
    tilted = bool(np.any(theta != 0.0))
    cos32, sin32 = cos_t.astype(f32), sin_t.astype(f32)
    two_pi = f32(2.0 * math.pi)
    pi = f32(math.pi)

    def deposit(owner, s, r, phi, e, du=None, dv=None):
        if tilted:
            if du is None:
                du = r * np.cos(phi)
            z = s * cos32[owner] - du * sin32[owner]
        else:
            z = s
        vox = _voxels(tab, z, r, phi)
        out[:] += np.bincount(owner * n_slots + vox, weights=e, minlength=len(out))

    if em_g:
        comp = np.repeat(np.arange(len(em_n), dtype=np.int32), em_n)
        t = np.concatenate(em_g) * (1.0 / em_beta).astype(f32)[comp]  # X0 from the start
        u = np.concatenate(em_u, axis=1)
        log_e = np.log(np.maximum(em["e"], 1e-2)).astype(f32)
        tau = t * em_tau.astype(f32)[comp]
        r = f32(rm) * _em_radii(cal, log_e[comp], tau, u[0], u[1])
        phi = two_pi * u[2] - pi
        s = em["start"].astype(f32)[comp] + t * f32(x0)
        e = np.concatenate(em_ge) * em_vis.astype(f32)[comp]
        owner = em["owner"][comp]
        if np.any((em["u0"] != 0.0) | (em["v0"] != 0.0)):
            du = r * np.cos(phi) + em["u0"].astype(f32)[comp]
            dv = r * np.sin(phi) + em["v0"].astype(f32)[comp]
            deposit(owner, s, np.hypot(du, dv), np.arctan2(dv, du), e, du, dv)
        else:
            deposit(owner, s, r, phi, e)
    if had_g:
        comp = np.repeat(np.arange(len(had_n), dtype=np.int32), had_n)
        t = np.concatenate(had_g) * (1.0 / had["d"]).astype(f32)[comp]  # lambda from interaction
        u = np.concatenate(had_u, axis=1)
        r = f32(lam) * (f32(_HAD_R[0]) + f32(_HAD_R[1]) * t) * np.sqrt(u[1] / (f32(1.0) - u[1]))
        phi = two_pi * u[2] - pi
        s = had["start"].astype(f32)[comp] + t * f32(lam)
        e = np.concatenate(had_ge) * had_vis.astype(f32)[comp]
        deposit(had["owner"][comp], s, r, phi, e)
    if mip_u:
        comp = np.repeat(np.arange(len(mip_n), dtype=np.int32), mip_n)
        u = np.concatenate(mip_u, axis=1)
        s = u[0] * mip["length"].astype(f32)[comp]
        phi = two_pi * u[1] - pi
        e = (mip["e_vis"] / mip_n * scale[mip["owner"]]).astype(f32)[comp]
        deposit(mip["owner"][comp], s, np.zeros_like(s), phi, e)
    return out.reshape(n_ev, n_slots)[:, : tab.n_voxels]


def _batches(e_gev: np.ndarray, block: int) -> list[tuple[int, int]]:
    """Split events into batches of at most ``block`` events and ~MAX_SPOTS_PER_BATCH spots."""
    est = np.ceil(_SPOTS_N1 * np.power(e_gev, _SPOTS_N2)) + 20
    out, start, spots = [], 0, 0.0
    for i, n in enumerate(est.tolist()):
        if i > start and (i - start >= block or spots + n > MAX_SPOTS_PER_BATCH):
            out.append((start, i))
            start, spots = i, 0.0
        spots += n
    if start < len(e_gev):
        out.append((start, len(e_gev)))
    return out


def _simulate(
    geom: CaloGeometry,
    particle: str,
    e_mev: np.ndarray,
    theta: np.ndarray,
    key: np.ndarray,
    first_index: int,
    block: int,
) -> np.ndarray:
    tab = _Binning.of(geom)
    out = np.zeros((len(e_mev), geom.n_voxels), dtype=np.float32)
    for lo, hi in _batches(e_mev / GEV, block):
        out[lo:hi] = _simulate_batch(
            geom, tab, particle, e_mev[lo:hi], theta[lo:hi], key, first_index + lo
        )
    return out


# ====================================================================== datasets
def make_dataset(
    path: str | os.PathLike[str],
    geometry: str | CaloGeometry,
    particle: str,
    n: int,
    *,
    seed: int,
    e_min: float = 1e3,
    e_max: float = 1e6,
    theta: float = 0.0,
    block: int = 1000,
    progress: bool | None = None,
    workers: int | None = 1,
    scheduler: str | None = None,
    client: Any = None,
) -> Path:
    """Simulate ``n`` showers with log-uniform energies and write a CaloChallenge HDF5 file.

    ``path`` gets ``incident_energies`` (n, 1) and ``showers`` (n, n_voxels), float32, MeV
    (:func:`~colliderlab.calosim.io.write_calochallenge_h5`), with the resolved configuration
    (geometry, particle, n, seed, energy range, theta, version) as attributes. Blocks of
    ``block`` showers are written atomically to ``<path>.parts/`` as they complete; a killed
    run called again with the same arguments resumes from them (and gives the same file as an
    uninterrupted one); the parts are removed once the file is complete. An existing file
    made with the same configuration is returned as is; one made otherwise raises
    :class:`OutputError`.

    The blocks are simulated on Dask (:func:`colliderlab.io.chunked.map_tasks`): on
    ``client``, on the scheduler at ``scheduler`` (the workers must see ``path``'s directory),
    or on a LocalCluster of ``workers`` processes (``None``: one per core); ``workers=1`` (the
    default) simulates them in this process. Shower ``i`` is drawn from its own stream of the
    seed's key, so the file does not depend on how the blocks were spread.
    """
    from tqdm.auto import tqdm

    from colliderlab.calosim.io import write_calochallenge_h5
    from colliderlab.io.chunked import map_tasks

    geom = get_geometry(geometry)
    _check_particle(particle)
    n = _check_count(n, "n", minimum=1)
    block = _check_count(block, "block", minimum=1)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"make_dataset needs an integer seed >= 0 (it is stored); got {seed!r}")
    _check_theta(theta, 1)
    _check_energy_range(e_min, e_max)
    config: dict[str, Any] = {
        "geometry": geom.name,
        "particle": particle,
        "n": n,
        "seed": int(seed),
        "e_min": float(e_min),
        "e_max": float(e_max),
        "theta": float(theta),
        "block": block,
        "colliderlab_version": __version__,
    }
    path = Path(path)
    if path.exists():
        existing = _stored_config(path)
        if existing == config:
            logger.info("%s exists with the same configuration; not simulated again", path)
            return path
        raise OutputError(
            f"{path} exists and was not made with this configuration ({config}); delete it or "
            "choose another path"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = path.with_name(path.name + ".parts")
    _prepare_parts(parts, config)

    energy_seq, shower_seq = np.random.SeedSequence(int(seed)).spawn(2)
    energies = sample_incident_energies(n, e_min=e_min, e_max=e_max, seed=energy_seq)
    energies = energies.astype(np.float32).astype(float)  # simulate exactly what is stored
    key = _stream_key(shower_seq)
    theta_all = np.full(n, float(theta))
    starts = list(range(0, n, block))
    bar = tqdm(
        total=n,
        unit="shower",
        desc=f"calosim {particle} {geom.name}",
        disable=(None if progress is None else not progress),
    )
    todo = []
    for b, lo in enumerate(starts):
        hi = min(lo + block, n)
        part = parts / f"block-{b:06d}.npy"
        if part.exists():
            bar.update(hi - lo)
        else:
            todo.append((geom, particle, energies[lo:hi], theta_all[lo:hi], key, lo, block, part))
    try:
        map_tasks(
            _simulate_block,
            todo,
            workers=workers,
            scheduler=scheduler,
            client=client,
            on_result=bar.update,
            key=f"calosim-{geom.name}-{particle}",
        )
    finally:
        bar.close()

    def blocks():
        for b in range(len(starts)):
            yield np.load(parts / f"block-{b:06d}.npy", allow_pickle=False)

    write_calochallenge_h5(
        path,
        energies,
        blocks(),
        geometry_name=geom.name,
        particle=particle,
        attrs={"config": json.dumps(config, sort_keys=True)},
    )
    shutil.rmtree(parts, ignore_errors=True)
    return path


def _simulate_block(task: tuple) -> int:
    """Simulate one block of :func:`make_dataset` and write it atomically; its size."""
    geom, particle, e_mev, theta, key, first_index, block, part = task
    showers = _simulate(geom, particle, e_mev, theta, key, first_index, block)
    with atomic_path(part) as tmp, open(tmp, "wb") as f:
        np.save(f, showers, allow_pickle=False)
    return len(e_mev)


def _stored_config(path: Path) -> dict[str, Any] | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            text = f.attrs.get("config")
    except OSError:
        return None
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _prepare_parts(parts: Path, config: dict[str, Any]) -> None:
    """Create ``parts`` or check that the parts in it belong to ``config`` (else clear them)."""
    stamp = parts / "config.json"
    if parts.is_dir():
        try:
            old = json.loads(stamp.read_text())
        except (OSError, ValueError):
            old = None
        if old == config:
            n_done = len(list(parts.glob("block-*.npy")))
            logger.info("resuming from %d completed blocks in %s", n_done, parts)
            return
        logger.warning("%s holds parts of another configuration; starting again", parts)
        shutil.rmtree(parts)
    elif parts.exists():
        raise OutputError(f"{parts} exists and is not a directory; remove it and rerun")
    parts.mkdir(parents=True)
    with atomic_path(stamp) as tmp:
        tmp.write_text(json.dumps(config, sort_keys=True) + "\n")


__all__ = [
    "GAMMA_CONVERSION_X0",
    "MAX_THETA",
    "PARTICLES",
    "make_dataset",
    "sample_incident_energies",
    "simulate_showers",
]
