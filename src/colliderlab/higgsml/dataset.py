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

The tau tag enters by the tag-rate function (``tau_tagging="weighted"``, the default; see
:func:`select_objects`): every jet that passes the tau cuts is a candidate, the event is kept
with weight times P(a candidate is tagged) and one candidate is drawn as the tau. The
expected yields are those of the detector's random tags (tested), with ~3x more simulated
events in all and ~100x more of the W + jets and ~15x more of the ttbar background, whose
taus are fakes (flat 1% fake rate). ``tau_tagging="random"`` takes the detector's tags.

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from colliderlab.core.errors import ConfigError, GenerationError, did_you_mean
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


#: How the hadronic tau enters the dataset: "weighted" (every tau candidate weighted by its
#: tag probability, the tag-rate function; the default) or "random" (the detector's random
#: tag decisions, the ``Tau`` collection).
TAU_TAGGING = ("weighted", "random")


def _check_tau_tagging(tau_tagging: str) -> None:
    if tau_tagging not in TAU_TAGGING:
        raise ConfigError(
            f"tau_tagging must be one of {TAU_TAGGING}; got {tau_tagging!r}."
            f"{did_you_mean(str(tau_tagging), TAU_TAGGING)}"
        )


def select_objects(
    events: ak.Array,
    presel: Preselection = Preselection(),
    *,
    tau_tagging: str = "random",
    tau_tag: Any = None,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Apply the preselection to a chunk of simulated events.

    Returns ``index`` (positions of the selected events in the chunk), ``tag_weight`` (the
    probability of the hadronic-tau tag, 1 with ``tau_tagging="random"``) and the objects of
    those events: ``lep`` and ``tau`` (dicts of 1-D arrays ``pt, eta, phi, mass, charge``),
    ``jets`` (awkward records ``pt, eta, phi, mass`` after overlap removal) and ``met``
    (``pt, phi, sumet``).

    ``tau_tagging="random"`` takes the leading tau of the detector's ``Tau`` collection (jets
    tagged at random with the card's efficiency or fake rate). ``"weighted"`` (the tag-rate
    function, as for b-tagging in ATLAS analyses) makes every jet a candidate
    (:func:`colliderlab.detector.jets.tau_candidates`, from the stored jets, PF candidates and
    visible generator taus; needs ``tau_tag``, the card's tau section, and ``rng``): with
    p_j the tag probability of candidate j (efficiency if matched to a visible hadronic tau,
    else the fake rate) and the candidates passing the tau cuts sorted by pT, candidate j is
    the leading tagged tau with probability P_j = p_j prod_{i<j} (1 - p_i). The event is kept
    with weight P = sum_j P_j (the probability that any candidate is tagged) and one
    candidate drawn with probability P_j / P. Every event with a candidate enters, instead of
    the ~1% of W + jets events whose jet the detector happens to tag: the same expected
    yields and distributions (tested against the random tags), ~1/fake-rate times more
    simulated events of the fake-tau backgrounds.
    """
    _check_tau_tagging(tau_tagging)
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
    if tau_tagging == "random":
        taus = events.Tau
    else:
        if tau_tag is None or rng is None:
            raise ConfigError('tau_tagging="weighted" needs the card\'s tau_tag and an rng.')
        taus = _tau_candidates(events, tau_tag)
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
    selected = ak.to_numpy(lep_ok & (ak.num(taus) > 0))
    index = np.flatnonzero(selected)
    taus = taus[index]
    if tau_tagging == "random":
        tau = ak.firsts(taus)
        tag_weight = np.ones(len(index))
    else:
        p = np.where(
            ak.to_numpy(ak.flatten(taus.gen_matched)), tau_tag.efficiency, tau_tag.fake_rate
        )
        pick, tag_weight = _draw_leading(p, ak.to_numpy(ak.num(taus)), rng)
        keep = tag_weight > 0  # (only with a zero efficiency or fake rate in the card)
        tau = ak.flatten(taus)[pick[keep]]
        index, tag_weight = index[keep], tag_weight[keep]

    lep, ev = lep[index], events[index]
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
        "tag_weight": tag_weight,
        "lep": flat(lep),
        "tau": flat(tau),
        "jets": jets,
        "met": {k: ak.to_numpy(ev.MET[k]).astype(np.float64) for k in ("pt", "phi", "sumet")},
    }


def _tau_candidates(events: ak.Array, tau_tag: Any) -> ak.Array:
    """Every jet in the tau acceptance of the card as a tau candidate, from a reco chunk."""
    from colliderlab.detector.jets import tau_candidates
    from colliderlab.detector.physics import pt_eta_phi

    vis = events.GenVisTau
    had = vis[vis.decay_mode >= 2]
    _, veta, vphi = pt_eta_phi(had.px, had.py, had.pz)
    cand = tau_candidates(events.Jet, events.JetPFCand, events.PFCand, veta, vphi, tau_tag)
    return cand[(cand.pt > tau_tag.pt_min) & (abs(cand.eta) < tau_tag.eta_max)]


def _draw_leading(
    p: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Tag-rate function: candidates (pT-ordered within each event, ``counts`` per event) with
    tag probabilities ``p``. Returns the flat position of the candidate drawn as the leading
    tagged one in each event (probability P_j / P) and P = P(any tagged) per event."""
    n = len(counts)
    pick = np.zeros(n, dtype=np.int64)
    weight = np.zeros(n)
    u = rng.random(n)
    start = 0
    for e in range(n):
        q = p[start : start + counts[e]]
        none_before = np.concatenate([[1.0], np.cumprod(1.0 - q)[:-1]])
        lead = q * none_before
        total = lead.sum()
        weight[e] = total
        if total > 0:
            k = int(np.searchsorted(np.cumsum(lead), u[e] * total, side="right"))
            pick[e] = start + min(k, len(q) - 1)
        start += counts[e]
    return pick, weight


def chunk_features(
    path: str | os.PathLike[str],
    seed: tuple[int, ...] = (0,),
    presel: Preselection = Preselection(),
    mmc: str = "mmc",
    tau_tagging: str = "random",
    card: Any = "generic_lhc",
) -> dict[str, np.ndarray]:
    """The 30 features of the preselected events of one simulated chunk file, their
    ``event`` numbers and ``tag_weight`` (run on a Dask worker; ``seed``: the
    ``SeedSequence`` entropy of the tag-rate draws)."""
    from colliderlab.detector.card import load_card
    from colliderlab.higgsml.features import higgsml_features
    from colliderlab.io.store import read_chunk

    columns = ["event", "Electron", "Muon", "Tau", "Jet", "MET"]
    kwargs: dict[str, Any] = {"tau_tagging": tau_tagging}
    if tau_tagging == "weighted":
        columns += ["JetPFCand", "PFCand", "GenVisTau"]
        kwargs["tau_tag"] = load_card(card).tau
        kwargs["rng"] = np.random.default_rng(np.random.SeedSequence(list(seed)))
    events = read_chunk(path, columns=columns)
    obj = select_objects(events, presel, **kwargs)
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
    feats["tag_weight"] = np.asarray(obj["tag_weight"], dtype=np.float64)
    return feats


def _digest(config: Mapping[str, Any]) -> str:
    blob = json.dumps({**config, "version": DATASET_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _data_seeds(seed: int | Sequence[int]) -> tuple[int, ...]:
    seeds = (seed,) if isinstance(seed, (int, np.integer)) else tuple(seed)
    if not seeds:
        raise ConfigError("give at least one data seed.")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ConfigError(f"data seeds must be non-negative integers; got {s!r}.")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(
            f"data seeds must differ (the same seed gives the same events); got {list(seeds)}."
        )
    return tuple(int(s) for s in seeds)


def dataset_path(
    directory,
    events_per_sample: int,
    seed: int | Sequence[int],
    tau_tagging: str = "weighted",
) -> Path:
    tag = "" if tau_tagging == "weighted" else f"-{tau_tagging}-tau"
    seeds = "+".join(str(s) for s in _data_seeds(seed))
    return Path(directory) / "higgsml" / f"higgsml-{events_per_sample}-seed{seeds}{tag}.csv"


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


def _simulated_sample(
    client, sample, k, n, seed, base, card, presel, mmc, tau_tagging, progress
) -> tuple[list[dict[str, np.ndarray]], float, int]:
    """Generate (or find) ``n`` events of ``sample`` (number ``k``) with data seed ``seed`` in
    ``base``, simulate them and compute the features per chunk on Dask; returns the
    features of each chunk, Pythia's cross section (pb) and the number of generated events."""
    from colliderlab.detector.run import simulate
    from colliderlab.generate import GenerationConfig, generate

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
        out / "gen", out / "reco", card=card, seed=seed + k, client=client, progress=progress
    )
    sigma_pb, _ = gen.cross_section
    if not sigma_pb > 0:
        raise GenerationError(
            f"sample {sample.name!r} (seed {seed}): Pythia reported no cross section; "
            "cannot weight it."
        )
    files = [Path(reco.directory) / c["file"] for c in reco.chunks]
    futures = client.map(
        chunk_features,
        files,
        [(seed, k, i) for i in range(len(files))],
        presel=presel,
        mmc=mmc,
        tau_tagging=tau_tagging,
        card=card,
        pure=False,
    )
    return client.gather(futures), sigma_pb, gen.n_events


def build_dataset(
    directory: str | os.PathLike[str] = "colliderlab-data",
    *,
    events_per_sample: int = 4000,
    seed: int | Sequence[int] = 1,
    lumi_fb: float = 139.0,
    card: str = "generic_lhc",
    presel: Preselection = Preselection(),
    mmc: str = "mmc",
    tau_tagging: str = "weighted",
    samples: tuple[HiggsSample, ...] = SAMPLES,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> Path:
    """Build (or find in the cache) the HiggsML dataset; return the path of its CSV file.

    ``events_per_sample`` events are generated for each sample (times its ``share``) in
    ``DIR/higgsml/samples``, simulated, preselected and turned into the 30 features, all on
    Dask; a killed build resumes where it stopped, and the same arguments give the same file.
    ``tau_tagging`` (:data:`TAU_TAGGING`): how the hadronic tau enters, see
    :func:`select_objects`; with "weighted" the event weights include the tag probability.

    ``seed`` may be a list of data seeds: the dataset is then the union of the samples
    generated with each (``events_per_sample`` each, so ``seed=(1, 2)`` doubles the events
    and reuses the samples already generated with seed 1); the cross section is the
    event-weighted mean of the runs' estimates and the weights are divided by the total
    number of generated events. The training/validation/test split is drawn with the first.
    """
    from colliderlab.higgsml.csvio import HiggsMLData, write_higgsml_csv
    from colliderlab.io.chunked import dask_client

    if events_per_sample < 10:
        raise ConfigError(f"events_per_sample must be at least 10; got {events_per_sample}.")
    if not lumi_fb > 0:
        raise ConfigError(f"lumi_fb must be a positive luminosity in fb^-1; got {lumi_fb}.")
    _check_tau_tagging(tau_tagging)
    seeds = _data_seeds(seed)
    config = {
        "events_per_sample": events_per_sample,
        # (one seed stays an int: the datasets built before seed lists keep their digest)
        "seed": seeds[0] if len(seeds) == 1 else list(seeds),
        "lumi_fb": lumi_fb,
        "card": card,
        "presel": dataclasses.asdict(presel),
        "mmc": mmc,
        "samples": [dataclasses.asdict(s) for s in samples],
    }
    if tau_tagging != "random":  # (absent for "random": the first datasets keep their digest)
        config["tau_tagging"] = tau_tagging
    digest = _digest(config)
    path = dataset_path(directory, events_per_sample, seed, tau_tagging)
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
            feats, sigmas, n_gen = [], [], []
            for s in seeds:
                f, sigma_pb, generated = _simulated_sample(
                    client, sample, k, n, s, base, card, presel, mmc, tau_tagging, progress
                )
                feats.extend(f)
                sigmas.append(sigma_pb)
                n_gen.append(generated)
            merged = {key: np.concatenate([f[key] for f in feats]) for key in feats[0]}
            n_sel = len(merged["event"])
            n_total = sum(n_gen)
            sigma_pb = sigmas[0] if len(seeds) == 1 else float(np.dot(sigmas, n_gen) / n_total)
            w = sigma_pb * 1000.0 * lumi_fb / n_total
            if sample.lep_had:
                w *= lep_had_fraction()
            merged["weight"] = w * merged.pop("tag_weight")
            merged["label"] = np.full(n_sel, sample.label, dtype=np.int8)
            merged["process"] = np.full(n_sel, sample.name, dtype=object)
            parts.append(merged)
            summary.append(
                {
                    "sample": sample.name,
                    "process": sample.process,
                    "generated": n_total,
                    "selected": n_sel,
                    "sigma_pb": sigma_pb,
                    "event_weight": w,
                    "expected_events": float(merged["weight"].sum()),
                }
            )
    allp = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    if len(allp["event"]) == 0:
        raise GenerationError(
            "no event passed the preselection; generate more events (events_per_sample)."
        )
    codes, kweight = assign_sets(allp["label"], allp["weight"], seeds[0])
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
