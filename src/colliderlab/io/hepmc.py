"""HepMC3 export of generated datasets (through ``pyhepmc``; extra ``colliderlab[hepmc]``).

Each event becomes a ``GenEvent`` (GeV, mm) with one vertex per interaction (hard scatter and
pile-up) at its position: two incoming beam protons (status 4; for a particle gun, the gun
particle) and that interaction's final-state particles (status 1) outgoing. The event weight
and Pythia's cross-section estimate are attached.
"""

from __future__ import annotations

import os

import awkward as ak
import numpy as np

from colliderlab.core.errors import ConfigError
from colliderlab.core.units import C_MM_PER_NS

#: Proton mass in GeV (PDG).
PROTON_MASS = 0.93827208816


def _pyhepmc():
    try:
        import pyhepmc
    except ImportError:
        raise ConfigError(
            "HepMC3 export needs pyhepmc: pip install 'colliderlab[hepmc]'."
        ) from None
    return pyhepmc


def write_hepmc(dataset, path: str | os.PathLike[str], max_events: int | None = None) -> int:
    """Write the events of ``dataset`` (a :class:`~colliderlab.io.Dataset`) to ``path``.

    Returns the number of events written. The file is written atomically.
    """
    from colliderlab.core.files import write_atomic

    hep = _pyhepmc()
    sigma, err = dataset.cross_section
    gun = str(dataset.config.get("process", "")).startswith("gun_")
    e_beam = 0.5 * float(dataset.config.get("params", {}).get("ecm", 13600.0))
    count = 0

    def writer(tmp) -> None:
        nonlocal count
        with hep.open(str(tmp), "w") as out:
            for events in dataset.iter_chunks(vector=False):
                for ev in ak.to_list(events):
                    if max_events is not None and count >= max_events:
                        return
                    out.write(_event(hep, ev, sigma, err, e_beam, gun))
                    count += 1

    write_atomic(path, writer)
    return count


def _event(hep, ev: dict, sigma: float, err: float, e_beam: float, gun: bool):
    g = hep.GenEvent(hep.Units.GEV, hep.Units.MM)
    g.event_number = int(ev["event_id"])
    g.weights = [float(ev["weight"])]
    xs = hep.GenCrossSection()
    xs.set_cross_section(float(sigma), float(err))
    g.cross_section = xs
    parts = ev["particles"]
    inter = np.array([p["pileup"] for p in parts], dtype=int)
    for k, vtx in enumerate(ev["vertices"]):
        v = hep.GenVertex(hep.FourVector(vtx["x"], vtx["y"], vtx["z"], vtx["t"] * C_MM_PER_NS))
        if gun and k == 0:
            t = ev["truth"][0]
            v.add_particle_in(
                hep.GenParticle(hep.FourVector(t["px"], t["py"], t["pz"], t["E"]), int(t["pid"]), 4)
            )
        else:
            pz = np.sqrt(e_beam**2 - PROTON_MASS**2)
            for sign in (1.0, -1.0):
                v.add_particle_in(
                    hep.GenParticle(hep.FourVector(0.0, 0.0, sign * pz, e_beam), 2212, 4)
                )
        for j in np.flatnonzero(inter == k):
            p = parts[j]
            v.add_particle_out(
                hep.GenParticle(hep.FourVector(p["px"], p["py"], p["pz"], p["E"]), int(p["pid"]), 1)
            )
        g.add_vertex(v)
    return g
