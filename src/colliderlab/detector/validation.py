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


# ----------------------------------------------------------------------------- full validation
def _reco(process, n, seed, card, **kw):
    from colliderlab.core.seeding import chunk_seed
    from colliderlab.detector.reco import FastSimulation
    from colliderlab.generate import GenerationConfig
    from colliderlab.generate.engine import generate_chunk
    from colliderlab.io.events import with_vector

    cfg = GenerationConfig(process, n_events=n, seed=seed, chunk_size=n, **kw)
    gen, _ = generate_chunk(cfg, 0, chunk_seed(seed, 0))
    return with_vector(gen), with_vector(FastSimulation(card)(gen, np.random.default_rng(seed)))


def os_pair_masses(leptons) -> np.ndarray:
    """Mass of the two leading leptons of each event, if of opposite charge (GeV)."""
    two = leptons[ak.num(leptons) >= 2]
    a, b = two[:, 0], two[:, 1]
    return ak.to_numpy((a + b).mass[a.charge != b.charge])


def run_validation(card, scale: float = 1.0, seed: int = 11) -> dict:
    """Generate and simulate the validation samples; return the numbers and arrays to plot.

    ``scale`` multiplies every sample size (1.0: ~3 minutes on one core).
    """
    from colliderlab.generate.engine import TruthFlag
    from colliderlab.generate.truth import contained, resonance_decays
    from colliderlab.report.generation import core_peak, voigt_peak

    n = lambda k: max(50, int(k * scale))  # noqa: E731
    out: dict = {"card": card.name}
    # Z peaks
    gen, zmm = _reco("z_ll", n(4000), seed, card, params={"flavour": "mu"})
    _, zee = _reco("z_ll", n(4000), seed + 1, card, params={"flavour": "e"})
    m_mm, m_ee = os_pair_masses(zmm.Muon), os_pair_masses(zee.Electron)
    z = gen.truth[(abs(gen.truth.pid) == 23) & ((gen.truth.flags & int(TruthFlag.RESONANCE)) != 0)]
    out["z_truth_peak"] = voigt_peak(ak.to_numpy(ak.flatten(z.mass)))[0]
    out["z_mumu"] = {"masses": m_mm, "peak": voigt_peak(m_mm)[0]}
    out["z_ee"] = {"masses": m_ee, "peak": voigt_peak(m_ee)[0]}
    # tracks: pT resolution of charged hadrons vs pT (|eta| < 0.5), and efficiency
    t = zmm.Track
    truth = gen.particles[t.gen_index]
    pt_gen = ak.to_numpy(ak.flatten(truth.pt))
    ratio = ak.to_numpy(ak.flatten(t.pt)) / pt_gen
    aeta = np.abs(ak.to_numpy(ak.flatten(truth.eta)))
    pid = np.abs(ak.to_numpy(ak.flatten(t.pid)))
    had = (pid != 11) & (pid != 13) & (aeta < 0.5)
    edges = np.array([0.5, 1, 2, 5, 10, 20, 50])
    rows = []
    for lo, hi in itertools.pairwise(edges):
        s = had & (pt_gen >= lo) & (pt_gen < hi)
        if s.sum() >= 20:
            rows.append(
                {
                    "pt": float(pt_gen[s].mean()),
                    "measured": float(np.std(ratio[s])),
                    "card": float(
                        card.tracker.resolution["hadron"](
                            np.array([pt_gen[s].mean()]), np.array([0.25])
                        )[0]
                    ),
                }
            )
    out["track_resolution"] = rows
    # jets: response and resolution from QCD in three pTHat ranges
    reco_pt, gen_pt = [], []
    for k, (pthat, size) in enumerate(((20.0, 1500), (80.0, 800), (300.0, 400))):
        _, q = _reco("qcd_dijet", n(size), seed + 10 + k, card, params={"pthat_min": pthat})
        r, _, g, _ = match_jets(q)
        reco_pt.append(r)
        gen_pt.append(g)
    table = response_table(np.concatenate(reco_pt), np.concatenate(gen_pt))
    for row in table:
        row["cms_reference"] = float(reference_jet_resolution(row["pt_mean"]))
    out["jets"] = table
    # boosted tops vs QCD, pT 550-650 GeV
    jc_r = card.jets.r_large
    gtop, top = _reco(
        "zprime_ttbar",
        n(400),
        seed + 20,
        card,
        params={"mass": 1400.0},
        settings=("24:onMode = off", "24:onIfAny = 1 2 3 4 5"),
    )
    _, qcd = _reco("qcd_dijet", n(400), seed + 21, card, params={"pthat_min": 500.0})

    def window(ev):
        fj = ev.FatJet
        return fj[(fj.pt > 550) & (fj.pt < 650) & (abs(fj.eta) < 2.0)]

    ft, fq = window(top), window(qcd)
    # top jets: the top and its three quarks within the jet (arXiv:1902.09914)
    matched = contained(ft, resonance_decays(gtop.truth, 6), jc_r)
    out["fatjets"] = {
        "top_msd": ak.to_numpy(ak.flatten(ft.msoftdrop[matched])),
        "top_mass": ak.to_numpy(ak.flatten(ft.mass[matched])),
        "top_tau32": ak.to_numpy(ak.flatten(ft.tau_32[matched])),
        "qcd_msd": ak.to_numpy(ak.flatten(fq.msoftdrop)),
        "qcd_mass": ak.to_numpy(ak.flatten(fq.mass)),
        "qcd_tau32": ak.to_numpy(ak.flatten(fq.tau_32)),
    }
    out["fatjets"]["top_msd_peak"] = core_peak(out["fatjets"]["top_msd"], 120, 230)
    out["fatjets"]["top_mass_peak"] = core_peak(out["fatjets"]["top_mass"], 120, 230)
    out["fatjets"]["top_d2"] = ak.to_numpy(ak.flatten(ft.d2[matched]))
    out["fatjets"]["qcd_d2"] = ak.to_numpy(ak.flatten(fq.d2))
    # W jets, pT 300-450 GeV (W + jet, W -> qq)
    gw, wj = _reco("wjets", n(400), seed + 22, card, params={"decay": "had", "pthat_min": 300.0})
    fw = wj.FatJet[(wj.FatJet.pt > 300) & (wj.FatJet.pt < 450) & (abs(wj.FatJet.eta) < 2.0)]
    wmatched = contained(fw, resonance_decays(gw.truth, 24), jc_r)
    out["fatjets"]["w_msd"] = ak.to_numpy(ak.flatten(fw.msoftdrop[wmatched]))
    out["fatjets"]["w_msd_peak"] = core_peak(out["fatjets"]["w_msd"], 50, 120)
    # b tagging in ttbar
    _, tt_ev = _reco("ttbar", n(400), seed + 30, card)
    j = tt_ev.Jet[(tt_ev.Jet.pt > 30) & (abs(tt_ev.Jet.eta) < 2.4)]
    btag = {}
    for name, flav, tab in (
        ("b", 5, card.btag.b),
        ("c", 4, card.btag.c),
        ("light", 0, card.btag.light),
    ):
        sel = j[j.hadron_flavour == flav]
        pt = ak.to_numpy(ak.flatten(sel.pt))
        tagged = ak.to_numpy(ak.flatten(sel.btag))
        btag[name] = {
            "n": len(pt),
            "measured": float(tagged.mean()) if len(pt) else float("nan"),
            "card": float(tab(pt, np.abs(ak.to_numpy(ak.flatten(sel.eta)))).mean())
            if len(pt)
            else float("nan"),
        }
    out["btag"] = btag
    return out
