"""Truth-record queries: the decays of heavy resonances, and which jets contain them.

The truth record (see :mod:`colliderlab.generate.engine`) stores the last copy of each
resonance (flag RESONANCE) and the hard decay products (flag HARD) with mother links.
:func:`resonance_decays` follows those links: for a top it returns the b quark and the W's
two decay products, i.e. the three quarks of a hadronic top. :func:`contained` then tells
which jets hold a resonance and all its decay partons within a distance, the truth
definition of a top (or W) jet in the top-tagging reference dataset (arXiv:1902.09914).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from colliderlab.generate.engine import TruthFlag

#: |pdgId| of the partons a resonance can decay to (quarks, gluon, leptons, photon).
PARTONS = (1, 2, 3, 4, 5, 11, 12, 13, 14, 15, 16, 21, 22)
_MAX_DEPTH = 10  # links followed upwards from a parton to its resonance


def _eta_phi(px, py, pz):
    pt = np.hypot(px, py)
    return np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0)), np.arctan2(py, px)


def resonance_decays(truth: ak.Array, pid: int) -> ak.Array:
    """Per event, each last copy of resonance ``|pid|`` with its decay partons.

    Returns a jagged array (events x resonances) of records ``pid, px, py, pz, E, eta, phi,
    hadronic`` and ``partons`` (each ``pid, px, py, pz, E, eta, phi``): the final partons of
    the decay, found through intermediate resonances (t -> b W, W -> q q'). ``hadronic`` is
    True when every parton is a quark or gluon.
    """
    counts = ak.to_numpy(ak.num(truth)).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = {f: ak.to_numpy(ak.flatten(truth[f])) for f in ("pid", "flags", "mother")}
    mom = {f: ak.to_numpy(ak.flatten(truth[f])).astype(float) for f in ("px", "py", "pz", "E")}
    ev = np.repeat(np.arange(len(counts)), counts)
    mother = np.where(col["mother"] >= 0, col["mother"] + starts[ev], -1)
    apid = np.abs(col["pid"])
    is_res = ((col["flags"] & int(TruthFlag.RESONANCE)) != 0) & (apid == abs(pid))
    is_parton = ((col["flags"] & int(TruthFlag.HARD)) != 0) & np.isin(apid, PARTONS)

    root = np.full(len(apid), -1, dtype=np.int64)
    up = mother.copy()
    for _ in range(_MAX_DEPTH):
        found = (root < 0) & (up >= 0) & is_res[np.maximum(up, 0)]
        root[found] = up[found]
        up = np.where(up >= 0, mother[np.maximum(up, 0)], -1)
    res = np.flatnonzero(is_res)
    part = np.flatnonzero(is_parton & (root >= 0))
    part = part[np.argsort(np.searchsorted(res, root[part]), kind="stable")]
    owner = np.searchsorted(res, root[part])
    n_partons = np.bincount(owner, minlength=len(res))

    eta, phi = _eta_phi(mom["px"], mom["py"], mom["pz"])

    def record(idx):
        return {
            "pid": col["pid"][idx],
            **{k: v[idx] for k, v in mom.items()},
            "eta": eta[idx],
            "phi": phi[idx],
        }

    quark = np.isin(apid[part], (1, 2, 3, 4, 5, 21))
    hadronic = (n_partons > 0) & (
        np.bincount(owner, weights=quark, minlength=len(res)) == n_partons
    )
    partons = ak.unflatten(ak.zip(record(part)), n_partons)
    flat = ak.zip({**record(res), "hadronic": hadronic}, depth_limit=1)
    flat = ak.with_field(flat, partons, "partons")
    return ak.unflatten(flat, np.bincount(ev[res], minlength=len(counts)))


def _delta_r(eta1, phi1, eta2, phi2):
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, dphi)


def contained(jets: ak.Array, decays: ak.Array, dr: float, hadronic: bool = True) -> ak.Array:
    """For each jet (fields ``eta, phi``), whether one resonance of ``decays`` and all its
    decay partons lie within ``dr`` of the jet axis (only hadronic decays if ``hadronic``)."""
    if hadronic:
        decays = decays[decays.hadronic]
    pairs = ak.cartesian({"j": jets, "r": decays}, nested=True)
    j, r = pairs.j, pairs.r
    res_in = _delta_r(j.eta, j.phi, r.eta, r.phi) < dr
    partons_in = ak.all(_delta_r(j.eta, j.phi, r.partons.eta, r.partons.phi) < dr, axis=-1)
    ok = res_in & partons_in & (ak.num(r.partons, axis=-1) > 0)
    return ak.fill_none(ak.any(ok, axis=-1), False)
