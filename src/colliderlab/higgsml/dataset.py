"""The HiggsML H -> tau tau dataset, generated and simulated by colliderlab.

The analysis of the 2014 HiggsML challenge (Adam-Bourdarios et al., "Learning to discover:
the Higgs boson machine learning challenge"): H -> tau tau in the lepton + hadronic-tau
channel against Z -> tau tau, ttbar and W + jets, with the challenge's 30 features.

Samples (:data:`SAMPLES`) are generated with Pythia 8 at 13.6 TeV and simulated with the
``generic_lhc`` card. Each selected event gets the weight

    w = sigma_gen [pb] * 1000 [fb/pb] * L [fb^-1] / N_generated

so that the weights of a class sum to its expected number of selected events in ``L``
(default 139 fb^-1); sigma_gen is Pythia's (leading-order) cross section, which already
includes the branching fractions of the resonance decays left open. The di-tau samples
(signal, Z -> tau tau) are generated with forced lepton + hadronic-tau decays
(:data:`LEP_HAD_SETTINGS`), their weights multiplied by 2 B_lep B_had = 0.455.

Preselection (:class:`Preselection`; thresholds read off the challenge files: lepton
pT > 26 GeV, tau pT > 20 GeV, jets pT > 30 GeV):

* exactly one isolated electron or muon (above the card's 10 GeV lepton threshold), with
  pT > 26 GeV and abs(eta) < 2.5;
* at least one hadronic tau (a tau-tagged jet) with pT > 20 GeV, abs(eta) < 2.5, at least 0.4
  from the lepton, with one or three prongs and charge -1 or +1 opposite to the lepton's;
  the leading one is taken;
* jets: AK4 jets with pT > 30 GeV and abs(eta) < 4.5, at least 0.4 from the lepton and the tau.

The lepton and the tau enter the features massless (the challenge's primitives are pt, eta,
phi). The MMC assumes the card's MET resolution (:data:`MET_RESOLUTION`).

The result is one CSV file in the CERN Open Data layout of the challenge (``EventId``, the 30
features, ``Weight``, ``Label``, ``KaggleSet``, ``KaggleWeight``) plus a ``Process`` column,
so the same commands run on it and on the real challenge file. ``KaggleSet`` splits the events
by seed into ``t`` (training, 50%), ``b`` (validation, 25%) and ``v`` (test, 25%);
``KaggleWeight`` rescales the weights of each class within a set to the full luminosity
(as the challenge did).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from colliderlab.core.errors import ConfigError, GenerationError
from colliderlab.higgsml.schema import FEATURES

DATASET_VERSION = 2
#: MET resolution per component the MMC assumes, in units of sqrt(sumET / GeV) GeV: that of
#: the generic_lhc card (reco minus true MET in H -> tau tau: 0.77 sqrt(sumET)).
MET_RESOLUTION = 0.75
#: (KaggleSet code, fraction) of the generated events.
SET_FRACTIONS = (("t", 0.5), ("b", 0.25), ("v", 0.25))


@dataclasses.dataclass(frozen=True)
class HiggsSample:
    """One process of the dataset: its colliderlab process, label and share of the events."""

    name: str
    process: str
    label: int  # 1 = signal, 0 = background
    params: tuple[tuple[str, Any], ...] = ()
    share: float = 1.0  # events generated, relative to ``events_per_sample``
    lep_had: bool = False  # force tau- -> leptonic, tau+ -> hadronic (see LEP_HAD_SETTINGS)


#: Forced tau decays of the di-tau samples: tau- (id 15) decays only to e or mu (its
#: leptonic channels), tau+ only to hadrons. Every event is then lepton + hadronic tau; the
#: charge-conjugate configuration has the same kinematics up to the charges, so the weight is
#: multiplied by 2 B_lep B_had (:func:`lep_had_fraction`, from Pythia's own tau decay table).
LEP_HAD_SETTINGS = (
    "15:onMode = off",
    "15:onPosIfAny = 11 13",
    "15:onNegIfAny = 111 211 321 130 310 221 223",
)


def lep_had_fraction() -> float:
    """2 B(tau -> l nu nu) B(tau -> hadrons nu) from Pythia's decay table (0.455)."""
    import pythia8mc

    from colliderlab.core.capture import capture_stdout

    with capture_stdout():
        entry = pythia8mc.Pythia("", False).particleData.particleDataEntryPtr(15)
    lep = had = 0.0
    for i in range(entry.sizeChannels()):
        ch = entry.channel(i)
        if ch.onMode() == 0:
            continue
        products = [abs(ch.product(j)) for j in range(ch.multiplicity())]
        if 11 in products or 13 in products:
            lep += ch.bRatio()
        else:
            had += ch.bRatio()
    return 2.0 * lep * had / (lep + had) ** 2


#: Signal and backgrounds. The di-tau samples are generated in the lepton + hadronic-tau
#: channel only (forced decays, weights corrected); W + jets enters through jets faking the
#: hadronic tau, which the card's flat fake rate makes rare: it gets twice the events.
SAMPLES = (
    HiggsSample("h_tautau", "h_tautau", 1, (("production", "both"),), lep_had=True),
    HiggsSample("z_tautau", "z_tautau", 0, share=4.0, lep_had=True),
    HiggsSample("ttbar", "ttbar", 0),
    HiggsSample("wjets", "wjets", 0, (("decay", "lnu"),), share=2.0),
)


@dataclasses.dataclass(frozen=True)
class Preselection:
    """Object and event selection (GeV, rad); defaults: the HiggsML challenge's."""

    lep_pt_min: float = 26.0
    lep_eta_max: float = 2.5
    tau_pt_min: float = 20.0
    tau_eta_max: float = 2.5
    jet_pt_min: float = 30.0
    jet_eta_max: float = 4.5
    overlap_dr: float = 0.4


def _dr(eta1, phi1, eta2, phi2):
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, dphi)


def select_objects(events: ak.Array, presel: Preselection = Preselection()) -> dict[str, Any]:
    """Apply the preselection to a chunk of simulated events.

    Returns ``index`` (positions of the selected events in the chunk) and the objects of those
    events: ``lep`` and ``tau`` (dicts of 1-D arrays ``pt, eta, phi, mass, charge``), ``jets``
    (awkward records ``pt, eta, phi, mass`` after overlap removal) and ``met``
    (``pt, phi, sumet``).
    """
    leptons = ak.concatenate(
        [
            ak.zip({k: events.Electron[k] for k in ("pt", "eta", "phi", "mass", "charge")}),
            ak.zip({k: events.Muon[k] for k in ("pt", "eta", "phi", "mass", "charge")}),
        ],
        axis=1,
    )
    one_lep = ak.num(leptons) == 1
    lep = ak.firsts(leptons)
    lep_ok = one_lep & ak.fill_none(
        (lep.pt > presel.lep_pt_min) & (abs(lep.eta) < presel.lep_eta_max), False
    )
    taus = events.Tau
    lep_b = ak.fill_none(lep, {"pt": 0.0, "eta": 0.0, "phi": 0.0, "mass": 0.0, "charge": 0})
    tau_ok = (
        (taus.pt > presel.tau_pt_min)
        & (abs(taus.eta) < presel.tau_eta_max)
        & (_dr(taus.eta, taus.phi, lep_b.eta, lep_b.phi) > presel.overlap_dr)
        & ((taus.n_prongs == 1) | (taus.n_prongs == 3))
        & (abs(taus.charge) == 1)
        & (taus.charge == -lep_b.charge)
    )
    taus = taus[tau_ok]
    taus = taus[ak.argsort(taus.pt, ascending=False)]
    tau = ak.firsts(taus)
    selected = ak.to_numpy(lep_ok & (ak.num(taus) > 0))
    index = np.flatnonzero(selected)

    lep, tau, ev = lep[index], tau[index], events[index]
    jets = ev.Jet
    jet_ok = (
        (jets.pt > presel.jet_pt_min)
        & (abs(jets.eta) < presel.jet_eta_max)
        & (_dr(jets.eta, jets.phi, lep.eta, lep.phi) > presel.overlap_dr)
        & (_dr(jets.eta, jets.phi, tau.eta, tau.phi) > presel.overlap_dr)
    )
    jets = jets[jet_ok]
    jets = ak.zip({k: jets[k] for k in ("pt", "eta", "phi", "mass")})

    def flat(rec):
        out = {k: ak.to_numpy(rec[k]).astype(np.float64) for k in ("pt", "eta", "phi", "charge")}
        # massless, as the challenge's primitives (pt, eta, phi); a tau jet's mass (often
        # above m_tau from soft constituents) would leave the MMC without a solution
        out["mass"] = np.zeros_like(out["pt"])
        return out

    return {
        "index": index,
        "lep": flat(lep),
        "tau": flat(tau),
        "jets": jets,
        "met": {k: ak.to_numpy(ev.MET[k]).astype(np.float64) for k in ("pt", "phi", "sumet")},
    }


def chunk_features(
    path: str | os.PathLike[str], presel: Preselection = Preselection(), mmc: str = "mmc"
) -> dict[str, np.ndarray]:
    """The 30 features of the preselected events of one simulated chunk file, and their
    ``event`` numbers (run on a Dask worker)."""
    from colliderlab.higgsml.features import higgsml_features
    from colliderlab.io.store import read_chunk

    events = read_chunk(path, columns=["event", "Electron", "Muon", "Tau", "Jet", "MET"])
    obj = select_objects(events, presel)
    feats = higgsml_features(
        obj["lep"],
        obj["tau"],
        obj["jets"],
        obj["met"],
        mmc=mmc,
        mmc_options={"met_resolution": MET_RESOLUTION},
    )
    feats = {k: np.asarray(feats[k], dtype=np.float64) for k in FEATURES}
    feats["event"] = ak.to_numpy(events.event)[obj["index"]].astype(np.int64)
    return feats


def _digest(config: Mapping[str, Any]) -> str:
    blob = json.dumps({**config, "version": DATASET_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dataset_path(directory, events_per_sample: int, seed: int) -> Path:
    return Path(directory) / "higgsml" / f"higgsml-{events_per_sample}-seed{seed}.csv"


def assign_sets(labels: np.ndarray, weights: np.ndarray, seed: int):
    """KaggleSet codes (t/b/v by :data:`SET_FRACTIONS`, random with ``seed``) and the
    KaggleWeight of each event: its weight times (class total) / (class total in its set)."""
    rng = np.random.default_rng(seed)
    u = rng.random(len(labels))
    edges = np.cumsum([f for _, f in SET_FRACTIONS])
    codes = np.array([c for c, _ in SET_FRACTIONS])[np.searchsorted(edges, u, side="right")]
    kw = np.zeros_like(weights)
    for cls in (0, 1):
        total = weights[labels == cls].sum()
        for code, _ in SET_FRACTIONS:
            m = (labels == cls) & (codes == code)
            part = weights[m].sum()
            if part > 0:
                kw[m] = weights[m] * total / part
    return codes, kw


def build_dataset(
    directory: str | os.PathLike[str] = "colliderlab-data",
    *,
    events_per_sample: int = 4000,
    seed: int = 1,
    lumi_fb: float = 139.0,
    card: str = "generic_lhc",
    presel: Preselection = Preselection(),
    mmc: str = "mmc",
    samples: tuple[HiggsSample, ...] = SAMPLES,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> Path:
    """Build (or find in the cache) the HiggsML dataset; return the path of its CSV file.

    ``events_per_sample`` events are generated for each sample (times its ``share``) in
    ``DIR/higgsml/samples``, simulated, preselected and turned into the 30 features, all on
    Dask; a killed build resumes where it stopped, and the same arguments give the same file.
    """
    from colliderlab.detector.run import simulate
    from colliderlab.generate import GenerationConfig, generate
    from colliderlab.higgsml.csvio import HiggsMLData, write_higgsml_csv
    from colliderlab.io.chunked import dask_client

    if events_per_sample < 10:
        raise ConfigError(f"events_per_sample must be at least 10; got {events_per_sample}.")
    if not lumi_fb > 0:
        raise ConfigError(f"lumi_fb must be a positive luminosity in fb^-1; got {lumi_fb}.")
    config = {
        "events_per_sample": events_per_sample,
        "seed": seed,
        "lumi_fb": lumi_fb,
        "card": card,
        "presel": dataclasses.asdict(presel),
        "mmc": mmc,
        "samples": [dataclasses.asdict(s) for s in samples],
    }
    digest = _digest(config)
    path = dataset_path(directory, events_per_sample, seed)
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        try:
            if json.loads(meta_path.read_text()).get("digest") == digest:
                return path
        except (OSError, ValueError):
            pass
    base = Path(directory) / "higgsml" / "samples"
    parts: list[dict[str, np.ndarray]] = []
    summary = []
    with dask_client(workers, scheduler) as client:
        for k, sample in enumerate(samples):
            n = max(10, round(events_per_sample * sample.share))
            out = base / f"{sample.name}-{n}-seed{seed}"
            gconf = GenerationConfig(
                process=sample.process,
                n_events=n,
                seed=seed * 1000 + k,
                params=dict(sample.params),
                settings=LEP_HAD_SETTINGS if sample.lep_had else (),
                chunk_size=min(1000, n),
            )
            gen = generate(gconf, out / "gen", client=client, progress=progress)
            reco = simulate(
                out / "gen",
                out / "reco",
                card=card,
                seed=seed + k,
                client=client,
                progress=progress,
            )
            sigma_pb, _ = gen.cross_section
            if not sigma_pb > 0:
                raise GenerationError(
                    f"sample {sample.name!r}: Pythia reported no cross section; cannot weight it."
                )
            files = [Path(reco.directory) / c["file"] for c in reco.chunks]
            futures = client.map(chunk_features, files, presel=presel, mmc=mmc, pure=False)
            feats = client.gather(futures)
            merged = {key: np.concatenate([f[key] for f in feats]) for key in feats[0]}
            n_sel = len(merged["event"])
            w = sigma_pb * 1000.0 * lumi_fb / gen.n_events
            if sample.lep_had:
                w *= lep_had_fraction()
            merged["weight"] = np.full(n_sel, w)
            merged["label"] = np.full(n_sel, sample.label, dtype=np.int8)
            merged["process"] = np.full(n_sel, sample.name, dtype=object)
            parts.append(merged)
            summary.append(
                {
                    "sample": sample.name,
                    "process": sample.process,
                    "generated": gen.n_events,
                    "selected": n_sel,
                    "sigma_pb": sigma_pb,
                    "event_weight": w,
                    "expected_events": w * n_sel,
                }
            )
    allp = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    if len(allp["event"]) == 0:
        raise GenerationError(
            "no event passed the preselection; generate more events (events_per_sample)."
        )
    codes, kweight = assign_sets(allp["label"], allp["weight"], seed)
    data = HiggsMLData(
        event_id=np.arange(len(codes), dtype=np.int64) + 100000,
        features=np.column_stack([allp[f] for f in FEATURES]),
        weight=allp["weight"],
        label=allp["label"],
        kaggle_set=codes,
        kaggle_weight=kweight,
        process=allp["process"].astype(str),
    )
    write_higgsml_csv(path, data, variant="opendata")
    from colliderlab.core.files import write_json

    write_json(meta_path, {"digest": digest, "config": config, "samples": summary})
    return path
