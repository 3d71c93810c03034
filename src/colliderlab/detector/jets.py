"""Jets from particle-flow candidates with FastJet: anti-kt R=0.4 and R=0.8, their truth
flavour by ghost association of b/c hadrons, b and tau tags from the card, calibration, and
the substructure of large-R jets (mass, soft-drop mass, N-subjettiness).

References: anti-kt (arXiv:0802.1189), ghost association (arXiv:0802.1188), soft drop with
beta = 0, z_cut = 0.1 (arXiv:1402.2657), N-subjettiness with exclusive-kt axes (arXiv:1011.2268),
energy-correlation ratios C2 and D2 with beta = 1 (arXiv:1305.0007, arXiv:1409.6298).
"""

from __future__ import annotations

import warnings

import awkward as ak
import numpy as np

from colliderlab.detector.card import DetectorCard
from colliderlab.detector.physics import INVISIBLE, delta_phi, pt_eta_phi
from colliderlab.generate.engine import TruthFlag

#: Ghosts are scaled to this fraction of their momentum: they never change a jet.
GHOST_SCALE = 1e-18


def _p4(pt, eta, phi, mass):
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    return ak.zip({"px": px, "py": py, "pz": pz, "E": e})


def response(pt, coefficients) -> np.ndarray:
    """Jet response r(pT) = c0 + c1 / ln(pT) + c2 / ln(pT)^2 + ... (pT in GeV)."""
    x = 1.0 / np.log(np.maximum(pt, 1.0001))
    return sum(c * x**k for k, c in enumerate(coefficients))


def _cluster(inputs, algorithm, r, min_pt):
    import fastjet

    cs = fastjet.ClusterSequence(inputs, fastjet.JetDefinition(algorithm, r))
    return cs.inclusive_jets(min_pt=min_pt), cs.constituent_index(min_pt=min_pt)


def _global_index(per_event: ak.Array, index: ak.Array) -> tuple[np.ndarray, ak.Array, ak.Array]:
    """Flat positions in ``per_event`` of a doubly jagged (events * jets * k) ``index``."""
    counts = ak.to_numpy(ak.num(per_event))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_jets = ak.num(index)
    per_jet = ak.flatten(index)  # (jets) * var
    n_const = ak.num(per_jet)
    ev_of_jet = np.repeat(np.arange(len(counts)), ak.to_numpy(n_jets))
    glob = ak.to_numpy(ak.flatten(per_jet)) + np.repeat(starts[ev_of_jet], ak.to_numpy(n_const))
    return glob, n_const, n_jets


def _flat_lookup(values_per_event: ak.Array, index: ak.Array) -> ak.Array:
    """``values_per_event[i][index[i][j][k]]`` for a doubly jagged ``index``."""
    glob, n_const, n_jets = _global_index(values_per_event, index)
    flat_values = ak.to_numpy(ak.flatten(values_per_event))
    return ak.unflatten(ak.unflatten(flat_values[glob], n_const), n_jets)


def _gather_per_jet(collection: ak.Array, index: ak.Array) -> ak.Array:
    """Records of ``collection`` selected by a doubly jagged index, as (all jets) * var."""
    glob, n_const, _ = _global_index(collection, index)
    flat = ak.flatten(collection)
    return ak.unflatten(flat[glob], n_const)


def _tag(rng, pt, eta, flavour, tagger) -> ak.Array:
    flat_pt = ak.to_numpy(ak.flatten(pt))
    flat_eta = np.abs(ak.to_numpy(ak.flatten(eta)))
    flav = ak.to_numpy(ak.flatten(flavour))
    eff = np.zeros(len(flat_pt))
    for code, table in ((5, tagger.b), (4, tagger.c), (0, tagger.light)):
        sel = flav == code
        eff[sel] = table(flat_pt[sel], flat_eta[sel])
    return ak.unflatten(rng.random(len(flat_pt)) < eff, ak.num(pt))


def reconstruct_jets(events, pf_cands, card: DetectorCard, rng) -> dict[str, ak.Array]:
    """Jet collections of a chunk: ``Jet``, ``FatJet``, ``Tau``, ``GenJet`` and the
    constituent tables ``JetPFCand`` / ``FatJetPFCand`` (jet index, PF candidate index)."""
    import fastjet

    jc = card.jets
    chs = pf_cands.from_pv
    chs_index = ak.local_index(pf_cands)[chs]
    inputs = _p4(pf_cands.pt[chs], pf_cands.eta[chs], pf_cands.phi[chs], pf_cands.mass[chs])
    truth = events.truth
    is_b = (truth.flags & int(TruthFlag.B_HADRON)) != 0
    is_c = (truth.flags & int(TruthFlag.C_HADRON)) != 0
    ghosts = truth[is_b | is_c]
    ghost_flav = ak.where((ghosts.flags & int(TruthFlag.B_HADRON)) != 0, 5, 4)
    ghost_p4 = ak.zip({k: ghosts[k] * GHOST_SCALE for k in ("px", "py", "pz", "E")})
    all_inputs = ak.concatenate([inputs, ghost_p4], axis=1)
    flavour_of_input = ak.concatenate(
        [
            ak.values_astype(ak.zeros_like(inputs.px), np.int8),
            ak.values_astype(ghost_flav, np.int8),
        ],
        axis=1,
    )
    pf_of_input = ak.concatenate([chs_index, ak.full_like(ghost_flav, -1)], axis=1)

    out: dict[str, ak.Array] = {}
    for name, r, pt_min in (
        ("Jet", jc.r_small, jc.pt_min_small),
        ("FatJet", jc.r_large, jc.pt_min_large),
    ):
        raw_min = 0.5 * pt_min  # calibrated pT can exceed the raw one
        jets, idx = _cluster(all_inputs, fastjet.antikt_algorithm, r, raw_min)
        pt_flat, eta_flat, phi_flat = pt_eta_phi(
            ak.to_numpy(ak.flatten(jets.px)),
            ak.to_numpy(ak.flatten(jets.py)),
            ak.to_numpy(ak.flatten(jets.pz)),
        )
        n_jets = ak.num(jets)
        e_flat = ak.to_numpy(ak.flatten(jets.E))
        mass_flat = np.sqrt(np.maximum(e_flat**2 - (pt_flat * np.cosh(eta_flat)) ** 2, 0.0))
        scale = 1.0 / response(pt_flat, jc.calibration)
        pt = ak.unflatten(pt_flat * scale, n_jets)
        eta = ak.unflatten(eta_flat, n_jets)
        phi = ak.unflatten(phi_flat, n_jets)
        mass = ak.unflatten(mass_flat * scale, n_jets)
        flav = ak.max(_flat_lookup(flavour_of_input, idx), axis=-1)
        flav = ak.fill_none(flav, 0)
        pf_idx = _flat_lookup(pf_of_input, idx)
        pf_idx = pf_idx[pf_idx >= 0]  # drop the ghosts
        keep = (pt > pt_min) & (abs(eta) < jc.eta_max)
        fields = {
            "pt": pt[keep],
            "eta": eta[keep],
            "phi": phi[keep],
            "mass": mass[keep],
            "raw_factor": (1.0 / ak.unflatten(scale, n_jets))[keep],
            "n_constituents": ak.num(pf_idx, axis=-1)[keep],
            "hadron_flavour": ak.values_astype(flav[keep], np.int8),
        }
        constituents = pf_idx[keep]
        fields["btag"] = _tag(rng, fields["pt"], fields["eta"], fields["hadron_flavour"], card.btag)
        if name == "FatJet":
            with warnings.catch_warnings():  # FastJet warns on exclusive C/A jets: intended
                warnings.simplefilter("ignore", UserWarning)
                fields.update(substructure(pf_cands, constituents, r))
            # the groomed mass gets the jet's energy-scale correction (as CMS does for AK8)
            fields["msoftdrop"] = fields["msoftdrop"] / fields["raw_factor"]
        out[name] = ak.zip(fields)
        jet_idx = ak.local_index(constituents, axis=1) * ak.ones_like(constituents)
        out[f"{name}PFCand"] = ak.zip(
            {
                "jet_index": ak.values_astype(ak.flatten(jet_idx, axis=2), np.int32),
                "pf_index": ak.values_astype(ak.flatten(constituents, axis=2), np.int32),
            }
        )
    out["Tau"] = _taus(events, out["Jet"], out["JetPFCand"], pf_cands, card, rng)
    out["GenJet"] = _gen_jets(events, jc.r_small)
    return out


def substructure(pf_cands, constituents: ak.Array, r: float) -> dict[str, ak.Array]:
    """Soft-drop mass, N-subjettiness tau_1..tau_3 (beta = 1) and the ratios tau_21, tau_32
    of jets given the indices of their PF candidates."""
    import fastjet

    n_jets = ak.num(constituents)
    c = _gather_per_jet(pf_cands, constituents)  # (jets) * var * candidates
    zeros = ak.unflatten(np.zeros(int(ak.sum(n_jets))), n_jets)
    if len(c) == 0:
        names = ("msoftdrop", "tau_1", "tau_2", "tau_3", "tau_21", "tau_32", "c2", "d2")
        return {k: zeros for k in names}
    p4 = _p4(c.pt, c.eta, c.phi, c.mass)
    cs = fastjet.ClusterSequence(p4, fastjet.JetDefinition(fastjet.cambridge_algorithm, r))
    sd = cs.exclusive_jets_softdrop_grooming(njets=1, beta=0, symmetry_cut=0.1, R0=r)
    msd = np.asarray(ak.to_numpy(sd.msoftdrop), dtype=float).reshape(-1)
    n_const = ak.to_numpy(ak.num(c))
    taus = {}
    pt_sum = ak.to_numpy(ak.sum(c.pt, axis=1))
    for n in (1, 2, 3):
        ok = n_const >= n
        tau = np.zeros(len(n_const))
        if ok.any():
            sub = p4[ok]
            kt = fastjet.ClusterSequence(sub, fastjet.JetDefinition(fastjet.kt_algorithm, r))
            axes = kt.exclusive_jets(n_jets=n)
            ax_pt, ax_eta, ax_phi = (
                np.hypot(axes.px, axes.py),
                np.arcsinh(axes.pz / np.hypot(axes.px, axes.py)),
                np.arctan2(axes.py, axes.px),
            )
            cc = c[ok]
            pairs = ak.cartesian(
                {
                    "p": ak.zip({"eta": cc.eta, "phi": cc.phi}),
                    "a": ak.zip({"eta": ax_eta, "phi": ax_phi, "pt": ax_pt}),
                },
                nested=True,
            )
            dr = np.sqrt(
                (pairs.p.eta - pairs.a.eta) ** 2 + delta_phi(pairs.p.phi, pairs.a.phi) ** 2
            )
            num = ak.sum(cc.pt * ak.min(dr, axis=-1), axis=-1)
            tau[ok] = ak.to_numpy(num) / (pt_sum[ok] * r)
        taus[n] = tau
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = {
            "tau_21": np.where(taus[1] > 0, taus[2] / taus[1], 0.0),
            "tau_32": np.where(taus[2] > 0, taus[3] / taus[2], 0.0),
        }
    # (named tau_N: vector's behaviour reserves tau2 for the squared proper time)
    c2, d2 = energy_correlation_ratios(c)
    ratios["c2"], ratios["d2"] = c2, d2
    return {
        "msoftdrop": ak.unflatten(msd, n_jets),
        **{f"tau_{n}": ak.unflatten(v, n_jets) for n, v in taus.items()},
        **{k: ak.unflatten(v, n_jets) for k, v in ratios.items()},
    }


def energy_correlation_ratios(constituents: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """C2 = e3 / e2^2 and D2 = e3 / e2^3 (beta = 1) of jets given as (jets) * var candidates.

    e2 = sum_{i<j} z_i z_j dR_ij, e3 = sum_{i<j<k} z_i z_j z_k dR_ij dR_ik dR_jk with
    z = pT / sum pT. Computed in numpy (O(n^3) per jet through einsum): the FastJet
    EnergyCorrelator binding of fastjet 3.5.2.0 crashes.
    """
    n = len(constituents)
    c2, d2 = np.zeros(n), np.zeros(n)
    counts = ak.to_numpy(ak.num(constituents))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pt = ak.to_numpy(ak.flatten(constituents.pt))
    eta = ak.to_numpy(ak.flatten(constituents.eta))
    phi = ak.to_numpy(ak.flatten(constituents.phi))
    for k in range(n):
        if counts[k] < 3:
            continue
        sl = slice(starts[k], starts[k] + counts[k])
        z = pt[sl] / pt[sl].sum()
        angle = np.sqrt(
            (eta[sl, None] - eta[None, sl]) ** 2 + delta_phi(phi[sl, None], phi[None, sl]) ** 2
        )
        e2 = 0.5 * z @ angle @ z
        w = angle * z[None, :]
        e3 = np.einsum("i,ij,jk,ik->", z, w, angle, w) / 6.0
        if e2 > 0:
            c2[k], d2[k] = e3 / e2**2, e3 / e2**3
    return c2, d2


def tau_candidates(jets, jet_cands, pf_cands, vis_eta, vis_phi, cfg) -> ak.Array:
    """Every jet as a hadronic-tau candidate, before the tag decision (events * jets).

    ``jets`` (pt, eta, phi, mass), ``jet_cands`` (jet_index, pf_index: the jets' PF
    constituents) and ``pf_cands`` (pt, eta, phi, charge) as the detector writes them;
    ``vis_eta``, ``vis_phi`` the visible hadronic taus of the generator (events * taus); ``cfg``
    the card's :class:`~colliderlab.detector.card.TauTag`. Fields: the jet's ``pt, eta, phi,
    mass``; ``charge`` and ``n_prongs`` from the charged constituents above
    ``cfg.track_pt_min`` within ``cfg.signal_cone`` of the jet axis; ``gen_matched`` (a visible
    hadronic tau within ``cfg.dr``); ``jet_index``. The detector tags a candidate with
    probability ``cfg.efficiency`` (matched) or ``cfg.fake_rate`` (not matched); an analysis
    may instead weight every candidate by that probability (the tag-rate function of
    :func:`colliderlab.higgsml.dataset.select_objects`).
    """
    pairs = ak.cartesian(
        {
            "j": ak.zip({"eta": jets.eta, "phi": jets.phi}),
            "t": ak.zip({"eta": vis_eta, "phi": vis_phi}),
        },
        nested=True,
    )
    dr2 = (pairs.j.eta - pairs.t.eta) ** 2 + delta_phi(pairs.j.phi, pairs.t.phi) ** 2
    matched = ak.fill_none(ak.any(dr2 < cfg.dr**2, axis=-1), False)
    # charge and prongs: the charged constituents above track_pt_min in the signal cone
    cpf = pf_cands[jet_cands.pf_index]
    jidx = jet_cands.jet_index
    axis_eta, axis_phi = jets.eta[jidx], jets.phi[jidx]
    dr2c = (cpf.eta - axis_eta) ** 2 + delta_phi(cpf.phi, axis_phi) ** 2
    prong = (cpf.charge != 0) & (cpf.pt > cfg.track_pt_min) & (dr2c < cfg.signal_cone**2)
    n = ak.num(jets)
    for_ev = ak.to_numpy(ak.flatten(jidx)) + np.repeat(
        np.concatenate([[0], np.cumsum(ak.to_numpy(n))[:-1]]), ak.to_numpy(ak.num(jidx))
    )
    flat_prong = ak.to_numpy(ak.flatten(prong)).astype(np.float64)
    n_jets = int(ak.sum(n))
    jet_charge = np.bincount(
        for_ev, weights=flat_prong * ak.to_numpy(ak.flatten(cpf.charge)), minlength=n_jets
    )
    jet_prongs = np.bincount(for_ev, weights=flat_prong, minlength=n_jets)
    return ak.zip(
        {
            "pt": jets.pt,
            "eta": jets.eta,
            "phi": jets.phi,
            "mass": jets.mass,
            "charge": ak.unflatten(jet_charge.astype(np.int8), n),
            "n_prongs": ak.unflatten(jet_prongs.astype(np.int8), n),
            "gen_matched": matched,
            "jet_index": ak.local_index(jets),
        }
    )


def _taus(events, jets, jet_cands, pf_cands, card, rng) -> ak.Array:
    """Hadronic taus: jets matched to a visible hadronic tau are tagged with the card's
    efficiency, other jets with its fake rate."""
    cfg = card.tau
    vis = events.vistau
    had = vis[vis.decay_mode >= 2]
    _, veta, vphi = pt_eta_phi(had.px, had.py, had.pz)
    cand = tau_candidates(jets, jet_cands, pf_cands, veta, vphi, cfg)
    prob = np.where(ak.to_numpy(ak.flatten(cand.gen_matched)), cfg.efficiency, cfg.fake_rate)
    tagged = ak.unflatten(rng.random(len(prob)) < prob, ak.num(jets))
    sel = tagged & (jets.pt > cfg.pt_min) & (abs(jets.eta) < cfg.eta_max)
    return cand[sel]


def _gen_jets(events, r: float) -> ak.Array:
    """Anti-kt jets of the visible final-state particles of the hard interaction (pT > 10 GeV)."""
    import fastjet

    p = events.particles
    visible = ak.unflatten(~np.isin(np.abs(ak.to_numpy(ak.flatten(p.pid))), INVISIBLE), ak.num(p))
    sel = (p.pileup == 0) & visible
    q = p[sel]
    inputs = ak.zip({"px": q.px, "py": q.py, "pz": q.pz, "E": q.E})
    jets, _ = _cluster(inputs, fastjet.antikt_algorithm, r, 10.0)
    n = ak.num(jets)
    pt, eta, phi = pt_eta_phi(
        ak.to_numpy(ak.flatten(jets.px)),
        ak.to_numpy(ak.flatten(jets.py)),
        ak.to_numpy(ak.flatten(jets.pz)),
    )
    e = ak.to_numpy(ak.flatten(jets.E))
    mass = np.sqrt(np.maximum(e**2 - (pt * np.cosh(eta)) ** 2, 0.0))
    return ak.zip(
        {k: ak.unflatten(v, n) for k, v in (("pt", pt), ("eta", eta), ("phi", phi), ("mass", mass))}
    )
