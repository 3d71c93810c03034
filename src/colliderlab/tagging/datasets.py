"""The jet-tagging datasets ``top``, ``w`` and ``qg``, built from colliderlab's own events.

Each dataset is a signal and a background sample, generated with Pythia and passed through the
fast detector simulation (``generic_lhc`` card); jets in a pT window are truth-labelled,
their PF-candidate constituents (up to ``max_particles``, by decreasing pT) kept, classes
balanced, shuffled and split 60/20/20 into train/val/test with the seed. The result is one
HDF5 file (:mod:`colliderlab.tagging.jets`), cached: the same request returns the same file.

============  ============================================================================
``top``       AK8 jets, pT 550-650 GeV, abs(eta) < 2: hadronic tops from all-hadronic ttbar
              whose top and three quarks lie within 0.8 of the axis, vs QCD dijets (the
              definition of the top-tagging reference dataset, arXiv:1902.09914)
``w``         AK8 jets, pT 300-400 GeV: W + jet with W -> qq' (W and both quarks inside)
              vs QCD dijets
``qg``        AK4 jets, pT 500-550 GeV, abs(y) < 1.7 (here abs(eta)): Z(-> nu nu) + jet,
              quark jets from q g -> Z q vs gluon jets from q qbar -> Z g, matched to the
              outgoing parton within 0.4 (as in the energyflow quark/gluon dataset)
============  ============================================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from colliderlab.core.errors import GenerationError
from colliderlab.core.registry import lookup, names, register
from colliderlab.generate.engine import TruthFlag
from colliderlab.generate.truth import contained, resonance_decays
from colliderlab.tagging.jets import CONSTITUENT_FIELDS, JetSet, read_jets, write_jets

DATASET_VERSION = 1
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
_MAX_ROUNDS = 8


@dataclasses.dataclass(frozen=True)
class Sample:
    """One class of a dataset: a process and the truth requirement on its jets."""

    process: str
    params: tuple[tuple[str, Any], ...] = ()
    settings: tuple[str, ...] = ()
    truth: str = "any"  # "top", "w", "quark", "gluon" or "any"
    jets_per_event: float = 0.5  # first guess of the yield (then measured)


@dataclasses.dataclass(frozen=True)
class TaggingDataset:
    name: str
    description: str
    collection: str  # FatJet or Jet
    radius: float
    pt_min: float
    pt_max: float
    eta_max: float
    signal: Sample
    background: Sample
    default_jets: int
    full_jets: int


def _register(ds: TaggingDataset) -> TaggingDataset:
    register("tagging dataset", ds.name)(ds)
    return ds


_register(
    TaggingDataset(
        "top",
        "hadronic top jets vs QCD, AK8, pT 550-650 GeV (arXiv:1902.09914 definition)",
        "FatJet",
        0.8,
        550.0,
        650.0,
        2.0,
        Sample(
            "ttbar_allhad", settings=("PhaseSpace:pTHatMin = 500",), truth="top", jets_per_event=0.4
        ),
        Sample(
            "qcd_dijet", params=(("pthat_min", 500.0), ("pthat_max", 700.0)), jets_per_event=0.6
        ),
        default_jets=8000,
        full_jets=2_000_000,
    )
)
_register(
    TaggingDataset(
        "w",
        "W jets vs QCD, AK8, pT 300-400 GeV",
        "FatJet",
        0.8,
        300.0,
        400.0,
        2.0,
        Sample(
            "wjets", params=(("decay", "had"), ("pthat_min", 280.0)), truth="w", jets_per_event=0.4
        ),
        Sample(
            "qcd_dijet", params=(("pthat_min", 280.0), ("pthat_max", 450.0)), jets_per_event=0.6
        ),
        default_jets=8000,
        full_jets=1_000_000,
    )
)
_register(
    TaggingDataset(
        "qg",
        "quark vs gluon jets from Z(nu nu) + jet, AK4, pT 500-550 GeV (energyflow definition)",
        "Jet",
        0.4,
        500.0,
        550.0,
        1.7,
        Sample(
            "zjets",
            params=(("decay", "nunu"), ("pthat_min", 480.0)),
            settings=("WeakBosonAndParton:qqbar2gmZg = off",),
            truth="quark",
            jets_per_event=0.4,
        ),
        Sample(
            "zjets",
            params=(("decay", "nunu"), ("pthat_min", 480.0)),
            settings=("WeakBosonAndParton:qg2gmZq = off",),
            truth="gluon",
            jets_per_event=0.4,
        ),
        default_jets=8000,
        full_jets=2_000_000,
    )
)


def get_dataset(name: str) -> TaggingDataset:
    return lookup("tagging dataset", name)


def dataset_names() -> list[str]:
    return names("tagging dataset")


# ----------------------------------------------------------------------------- selection
def _eta_phi(px, py, pz):
    pt = np.hypot(px, py)
    return np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0)), np.arctan2(py, px)


def _parton_match(jets: ak.Array, genpart: ak.Array, radius: float) -> ak.Array:
    """Flavour of the outgoing hard parton nearest to each jet within ``radius``:
    1 = quark, 21 = gluon, 0 = none."""
    hard = (genpart.flags & int(TruthFlag.HARD)) != 0
    apid = abs(genpart.pid)
    # outgoing partons of the hard process: status 23 (negative once they have showered)
    partons = genpart[hard & (abs(genpart.status) == 23) & ((apid <= 5) | (apid == 21))]
    eta = ak.Array(np.arcsinh(partons.pz / np.maximum(np.hypot(partons.px, partons.py), 1e-9)))
    phi = np.arctan2(partons.py, partons.px)
    p = ak.zip({"eta": eta, "phi": phi, "flav": ak.where(abs(partons.pid) == 21, 21, 1)})
    pairs = ak.cartesian({"j": jets, "p": p}, nested=True)
    dphi = (pairs.j.phi - pairs.p.phi + np.pi) % (2 * np.pi) - np.pi
    dr = np.hypot(pairs.j.eta - pairs.p.eta, dphi)
    best = ak.argmin(dr, axis=-1, keepdims=True)
    flav = ak.fill_none(ak.firsts(pairs.p.flav[best], axis=-1), 0)
    ok = ak.fill_none(ak.firsts(dr[best], axis=-1), np.inf) < radius
    return ak.where(ok, flav, 0)


def select_jets(events: ak.Array, spec: TaggingDataset, sample: Sample, label: int) -> JetSet:
    """The jets of ``events`` (a simulated chunk, no vector behaviour) that enter the dataset."""
    coll = events[spec.collection]
    window = (coll.pt > spec.pt_min) & (coll.pt < spec.pt_max) & (abs(coll.eta) < spec.eta_max)
    if sample.truth in ("top", "w"):
        decays = resonance_decays(events.GenPart, 6 if sample.truth == "top" else 24)
        window = window & contained(coll, decays, spec.radius)
    elif sample.truth in ("quark", "gluon"):
        flav = _parton_match(coll, events.GenPart, spec.radius)
        window = window & (flav == (1 if sample.truth == "quark" else 21))
    n_jets = ak.to_numpy(ak.num(coll))
    jet_start = np.concatenate([[0], np.cumsum(n_jets)[:-1]])
    keep = np.flatnonzero(ak.to_numpy(ak.flatten(window)))

    # constituents: (event, jet_index, pf_index) -> global jet id and global PF index
    cons = events[f"{spec.collection}PFCand"]
    n_cons = ak.to_numpy(ak.num(cons))
    ev_of = np.repeat(np.arange(len(events)), n_cons)
    jet_id = jet_start[ev_of] + ak.to_numpy(ak.flatten(cons.jet_index))
    pf = events.PFCand
    pf_start = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(pf)))[:-1]])
    pf_id = pf_start[ev_of] + ak.to_numpy(ak.flatten(cons.pf_index))
    row_of_jet = np.full(int(n_jets.sum()), -1)
    row_of_jet[keep] = np.arange(len(keep))
    rows = row_of_jet[jet_id]
    sel = rows >= 0
    rows, pf_id = rows[sel], pf_id[sel]
    flat = {
        k: ak.to_numpy(ak.flatten(pf[k])) for k in ("pt", "eta", "phi", "mass", "charge", "pid")
    }
    c_pt = flat["pt"][pf_id]
    order = np.lexsort((-c_pt, rows))
    rows, pf_id = rows[order], pf_id[order]
    counts = np.bincount(rows, minlength=len(keep))
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    n_max = max(int(counts.max()) if len(counts) else 1, 1)
    out = {}
    pt, eta, phi, mass = (flat[k][pf_id] for k in ("pt", "eta", "phi", "mass"))
    energy = np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)
    for k, v, dt in (
        ("pt", pt, np.float32),
        ("eta", eta, np.float32),
        ("phi", phi, np.float32),
        ("energy", energy, np.float32),
        ("charge", flat["charge"][pf_id], np.int8),
        ("pid", flat["pid"][pf_id], np.int16),
    ):
        a = np.zeros((len(keep), n_max), dtype=dt)
        a[rows, rank] = v
        out[k] = a

    def jf(name):
        return ak.to_numpy(ak.flatten(coll[name]))[keep].astype(np.float32)

    jet = {k: jf(k) for k in ("pt", "eta", "phi", "mass")}
    jet["energy"] = np.sqrt((jet["pt"] * np.cosh(jet["eta"])) ** 2 + jet["mass"] ** 2)
    jet["n_constituents"] = counts.astype(np.float32)
    # girth (pT-weighted width) and pT_D, classic quark/gluon observables
    deta = out["eta"] - jet["eta"][:, None]
    dphi = (out["phi"] - jet["phi"][:, None] + np.pi) % (2 * np.pi) - np.pi
    s = np.maximum(out["pt"].sum(1), 1e-9)
    jet["girth"] = (out["pt"] * np.hypot(deta, dphi)).sum(1) / s
    jet["ptd"] = np.sqrt((out["pt"] ** 2).sum(1)) / s
    if spec.collection == "FatJet":
        for k in ("msoftdrop", "tau_1", "tau_2", "tau_3", "tau_21", "tau_32", "c2", "d2"):
            jet[k] = np.nan_to_num(jf(k), nan=1.0)  # ratios of empty subjet sums: 1
    return JetSet(out, jet, np.full(len(keep), label, dtype=np.int8))


# ----------------------------------------------------------------------------- building
def _digest(spec: TaggingDataset, n_jets: int, seed: int, max_particles: int, card: str) -> str:
    blob = json.dumps(
        {
            "spec": dataclasses.asdict(spec),
            "n_jets": n_jets,
            "seed": seed,
            "max_particles": max_particles,
            "card": card,
            "version": DATASET_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def dataset_path(directory, name: str, n_jets: int, seed: int) -> Path:
    return Path(directory) / name / f"{name}-{n_jets}-seed{seed}.h5"


def build_dataset(
    name: str,
    directory: str | os.PathLike[str] = "colliderlab-data",
    *,
    n_jets: int | None = None,
    full: bool = False,
    seed: int = 1,
    max_particles: int = 200,
    card: str = "generic_lhc",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> Path:
    """Build (or find in the cache) the tagging dataset ``name``; return its HDF5 path.

    ``n_jets`` is the total (half signal, half background); default the dataset's default
    size, or its ``full_jets`` with ``full=True``. Events are generated and simulated on Dask
    in ``DIR/NAME/samples`` (resumable: a killed build restarts where it stopped).
    """
    from colliderlab.detector.run import simulate
    from colliderlab.generate import GenerationConfig, generate
    from colliderlab.io import Dataset
    from colliderlab.io.chunked import dask_client
    from colliderlab.tagging.jets import jets_meta

    spec = get_dataset(name)
    n_jets = int(n_jets or (spec.full_jets if full else spec.default_jets))
    if n_jets < 10:
        raise ValueError(f"n_jets must be at least 10; got {n_jets}.")
    path = dataset_path(directory, name, n_jets, seed)
    digest = _digest(spec, n_jets, seed, max_particles, card)
    if path.is_file():
        try:
            if jets_meta(path).get("digest") == digest:
                return path
        except Exception:
            pass
    per_class = n_jets // 2
    samples_dir = Path(directory) / name / "samples"
    sets = []
    with dask_client(workers, scheduler) as client:
        for label, sample in ((1, spec.signal), (0, spec.background)):
            got: list[JetSet] = []
            yield_ = sample.jets_per_event
            previous = 0
            for rnd in range(_MAX_ROUNDS):
                have = sum(len(s) for s in got)
                if have >= per_class:
                    break
                n_events = max(50, math.ceil((per_class - have) / max(yield_, 0.01) * 1.15))
                if rnd:  # a round at most 10x the previous one: a broken selection fails fast
                    n_events = min(n_events, 10 * previous)
                previous = n_events
                cls = "signal" if label else "background"
                base = samples_dir / f"{cls}-{n_events}-seed{seed}-round{rnd}"
                config = GenerationConfig(
                    process=sample.process,
                    n_events=n_events,
                    seed=seed * 1000 + 100 * label + rnd,
                    params=dict(sample.params),
                    settings=sample.settings,
                    chunk_size=min(500, n_events),
                )
                generate(config, base / "gen", client=client, progress=progress)
                simulate(
                    base / "gen",
                    base / "reco",
                    card=card,
                    seed=seed + rnd,
                    client=client,
                    progress=progress,
                )
                found = [
                    select_jets(chunk, spec, sample, label)
                    for chunk in Dataset(base / "reco").iter_chunks(vector=False)
                ]
                found = [f for f in found if len(f)]
                n_found = sum(len(f) for f in found)
                got.extend(found)
                yield_ = max(n_found / n_events, 1e-3)
            if sum(len(s) for s in got) < per_class:
                raise GenerationError(
                    f"dataset {name!r}: only {sum(len(s) for s in got)} {sample.truth} jets "
                    f"after {_MAX_ROUNDS} rounds of generation; the selection is too tight."
                )
            js = JetSet.concatenate(got).subset(slice(0, per_class))
            sets.append(js)
    allj = JetSet.concatenate(sets)
    n = min(max_particles, allj.max_particles)
    allj = JetSet({k: v[:, :n] for k, v in allj.constituents.items()}, allj.jet, allj.label).check(
        f"dataset {name}"
    )
    order = np.random.default_rng(seed).permutation(len(allj))
    n_train = int(SPLIT_FRACTIONS[0] * len(allj))
    n_val = int(SPLIT_FRACTIONS[1] * len(allj))
    splits = {
        "train": allj.subset(order[:n_train]),
        "val": allj.subset(order[n_train : n_train + n_val]),
        "test": allj.subset(order[n_train + n_val :]),
    }
    meta = {
        "dataset": name,
        "description": spec.description,
        "digest": digest,
        "n_jets": n_jets,
        "seed": seed,
        "card": card,
        "max_particles": n,
        "constituent_fields": list(CONSTITUENT_FIELDS),
        "spec": dataclasses.asdict(spec),
    }
    return write_jets(path, splits, meta)


def load_dataset(path: str | os.PathLike[str]) -> dict[str, JetSet]:
    """All three splits of a jet file."""
    return {s: read_jets(path, s) for s in ("train", "val", "test")}
