"""Per-particle inputs of the taggers, computed from a jet's constituents.

Every particle-based tagger takes three arrays (``N`` = maximum number of particles, padded
with zeros, ordered by decreasing pT):

``features`` (B, N, F), float32, F = ``len(FEATURES)``:

====  ==================  ======================================================
 0    ``deta``            eta - eta_jet
 1    ``dphi``            phi - phi_jet, wrapped to (-pi, pi]
 2    ``log_pt``          ln(pT / GeV)
 3    ``log_e``           ln(E / GeV)
 4    ``log_pt_rel``      ln(pT / pT_jet)
 5    ``log_e_rel``       ln(E / E_jet)
 6    ``dr``              sqrt(deta^2 + dphi^2)
 7    ``charge``          -1, 0, +1
 8    ``is_ch_hadron``    PF type one-hots (CMS particle-flow codes 211, 130, 22, 11, 13)
 9    ``is_nh_hadron``
 10   ``is_photon``
 11   ``is_electron``
 12   ``is_muon``
====  ==================  ======================================================

``vectors`` (B, N, 4), float32: (px, py, pz, E) in GeV, for the Lorentz-aware models
(pairwise interaction features, Minkowski products).

``mask`` (B, N), float32: 1 for a real particle, 0 for padding. Padded rows of ``features`` and
``vectors`` are 0.
"""

from __future__ import annotations

import numpy as np

FEATURES = (
    "deta",
    "dphi",
    "log_pt",
    "log_e",
    "log_pt_rel",
    "log_e_rel",
    "dr",
    "charge",
    "is_ch_hadron",
    "is_nh_hadron",
    "is_photon",
    "is_electron",
    "is_muon",
)
F = {name: i for i, name in enumerate(FEATURES)}
#: PF candidate codes of the one-hot columns, in order.
PF_CODES = (211, 130, 22, 11, 13)
N_FEATURES = len(FEATURES)


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def particle_inputs(
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    energy: np.ndarray,
    charge: np.ndarray,
    pid: np.ndarray,
    mask: np.ndarray,
    jet_pt: np.ndarray,
    jet_eta: np.ndarray,
    jet_phi: np.ndarray,
    jet_e: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``features``, ``vectors``, ``mask`` (see the module docstring) from padded
    constituent arrays of shape (B, N) and jet quantities of shape (B,)."""
    m = mask.astype(bool)
    safe_pt = np.where(m, pt, 1.0)
    safe_e = np.where(m, energy, 1.0)
    deta = eta - jet_eta[:, None]
    dphi = wrap_phi(phi - jet_phi[:, None])
    apid = np.abs(pid)
    cols = [
        deta,
        dphi,
        np.log(safe_pt),
        np.log(safe_e),
        np.log(safe_pt / jet_pt[:, None]),
        np.log(safe_e / jet_e[:, None]),
        np.hypot(deta, dphi),
        charge.astype(float),
        *[(apid == code).astype(float) for code in PF_CODES],
    ]
    features = np.where(m[..., None], np.stack(cols, axis=-1), 0.0).astype(np.float32)
    vectors = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), energy], axis=-1)
    vectors = np.where(m[..., None], vectors, 0.0).astype(np.float32)
    return features, vectors, m.astype(np.float32)
