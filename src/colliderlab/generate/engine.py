"""Generation of one chunk of events: hard scatter + pile-up + luminous region.

The event record written per event (units: GeV, mm, ns):

``event_id`` (int64), ``process_id`` (Pythia's process code, int32), ``weight`` (float64),
``n_pileup`` (int32, number of overlaid minimum-bias interactions);

``vertices``: ``x, y, z, t`` of each interaction, index 0 = hard scatter;

``particles``: every final-state particle: ``pid, charge, px, py, pz, E, gen_mass, vx, vy,
vz, vt, pileup`` (production vertex in the lab, index of the interaction it came from, 0 = hard
scatter). ``gen_mass`` is Pythia's mass of the particle (``.mass`` from the vector behaviour is
computed from E and p);

``truth``: the hard-process record for truth matching: ``pid, status, px, py, pz, E,
gen_mass, mother, flags``. ``mother`` indexes ``truth`` (-1: none stored). ``flags`` are bits
of :class:`TruthFlag`: HARD for the particles of the hard scattering and of the resonance
decays (first copies, Pythia status 21-23: their four-momenta add up to the decaying
resonance), RESONANCE for the last copy of each heavy resonance (t, W, Z, H, Z', W', X, Y: the
one that decays, after recoils), TAU for the last copy of each tau, B_HADRON / C_HADRON for
weakly decaying b and c hadrons. A W from a top decay thus appears twice: as the top's HARD
daughter, and as the RESONANCE whose ``mother`` is that first copy;

``vistau``: per tau in ``truth``: visible decay products ``px, py, pz, E``, ``charge``,
``decay_mode`` (:class:`TauDecay`), ``n_prongs``, ``tau_index`` (index into ``truth``).
"""

from __future__ import annotations

import enum
import functools
import math
import time
from typing import Any

import numpy as np

from colliderlab.core.errors import GenerationError
from colliderlab.core.seeding import as_generator, pythia_seed
from colliderlab.core.units import C_MM_PER_NS, MB_TO_PB
from colliderlab.generate.config import GenerationConfig
from colliderlab.generate.processes import DEFAULT_ECM, X_ID, Y_ID, GunSpec, get_process
from colliderlab.generate.pythia import Generator, make_pythia


class TruthFlag(enum.IntFlag):
    """Why a generator particle is in the ``truth`` collection."""

    HARD = 1  #: incoming or outgoing particle of the hard scattering (first copy)
    RESONANCE = 2  #: last copy of a heavy resonance (t, W, Z, H, Z', W', X, Y)
    TAU = 4  #: last copy of a tau lepton (the one that decays)
    B_HADRON = 8  #: weakly decaying b hadron
    C_HADRON = 16  #: weakly decaying c hadron
    GUN = 32  #: the particle shot by a particle gun


class TauDecay(enum.IntEnum):
    """Decay mode of a tau lepton, from its direct decay products."""

    ELECTRON = 0
    MUON = 1
    HADRONIC_1PRONG = 2
    HADRONIC_3PRONG = 3
    HADRONIC_OTHER = 4


#: |pdgId| of heavy resonances kept (last copy) in the truth record.
RESONANCES = frozenset({6, 23, 24, 25, 32, 34, 35, 36, 37, X_ID, Y_ID})
_NEUTRINOS = frozenset({12, 14, 16})

PARTICLE_FIELDS = (
    "pid",
    "charge",
    "px",
    "py",
    "pz",
    "E",
    "gen_mass",
    "vx",
    "vy",
    "vz",
    "vt",
    "pileup",
)
TRUTH_FIELDS = ("pid", "status", "px", "py", "pz", "E", "gen_mass", "mother", "flags")
VISTAU_FIELDS = ("px", "py", "pz", "E", "charge", "decay_mode", "n_prongs", "tau_index")


@functools.lru_cache(maxsize=4096)
def heavy_flavour(pid: int) -> int:
    """5 for a hadron containing a b quark, 4 for one containing c (and no b), else 0."""
    a = abs(pid)
    if a < 100 or a >= 1_000_000_000:  # quarks, leptons, bosons, nuclei
        return 0
    q = a % 10000  # drop radial/orbital excitation digits
    digits = ((q // 1000) % 10, (q // 100) % 10, (q // 10) % 10)
    if 5 in digits:
        return 5
    if 4 in digits:
        return 4
    return 0


class _Columns:
    """Growing Python lists, one per field, plus per-event counts."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self.data: dict[str, list] = {f: [] for f in fields}
        self.counts: list[int] = []

    def arrays(self, dtypes: dict[str, Any]) -> dict[str, np.ndarray]:
        return {f: np.asarray(self.data[f], dtype=dtypes.get(f, np.float64)) for f in self.fields}


_INT_FIELDS = {
    "pid": np.int32,
    "charge": np.int8,
    "pileup": np.int16,
    "status": np.int16,
    "mother": np.int32,
    "flags": np.int16,
    "decay_mode": np.int8,
    "n_prongs": np.int8,
    "tau_index": np.int32,
}
_F32_FIELDS = {"vx": np.float32, "vy": np.float32, "vz": np.float32, "vt": np.float32}


class ChunkGenerator:
    """Generates the events of one chunk; one instance per chunk, in one worker process."""

    def __init__(self, config: GenerationConfig, seed_seq: np.random.SeedSequence) -> None:
        self.config = config
        s_hard, s_pileup, s_numpy = seed_seq.spawn(3)
        self.rng = as_generator(s_numpy)
        _, spec = get_process(config.process).resolve(config.params)
        self.gun: GunSpec | None = spec.gun
        self.hard: Generator = make_pythia(
            (*spec.settings, *config.settings), seed=pythia_seed(s_hard), veto=spec.veto
        )
        self.pileup: Generator | None = None
        if config.pileup > 0:
            ecm = float(config.params.get("ecm", DEFAULT_ECM))
            self.pileup = make_pythia(
                (f"Beams:eCM = {ecm}", "SoftQCD:inelastic = on"), seed=pythia_seed(s_pileup)
            )
        self._charge: dict[int, int] = {}
        self.particles = _Columns(PARTICLE_FIELDS)
        self.truth = _Columns(TRUTH_FIELDS)
        self.vistau = _Columns(VISTAU_FIELDS)
        self.event_cols: dict[str, list] = {"process_id": [], "weight": [], "n_pileup": []}

    # ------------------------------------------------------------------ extraction
    def _final_state(self, event, interaction: int, truth: bool) -> int:
        """Append the final-state particles of ``event`` (and truth if asked); return how many."""
        d = self.particles.data
        pid_a, ch_a, px_a, py_a, pz_a, e_a, m_a = (
            d["pid"].append,
            d["charge"].append,
            d["px"].append,
            d["py"].append,
            d["pz"].append,
            d["E"].append,
            d["gen_mass"].append,
        )
        vx_a, vy_a, vz_a, t_a, pu_a = (
            d["vx"].append,
            d["vy"].append,
            d["vz"].append,
            d["vt"].append,
            d["pileup"].append,
        )
        charges = self._charge
        candidates = [] if truth else None
        n = 0
        # Iterating over a copy of the record is ~30% faster than over the Event itself; the
        # few truth candidates are then looked up in the Event (copies lose their index).
        for i, q in enumerate(event.particles()):
            st = q.status()
            if st > 0:
                pid = q.id()
                ch = charges.get(pid)
                if ch is None:
                    ch = charges[pid] = round(q.charge())
                pid_a(pid)
                ch_a(ch)
                px_a(q.px())
                py_a(q.py())
                pz_a(q.pz())
                e_a(q.e())
                m_a(q.m())
                vx_a(q.xProd())
                vy_a(q.yProd())
                vz_a(q.zProd())
                t_a(q.tProd())
                pu_a(interaction)
                n += 1
                if truth and 21 <= st <= 23:
                    candidates.append((i, TruthFlag.HARD))
            elif truth:
                pid = q.id()
                a = pid if pid > 0 else -pid
                if a in RESONANCES or a == 15:
                    flag = TruthFlag.HARD if -23 <= st <= -21 else TruthFlag(0)
                    if event[i].iBotCopyId() == i:
                        flag |= TruthFlag.RESONANCE if a != 15 else TruthFlag.TAU
                    if flag:
                        candidates.append((i, flag))
                elif -23 <= st <= -21:
                    candidates.append((i, TruthFlag.HARD))
                elif a > 100:
                    hf = heavy_flavour(pid)
                    if hf and not any(
                        heavy_flavour(event[j].id()) == hf for j in event[i].daughterList()
                    ):
                        candidates.append(
                            (i, TruthFlag.B_HADRON if hf == 5 else TruthFlag.C_HADRON)
                        )
        if truth:
            self._truth(event, candidates)
        return n

    def _truth(self, event, candidates) -> None:
        t = self.truth.data
        index_of = {i: k for k, (i, _) in enumerate(candidates)}
        n_tau = 0
        for k, (i, flag) in enumerate(candidates):
            q = event[i]
            t["pid"].append(q.id())
            t["status"].append(q.status())
            t["px"].append(q.px())
            t["py"].append(q.py())
            t["pz"].append(q.pz())
            t["E"].append(q.e())
            t["gen_mass"].append(q.m())
            t["flags"].append(int(flag))
            # Walk up through copies and intermediate entries to the nearest stored ancestor.
            m, mother, steps = q.mother1(), -1, 0
            while m > 0 and steps < 500:
                if m in index_of:
                    mother = index_of[m]
                    break
                m = event[m].mother1()
                steps += 1
            t["mother"].append(mother)
            if flag & TruthFlag.TAU:
                self._visible_tau(event, q, k)
                n_tau += 1
        self.truth.counts.append(len(candidates))
        self.vistau.counts.append(n_tau)

    def _visible_tau(self, event, tau, k: int) -> None:
        v = self.vistau.data
        px = py = pz = e = 0.0
        charge = 0
        ids = []
        for j in tau.daughterList():
            d = event[j]
            a = d.idAbs()
            ids.append(a)
            if a in _NEUTRINOS:
                continue
            px += d.px()
            py += d.py()
            pz += d.pz()
            e += d.e()
            charge += round(d.charge())
        if 11 in ids:
            mode, prongs = TauDecay.ELECTRON, 1
        elif 13 in ids:
            mode, prongs = TauDecay.MUON, 1
        else:
            prongs = sum(
                1
                for j in tau.daughterListRecursive()
                if event[j].isFinal() and event[j].isCharged()
            )
            mode = {1: TauDecay.HADRONIC_1PRONG, 3: TauDecay.HADRONIC_3PRONG}.get(
                prongs, TauDecay.HADRONIC_OTHER
            )
        for name, val in (
            ("px", px),
            ("py", py),
            ("pz", pz),
            ("E", e),
            ("charge", charge),
            ("decay_mode", int(mode)),
            ("n_prongs", prongs),
            ("tau_index", k),
        ):
            v[name].append(val)

    # ------------------------------------------------------------------ events
    def _shoot(self) -> None:
        """Put one gun particle in the (empty) event record of the gun generator."""
        g, rng, py = self.gun, self.rng, self.hard.pythia
        if g.spectrum == "log":
            energy = math.exp(rng.uniform(math.log(g.e_min), math.log(g.e_max)))
        else:
            energy = rng.uniform(g.e_min, g.e_max)
        eta = rng.uniform(g.eta_min, g.eta_max)
        phi = rng.uniform(-math.pi, math.pi)
        sign = {"plus": 1, "minus": -1}.get(g.charge) or (1 if rng.random() < 0.5 else -1)
        pid = g.pid
        if pid in (11, 13):  # the positive lepton is the antiparticle
            pid = -pid if sign > 0 else pid
        elif pid == 211:
            pid = pid if sign > 0 else -pid
        mass = py.particleData.m0(pid)
        p = math.sqrt(max(energy * energy - mass * mass, 0.0))
        theta = 2.0 * math.atan(math.exp(-eta))
        px, pyy, pz = (
            p * math.sin(theta) * math.cos(phi),
            p * math.sin(theta) * math.sin(phi),
            p * math.cos(theta),
        )
        ev = py.event
        ev.reset()
        ev.append(pid, 1, 0, 0, 0, 0, 0, 0, px, pyy, pz, max(energy, mass), mass)

    @staticmethod
    def _next(gen: Generator) -> None:
        for _ in range(100):
            if gen.pythia.next():
                return
        raise GenerationError(
            "Pythia failed to generate an event 100 times in a row; the settings are probably "
            "inconsistent (look for a kinematic cut that leaves no phase space)."
        )

    def generate(self, n_events: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Generate ``n_events``; return (columns for the event array, chunk metadata)."""
        t0 = time.perf_counter()
        ev_cols = self.event_cols
        vtx_counts = []
        for _ in range(n_events):
            if self.gun is not None:
                self._shoot()
            self._next(self.hard)
            hard = self.hard.pythia
            n_particles = self._final_state(hard.event, 0, truth=self.gun is None)
            if self.gun is not None:
                self._gun_truth(hard.event)
            n_pu = int(self.rng.poisson(self.config.pileup)) if self.pileup is not None else 0
            for k in range(1, n_pu + 1):
                self._next(self.pileup)
                n_particles += self._final_state(self.pileup.pythia.event, k, truth=False)
            self.particles.counts.append(n_particles)
            vtx_counts.append(n_pu + 1)
            ev_cols["process_id"].append(0 if self.gun is not None else self.hard.info.code())
            ev_cols["weight"].append(1.0 if self.gun is not None else self.hard.info.weight())
            ev_cols["n_pileup"].append(n_pu)
        seconds = time.perf_counter() - t0
        info = self.hard.info
        if self.gun is None:
            sigma, sigma_err = info.sigmaGen() * MB_TO_PB, info.sigmaErr() * MB_TO_PB
            n_accepted, n_tried = info.nAccepted(), info.nTried()
        else:
            sigma = sigma_err = 0.0
            n_accepted = n_tried = n_events
        meta = {
            "n_events": n_events,
            "sigma_pb": sigma,
            "sigma_err_pb": sigma_err,
            "n_accepted": int(n_accepted),
            "n_tried": int(n_tried),
            "weight_sum": float(np.sum(ev_cols["weight"])),
            "n_pileup_total": int(np.sum(ev_cols["n_pileup"])),
            "seconds": seconds,
        }
        return self._columns(np.asarray(vtx_counts)), meta

    def _gun_truth(self, event) -> None:
        q = event[1]
        t = self.truth.data
        for name, val in (
            ("pid", q.id()),
            ("status", q.status()),
            ("px", q.px()),
            ("py", q.py()),
            ("pz", q.pz()),
            ("E", q.e()),
            ("gen_mass", q.m()),
            ("mother", -1),
            ("flags", int(TruthFlag.GUN)),
        ):
            t[name].append(val)
        self.truth.counts.append(1)
        self.vistau.counts.append(0)

    def _columns(self, vtx_counts: np.ndarray) -> dict[str, Any]:
        """Flat numpy columns + counts; vertices drawn and added to every particle."""
        n_events = len(vtx_counts)
        n_vtx = int(vtx_counts.sum())
        vs = self.config.vertex
        rng = self.rng
        vtx = {
            "x": rng.normal(0.0, vs.sigma_xy, n_vtx) if vs.sigma_xy > 0 else np.zeros(n_vtx),
            "y": rng.normal(0.0, vs.sigma_xy, n_vtx) if vs.sigma_xy > 0 else np.zeros(n_vtx),
            "z": rng.normal(0.0, vs.sigma_z, n_vtx) if vs.sigma_z > 0 else np.zeros(n_vtx),
            "t": rng.normal(0.0, vs.sigma_t, n_vtx) if vs.sigma_t > 0 else np.zeros(n_vtx),
        }
        dtypes = {**_INT_FIELDS, **_F32_FIELDS}
        p_counts = np.asarray(self.particles.counts, dtype=np.int64)
        p = self.particles.arrays({**_INT_FIELDS})  # vertices in float64 until shifted
        # Global index of each particle's interaction vertex.
        vtx_start = np.concatenate([[0], np.cumsum(vtx_counts)[:-1]])
        gidx = np.repeat(vtx_start, p_counts) + p["pileup"].astype(np.int64)
        p["vx"] = (p["vx"] + vtx["x"][gidx]).astype(np.float32)
        p["vy"] = (p["vy"] + vtx["y"][gidx]).astype(np.float32)
        p["vz"] = (p["vz"] + vtx["z"][gidx]).astype(np.float32)
        p["vt"] = (p["vt"] / C_MM_PER_NS + vtx["t"][gidx]).astype(np.float32)
        return {
            "n_events": n_events,
            "event": {
                "process_id": np.asarray(self.event_cols["process_id"], dtype=np.int32),
                "weight": np.asarray(self.event_cols["weight"], dtype=np.float64),
                "n_pileup": np.asarray(self.event_cols["n_pileup"], dtype=np.int32),
            },
            "vertices": ({k: v.astype(np.float32) for k, v in vtx.items()}, vtx_counts),
            "particles": (p, p_counts),
            "truth": (self.truth.arrays(dtypes), np.asarray(self.truth.counts, dtype=np.int64)),
            "vistau": (self.vistau.arrays(dtypes), np.asarray(self.vistau.counts, dtype=np.int64)),
        }


def generate_chunk(config: GenerationConfig, index: int, seed_seq: np.random.SeedSequence):
    """Generate chunk ``index`` of ``config``; return (awkward events, metadata dict)."""
    from colliderlab.io.events import build_events

    gen = ChunkGenerator(config, seed_seq)
    n = config.chunk_events(index)
    columns, meta = gen.generate(n)
    first_id = index * config.chunk_size
    events = build_events(columns, np.arange(first_id, first_id + n, dtype=np.int64))
    return events, meta
