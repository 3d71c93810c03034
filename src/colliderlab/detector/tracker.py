"""Tracker hits: helix intersections with the barrel layers and endcap disks of the card.

For each charged particle (pT above the tracker's threshold) the helix in the solenoid field
is intersected with every barrel cylinder and every endcap disk it reaches. Multiple
scattering in each crossed layer deflects the particle by a Gaussian angle of width given by
the Highland formula (PDG, "Passage of particles through matter", eq. 34.15),

    theta0 = 13.6 MeV / (beta c p) * z * sqrt(x/X0) * (1 + 0.038 ln(x z^2 / (X0 beta^2))),

with the layer thickness x/X0 of the card divided by the cosine of the incidence angle; the
kicks of the earlier layers displace the later hits. Hits are then smeared with the card's
resolution, kept with the per-hit efficiency, and noise hits are added at random.

Units: mm, GeV, T, rad. Layer ids: barrel layers 0, 1, ...; endcap disks +-(100 + k).
"""

from __future__ import annotations

import numpy as np

from colliderlab.detector.card import DetectorCard
from colliderlab.detector.physics import K_CURV

#: Layer id offset of the endcap disks (disk k at z > 0 is 100 + k, at z < 0 it is -100 - k).
DISK_ID = 100


def highland(p: np.ndarray, beta: np.ndarray, x_x0: np.ndarray) -> np.ndarray:
    """RMS plane scattering angle (rad) of a unit-charge particle of momentum ``p`` (GeV)."""
    x_x0 = np.maximum(x_x0, 1e-12)
    return 0.0136 / (beta * p) * np.sqrt(x_x0) * (1.0 + 0.038 * np.log(x_x0 / beta**2))


def _crossings(card: DetectorCard, pt, pz, phi0, charge, z0):
    """All layer crossings: (particle, layer, path length 3D, x, y, z, cos incidence)."""
    tk, bz = card.tracker, card.field.bz
    rho = pt / (K_CURV * bz)
    p = np.hypot(pt, pz)
    out = {k: [] for k in ("particle", "layer", "path", "x", "y", "z", "cos")}

    def add(sel, layer, s_xy, r, z, cos_inc):
        idx = np.flatnonzero(sel)
        phi_pos = phi0[idx] - np.sign(charge[idx]) * s_xy[idx] / (2 * rho[idx])
        out["particle"].append(idx)
        out["layer"].append(
            np.broadcast_to(layer, idx.shape) if np.ndim(layer) == 0 else layer[idx]
        )
        out["path"].append(s_xy[idx] * p[idx] / pt[idx])
        out["x"].append(r[idx] * np.cos(phi_pos))
        out["y"].append(r[idx] * np.sin(phi_pos))
        out["z"].append(z[idx])
        out["cos"].append(cos_inc[idx])

    sin_t = pt / p
    cos_t = np.abs(pz) / p
    for k, radius in enumerate(tk.barrel_radii):
        reach = 2 * rho > radius
        s_xy = 2 * rho * np.arcsin(np.clip(radius / (2 * rho), 0, 1))
        z = z0 + s_xy * pz / pt
        sel = reach & (np.abs(z) < tk.barrel_half_length)
        add(sel, np.int16(k), s_xy, np.full(pt.shape, radius), z, np.maximum(sin_t, 1e-3))
    r_in, r_out = tk.endcap_radius
    for k, zd in enumerate(tk.endcap_z):
        for sign in (1.0, -1.0):
            with np.errstate(divide="ignore", invalid="ignore"):
                s_xy = (sign * zd - z0) * pt / pz
            ok = (
                np.isfinite(s_xy) & (s_xy > 0) & (s_xy / (2 * rho) < np.pi / 2)
            )  # outgoing half-turn
            r = 2 * rho * np.abs(np.sin(np.where(ok, s_xy, 0) / (2 * rho)))
            sel = ok & (r > r_in) & (r < r_out)
            layer = np.int16(sign * (DISK_ID + k))
            add(
                sel,
                layer,
                np.where(ok, s_xy, 0),
                r,
                np.full(pt.shape, sign * zd),
                np.maximum(cos_t, 1e-3),
            )
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}, p


def simulate_hits(card: DetectorCard, pt, eta, phi, charge, z0, mass, rng: np.random.Generator):
    """Hits of charged particles (flat arrays, one entry per particle).

    Returns a dict of flat arrays ``particle`` (index into the inputs, -1 for noise), ``layer``,
    ``x``, ``y``, ``z`` (mm), ordered by particle and path length.
    """
    tk = card.tracker
    pz = pt * np.sinh(eta)
    c, p = _crossings(card, pt, pz, phi, charge, z0)
    order = np.lexsort((c["path"], c["particle"]))
    c = {k: v[order] for k, v in c.items()}
    part = c["particle"].astype(np.int64)
    n = len(part)
    # Multiple scattering: two independent plane kicks per crossing.
    pp = p[part]
    beta = pp / np.sqrt(pp**2 + mass[part] ** 2)
    theta0 = highland(pp, beta, tk.layer_x0 / c["cos"])
    k1 = theta0 * rng.standard_normal(n)
    k2 = theta0 * rng.standard_normal(n)
    first = np.r_[True, part[1:] != part[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    path = c["path"]

    def offset(kick):
        # displacement at crossing j from the kicks of crossings i < j: sum k_i (L_j - L_i)
        ck = np.cumsum(kick) - kick
        ckl = np.cumsum(kick * path) - kick * path
        ck = ck - (ck[start] if n else 0)
        ckl = ckl - (ckl[start] if n else 0)
        return path * ck - ckl

    d_t, d_l = offset(k1), offset(k2)  # transverse (r-phi) and longitudinal displacement
    x, y, z = c["x"], c["y"], c["z"]
    r = np.hypot(x, y)
    phi_hit = np.arctan2(y, x)
    barrel = np.abs(c["layer"]) < DISK_ID
    res_t, res_l = tk.hit_resolution
    phi_hit = phi_hit + (d_t + res_t * rng.standard_normal(n)) / np.maximum(r, 1e-6)
    z = np.where(barrel, z + d_l / np.maximum(c["cos"], 1e-3) + res_l * rng.standard_normal(n), z)
    r = np.where(barrel, r, r + d_l + res_l * rng.standard_normal(n))
    keep = rng.random(n) < tk.hit_efficiency
    hits = {
        "particle": part[keep],
        "layer": c["layer"][keep].astype(np.int16),
        "x": (r * np.cos(phi_hit))[keep],
        "y": (r * np.sin(phi_hit))[keep],
        "z": z[keep],
    }
    return hits


def noise_hits(card: DetectorCard, n_events: int, rng: np.random.Generator):
    """Poisson(card.tracker.noise_hits) random hits per layer and event, uniform on the layer."""
    tk = card.tracker
    ev, layer, x, y, z = [], [], [], [], []
    if tk.noise_hits <= 0:
        return {k: np.zeros(0) for k in ("event", "layer", "x", "y", "z")}
    layers = [(k, r, None) for k, r in enumerate(tk.barrel_radii)]
    layers += [
        (s * (DISK_ID + k), None, s * zd) for k, zd in enumerate(tk.endcap_z) for s in (1, -1)
    ]
    for lid, radius, zd in layers:
        n = rng.poisson(tk.noise_hits, n_events)
        total = int(n.sum())
        e = np.repeat(np.arange(n_events), n)
        phi = rng.uniform(-np.pi, np.pi, total)
        if radius is not None:
            r = np.full(total, radius)
            zz = rng.uniform(-tk.barrel_half_length, tk.barrel_half_length, total)
        else:
            r_in, r_out = tk.endcap_radius
            r = np.sqrt(rng.uniform(r_in**2, r_out**2, total))
            zz = np.full(total, float(zd))
        ev.append(e)
        layer.append(np.full(total, lid, dtype=np.int16))
        x.append(r * np.cos(phi))
        y.append(r * np.sin(phi))
        z.append(zz)
    return {
        "event": np.concatenate(ev),
        "layer": np.concatenate(layer),
        "x": np.concatenate(x),
        "y": np.concatenate(y),
        "z": np.concatenate(z),
    }


__all__ = ["DISK_ID", "highland", "noise_hits", "simulate_hits"]
