"""Physics validation of the fast simulation: jet response and resolution, track resolution,
efficiencies, mass peaks. Used by the tests, by ``colliderlab validate-detector`` and for the
plots in ``docs/validation/``.

Energies in GeV.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import awkward as ak
import numpy as np

#: pT bins (GeV) of the jet response and resolution.
JET_PT_BINS = (20, 30, 45, 70, 100, 150, 220, 330, 500, 750, 1100)


def match_jets(events: ak.Array, dr_max: float = 0.2, eta_max: float = 2.5):
    """(reco pT, raw reco pT, gen pT, |eta|) of reco jets matched to a generator-level jet."""
    j, g = events.Jet, events.GenJet
    pairs = ak.cartesian({"j": j, "g": g}, nested=True)
    dr = pairs.j.deltaR(pairs.g)
    best = ak.argmin(dr, axis=-1, keepdims=True)
    dr_best = ak.fill_none(ak.flatten(ak.min(dr, axis=-1, keepdims=True), axis=-1), np.inf)
    gen = ak.flatten(pairs.g[best], axis=-1)
    ok = (dr_best < dr_max) & (abs(j.eta) < eta_max)
    gen_pt = ak.to_numpy(ak.flatten(ak.fill_none(gen.pt, 0.0)[ok]))
    return (
        ak.to_numpy(ak.flatten(j.pt[ok])),
        ak.to_numpy(ak.flatten((j.pt * j.raw_factor)[ok])),
        gen_pt,
        ak.to_numpy(ak.flatten(abs(j.eta[ok]))),
    )


def response_table(reco_pt, gen_pt, bins: Sequence[float] = JET_PT_BINS, min_entries: int = 20):
    """Median response reco/gen and resolution (half the 16-84% width / median) per gen-pT bin.

    Returns a list of dicts: ``pt_lo, pt_hi, pt_mean, n, response, resolution``.
    """
    rows = []
    for lo, hi in itertools.pairwise(bins):
        s = (gen_pt >= lo) & (gen_pt < hi)
        if s.sum() < min_entries:
            continue
        r = reco_pt[s] / gen_pt[s]
        med = float(np.median(r))
        width = float(np.percentile(r, 84) - np.percentile(r, 16)) / 2
        rows.append(
            {
                "pt_lo": lo,
                "pt_hi": hi,
                "pt_mean": float(gen_pt[s].mean()),
                "n": int(s.sum()),
                "response": med,
                "resolution": width / med,
            }
        )
    return rows


def fit_calibration(raw_pt, gen_pt, n_terms: int = 2, pt_min: float = 30.0) -> tuple[float, ...]:
    """Fit r(pT_raw) = sum_k c_k / ln(pT_raw)^k to the raw jet response (pT in GeV).

    The response is measured in bins of generator-level pT above ``pt_min`` (below, the reco
    threshold biases it); each bin enters at its mean raw pT (response x mean gen pT),
    weighted by sqrt(entries).
    """
    rows = [r for r in response_table(raw_pt, gen_pt) if r["pt_lo"] >= pt_min]
    x = np.array([1.0 / np.log(r["response"] * r["pt_mean"]) for r in rows])
    y = np.array([r["response"] for r in rows])
    w = np.sqrt([r["n"] for r in rows])
    design = np.vstack([x**k for k in range(n_terms)]).T
    coef, *_ = np.linalg.lstsq(design * w[:, None], y * w, rcond=None)
    return tuple(float(c) for c in coef)


#: CMS particle-flow jet energy resolution at central rapidity, 8 TeV (arXiv:1607.03663,
#: abstract): "15-20% at 30 GeV, about 10% at 100 GeV, and 5% at 1 TeV". Keys: pT in GeV.
CMS_JER_REFERENCE = {30.0: 0.175, 100.0: 0.10, 1000.0: 0.05}


def reference_jet_resolution(pt: np.ndarray) -> np.ndarray:
    """The CMS reference resolution, interpolated linearly in ln(pT) between its points."""
    pts = np.log(list(CMS_JER_REFERENCE))
    return np.interp(np.log(np.asarray(pt, dtype=float)), pts, list(CMS_JER_REFERENCE.values()))
