"""Simulation of TrackML-like events: generator particles -> module hits in the TrackML layout.

**Propagation.** Every charged final-state particle with pT > ``card.pt_min`` and
|eta| < ``card.eta_max`` produced inside the tracker follows a helix in the uniform axial
field ``card.bz`` from its production vertex. Its next crossing with the *approximate surface*
of a layer (the cylinder at the layer's mean radius for a barrel layer, the plane at its mean
z for a disk, within the layer's extent) is found analytically over all 48 layers; the
particle is moved there, and the layer's material (``card.material``, x/X0 at normal
incidence, divided by the cosine of the incidence angle) then

* deflects it by a multiple-scattering angle drawn from a Gaussian in two orthogonal planes
  of width given by the Highland formula (PDG, "Passage of particles through matter", eq.
  34.15; :func:`colliderlab.detector.tracker.highland`), and
* removes the mean ionisation energy loss: the material is treated as silicon (X0 = 93.7 mm,
  minimum-ionising dE/dx = 1.664 MeV cm2/g x 2.329 g/cm3 = 0.3876 MeV/mm, PDG tables),
  scaled by the Bethe formula without density effect below beta*gamma = 3.5 (slow protons
  and kaons lose much more and stop), flat above (the ~10% relativistic rise is ignored).
  Electrons in addition lose the mean bremsstrahlung fraction 1 - exp(-x/X0).

The kinks therefore move all later hits. A particle stops when it leaves the instrumented
volume, when its kinetic energy is used up, or after ``card.max_turns`` turns of its helix
(loopers: they are followed out, back in, and on: the second half-turn crosses the same
layers on the way in, as in TrackML, whose files keep the hits of loopers).

**Hits.** At each layer crossing, the modules of the layer near the crossing (k-d tree on the
module centres, :meth:`TrackerGeometry.candidates`) are intersected with the helix itself
(Newton iterations on the module plane, started from the straight tangent); every module
whose bounds contain the intersection gets a hit, so overlapping modules give two hits on one
layer, as in TrackML. The true hit lies on the module mid-plane (as the public TrackML hits
do). The measured position is the true one smeared in the module's local u and v with
``card.resolution`` (pitch / sqrt(12) by default) and clipped to the module; each hit is kept
with probability ``card.hit_efficiency``. Noise hits, Poisson(``card.noise_fraction`` x the
number of particle hits), are uniform on modules drawn at random.

**Tables** (TrackML layout, :mod:`colliderlab.tracking.event`): hits sorted by (volume,
layer, module) with a random order inside a module, hit ids 1..N; truth with the true
position (on the mid-plane) and momentum at the hit, ``particle_id`` (0 for noise) and the
TrackML ``weight`` (:func:`colliderlab.tracking.score.hit_weights`); particles = the simulated
particles with their production vertex and momentum, ``q``, ``nhits``, ``particle_type``
(PDG id) and ``pileup`` (0 = hard scatter, k = k-th pile-up interaction); cells = one cell per
hit, ``ch0 = floor((u + maxhu) / pitch_u)``, ``ch1 = floor((v + hv) / pitch_v)`` of the
measured position, ``value`` = path length in the sensor / thickness (1 at normal incidence).

Not simulated: secondaries from material interactions (delta rays, conversions, hadronic
interactions), Landau fluctuations of the energy loss, clusters of several cells, merged hits,
non-uniform field. Units: mm, GeV, T, rad.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd

from colliderlab.core.errors import ConfigError, DatasetError
from colliderlab.detector.physics import ELECTRON_MASS, K_CURV, MUON_MASS, PION_MASS
from colliderlab.tracking.card import TrackerCard, load_tracker_card
from colliderlab.tracking.event import TrackingEvent
from colliderlab.tracking.geometry import TECHNOLOGIES, TrackerGeometry, default_geometry

log = logging.getLogger(__name__)

#: Radiation length of silicon (mm), PDG.
X0_SILICON = 93.7
#: Minimum-ionising mean energy loss in silicon (GeV/mm): 1.664 MeV cm2/g x 2.329 g/cm3.
DEDX_MIP_SILICON = 3.876e-4
#: Mean excitation energy of silicon (GeV), PDG: 173 eV.
I_SILICON = 173e-9
#: Most crossings followed per particle (layers, including the way back of loopers).
MAX_CROSSINGS = 64

_MASSES = {
    11: ELECTRON_MASS,
    13: MUON_MASS,
    211: PION_MASS,
    321: 0.493677,
    2212: 0.93827209,
    3222: 1.18937,
    3112: 1.197449,
    3312: 1.32171,
    3334: 1.67245,
}


# ----------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def _bethe_factor(bg: float) -> float:
    """Mean dE/dx in silicon relative to its minimum (beta*gamma = 3.5), no density effect."""
    if bg >= 3.5:
        return 1.0
    bg = max(bg, 0.05)
    b2 = bg * bg / (1.0 + bg * bg)
    me = 0.51099895e-3
    ref_b2 = 3.5 * 3.5 / (1.0 + 3.5 * 3.5)
    ref = (math.log(2.0 * me * 3.5 * 3.5 / I_SILICON) - ref_b2) / ref_b2
    val = (math.log(2.0 * me * bg * bg / I_SILICON) - b2) / b2
    return max(val / ref, 1.0)


@numba.njit(cache=True)
def _helix_step(s, x, y, cphi, sphi, kappa):
    """Transverse position after a transverse arc length ``s`` (mm) on a circle of curvature
    ``kappa`` (1/mm, signed) starting at (x, y) with direction (cphi, sphi)."""
    a = kappa * s
    if abs(a) < 1e-4:
        sa = 1.0 - a * a / 6.0
        ca = a / 2.0 - a * a * a / 24.0
    else:
        sa = math.sin(a) / a
        ca = (1.0 - math.cos(a)) / a
    return x + s * (cphi * sa - sphi * ca), y + s * (sphi * sa + cphi * ca)


@numba.njit(cache=True)
def _propagate(
    x0, y0, z0, px0, py0, pz0, charge, mass, electron, bz,
    l_barrel, l_pos, l_rmin, l_rmax, l_zmin, l_zmax, l_x0,
    r_env, z_env, max_turns, normals, material, eloss,
):  # fmt: skip
    """Layer crossings of each particle (see the module docstring).

    Returns ``counts`` (n,) and per slot ``i * M + j`` (particle i, crossing j): ``layer``,
    position ``x, y, z``, incoming momentum ``px, py, pz`` (GeV), 3D path length from the
    vertex ``path`` (mm), and the multiple-scattering angles ``kink`` (rad) applied there.
    """
    n = x0.shape[0]
    m_max = normals.shape[1]
    n_layers = l_pos.shape[0]
    counts = np.zeros(n, np.int64)
    o_layer = np.full(n * m_max, -1, np.int64)
    o_pos = np.zeros((n * m_max, 3))
    o_mom = np.zeros((n * m_max, 3))
    o_path = np.zeros(n * m_max)
    o_kink = np.zeros((n * m_max, 2))
    eps = 1e-4  # mm: a crossing closer than this to the current point is the current one
    two_pi = 2.0 * math.pi
    for i in range(n):
        x, y, z = x0[i], y0[i], z0[i]
        px, py, pz = px0[i], py0[i], pz0[i]
        q, m = charge[i], mass[i]
        p = math.sqrt(px * px + py * py + pz * pz)
        e = math.sqrt(p * p + m * m)
        path = 0.0
        turned = 0.0  # turning angle so far (rad)
        for j in range(m_max):
            pt = math.hypot(px, py)
            if pt < 1e-6:
                break
            kappa = -q * K_CURV * bz / pt
            rho = 1.0 / abs(kappa)
            cphi, sphi = px / pt, py / pt
            tz = pz / pt
            budget = (max_turns * two_pi - turned) * rho  # transverse length left
            if budget <= 0.0:
                break
            xc, yc = x - sphi / kappa, y + cphi / kappa
            d = math.hypot(xc, yc)
            ang0 = math.atan2(y - yc, x - xc)
            sgn = 1.0 if kappa > 0 else -1.0
            best_s = np.inf
            best_l = -1
            for ly in range(n_layers):
                if l_barrel[ly]:
                    rr = l_pos[ly]
                    if d < 1e-9 or d > rr + rho or d < abs(rr - rho):
                        continue
                    a = (d * d + rr * rr - rho * rho) / (2.0 * d)
                    h = math.sqrt(max(rr * rr - a * a, 0.0))
                    ux, uy = xc / d, yc / d
                    for side in (1.0, -1.0):
                        px_ = a * ux - side * h * uy
                        py_ = a * uy + side * h * ux
                        dang = (math.atan2(py_ - yc, px_ - xc) - ang0) * sgn
                        dang = dang % two_pi
                        s = dang * rho
                        if s < eps or s > two_pi * rho - eps or s >= best_s or s > budget:
                            continue
                        zz = z + tz * s
                        if l_zmin[ly] <= zz <= l_zmax[ly]:
                            best_s = s
                            best_l = ly
                else:
                    if tz == 0.0:
                        continue
                    s = (l_pos[ly] - z) / tz
                    if s < eps or s >= best_s or s > budget:
                        continue
                    xx, yy = _helix_step(s, x, y, cphi, sphi, kappa)
                    rr = math.hypot(xx, yy)
                    if l_rmin[ly] <= rr <= l_rmax[ly]:
                        best_s = s
                        best_l = ly
            if best_l < 0:
                break
            # leaves the instrumented volume before the crossing: stop
            if tz != 0.0:
                s_z = ((z_env if tz > 0 else -z_env) - z) / tz
                if s_z < best_s:
                    break
            if d + rho > r_env:  # the circle goes beyond r_env: first exit point
                a = (d * d + r_env * r_env - rho * rho) / (2.0 * d)
                h = math.sqrt(max(r_env * r_env - a * a, 0.0))
                ux, uy = xc / d, yc / d
                s_r = np.inf
                for side in (1.0, -1.0):
                    px_ = a * ux - side * h * uy
                    py_ = a * uy + side * h * ux
                    dang = ((math.atan2(py_ - yc, px_ - xc) - ang0) * sgn) % two_pi
                    s_r = min(s_r, dang * rho)
                if s_r < best_s:
                    break
            s = best_s
            x, y = _helix_step(s, x, y, cphi, sphi, kappa)
            z = z + tz * s
            phi = math.atan2(sphi, cphi) + kappa * s
            px, py = pt * math.cos(phi), pt * math.sin(phi)
            path += s * p / pt
            turned += s / rho
            if math.hypot(x, y) > r_env or abs(z) > z_env:
                break
            k = i * m_max + j
            o_layer[k] = best_l
            o_pos[k, 0], o_pos[k, 1], o_pos[k, 2] = x, y, z
            o_mom[k, 0], o_mom[k, 1], o_mom[k, 2] = px, py, pz
            o_path[k] = path
            counts[i] = j + 1
            # ---- material: multiple scattering and energy loss
            x_x0 = l_x0[best_l]
            if x_x0 <= 0.0:
                continue
            dx, dy, dz = px / p, py / p, pz / p
            if l_barrel[best_l]:
                r = math.hypot(x, y)
                cos_inc = abs(dx * x / r + dy * y / r)
            else:
                cos_inc = abs(dz)
            t = x_x0 / max(cos_inc, 0.01)
            beta = p / e
            if material:
                theta0 = (
                    0.0136 * abs(q) / (beta * p) * math.sqrt(t)
                    * (1.0 + 0.038 * math.log(t * q * q / (beta * beta)))
                )  # fmt: skip
                theta0 = max(theta0, 0.0)
                k1 = theta0 * normals[i, j, 0]
                k2 = theta0 * normals[i, j, 1]
                o_kink[k, 0], o_kink[k, 1] = k1, k2
                # e1: transverse to the direction in the plane perpendicular to z; e2 = d x e1
                tn = math.hypot(dx, dy)
                if tn > 1e-9:
                    e1x, e1y, e1z = -dy / tn, dx / tn, 0.0
                else:
                    e1x, e1y, e1z = 1.0, 0.0, 0.0
                e2x = dy * e1z - dz * e1y
                e2y = dz * e1x - dx * e1z
                e2z = dx * e1y - dy * e1x
                th = math.hypot(k1, k2)
                if th > 0.0:
                    c, sn = math.cos(th), math.sin(th)
                    cx, cy = k1 / th, k2 / th
                    dx, dy, dz = (
                        c * dx + sn * (cx * e1x + cy * e2x),
                        c * dy + sn * (cx * e1y + cy * e2y),
                        c * dz + sn * (cx * e1z + cy * e2z),
                    )
                    norm = math.sqrt(dx * dx + dy * dy + dz * dz)
                    dx, dy, dz = dx / norm, dy / norm, dz / norm
            if eloss:
                de = DEDX_MIP_SILICON * X0_SILICON * t * _bethe_factor(p / m if m > 0 else 1e9)
                if electron[i]:
                    de += e * (1.0 - math.exp(-t))
                e -= de
                if e <= m * 1.0001 + 1e-4:  # stopped (kinetic energy below ~0.1 MeV)
                    break
                p = math.sqrt(e * e - m * m)
            px, py, pz = p * dx, p * dy, p * dz
    return counts, o_layer, o_pos, o_mom, o_path, o_kink


@numba.njit(cache=True)
def _intersect(
    c_idx, rows, pos, mom, charge, bz, centre, rot, minhu, maxhu, hv, max_dist,
):  # fmt: skip
    """Intersections of the helices at crossings ``c_idx`` with module planes ``rows``.

    Returns ``ok`` (the intersection exists, is within ``max_dist`` mm of the crossing along
    the track and inside the module), the signed 3D path ``dl`` from the crossing, the global
    point, the momentum there and the local (u, v), and the incidence cosine.
    """
    n = c_idx.shape[0]
    ok = np.zeros(n, np.bool_)
    dl_out = np.zeros(n)
    point = np.zeros((n, 3))
    momentum = np.zeros((n, 3))
    local = np.zeros((n, 2))
    cos_inc = np.zeros(n)
    for k in range(n):
        c = c_idx[k]
        r = rows[k]
        x0, y0, z0 = pos[c, 0], pos[c, 1], pos[c, 2]
        px, py, pz = mom[c, 0], mom[c, 1], mom[c, 2]
        pt = math.hypot(px, py)
        p = math.sqrt(pt * pt + pz * pz)
        kappa = -charge[c] * K_CURV * bz / pt
        cphi, sphi = px / pt, py / pt
        nx, ny, nz = rot[r, 0, 2], rot[r, 1, 2], rot[r, 2, 2]
        dl = 0.0
        converged = False
        for _ in range(8):
            st = dl * pt / p
            xx, yy = _helix_step(st, x0, y0, cphi, sphi, kappa)
            zz = z0 + dl * pz / p
            f = nx * (xx - centre[r, 0]) + ny * (yy - centre[r, 1]) + nz * (zz - centre[r, 2])
            phi = kappa * st
            tx = (cphi * math.cos(phi) - sphi * math.sin(phi)) * pt / p
            ty = (sphi * math.cos(phi) + cphi * math.sin(phi)) * pt / p
            tzz = pz / p
            fp = nx * tx + ny * ty + nz * tzz
            if abs(fp) < 1e-3:
                break
            if abs(f) < 1e-7:
                converged = True
                break
            dl -= f / fp
            if abs(dl) > max_dist:
                break
        if not converged or abs(dl) > max_dist:
            continue
        dxg, dyg, dzg = xx - centre[r, 0], yy - centre[r, 1], zz - centre[r, 2]
        u = rot[r, 0, 0] * dxg + rot[r, 1, 0] * dyg + rot[r, 2, 0] * dzg
        v = rot[r, 0, 1] * dxg + rot[r, 1, 1] * dyg + rot[r, 2, 1] * dzg
        if abs(v) > hv[r]:
            continue
        half = minhu[r] + (maxhu[r] - minhu[r]) * (v + hv[r]) / (2.0 * hv[r])
        if abs(u) > half:
            continue
        ok[k] = True
        dl_out[k] = dl
        point[k, 0], point[k, 1], point[k, 2] = xx, yy, zz
        momentum[k, 0], momentum[k, 1], momentum[k, 2] = tx * p, ty * p, tzz * p
        local[k, 0], local[k, 1] = u, v
        cos_inc[k] = abs(fp)
    return ok, dl_out, point, momentum, local, cos_inc


# ----------------------------------------------------------------------------- inputs
def _column(table: pd.DataFrame, names: tuple[str, ...], what: str) -> np.ndarray:
    for name in names:
        if name in table.columns:
            return table[name].to_numpy()
    raise DatasetError(
        f"the particle table has no {what} column (looked for {', '.join(map(repr, names))}; "
        f"found {', '.join(map(str, table.columns))})."
    )


def _masses(table: pd.DataFrame, pid: np.ndarray | None) -> np.ndarray:
    """Mass (GeV) of each particle: a mass column, else E and p, else the PDG id (pion)."""
    for name in ("mass", "gen_mass", "m"):
        if name in table.columns:
            return table[name].to_numpy(np.float64)
    if "E" in table.columns:
        p2 = sum(table[c].to_numpy(np.float64) ** 2 for c in ("px", "py", "pz"))
        return np.sqrt(np.maximum(table["E"].to_numpy(np.float64) ** 2 - p2, 0.0))
    if pid is None:
        return np.full(len(table), PION_MASS)
    apid = np.abs(pid)
    return np.array([_MASSES.get(int(a), PION_MASS) for a in apid], np.float64)


def _layer_arrays(geometry: TrackerGeometry, card: TrackerCard) -> dict[str, np.ndarray]:
    ly = geometry.layers
    return {
        "l_barrel": np.array([a.barrel for a in ly], np.bool_),
        "l_pos": np.array([a.position for a in ly]),
        "l_rmin": np.array([a.r_min for a in ly]),
        "l_rmax": np.array([a.r_max for a in ly]),
        "l_zmin": np.array([a.z_min for a in ly]),
        "l_zmax": np.array([a.z_max for a in ly]),
        "l_x0": np.array([card.material[a.technology] for a in ly]),
        "l_depth": np.array([(a.r_max - a.r_min) if a.barrel else (a.z_max - a.z_min) for a in ly]),
    }


def _resolution(geometry: TrackerGeometry, card: TrackerCard, rows: np.ndarray):
    """(sigma_u, sigma_v) in mm of modules ``rows``."""
    if card.resolution == "pitch":
        return geometry.pitch_u[rows] / math.sqrt(12), geometry.pitch_v[rows] / math.sqrt(12)
    tech = np.array([TECHNOLOGIES.index(t) for t in _technology_of_layers(geometry)])
    res = np.array([card.resolution[t] for t in TECHNOLOGIES])  # (3, 2)
    k = tech[geometry.layer_index[rows]]
    return res[k, 0], res[k, 1]


def _technology_of_layers(geometry: TrackerGeometry) -> list[str]:
    return [ly.technology for ly in geometry.layers]


# ----------------------------------------------------------------------------- simulation
@dataclasses.dataclass
class _Options:
    material: bool = True
    energy_loss: bool = True
    smear: bool = True
    efficiency: bool = True
    noise: bool = True


def simulate_event(
    particles: pd.DataFrame,
    geometry: TrackerGeometry | None = None,
    card: TrackerCard | str | None = None,
    rng: np.random.Generator | int | np.random.SeedSequence | None = None,
    *,
    event_id: int = 0,
    material: bool = True,
    energy_loss: bool = True,
    smear: bool = True,
    efficiency: bool = True,
    noise: bool = True,
) -> TrackingEvent:
    """Simulate the tracker response to a truth-level particle table; return the event.

    ``particles`` (one row per generated particle; units mm, GeV) needs ``px, py, pz, vx, vy,
    vz`` and a charge column (``charge`` or ``q``); it may have ``pid`` / ``particle_type``
    (PDG id; gives the mass and the electron energy loss), ``mass`` / ``gen_mass`` or ``E``
    (mass), ``pileup`` (interaction index, 0 = hard scatter), ``particle_id`` (> 0, unique;
    default: row number + 1) and ``status`` (if present, only ``status > 0`` rows, the final
    state, are used). ``material``, ``energy_loss``, ``smear``, ``efficiency`` and ``noise``
    switch the effects off one by one (for tests and studies). ``rng`` seeds everything random.
    """
    geometry = default_geometry() if geometry is None else geometry
    card = load_tracker_card("trackml" if card is None else card)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    opt = _Options(material, energy_loss, smear, efficiency, noise)
    sel, table = _select(particles, geometry, card)
    return _simulate(table, sel, geometry, card, rng, opt, event_id)


def _select(particles: pd.DataFrame, geometry: TrackerGeometry, card: TrackerCard):
    if not isinstance(particles, pd.DataFrame):
        raise DatasetError(
            f"simulate_event needs a pandas DataFrame of particles; got {type(particles).__name__}."
        )
    px, py, pz = (_column(particles, (c,), c).astype(np.float64) for c in ("px", "py", "pz"))
    vx, vy, vz = (_column(particles, (c,), c).astype(np.float64) for c in ("vx", "vy", "vz"))
    q = _column(particles, ("charge", "q"), "charge").astype(np.float64)
    pid = None
    for name in ("pid", "particle_type"):
        if name in particles.columns:
            pid = particles[name].to_numpy(np.int64)
    for name, arr in (("px", px), ("py", py), ("pz", pz), ("vx", vx), ("vy", vy), ("vz", vz)):
        if not np.all(np.isfinite(arr)):
            raise DatasetError(f"the particle table has non-finite values in column {name!r}.")
    if "particle_id" in particles.columns:
        ids = particles["particle_id"].to_numpy(np.int64)
        if np.any(ids <= 0) or len(np.unique(ids)) != len(ids):
            raise DatasetError("particle_id must be unique and > 0 in the particle table.")
    else:
        ids = np.arange(1, len(particles) + 1, dtype=np.int64)
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / np.where(pt > 0, pt, 1.0), np.inf))
    sel = (
        (q != 0)
        & (pt > card.pt_min)
        & (np.abs(eta) < card.eta_max)
        & (np.hypot(vx, vy) < geometry.r_max)
        & (np.abs(vz) < geometry.z_max)
    )
    if "status" in particles.columns:
        sel &= particles["status"].to_numpy() > 0
    mass = _masses(particles, pid)
    table = {
        "particle_id": ids,
        "px": px, "py": py, "pz": pz, "vx": vx, "vy": vy, "vz": vz,
        "q": q, "mass": mass,
        "pid": pid if pid is not None else np.zeros(len(px), np.int64),
        "pileup": (
            particles["pileup"].to_numpy(np.int64)
            if "pileup" in particles.columns
            else np.zeros(len(px), np.int64)
        ),
    }  # fmt: skip
    return sel, table


def _simulate(table, sel, geometry, card, rng, opt: _Options, event_id: int) -> TrackingEvent:
    idx = np.flatnonzero(sel)
    n = len(idx)
    t = {k: v[idx] for k, v in table.items()}
    lay = _layer_arrays(geometry, card)
    normals = rng.standard_normal((n, MAX_CROSSINGS, 2))
    _counts, c_layer, c_pos, c_mom, c_path, _ = _propagate(
        t["vx"], t["vy"], t["vz"], t["px"], t["py"], t["pz"], t["q"], t["mass"],
        np.abs(t["pid"]) == 11, float(card.bz),
        lay["l_barrel"], lay["l_pos"], lay["l_rmin"], lay["l_rmax"], lay["l_zmin"],
        lay["l_zmax"], lay["l_x0"], geometry.r_max, geometry.z_max, float(card.max_turns),
        normals, opt.material, opt.energy_loss,
    )  # fmt: skip
    keep = c_layer >= 0
    c_part = np.repeat(np.arange(n), MAX_CROSSINGS)[keep]
    c_layer, c_pos, c_mom, c_path = c_layer[keep], c_pos[keep], c_mom[keep], c_path[keep]
    c_q = t["q"][c_part]

    # candidate modules of each crossing, layer by layer
    pair_c, pair_row = [], []
    for k in np.unique(c_layer):
        at = np.flatnonzero(c_layer == k)
        margin = 2.0 * lay["l_depth"][k] + 1.0
        p_i, rows = geometry.candidates(int(k), c_pos[at], margin)
        pair_c.append(at[p_i])
        pair_row.append(rows)
    pair_c = np.concatenate(pair_c) if pair_c else np.zeros(0, np.int64)
    pair_row = np.concatenate(pair_row) if pair_row else np.zeros(0, np.int64)
    max_dist = 4.0 * float(lay["l_depth"].max()) + 10.0
    ok, dl, point, mom, local, cos_inc = _intersect(
        pair_c, pair_row, c_pos, c_mom, c_q, float(card.bz), geometry.centre, geometry.rotation,
        geometry.minhu, geometry.maxhu, geometry.hv, max_dist,
    )  # fmt: skip
    h_c, h_row = pair_c[ok], pair_row[ok]
    h_part = c_part[h_c]
    h_path = c_path[h_c] + dl[ok]
    point, mom, local, cos_inc = point[ok], mom[ok], local[ok], cos_inc[ok]
    # a looper's two crossings of one layer may find the same module crossing: keep one
    order = np.lexsort((h_path, h_row, h_part))
    same = (h_part[order][1:] == h_part[order][:-1]) & (h_row[order][1:] == h_row[order][:-1])
    close = np.linalg.norm(point[order][1:] - point[order][:-1], axis=1) < 0.5
    drop = np.zeros(len(order), bool)
    drop[order[1:][same & close]] = True
    # order hits by particle and path length
    order = np.lexsort((h_path, h_part))
    order = order[~drop[order]]
    h_row, h_part, h_path = h_row[order], h_part[order], h_path[order]
    point, mom, local, cos_inc = point[order], mom[order], local[order], cos_inc[order]

    # efficiency, smearing, noise
    if opt.efficiency and card.hit_efficiency < 1:
        kept = rng.random(len(h_row)) < card.hit_efficiency
        h_row, h_part, point, mom, local, cos_inc = (
            a[kept] for a in (h_row, h_part, point, mom, local, cos_inc)
        )
    else:
        rng.random(len(h_row))  # keep the random stream aligned
    su, sv = _resolution(geometry, card, h_row)
    g = rng.standard_normal((len(h_row), 2))
    meas = local.copy()
    if opt.smear:
        meas[:, 1] = np.clip(local[:, 1] + sv * g[:, 1], -geometry.hv[h_row], geometry.hv[h_row])
        half = geometry.half_width(meas[:, 1], h_row)
        meas[:, 0] = np.clip(local[:, 0] + su * g[:, 0], -half, half)
    n_signal = len(h_row)
    n_noise = int(rng.poisson(card.noise_fraction * n_signal)) if opt.noise else 0
    z_row, z_local = _noise(geometry, n_noise, rng)
    all_rows = np.concatenate([h_row, z_row])
    all_local = np.concatenate([meas, z_local])
    xyz = geometry.to_global(np.c_[all_local, np.zeros(len(all_rows))], all_rows)
    # hits sorted by module, randomly inside a module: the order carries no truth
    hit_order = np.lexsort((rng.random(len(all_rows)), all_rows))
    hit_id = np.empty(len(all_rows), np.int64)
    hit_id[hit_order] = np.arange(1, len(all_rows) + 1)
    mod = geometry.modules

    pid_all = np.concatenate([t["particle_id"][h_part], np.zeros(n_noise, np.int64)])
    truth_xyz = np.concatenate([point, xyz[n_signal:]])
    truth_mom = np.concatenate([mom, np.zeros((n_noise, 3))])
    hits = pd.DataFrame(
        {
            "hit_id": hit_id,
            "x": xyz[:, 0].astype(np.float32),
            "y": xyz[:, 1].astype(np.float32),
            "z": xyz[:, 2].astype(np.float32),
            "volume_id": mod["volume_id"].to_numpy()[all_rows],
            "layer_id": mod["layer_id"].to_numpy()[all_rows],
            "module_id": mod["module_id"].to_numpy()[all_rows],
        }
    )
    truth = pd.DataFrame(
        {
            "hit_id": hit_id,
            "particle_id": pid_all,
            "tx": truth_xyz[:, 0].astype(np.float32),
            "ty": truth_xyz[:, 1].astype(np.float32),
            "tz": truth_xyz[:, 2].astype(np.float32),
            "tpx": truth_mom[:, 0].astype(np.float32),
            "tpy": truth_mom[:, 1].astype(np.float32),
            "tpz": truth_mom[:, 2].astype(np.float32),
        }
    )
    ch0 = np.floor((all_local[:, 0] + geometry.maxhu[all_rows]) / geometry.pitch_u[all_rows])
    ch1 = np.floor((all_local[:, 1] + geometry.hv[all_rows]) / geometry.pitch_v[all_rows])
    value = np.concatenate([1.0 / np.maximum(cos_inc, 1e-3), np.ones(n_noise)])
    cells = pd.DataFrame(
        {
            "hit_id": hit_id,
            "ch0": ch0.astype(np.int64),
            "ch1": ch1.astype(np.int64),
            "value": value.astype(np.float32),
        }
    )
    hits, truth, cells = (df.iloc[hit_order].reset_index(drop=True) for df in (hits, truth, cells))
    nhits = np.bincount(h_part, minlength=n)
    parts = pd.DataFrame(
        {
            "particle_id": t["particle_id"],
            "vx": t["vx"].astype(np.float32),
            "vy": t["vy"].astype(np.float32),
            "vz": t["vz"].astype(np.float32),
            "px": t["px"].astype(np.float32),
            "py": t["py"].astype(np.float32),
            "pz": t["pz"].astype(np.float32),
            "q": t["q"].astype(np.int64),
            "nhits": nhits.astype(np.int64),
            "particle_type": t["pid"].astype(np.int64),
            "pileup": t["pileup"].astype(np.int64),
        }
    )
    from colliderlab.tracking.score import hit_weights

    truth["weight"] = hit_weights(truth, parts)
    return TrackingEvent(int(event_id), hits, parts, truth, cells)


def _noise(geometry: TrackerGeometry, n: int, rng: np.random.Generator):
    """``n`` noise hits: modules drawn uniformly, points uniform on the module (u, v)."""
    rows = rng.integers(0, geometry.n_modules, n)
    u = np.empty(n)
    v = np.empty(n)
    todo = np.arange(n)
    while len(todo):
        r = rows[todo]
        uu = rng.uniform(-1.0, 1.0, len(todo)) * geometry.maxhu[r]
        vv = rng.uniform(-1.0, 1.0, len(todo)) * geometry.hv[r]
        good = np.abs(uu) <= geometry.half_width(vv, r)
        u[todo[good]], v[todo[good]] = uu[good], vv[good]
        todo = todo[~good]
    return rows, np.c_[u, v]


# ----------------------------------------------------------------------------- generation
def _event_seeds(seed: int, index: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """(generator, simulation) seed sequences of event ``index``: independent of other events."""
    gen, sim = np.random.SeedSequence(seed, spawn_key=(index,)).spawn(2)
    return gen, sim


def generate_particles(
    index: int, *, process: str = "ttbar", mu: float = 200.0, seed: int = 1, params=None
) -> pd.DataFrame:
    """Generator particles of event ``index`` (hard scatter + Poisson(mu) minimum bias).

    Runs colliderlab's Pythia generator (:class:`~colliderlab.generate.engine.ChunkGenerator`)
    for one event with the default luminous region; the same (process, mu, seed, index) give
    the same particles. Columns: ``pid, charge, px, py, pz, E, gen_mass, vx, vy, vz, vt,
    pileup`` (GeV, mm, ns).
    """
    from colliderlab.generate.config import GenerationConfig
    from colliderlab.generate.engine import ChunkGenerator

    if not (isinstance(mu, int | float) and math.isfinite(mu) and 0 <= mu):
        raise ConfigError(f"pile-up mu must be a finite number >= 0; got {mu!r}.")
    config = GenerationConfig(
        process=process, n_events=1, seed=seed, pileup=float(mu), params=dict(params or {})
    )
    gen_seed, _ = _event_seeds(seed, index)
    columns, _ = ChunkGenerator(config, gen_seed).generate(1)
    p, _ = columns["particles"]
    return pd.DataFrame(p)


def generate_events(
    n_events: int,
    *,
    process: str = "ttbar",
    mu: float = 200.0,
    seed: int = 1,
    card: TrackerCard | str | None = None,
    geometry: TrackerGeometry | None = None,
    first_event: int = 0,
    params=None,
) -> Iterator[TrackingEvent]:
    """Generate and simulate ``n_events`` events (an iterator; event ids from ``first_event``).

    Event ``i`` depends only on (process, mu, seed, card, i): the generator and the
    simulation draw from ``SeedSequence(seed, spawn_key=(i,))``.
    """
    if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 0:
        raise ConfigError(f"n_events must be an integer >= 0; got {n_events!r}.")
    geometry = default_geometry() if geometry is None else geometry
    card = load_tracker_card("trackml" if card is None else card)
    for index in range(first_event, first_event + n_events):
        yield _generate_one(
            index, process=process, mu=mu, seed=seed, card=card, geometry=geometry, params=params
        )


def _generate_one(index, *, process, mu, seed, card, geometry, params) -> TrackingEvent:
    particles = generate_particles(index, process=process, mu=mu, seed=seed, params=params)
    _, sim_seed = _event_seeds(seed, index)
    rng = np.random.default_rng(sim_seed)
    return simulate_event(particles, geometry, card, rng, event_id=index)


def _write_one(task: tuple) -> int:
    """Make event ``index`` of :func:`make_dataset` and write its files; the event id."""
    from colliderlab.tracking.io import write_event

    index, process, mu, seed, card, directory = task
    event = _generate_one(
        index,
        process=process,
        mu=mu,
        seed=seed,
        card=card,
        geometry=default_geometry(),
        params=None,
    )
    write_event(event, directory)
    return index


def _event_complete(directory: Path, event_id: int) -> bool:
    prefix = f"event{event_id:09d}"
    return all(
        (directory / f"{prefix}-{part}.csv.gz").exists()
        for part in ("hits", "cells", "particles", "truth")
    )


def make_dataset(
    directory: str | Path,
    n_events: int,
    *,
    mu: float = 200.0,
    seed: int = 1,
    process: str = "ttbar",
    card: TrackerCard | str | None = None,
    progress: bool | None = None,
    workers: int | None = 1,
    scheduler: str | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """Write ``n_events`` simulated events as TrackML CSV files (gzip) in ``directory``.

    Also writes ``detectors.csv.gz`` (the geometry used) and ``config.json`` (process, mu,
    seed, card). Resumable: events whose four files exist are skipped, each file is written
    atomically, and the same arguments give the same files. A directory holding events of
    another configuration is refused (DatasetError).

    The events are made on Dask (:func:`colliderlab.io.chunked.map_tasks`), one task per
    event: on ``client``, on the scheduler at ``scheduler`` (the workers must see
    ``directory``), or on a LocalCluster of ``workers`` processes (``None``: one per core);
    ``workers=1`` (the default) makes them one after the other in this process. An event
    depends only on (process, mu, seed, card, event id), not on where it was made. An event
    at MU = 200 takes a few seconds of Pythia.
    Returns a summary (events written / skipped, seconds).
    """
    from colliderlab.core.files import write_json
    from colliderlab.io.chunked import map_tasks
    from colliderlab.tracking.io import write_detectors

    card = load_tracker_card("trackml" if card is None else card)
    geometry = default_geometry()
    if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events <= 0:
        raise ConfigError(f"n_events must be a positive integer; got {n_events!r}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "process": process,
        "mu": float(mu),
        "seed": int(seed),
        "card": card.to_dict(),
        "detectors": geometry.source.rsplit("/", 1)[-1],
        "layout": "trackml-csv",
    }
    cfg_path = directory / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if {k: old.get(k) for k in config} != config:
            diff = [k for k in config if old.get(k) != config[k]]
            raise DatasetError(
                f"{directory} holds events of another configuration (differs in "
                f"{', '.join(diff)}); choose another directory or the same settings to resume."
            )
    else:
        write_json(cfg_path, config)
    det = directory / "detectors.csv.gz"
    if not det.exists():
        write_detectors(geometry.modules, det)
    todo = [i for i in range(n_events) if not _event_complete(directory, i)]
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(
        total=n_events,
        initial=n_events - len(todo),
        unit="event",
        desc="tracking events",
        disable=(not _isatty()) if progress is None else not progress,
    )
    with bar:
        map_tasks(
            _write_one,
            [(i, process, mu, seed, card, directory) for i in todo],
            workers=workers,
            scheduler=scheduler,
            client=client,
            on_result=lambda _: bar.update(1),
            key=f"tracking-{process}-mu{mu:g}",
        )
    return {
        "directory": str(directory),
        "n_events": n_events,
        "written": len(todo),
        "skipped": n_events - len(todo),
        "seconds": time.perf_counter() - t0,
    }


def _isatty() -> bool:
    import sys

    return sys.stderr.isatty()


__all__ = [
    "DEDX_MIP_SILICON",
    "MAX_CROSSINGS",
    "X0_SILICON",
    "generate_events",
    "generate_particles",
    "make_dataset",
    "simulate_event",
]
