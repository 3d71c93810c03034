"""The 30 HiggsML features computed from reconstructed objects, and a missing-mass estimate.

Definitions follow the documentation of the challenge (Adam-Bourdarios et al., "Learning to
discover: the Higgs boson machine learning challenge", 2014, appendix B). Units: momenta,
energies and masses in GeV, angles in rad. An undefined value is ``schema.UNDEFINED`` (-999).

:func:`higgsml_features` takes one lepton and one hadronic tau per event (the preselection is
done before), the jets of the event (already cleaned of the lepton and the tau and above
30 GeV; the function applies no cut, and sorts them by decreasing pT itself), and the missing
transverse momentum. ``lep`` and ``tau`` are mappings of 1-D arrays ``pt, eta, phi, mass``;
``jets`` an awkward array (events * var) of records with the same fields; ``met`` a mapping
with ``pt, phi, sumet``. Negative masses (rounding in a reconstruction) count as 0.

==============================  ==============================================================
``PRI_jet_num``                 number of jets, capped at 3
``PRI_jet_all_pt``              scalar sum of the pT of all the jets (0 without jets)
``PRI_jet_(sub)leading_*``      pT, eta, phi of the (sub)leading jet; -999 when absent
``DER_mass_MMC``                :func:`mmc_mass` (see below); -999 when the estimate fails
``DER_mass_transverse_met_lep`` sqrt(2 pT_lep MET (1 - cos(phi_lep - phi_met)))
``DER_mass_vis``                invariant mass of lepton + tau
``DER_pt_h``                    |pT(tau) + pT(lep) + MET| (vector sum)
``DER_deltaeta_jet_jet``        |eta_j1 - eta_j2|; -999 with fewer than 2 jets
``DER_mass_jet_jet``            invariant mass of the two leading jets; -999 likewise
``DER_prodeta_jet_jet``         eta_j1 * eta_j2; -999 likewise
``DER_deltar_tau_lep``          sqrt(d_eta^2 + d_phi^2) of tau and lepton
``DER_pt_tot``                  |pT(tau) + pT(lep) + pT(j1) + pT(j2) + MET|, only the jets that
                                exist and never more than the two leading ones
``DER_sum_pt``                  pT_tau + pT_lep + PRI_jet_all_pt
``DER_pt_ratio_lep_tau``        pT_lep / pT_tau
``DER_met_phi_centrality``      (A + B) / sqrt(A^2 + B^2), A = sin(phi_met - phi_lep) s,
                                B = sin(phi_tau - phi_met) s, s = sign(sin(phi_tau - phi_lep));
                                sqrt(2) when MET bisects the smaller angle between lepton and
                                tau, >= 1 inside it, -sqrt(2) opposite. s = +1 when the sine
                                is exactly 0; 0 when A = B = 0 (all three collinear)
``DER_lep_eta_centrality``      exp(-4 / (eta_j1 - eta_j2)^2 (eta_lep - (eta_j1 + eta_j2)/2)^2):
                                1 halfway between the two leading jets, 1/e at either jet;
                                -999 with fewer than 2 jets; 0 if both jets have the same eta
==============================  ==============================================================

Missing mass (:func:`mmc_mass`)
-------------------------------
A simplified Missing Mass Calculator (MMC; Elagin, Murat, Pranko, Safonov, arXiv:1012.4686)
for a lepton (from a leptonic tau decay, two neutrinos) and a hadronic tau (one neutrino);
``tau_kind="lep"`` treats the second object as leptonic too. For each event:

1. **Grid.** The azimuth of the invisible system of each tau is scanned on ``n_phi`` equally
   spaced points phi_vis + t w, t in [-1, 1], around the visible object: ``n_phi**2`` grid
   nodes. The half-width is w = c / pT_vis, clipped to [0.02, 1] rad, with c = 2 GeV for a
   leptonic and 4 GeV for a hadronic decay: |d_phi(vis, inv)| * pT_vis is of the order of
   p_tau * dtheta_3D, a few GeV, and c is about its 90 % point in the toy decays.
2. **Nuisance parameters**, one random draw per node (``seed``): a shift of the missing
   momentum, d_MET ~ Gaussian(0, sigma) per component, sigma = ``met_resolution`` *
   sqrt(sumet) (0.5 GeV^1/2 by default) or ``met_sigma``; for a leptonic decay, the mass m_nn
   of the two-neutrino system, drawn from its phase-space distribution dN/dm_nn^2 ~ (1 -
   m_nn^2 / M^2), M = m_tau - m_lep (constant matrix element, massless lepton; the V-A shape
   differs somewhat), by inverting its cumulative distribution. A hadronic decay has
   m_inv = 0. Drawing d_MET from the resolution Gaussian is the Gaussian MET term of the
   MMC, applied by sampling: a shift enters as often as its Gaussian probability says.
3. **Solve.** The two invisible pT follow from MET + d_MET = pT_inv1 + pT_inv2 (2 x 2 linear
   system; nodes with a negative pT or collinear directions are dropped). The longitudinal
   momentum of each invisible system follows from the tau mass (m_tau = 1.77686 GeV),
   a quadratic equation: 0, 1 or 2 solutions. Every combination of solutions of the two
   taus (up to 4 per node) gives a ditau mass.
4. **Weight** of a solution: the product over the two taus of
   ``f(u; m) * p_tau**tau_p_power`` where u = p_tau * dtheta_3D (GeV) is the momentum of the
   tau times the 3D angle between its visible and invisible products, and f a log-normal pdf
   of u. At high boost u does not depend on the tau momentum (dtheta ~ m_tau / p_tau), so f
   replaces the MMC's fitted pdfs: P(dtheta_3D | p_tau) = p_tau f(p_tau dtheta_3D), and the
   weight per tau is P(dtheta_3D | p_tau) p_tau**(tau_p_power - 1).
   The log-normal's mean and width of ln u depend on the larger mass of the two products
   (m = m_vis for a hadronic decay, m_nn for a leptonic one) and were fitted by us (moments
   of ln u) to isotropic two-body tau decays simulated with numpy for tau momenta
   log-uniform in 20-300 GeV (:data:`_LN_U_TABLE`; they change by < 0.01 across that
   range). The factor p_tau**tau_p_power (-1.5 by default) is a prior on the tau momenta,
   chosen on the toy of the tests: the noise in MET pushes the estimate up, and the median
   over the 91.19 / 125 GeV toy samples is 104 / 140 GeV with a flat prior (0), 97 / 128
   with -1 (scale invariant), 95 / 125 with -1.5 and 93 / 123 with -2.
5. **Estimate**: the most probable value of the weighted histogram of ln(m_tautau) (bins of
   0.02, i.e. 2 %, from 1 GeV to 5 TeV, smoothed with a Gaussian of 3 bins), refined by
   a parabola through the highest bin and its neighbours.
6. **Fallback.** An event without any solution on the grid gets the collinear
   approximation: the neutrinos are taken collinear with the visible objects, MET = r1 pT_1 +
   r2 pT_2, x_i = 1 / (1 + r_i) is the visible fraction of the tau momentum, and m = m_vis /
   sqrt(x1 x2) when 0 < x1, x2 <= ``collinear_x_max`` (1.1: a 10 % tolerance above 1, which
   keeps events whose MET fluctuated slightly outside the angle between the visible
   objects). Otherwise, and when the visible objects are (anti)parallel in phi (the
   decomposition is singular), the result is -999. ``method="collinear"`` gives only this.

The grid and the draws are processed in blocks of :data:`BLOCK_EVENTS` events (arrays of
events x nodes x 4 solutions): ~ 70 MB at the default ``n_phi`` = 15, ~ 2.7 s per 10,000
events on one (shared) core. The result depends on ``seed`` and on the order of the events
(the draws are made block after block). An event's estimate carries sampling noise: between
two seeds, |d ln m| / sqrt(2) has a 68th percentile of ~ 8-9 % (with a tail of events whose
weighted histogram has two similar peaks); ``n_phi=25`` brings it to ~ 6 % at 2.7 times
the cost.

On the toy of the tests (taus from a 91.19 or 125 GeV resonance with pT ~ 30 GeV, MET
resolution 0.5 sqrt(sumet) ~ 8 GeV per component), the grid has no solution for ~ 2-3 % of
the events (-999 after the fallback: ~ 2 %) against ~ 31 % failures of the collinear
approximation; median 94.6 / 125.4 GeV, interquartile range / median 0.21 / 0.25 (collinear:
101 / 145 GeV, 0.56 / 0.70). Known limits: no tau polarisation (isotropic decays), one
pdf for all hadronic decays of the same visible mass, no jets in the MET balance, and, as in
the original MMC, the weights are not a full posterior density on the grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from colliderlab.core.errors import ConfigError, did_you_mean
from colliderlab.core.seeding import as_generator
from colliderlab.higgsml.schema import FEATURES, UNDEFINED

__all__ = ["BLOCK_EVENTS", "TAU_MASS", "higgsml_features", "mmc_mass"]

#: Tau lepton mass (PDG), GeV.
TAU_MASS = 1.77686
#: Events per block of the MMC grid (bounds memory; fixed so results do not depend on it).
BLOCK_EVENTS = 512

#: Mean and standard deviation of ln(u / GeV), u = p_tau * dtheta_3D(visible, invisible), for
#: an isotropic two-body tau decay whose heavier product has mass m (GeV) and the other is
#: massless. Fitted by us (moments of ln u) to 400,000 numpy-simulated decays per row, tau
#: momenta log-uniform in 20-300 GeV. Columns: m, mean, std.
_LN_U_TABLE = np.array(
    [
        [0.0, 1.573, 0.415],
        [0.2, 1.518, 0.344],
        [0.4, 1.415, 0.346],
        [0.6, 1.295, 0.417],
        [0.8, 1.169, 0.513],
        [1.0, 1.040, 0.606],
        [1.2, 0.917, 0.694],
        [1.4, 0.795, 0.776],
        [1.6, 0.673, 0.847],
        [1.7, 0.616, 0.881],
    ]
)
#: Half-width of the phi scan times the visible pT (GeV): leptonic, hadronic decay.
_PHI_SCALE = {"lep": 2.0, "had": 4.0}
_PHI_WINDOW_MIN, _PHI_WINDOW_MAX = 0.02, 1.0
#: Histogram of ln(m / GeV) for the most probable value.
_LN_M_BIN = 0.02
_LN_M_RANGE = (0.0, float(np.log(5000.0)))
#: Gaussian smoothing of that histogram, standard deviation 3 bins (6 % in mass), +-3 sigma.
_SMOOTHING = np.exp(-0.5 * (np.arange(-9, 10) / 3.0) ** 2)
_SMOOTHING /= _SMOOTHING.sum()

_PARTICLE_FIELDS = ("pt", "eta", "phi", "mass")
_MET_FIELDS = ("pt", "phi", "sumet")
_METHODS = ("mmc", "collinear")
_TAU_KINDS = ("had", "lep")


# --------------------------------------------------------------------------- validation


def _column(name: str, values: Any, n: int | None) -> np.ndarray:
    """``values`` as a finite 1-D float64 array (of length ``n`` when given)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{name} must be a 1-D array of numbers, got {type(values).__name__} ({exc})."
        ) from None
    if arr.ndim != 1:
        raise ConfigError(
            f"{name} must be a 1-D array (one value per event), got shape {arr.shape}."
        )
    if n is not None and arr.shape[0] != n:
        raise ConfigError(
            f"{name} has {arr.shape[0]} entries but the events number {n} (from the first "
            "input); every input needs one entry per event, in the same order."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"{name} has {int(bad.sum())} NaN/inf value(s) (first at event {first}); "
            "remove or fix those events before computing the features."
        )
    return arr


def _particle(name: str, obj: Any, n: int | None) -> dict[str, np.ndarray]:
    """A mapping with pt, eta, phi, mass as validated arrays."""
    if not isinstance(obj, Mapping) and not hasattr(obj, "__getitem__"):
        raise ConfigError(
            f"{name} must be a mapping with fields {_PARTICLE_FIELDS}, got {type(obj).__name__}."
        )
    out = {}
    for field in _PARTICLE_FIELDS:
        try:
            values = obj[field]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ConfigError(
                f"{name} has no field {field!r}; it needs {_PARTICLE_FIELDS} (GeV, -, rad, GeV)."
            ) from None
        out[field] = _column(f"{name}[{field!r}]", values, n)
        n = out[field].shape[0]
    if (out["pt"] <= 0).any():
        first = int(np.flatnonzero(out["pt"] <= 0)[0])
        raise ConfigError(
            f"{name}['pt'] must be > 0 GeV (one {name} per event), found "
            f"{out['pt'][first]} at event {first}."
        )
    out["mass"] = np.maximum(out["mass"], 0.0)
    return out


def _met(met: Any, n: int) -> dict[str, np.ndarray]:
    out = {}
    for field in _MET_FIELDS:
        try:
            values = met[field]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ConfigError(
                f"met has no field {field!r}; it needs {_MET_FIELDS} (GeV, rad, GeV)."
            ) from None
        out[field] = _column(f"met[{field!r}]", values, n)
    for field in ("pt", "sumet"):
        if (out[field] < 0).any():
            raise ConfigError(f"met[{field!r}] must be >= 0 GeV, found negative values.")
    return out


def _jets(jets: Any, n: int) -> ak.Array:
    """The jets as an awkward array of records, sorted by decreasing pT."""
    try:
        arr = jets if isinstance(jets, ak.Array) else ak.Array(jets)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"jets must be an awkward Array (events * var * {{pt, eta, phi, mass}}), "
            f"got {type(jets).__name__} ({exc})."
        ) from None
    if len(arr) != n:
        raise ConfigError(
            f"jets has {len(arr)} events but the lepton arrays have {n}; give one (possibly "
            "empty) list of jets per event."
        )
    if not ak.fields(arr) and arr.ndim == 2 and ak.sum(ak.num(arr, axis=1)) == 0:
        # events without any jet at all (e.g. ak.Array([[], []])): give them the fields
        empty = ak.zip({f: np.zeros(0) for f in _PARTICLE_FIELDS})
        arr = ak.unflatten(empty, np.zeros(n, dtype=np.int64))
    missing = [f for f in _PARTICLE_FIELDS if f not in ak.fields(arr)]
    if missing:
        raise ConfigError(
            f"jets has no field(s) {missing}; records need {_PARTICLE_FIELDS}, found "
            f"{ak.fields(arr)}."
        )
    if arr.ndim != 2:
        raise ConfigError(f"jets must be events * var * record (2 dimensions), got {arr.type}.")
    for field in _PARTICLE_FIELDS:
        flat = ak.to_numpy(ak.flatten(arr[field], axis=None)).astype(np.float64)
        if not np.isfinite(flat).all():
            raise ConfigError(
                f"jets[{field!r}] has {int((~np.isfinite(flat)).sum())} NaN/inf value(s); "
                "remove or fix those jets before computing the features."
            )
    return arr[ak.argsort(arr.pt, axis=1, ascending=False)]


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(
            f"{name}={value!r} is not one of {choices}.{did_you_mean(str(value), choices)}"
        )
    return value


# --------------------------------------------------------------------------- kinematics


def _wrap(dphi: np.ndarray) -> np.ndarray:
    """An angle difference wrapped into [-pi, pi) (rad)."""
    return (dphi + np.pi) % (2.0 * np.pi) - np.pi


def _cartesian(p: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """(px, py, pz, E) in GeV from pt, eta, phi, mass."""
    px = p["pt"] * np.cos(p["phi"])
    py = p["pt"] * np.sin(p["phi"])
    pz = p["pt"] * np.sinh(p["eta"])
    e = np.sqrt(px**2 + py**2 + pz**2 + p["mass"] ** 2)
    return px, py, pz, e


def _mass(*vectors: tuple[np.ndarray, ...]) -> np.ndarray:
    """Invariant mass (GeV) of the sum of (px, py, pz, E) four-vectors."""
    px, py, pz, e = (sum(v[i] for v in vectors) for i in range(4))
    return np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))


# --------------------------------------------------------------------------- symmetries

#: The azimuthal angles and pseudorapidities among the 30 features.
PHI_FEATURES = tuple(f for f in FEATURES if f.endswith("_phi"))
ETA_FEATURES = tuple(f for f in FEATURES if f.endswith("_eta"))


def canonical_frame(X: np.ndarray) -> np.ndarray:
    """The (n, 30) feature matrix in a frame fixed by the symmetries of the collision.

    The physics of an event does not change under a rotation about the beam axis, a
    reflection through a plane containing the beam, or the exchange of the two beams
    (eta -> -eta, pp is symmetric). The raw azimuths of the file are therefore pure noise to
    a classifier: only their differences carry information, which a network must otherwise
    learn from the data (a few thousand simulated events are too few). This function

    1. rotates every azimuth so that the hadronic tau lies at phi = 0;
    2. reflects all azimuths (phi -> -phi) where the lepton then has phi < 0;
    3. flips all pseudorapidities (eta -> -eta) where the tau has eta < 0.

    The derived features are invariant under all three; undefined values (-999) stay
    undefined. ``PRI_tau_phi`` becomes 0 for every event (the network ignores a constant
    column). The low-level features stay the four-momenta of the objects, only in
    another frame: no physics quantity is computed.
    """
    X = np.array(X, dtype=np.float64, copy=True)
    if X.ndim != 2 or X.shape[1] != len(FEATURES):
        raise ConfigError(
            f"canonical_frame: expected a (n, {len(FEATURES)}) matrix of the HiggsML features; "
            f"got shape {X.shape}."
        )
    undefined = X == UNDEFINED
    phi = [FEATURES.index(f) for f in PHI_FEATURES]
    eta = [FEATURES.index(f) for f in ETA_FEATURES]
    X[:, phi] = _wrap(X[:, phi] - X[:, [FEATURES.index("PRI_tau_phi")]])
    X[:, phi] *= np.where(X[:, [FEATURES.index("PRI_lep_phi")]] < 0.0, -1.0, 1.0)
    X[:, eta] *= np.where(X[:, [FEATURES.index("PRI_tau_eta")]] < 0.0, -1.0, 1.0)
    X[undefined] = UNDEFINED
    return X


# --------------------------------------------------------------------------- features


def higgsml_features(
    lep: Mapping[str, Any],
    tau: Mapping[str, Any],
    jets: ak.Array,
    met: Mapping[str, Any],
    *,
    mmc: str = "mmc",
    seed: int | np.random.SeedSequence | np.random.Generator = 0,
    mmc_options: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """The 30 HiggsML features of each event, keyed by ``schema.FEATURES`` (in that order).

    ``lep``, ``tau``: mappings of 1-D arrays ``pt, eta, phi, mass`` (GeV, -, rad, GeV), one
    lepton and one hadronic tau per event. ``jets``: awkward Array (events * var) of records
    ``pt, eta, phi, mass``, cleaned of the lepton and the tau (sorted here by decreasing pT;
    no cut is applied). ``met``: mapping of ``pt, phi, sumet`` (GeV, rad, GeV).
    ``mmc``: ``"mmc"`` or ``"collinear"``, the method of ``DER_mass_MMC`` (see
    :func:`mmc_mass`, which gets ``seed`` and the extra keywords of ``mmc_options``).

    Returns float64 arrays of length n_events; undefined entries are -999. Raises
    :class:`ConfigError` for missing fields, mismatched lengths or non-finite values.
    """
    lep_ = _particle("lep", lep, None)
    n = lep_["pt"].shape[0]
    tau_ = _particle("tau", tau, n)
    met_ = _met(met, n)
    jets_ = _jets(jets, n)
    _choice("mmc", mmc, _METHODS)

    n_jets = ak.to_numpy(ak.num(jets_, axis=1)).astype(np.int64)
    lead = ak.pad_none(jets_, 2, axis=1, clip=True)
    j = {
        (k, field): ak.to_numpy(ak.fill_none(lead[field][:, k], np.nan)).astype(np.float64)
        for k in (0, 1)
        for field in _PARTICLE_FIELDS
    }
    jet_all_pt = ak.to_numpy(ak.sum(jets_.pt, axis=1)).astype(np.float64)
    has1, has2 = n_jets >= 1, n_jets >= 2

    met_x = met_["pt"] * np.cos(met_["phi"])
    met_y = met_["pt"] * np.sin(met_["phi"])
    v_lep, v_tau = _cartesian(lep_), _cartesian(tau_)

    out: dict[str, np.ndarray] = {}
    opts = dict(mmc_options or {})
    clash = sorted(set(opts) & {"sumet", "method", "seed"})
    if clash:
        raise ConfigError(
            f"mmc_options must not set {clash}: higgsml_features passes met['sumet'], "
            "mmc= and seed= itself."
        )
    out["DER_mass_MMC"] = mmc_mass(
        lep_, tau_, met_x, met_y, sumet=met_["sumet"], method=mmc, seed=seed, **opts
    )
    out["DER_mass_transverse_met_lep"] = np.sqrt(
        np.maximum(2.0 * lep_["pt"] * met_["pt"] * (1.0 - np.cos(lep_["phi"] - met_["phi"])), 0.0)
    )
    out["DER_mass_vis"] = _mass(v_lep, v_tau)
    out["DER_pt_h"] = np.hypot(v_lep[0] + v_tau[0] + met_x, v_lep[1] + v_tau[1] + met_y)

    eta1, eta2 = j[0, "eta"], j[1, "eta"]
    with np.errstate(invalid="ignore", divide="ignore"):
        jet_vecs = [
            _cartesian({f: np.nan_to_num(j[k, f]) for f in _PARTICLE_FIELDS}) for k in (0, 1)
        ]
        mjj = _mass(*jet_vecs)
        deta = np.abs(eta1 - eta2)
        centre = 0.5 * (eta1 + eta2)
        lep_cent = np.exp(-4.0 / deta**2 * (lep_["eta"] - centre) ** 2)
    out["DER_deltaeta_jet_jet"] = np.where(has2, deta, UNDEFINED)
    out["DER_mass_jet_jet"] = np.where(has2, mjj, UNDEFINED)
    out["DER_prodeta_jet_jet"] = np.where(has2, eta1 * eta2, UNDEFINED)
    out["DER_deltar_tau_lep"] = np.hypot(
        tau_["eta"] - lep_["eta"], _wrap(tau_["phi"] - lep_["phi"])
    )

    tot_x = v_lep[0] + v_tau[0] + met_x
    tot_y = v_lep[1] + v_tau[1] + met_y
    for k, has in ((0, has1), (1, has2)):
        tot_x = tot_x + np.where(has, jet_vecs[k][0], 0.0)
        tot_y = tot_y + np.where(has, jet_vecs[k][1], 0.0)
    out["DER_pt_tot"] = np.hypot(tot_x, tot_y)
    out["DER_sum_pt"] = tau_["pt"] + lep_["pt"] + jet_all_pt
    out["DER_pt_ratio_lep_tau"] = lep_["pt"] / tau_["pt"]
    out["DER_met_phi_centrality"] = _met_phi_centrality(lep_["phi"], tau_["phi"], met_["phi"])
    lep_cent = np.where(deta > 0, lep_cent, 0.0)  # two jets at the same eta: the limit 0
    out["DER_lep_eta_centrality"] = np.where(has2, lep_cent, UNDEFINED)

    for field in ("pt", "eta", "phi"):
        out[f"PRI_tau_{field}"] = tau_[field]
        out[f"PRI_lep_{field}"] = lep_[field]
    out["PRI_met"], out["PRI_met_phi"], out["PRI_met_sumet"] = (
        met_["pt"],
        met_["phi"],
        met_["sumet"],
    )
    out["PRI_jet_num"] = np.minimum(n_jets, 3).astype(np.float64)
    for k, has, label in ((0, has1, "leading"), (1, has2, "subleading")):
        for field in ("pt", "eta", "phi"):
            out[f"PRI_jet_{label}_{field}"] = np.where(has, j[k, field], UNDEFINED)
    out["PRI_jet_all_pt"] = jet_all_pt
    return {name: np.ascontiguousarray(out[name], dtype=np.float64) for name in FEATURES}


def _met_phi_centrality(
    phi_lep: np.ndarray, phi_tau: np.ndarray, phi_met: np.ndarray
) -> np.ndarray:
    """(A + B) / sqrt(A^2 + B^2) of the HiggsML documentation, in [-sqrt 2, sqrt 2]."""
    s = np.sign(np.sin(phi_tau - phi_lep))
    s = np.where(s == 0, 1.0, s)
    a = np.sin(phi_met - phi_lep) * s
    b = np.sin(phi_tau - phi_met) * s
    norm = np.hypot(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (a + b) / norm, 0.0)


# --------------------------------------------------------------------------- missing mass


def mmc_mass(
    lep: Mapping[str, Any],
    tau: Mapping[str, Any],
    met_x: Any,
    met_y: Any,
    *,
    sumet: Any = None,
    met_sigma: Any = None,
    met_resolution: float = 0.5,
    tau_kind: str = "had",
    method: str = "mmc",
    n_phi: int = 15,
    tau_p_power: float = -1.5,
    collinear_x_max: float = 1.1,
    seed: int | np.random.SeedSequence | np.random.Generator = 0,
) -> np.ndarray:
    """Ditau mass (GeV) of each event, -999 where no estimate exists (module docstring).

    ``lep``: the lepton of a leptonic tau decay; ``tau``: the visible part of the other tau,
    hadronic (``tau_kind="had"``, one neutrino) or leptonic (``"lep"``); both mappings of
    1-D arrays ``pt, eta, phi, mass`` (GeV, -, rad, GeV). ``met_x``, ``met_y``: missing
    transverse momentum components (GeV). ``method``: ``"mmc"`` (grid scan, falling back to
    the collinear approximation where the grid has no solution) or ``"collinear"``.

    MET resolution of the MMC (GeV, per component): ``met_sigma`` (scalar or per event) if
    given, else ``met_resolution * sqrt(sumet)`` with ``sumet`` in GeV. ``n_phi``: grid
    points per tau in azimuth (n_phi**2 nodes per event). ``tau_p_power``: exponent of the
    prior on each tau momentum. ``collinear_x_max``: largest visible momentum fraction the
    collinear approximation accepts. ``seed``: the random draws of the MET shift and of the
    two-neutrino mass (int, SeedSequence or Generator).
    """
    lep_ = _particle("lep", lep, None)
    n = lep_["pt"].shape[0]
    tau_ = _particle("tau", tau, n)
    mx = _column("met_x", met_x, n)
    my = _column("met_y", met_y, n)
    _choice("method", method, _METHODS)
    _choice("tau_kind", tau_kind, _TAU_KINDS)
    if not np.isfinite(collinear_x_max) or collinear_x_max < 1.0:
        raise ConfigError(f"collinear_x_max must be a number >= 1, got {collinear_x_max!r}.")

    collinear = _collinear_mass(lep_, tau_, mx, my, collinear_x_max)
    if method == "collinear":
        return collinear

    if isinstance(n_phi, bool) or not isinstance(n_phi, int | np.integer) or n_phi < 2:
        raise ConfigError(f"n_phi must be an integer >= 2, got {n_phi!r}.")
    if not np.isfinite(tau_p_power):
        raise ConfigError(f"tau_p_power must be a finite number, got {tau_p_power!r}.")
    sigma = _met_sigma(n, sumet, met_sigma, met_resolution)
    rng = as_generator(seed)

    result = np.full(n, UNDEFINED)
    kinds = ("lep", tau_kind)
    sides = [(*_cartesian(p), p["mass"], p["pt"], p["phi"]) for p in (lep_, tau_)]
    t = np.linspace(-1.0, 1.0, int(n_phi))
    grid = np.stack(np.meshgrid(t, t, indexing="ij"), axis=0).reshape(2, -1)
    for start in range(0, n, BLOCK_EVENTS):
        sl = slice(start, min(n, start + BLOCK_EVENTS))
        block_sides = [tuple(a[sl, None] for a in side) for side in sides]
        result[sl] = _mmc_block(
            block_sides,
            kinds,
            mx[sl, None],
            my[sl, None],
            sigma[sl, None],
            grid,
            tau_p_power,
            rng,
        )
    return np.where(result > 0, result, collinear)


def _met_sigma(n: int, sumet: Any, met_sigma: Any, met_resolution: float) -> np.ndarray:
    """The MET resolution per component (GeV) of each event."""
    if met_sigma is not None:
        arr = np.asarray(met_sigma, dtype=np.float64)
        sigma = _column("met_sigma", np.broadcast_to(arr, (n,)) if arr.ndim == 0 else arr, n)
    elif sumet is not None:
        if not np.isfinite(met_resolution) or met_resolution <= 0:
            raise ConfigError(f"met_resolution must be > 0 GeV^1/2, got {met_resolution!r}.")
        s = _column("sumet", sumet, n)
        if (s < 0).any():
            raise ConfigError("sumet must be >= 0 GeV, found negative values.")
        sigma = met_resolution * np.sqrt(s)
    else:
        raise ConfigError(
            "method='mmc' needs the MET resolution: pass sumet (GeV; sigma = met_resolution "
            "* sqrt(sumet)) or met_sigma (GeV per component)."
        )
    if (sigma <= 0).any():
        raise ConfigError(
            "The MET resolution must be > 0 GeV in every event; got 0 or less (sumet = 0 or "
            "met_sigma <= 0). Pass a positive met_sigma for such events."
        )
    return sigma


def _collinear_mass(
    lep: Mapping[str, np.ndarray],
    tau: Mapping[str, np.ndarray],
    mx: np.ndarray,
    my: np.ndarray,
    x_max: float,
) -> np.ndarray:
    """Collinear-approximation ditau mass (GeV), -999 where it fails."""
    v1, v2 = _cartesian(lep), _cartesian(tau)
    det = v1[0] * v2[1] - v1[1] * v2[0]
    singular = np.abs(det) <= 1e-9 * lep["pt"] * tau["pt"]
    safe = np.where(singular, 1.0, det)
    r1 = (mx * v2[1] - my * v2[0]) / safe
    r2 = (v1[0] * my - v1[1] * mx) / safe
    ok = ~singular & (r1 > -1.0) & (r2 > -1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        x1 = np.where(ok, 1.0 / (1.0 + r1), 0.0)
        x2 = np.where(ok, 1.0 / (1.0 + r2), 0.0)
    ok &= (x1 <= x_max) & (x2 <= x_max)
    m_vis = _mass(v1, v2)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = m_vis / np.sqrt(x1 * x2)
    return np.where(ok & np.isfinite(m), m, UNDEFINED)


def _ln_u_pdf(u: np.ndarray, m: np.ndarray) -> np.ndarray:
    """ln of the log-normal pdf (1/GeV) of u = p_tau dtheta_3D for a decay product mass m."""
    mu = np.interp(m, _LN_U_TABLE[:, 0], _LN_U_TABLE[:, 1])
    s = np.interp(m, _LN_U_TABLE[:, 0], _LN_U_TABLE[:, 2])
    lnu = np.log(u)
    return -0.5 * ((lnu - mu) / s) ** 2 - np.log(s) - lnu - 0.5 * np.log(2.0 * np.pi)


def _m_nunu(rng: np.random.Generator, shape: tuple[int, ...], m_lep: np.ndarray) -> np.ndarray:
    """Two-neutrino masses (GeV) of leptonic tau decays from 3-body phase space."""
    end = np.maximum(TAU_MASS - m_lep, 0.0)
    q = rng.random(shape)
    # dN/ds ~ (1 - s / end^2) on [0, end^2]  ->  s = end^2 (1 - sqrt(1 - q))
    return end * np.sqrt(1.0 - np.sqrt(1.0 - q))


def _tau_solutions(side, q_t, cphi, sphi, m_inv, tau_p_power):
    """Both tau-mass solutions for one tau: four-momenta (E, px, py, pz) and log-weights.

    ``side``: (px, py, pz, E, mass, pt, phi) of the visible object, shape (B, 1); ``q_t``,
    ``cphi``, ``sphi``, ``m_inv``: invisible pT, direction and mass, shape (B, G). Returns
    arrays of shape (B, G, 2) (the two roots of the quadratic); invalid roots get -inf.
    """
    px, py, pz, e, m_vis, pt_vis, _ = side
    qx, qy = q_t * cphi, q_t * sphi
    a_term = 0.5 * (TAU_MASS**2 - m_vis**2 - m_inv**2) + px * qx + py * qy
    a_coef = m_vis**2 + pt_vis**2
    mt2 = q_t**2 + m_inv**2
    disc = a_term**2 - a_coef * mt2
    ok = (a_term > 0) & (disc >= 0)
    root = np.sqrt(np.where(ok, disc, 0.0))
    qz = np.stack(((a_term * pz + e * root) / a_coef, (a_term * pz - e * root) / a_coef), -1)
    e_inv = np.sqrt(mt2[..., None] + qz**2)
    tx, ty = (px + qx)[..., None], (py + qy)[..., None]
    tz = pz[..., None] + qz
    p_tau = np.sqrt(tx**2 + ty**2 + tz**2)
    p_vis = np.sqrt(px**2 + py**2 + pz**2)[..., None]
    q_abs = np.sqrt(q_t[..., None] ** 2 + qz**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = ((px * qx + py * qy)[..., None] + pz[..., None] * qz) / (p_vis * q_abs)
    angle = np.arccos(np.clip(np.nan_to_num(cos, nan=1.0), -1.0, 1.0))
    m_heavy = np.maximum(m_vis, m_inv)[..., None]
    u = np.maximum(p_tau * angle, 1e-6)
    logw = _ln_u_pdf(u, m_heavy) + tau_p_power * np.log(p_tau)
    logw = np.where(ok[..., None], logw, -np.inf)
    return (
        e[..., None] + e_inv,
        np.broadcast_to(tx, tz.shape),
        np.broadcast_to(ty, tz.shape),
        tz,
    ), logw


def _mmc_block(sides, kinds, mx, my, sigma, grid, tau_p_power, rng) -> np.ndarray:
    """MMC estimate of a block of B events; -999 where the grid has no solution."""
    b = mx.shape[0]
    n_nodes = grid.shape[1]
    phis = []
    for side, kind, t in zip(sides, kinds, grid, strict=True):
        pt_vis, phi_vis = side[5], side[6]
        width = np.clip(_PHI_SCALE[kind] / pt_vis, _PHI_WINDOW_MIN, _PHI_WINDOW_MAX)
        phis.append(phi_vis + width * t[None, :])
    c1, s1 = np.cos(phis[0]), np.sin(phis[0])
    c2, s2 = np.cos(phis[1]), np.sin(phis[1])
    # MET + shift = q1 (c1, s1) + q2 (c2, s2)
    mxs = mx + sigma * rng.standard_normal((b, n_nodes))
    mys = my + sigma * rng.standard_normal((b, n_nodes))
    det = s2 * c1 - c2 * s1
    good = np.abs(det) > 1e-9
    safe = np.where(good, det, 1.0)
    q1 = (mxs * s2 - mys * c2) / safe
    q2 = (mys * c1 - mxs * s1) / safe
    good &= (q1 >= 0) & (q2 >= 0)

    taus = []
    for side, kind, q_t, c, s in zip(sides, kinds, (q1, q2), (c1, c2), (s1, s2), strict=True):
        m_inv = _m_nunu(rng, (b, n_nodes), side[4]) if kind == "lep" else np.zeros((b, n_nodes))
        taus.append(_tau_solutions(side, q_t, c, s, m_inv, tau_p_power))
    (p1, w1), (p2, w2) = taus
    total = [p1[i][..., :, None] + p2[i][..., None, :] for i in range(4)]
    m2 = total[0] ** 2 - total[1] ** 2 - total[2] ** 2 - total[3] ** 2
    mass = np.sqrt(np.maximum(m2, 0.0)).reshape(b, -1)
    logw = np.where(good[..., None, None], w1[..., :, None] + w2[..., None, :], -np.inf)
    logw = logw.reshape(b, -1)
    return _most_probable(mass, logw)


def _most_probable(mass: np.ndarray, logw: np.ndarray) -> np.ndarray:
    """Most probable value (GeV) of each row's weighted ln(mass) histogram; -999 if empty."""
    b = mass.shape[0]
    top = logw.max(axis=1)
    found = np.isfinite(top)
    with np.errstate(invalid="ignore"):
        w = np.exp(logw - np.where(found, top, 0.0)[:, None])
    w = np.where(np.isfinite(logw) & (mass > 0), w, 0.0)
    lo, hi = _LN_M_RANGE
    n_bins = round((hi - lo) / _LN_M_BIN)
    ln_m = np.log(np.where(mass > 0, mass, 1.0))
    idx = np.clip(((ln_m - lo) / _LN_M_BIN).astype(np.int64), 0, n_bins - 1)
    idx += np.arange(b)[:, None] * n_bins
    hist = np.bincount(idx.ravel(), weights=w.ravel(), minlength=b * n_bins).reshape(b, n_bins)
    half = len(_SMOOTHING) // 2
    padded = np.pad(hist, ((0, 0), (half, half)))
    smooth = sum(k * padded[:, i : i + n_bins] for i, k in enumerate(_SMOOTHING))
    j = smooth.argmax(axis=1)
    rows = np.arange(b)
    h_m = smooth[rows, np.maximum(j - 1, 0)]
    h_0 = smooth[rows, j]
    h_p = smooth[rows, np.minimum(j + 1, n_bins - 1)]
    curv = h_m - 2.0 * h_0 + h_p
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curv < 0, 0.5 * (h_m - h_p) / curv, 0.0)
    peak = lo + (j + 0.5 + np.clip(offset, -0.5, 0.5)) * _LN_M_BIN
    found &= hist.sum(axis=1) > 0
    return np.where(found, np.exp(peak), UNDEFINED)
