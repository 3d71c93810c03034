"""Kinematics and propagation shared by the detector simulation (flat numpy arrays).

Units: GeV, mm, T, rad.
"""

from __future__ import annotations

import numpy as np

#: Curvature constant: radius [mm] = pT [GeV] / (K_CURV * B [T]).
K_CURV = 0.299792458e-3

INVISIBLE = np.array([12, 14, 16, 1000022, 1000039], dtype=np.int64)
PION_MASS = 0.13957039
ELECTRON_MASS = 0.000510999
MUON_MASS = 0.1056583755


def pt_eta_phi(px, py, pz):
    """Transverse momentum, pseudorapidity and azimuth of momenta (GeV, -, rad)."""
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), np.sign(pz) * 1e3)
    return pt, eta, np.arctan2(py, px)


def delta_phi(a, b):
    """phi_a - phi_b wrapped into [-pi, pi)."""
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def propagate_to_calorimeter(pt, pz, phi, charge, vz, bz, radius, half_length):
    """Where each particle enters the calorimeter: (reached, eta, phi) of the entry point.

    Charged particles follow a helix in the axial field ``bz`` (T); neutral ones a straight
    line. The calorimeter is the surface of the cylinder (``radius``, ``half_length``, mm). A
    charged particle with 2 rho < radius curls up inside the tracker and reaches only the
    endcap (if it has longitudinal momentum). Production vertices are taken on the beam line at
    ``vz`` (transverse displacements of ~mm are negligible at the calorimeter).
    """
    charged = charge != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(charged, pt / (K_CURV * bz), np.inf)  # mm
        # Barrel: transverse path length to r = radius, if the helix gets there.
        reaches_r = 2 * rho > radius
        x = np.clip(radius / (2 * rho), -1.0, 1.0)
        s_barrel = np.where(charged, 2 * rho * np.arcsin(x), radius)
        z_barrel = vz + s_barrel * pz / np.where(pt > 0, pt, np.inf)
        barrel = reaches_r & (np.abs(z_barrel) <= half_length)
        # Endcap: transverse path length to |z| = half_length.
        zend = np.where(pz >= 0, half_length, -half_length)
        s_end = (zend - vz) * pt / np.where(pz != 0, np.abs(pz), np.nan)
        s_end = np.abs(s_end)
        r_end = np.where(charged, 2 * rho * np.abs(np.sin(s_end / (2 * rho))), s_end)
        endcap = ~barrel & (pz != 0)
        s = np.where(barrel, s_barrel, s_end)
        r_hit = np.where(barrel, radius, r_end)
        z_hit = np.where(barrel, z_barrel, zend)
        dphi = np.where(charged, -np.sign(charge) * s / (2 * rho), 0.0)
        eta = np.arcsinh(z_hit / np.maximum(r_hit, 1e-6))
    reached = (barrel | endcap) & (pt > 0)
    return reached, np.nan_to_num(eta), delta_phi(phi + np.nan_to_num(dphi), 0.0)
