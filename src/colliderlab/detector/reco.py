"""The fast simulation of one chunk of generated events (vectorised over the whole chunk).

Order of the steps (as in Delphes): propagation in the solenoid -> tracking efficiency and
momentum smearing -> ECAL/HCAL deposits, lateral spread, tower smearing and thresholds ->
particle flow (tracks + neutral excess over the tracks in each tower) -> primary vertex and
charged-hadron subtraction of pile-up -> electrons, muons, photons with efficiency and
isolation -> jets, flavour, b/tau tags, substructure (:mod:`colliderlab.detector.jets`) ->
missing transverse momentum.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from colliderlab.core.capture import capture_stdout
from colliderlab.detector.calorimeter import TowerGridMap, depth_fractions
from colliderlab.detector.card import DetectorCard
from colliderlab.detector.physics import (
    ELECTRON_MASS,
    INVISIBLE,
    MUON_MASS,
    PION_MASS,
    delta_phi,
    propagate_to_calorimeter,
    pt_eta_phi,
)
from colliderlab.io.events import jagged

#: PF candidate types (CMS particle-flow pdgId convention).
PF_CHARGED_HADRON, PF_ELECTRON, PF_MUON, PF_PHOTON, PF_NEUTRAL_HADRON = 211, 11, 13, 22, 130
_TRACK_KINDS = ("hadron", "electron", "muon")
#: Photons this close to an electron are its FSR/bremsstrahlung and are added to it.
ELECTRON_DRESSING_DR = 0.05
_TRACK_MASS = np.array([PION_MASS, ELECTRON_MASS, MUON_MASS])
_TRACK_PF = np.array([PF_CHARGED_HADRON, PF_ELECTRON, PF_MUON])


def _group(event: np.ndarray, n_events: int, columns: dict[str, np.ndarray]) -> ak.Array:
    """Jagged per-event collection from flat columns with an event index (stable order)."""
    order = np.argsort(event, kind="stable")
    counts = np.bincount(event, minlength=n_events)
    return jagged({k: v[order] for k, v in columns.items()}, counts)


def _local_index(event: np.ndarray, n_events: int) -> np.ndarray:
    """Position of each entry within its event (entries sorted by event)."""
    counts = np.bincount(event, minlength=n_events)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.arange(len(event)) - np.repeat(starts, counts)


def _apply_efficiency(cand, cand_idx, efficiency, rng):
    """Keep each candidate with probability ``efficiency(pT, |eta|)`` (a card table)."""
    flat_pt = ak.to_numpy(ak.flatten(cand.pt))
    flat_eta = np.abs(ak.to_numpy(ak.flatten(cand.eta)))
    passed = ak.unflatten(rng.random(len(flat_pt)) < efficiency(flat_pt, flat_eta), ak.num(cand))
    return cand[passed], cand_idx[passed]


class FastSimulation:
    """Runs the detector card over events; ``__call__(events, rng) -> reconstructed events``.

    ``calo_model`` (None: the card alone) gives the ECAL response of photons and electrons
    from a shower simulation: ``"reference"`` (the reference shower simulation of
    :mod:`colliderlab.calosim`, Pb/LAr ``atlas5``), ``"reference:GEOMETRY"``, a training
    directory of a generative shower model, or a :class:`colliderlab.calosim.response.
    CaloResponse`. Each photon and electron reaching the ECAL with an energy inside the
    response's range (1 GeV - 1 TeV) then deposits its calibrated shower energy, drawn per
    particle (normal incidence), instead of its true energy, and the card's stochastic and
    constant terms are not applied to these deposits (no double smearing); the card's
    lateral spread, noise term, tower noise and thresholds still are. Photons and electrons
    outside the range, and every other ECAL deposit, keep the card's parametrisation.
    """

    def __init__(
        self,
        card: DetectorCard,
        hits: bool = False,
        towers: bool = False,
        calo_model=None,
    ) -> None:
        self.card = card
        self.hits = hits  # also simulate tracker hits (the Hit collection)
        self.towers = towers  # also write the calorimeter towers (EcalTower, HcalTower)
        self.ecal = TowerGridMap(card.ecal)
        self.hcal = TowerGridMap(card.hcal)
        self.calo_response = None
        if calo_model is not None:
            from colliderlab.calosim.response import get_response

            self.calo_response = get_response(calo_model)

    def _em_response(self, apid, energy, rng) -> np.ndarray:
        """Shower-simulated energies (GeV) of the photons and electrons among ECAL deposits of
        true ``energy`` (GeV); NaN for the others and outside the response's range."""
        out = np.full(len(energy), np.nan)
        resp = self.calo_response
        for code, particle in ((11, "e-"), (22, "gamma")):
            sel = np.flatnonzero((apid == code) & resp.in_range(energy))
            if len(sel):
                seed = int(rng.integers(0, 2**63 - 1))
                out[sel] = resp(energy[sel], particle, seed=seed)
        return out

    def __call__(self, events: ak.Array, rng: np.random.Generator) -> ak.Array:
        from colliderlab.detector.jets import reconstruct_jets

        card = self.card
        n_ev = len(events)
        p = events.particles
        counts = ak.to_numpy(ak.num(p))
        ev = np.repeat(np.arange(n_ev), counts)
        col = {
            f: ak.to_numpy(ak.flatten(p[f]))
            for f in ("pid", "charge", "px", "py", "pz", "E", "vx", "vy", "vz")
        }
        pid, charge, e_true, vz = col["pid"], col["charge"], col["E"], col["vz"]
        apid = np.abs(pid)
        pt, eta, phi = pt_eta_phi(col["px"], col["py"], col["pz"])
        gen_index = _local_index(ev, n_ev)
        visible = ~np.isin(apid, INVISIBLE)

        # ------------------------------------------------------------------ tracking
        tk = card.tracker
        kind = np.where(apid == 11, 1, np.where(apid == 13, 2, 0))
        eff = np.zeros(len(pt))
        res = np.zeros(len(pt))
        for k, name in enumerate(_TRACK_KINDS):
            sel = kind == k
            eff[sel] = tk.efficiency[name](pt[sel], np.abs(eta[sel]))
            res[sel] = tk.resolution[name](pt[sel], np.abs(eta[sel]))
        has_track = (
            (charge != 0)
            & visible
            & (np.abs(eta) < tk.eta_max)
            & (pt > tk.pt_min)
            & (rng.random(len(pt)) < eff)
        )
        t = np.flatnonzero(has_track)
        t_res = res[t]
        t_pt = np.abs(pt[t] * (1.0 + t_res * rng.standard_normal(len(t))))
        t_eta, t_phi, t_kind = eta[t], phi[t], kind[t]
        # z of the point of closest approach to the beam line (straight-line extrapolation
        # over the mm-scale displacement of decay products): what the PV association uses.
        d_xy = (col["vx"][t] * col["px"][t] + col["vy"][t] * col["py"][t]) / pt[t]
        z0 = vz[t] - d_xy * col["pz"][t] / pt[t]
        t_vz = z0 + tk.z_resolution * rng.standard_normal(len(t))
        t_energy = np.sqrt((t_pt * np.cosh(t_eta)) ** 2 + _TRACK_MASS[t_kind] ** 2)

        # ------------------------------------------------------------------ calorimeters
        f = card.field
        reached, eta_c, phi_c = propagate_to_calorimeter(
            pt, col["pz"], phi, charge, vz, f.bz, f.radius, f.half_length
        )
        f_ecal = np.where(
            np.isin(apid, (11, 22)), 1.0, np.where(np.isin(apid, (310, 3122)), 0.3, 0.0)
        )
        in_calo = reached & visible & (apid != 13)
        towers = {}
        for name, cmap, frac in (("ecal", self.ecal, f_ecal), ("hcal", self.hcal, 1.0 - f_ecal)):
            s = in_calo & (frac > 0)
            e_dep = e_true[s] * frac[s]
            shower = None
            if name == "ecal" and self.calo_response is not None:
                shower = self._em_response(apid[s], e_dep, rng)
            if self.towers:  # depth segments are only written out, not used by PF
                seg = depth_fractions(cmap.calo.depth, e_dep, rng, photon=apid[s] == 22)
                e_dep = e_dep[:, None] * seg
            if shower is None:
                keys, true_e = cmap.deposit(ev[s], eta_c[s], phi_c[s], e_dep)
                towers[name] = cmap.measure(keys, true_e, n_ev, rng)
                continue
            # photons/electrons: the shower energy (already fluctuated) in place of the true one
            em = ~np.isnan(shower)
            scale = np.where(em, shower / np.where(em, e_true[s] * frac[s], 1.0), 0.0)
            pre = e_dep * (scale if e_dep.ndim == 1 else scale[:, None])
            rest = np.where(em if e_dep.ndim == 1 else em[:, None], 0.0, e_dep)
            both = np.concatenate([rest.reshape(len(rest), -1), pre.reshape(len(pre), -1)], axis=1)
            keys, dep = cmap.deposit(ev[s], eta_c[s], phi_c[s], both)
            k = both.shape[1] // 2
            towers[name] = cmap.measure(keys, dep[:, :k], n_ev, rng, premeasured=dep[:, k:])

        # ------------------------------------------------------------------ particle flow
        t_reached = reached[t]
        neutrals = []
        for name, cmap, track_kinds, pf_id in (
            ("ecal", self.ecal, (1,), PF_PHOTON),
            ("hcal", self.hcal, (0,), PF_NEUTRAL_HADRON),
        ):
            tw = towers[name]
            calo = card.ecal if name == "ecal" else card.hcal
            use = t_reached & np.isin(t_kind, track_kinds)
            # Expected charged deposit per tower: the tracks' energies spread like showers.
            tkeys, texp = cmap.deposit(ev[t][use], eta_c[t][use], phi_c[t][use], t_energy[use])
            pos = np.searchsorted(tw.key, tkeys)
            ok = pos < len(tw.key)
            ok[ok] = tw.key[pos[ok]] == tkeys[ok]
            expected = np.bincount(pos[ok], weights=texp[ok], minlength=len(tw.key))
            # Its uncertainty: the calorimeter's at that energy and the tracks' momentum errors.
            tvar_keys, tvar = cmap.deposit(
                ev[t][use], eta_c[t][use], phi_c[t][use], (t_res[use] * t_energy[use]) ** 2
            )
            vpos = np.searchsorted(tw.key, tvar_keys)
            vok = vpos < len(tw.key)
            vok[vok] = tw.key[vpos[vok]] == tvar_keys[vok]
            track_var = np.bincount(vpos[vok], weights=tvar[vok], minlength=len(tw.key))
            excess = tw.energy - expected
            sigma_expected = np.sqrt(
                calo.resolution.sigma(expected, np.abs(tw.eta)) ** 2 + track_var
            )
            keep = (excess > calo.energy_min) & (excess > calo.significance_min * sigma_expected)
            neutrals.append((tw.event[keep], excess[keep], tw.eta[keep], tw.phi[keep], pf_id))

        # ------------------------------------------------------------------ vertex, CHS
        pv_z = ak.to_numpy(events.vertices.z[:, 0]).astype(float)
        pv_z = pv_z + card.pv_z_resolution * rng.standard_normal(n_ev)
        t_ev = ev[t]
        t_from_pv = np.abs(t_vz - pv_z[t_ev]) < card.jets.pileup_dz_max

        ecal_towers = _group(
            towers["ecal"].event,
            n_ev,
            {"energy": towers["ecal"].energy, "eta": towers["ecal"].eta, "phi": towers["ecal"].phi},
        )
        track_cols = {
            "pt": t_pt,
            "eta": t_eta,
            "phi": t_phi,
            "mass": _TRACK_MASS[t_kind],
            "charge": charge[t].astype(np.int8),
            "vz": t_vz.astype(np.float32),
            "pid": pid[t].astype(np.int32),
            "gen_index": gen_index[t].astype(np.int32),
            "from_pv": t_from_pv,
            "eta_calo": np.where(t_reached, eta_c[t], np.nan).astype(np.float32),
            "phi_calo": np.where(t_reached, phi_c[t], np.nan).astype(np.float32),
        }
        n_tracks = np.bincount(t_ev, minlength=n_ev)
        t_local = _local_index(t_ev, n_ev)

        pf_ev = [t_ev]
        pf = {
            "pt": [t_pt],
            "eta": [t_eta],
            "phi": [t_phi],
            "mass": [_TRACK_MASS[t_kind]],
            "charge": [charge[t].astype(np.int8)],
            "pid": [(_TRACK_PF[t_kind] * np.where(charge[t] > 0, 1, -1)).astype(np.int32)],
            "track_index": [t_local.astype(np.int32)],
            "from_pv": [t_from_pv],
        }
        for n_event, energy, n_eta, n_phi, pf_id in neutrals:
            pf_ev.append(n_event)
            pf["pt"].append(energy / np.cosh(n_eta))
            pf["eta"].append(n_eta)
            pf["phi"].append(n_phi)
            pf["mass"].append(np.zeros(len(energy)))
            pf["charge"].append(np.zeros(len(energy), dtype=np.int8))
            pf["pid"].append(np.full(len(energy), pf_id, dtype=np.int32))
            pf["track_index"].append(np.full(len(energy), -1, dtype=np.int32))
            pf["from_pv"].append(np.ones(len(energy), dtype=bool))
        pf_event = np.concatenate(pf_ev)
        pf_flat = {k: np.concatenate(v) for k, v in pf.items()}
        pf_cands = _group(pf_event, n_ev, pf_flat)

        # ------------------------------------------------------------------ leptons, photons
        tracks = jagged(track_cols, n_tracks)
        pf_index = ak.local_index(pf_cands)
        # the PF candidate of track j of event i is its j-th candidate (tracks come first)
        muons = self._leptons(tracks, pf_cands, 13, card.muon, rng)
        electrons = self._leptons(tracks, pf_cands, 11, card.electron, rng, ecal_towers)
        photons = self._photons(pf_cands, pf_index, rng)

        # ------------------------------------------------------------------ MET
        px = ak.sum(pf_cands.pt * np.cos(pf_cands.phi), axis=1)
        py = ak.sum(pf_cands.pt * np.sin(pf_cands.phi), axis=1)
        met = ak.zip(
            {
                "pt": np.hypot(ak.to_numpy(px), ak.to_numpy(py)),
                "phi": np.arctan2(-ak.to_numpy(py), -ak.to_numpy(px)),
                "sumet": ak.to_numpy(ak.sum(pf_cands.pt, axis=1)),
            }
        )
        inv = visible == 0
        inv_ev = ev[inv & (ak.to_numpy(ak.flatten(p.pileup)) == 0)]
        gpx = np.bincount(
            inv_ev,
            weights=col["px"][inv & (ak.to_numpy(ak.flatten(p.pileup)) == 0)],
            minlength=n_ev,
        )
        gpy = np.bincount(
            inv_ev,
            weights=col["py"][inv & (ak.to_numpy(ak.flatten(p.pileup)) == 0)],
            minlength=n_ev,
        )
        gen_met = ak.zip({"pt": np.hypot(gpx, gpy), "phi": np.arctan2(gpy, gpx)})

        if self.hits:
            hit_coll, n_hits = self._hits(
                ev, n_ev, pt, eta, phi, charge, vz, apid, visible, gen_index, t, t_local, rng
            )
            tracks = ak.with_field(tracks, ak.unflatten(n_hits, n_tracks), "n_hits")
        with capture_stdout():  # FastJet prints its banner on first use
            jets = reconstruct_jets(events, pf_cands, card, rng)

        out = {
            # event identity and generator info under NanoAOD's names (coffea's NanoEvents)
            "run": np.ones(n_ev, dtype=np.uint32),
            "luminosityBlock": np.ones(n_ev, dtype=np.uint32),
            "event": ak.values_astype(events.event_id, np.uint64),
            "genWeight": events.weight,
            "genProcessId": events.process_id,
            "Pileup": ak.zip({"nPU": events.n_pileup}),
            "PV": ak.zip({"z": pv_z, "n_tracks": ak.to_numpy(ak.sum(tracks.from_pv, axis=1))}),
            "MET": met,
            "GenMET": gen_met,
            "Track": tracks,
            "PFCand": pf_cands,
            "Electron": electrons,
            "Muon": muons,
            "Photon": photons,
            **jets,
            **({"Hit": hit_coll} if self.hits else {}),
            **(self._tower_collections(towers, n_ev) if self.towers else {}),
            "GenPart": events.truth,
            "GenVisTau": events.vistau,
        }
        return ak.zip(out, depth_limit=1)

    # ----------------------------------------------------------------------------- towers
    def _tower_collections(self, towers, n_ev: int) -> dict[str, ak.Array]:
        """``EcalTower`` / ``HcalTower``: measured energy, centre, and the energy of each depth
        segment (``depth_1`` is the front one), in GeV."""
        out = {}
        for name, key in (("EcalTower", "ecal"), ("HcalTower", "hcal")):
            tw = towers[key]
            cols = {
                "energy": tw.energy.astype(np.float32),
                "eta": tw.eta.astype(np.float32),
                "phi": tw.phi.astype(np.float32),
            }
            for j in range(tw.segments.shape[1]):
                cols[f"depth_{j + 1}"] = tw.segments[:, j].astype(np.float32)
            out[name] = _group(tw.event, n_ev, cols)
        return out

    # ----------------------------------------------------------------------------- hits
    def _hits(self, ev, n_ev, pt, eta, phi, charge, vz, apid, visible, gen_index, t, t_local, rng):
        """The ``Hit`` collection (x, y, z in mm, layer, gen_index, track_index) and the
        number of hits of each track."""
        from colliderlab.detector.tracker import noise_hits, simulate_hits

        sel = np.flatnonzero((charge != 0) & visible & (pt > self.card.tracker.pt_min))
        mass = np.select([apid[sel] == 11, apid[sel] == 13], [ELECTRON_MASS, MUON_MASS], PION_MASS)
        h = simulate_hits(self.card, pt[sel], eta[sel], phi[sel], charge[sel], vz[sel], mass, rng)
        flat = sel[h["particle"]]  # flat particle index of each hit
        track_of = np.full(len(pt), -1, dtype=np.int64)
        track_of[t] = t_local
        noise = noise_hits(self.card, n_ev, rng)
        n_noise = len(noise["x"])
        cols = {
            "x": np.concatenate([h["x"], noise["x"]]).astype(np.float32),
            "y": np.concatenate([h["y"], noise["y"]]).astype(np.float32),
            "z": np.concatenate([h["z"], noise["z"]]).astype(np.float32),
            "layer": np.concatenate([h["layer"], noise["layer"]]).astype(np.int16),
            "gen_index": np.concatenate([gen_index[flat], np.full(n_noise, -1)]).astype(np.int32),
            "track_index": np.concatenate([track_of[flat], np.full(n_noise, -1)]).astype(np.int32),
        }
        hit_event = np.concatenate([ev[flat], noise["event"].astype(np.int64)])
        # hits per reconstructed track (tracks are sorted by event, like t)
        n_hits = np.bincount(np.searchsorted(t, flat[track_of[flat] >= 0]), minlength=len(t))
        return _group(hit_event, n_ev, cols), n_hits.astype(np.int16)

    # ----------------------------------------------------------------------------- objects
    def _isolation(self, cand, pf_cands, exclude, cfg, veto_photons: float = 0.0) -> ak.Array:
        """Relative isolation: sum pT of PF candidates (from the PV, pT > min) in the cone / pT.

        Photons closer than ``veto_photons`` (an electron's bremsstrahlung/FSR) do not count.
        """
        c, q = self._pairs(cand, pf_cands)
        dr2 = (c.eta - q.eta) ** 2 + delta_phi(c.phi, q.phi) ** 2
        inside = (dr2 < cfg.isolation_dr**2) & (q.pt > cfg.isolation_pt_min) & q.from_pv
        inside = inside & (q.index != exclude)
        if veto_photons > 0:
            inside = inside & ~((q.pid == PF_PHOTON) & (dr2 < veto_photons**2))
        return ak.sum(ak.where(inside, q.pt, 0.0), axis=-1) / cand.pt

    @staticmethod
    def _pairs(cand, pf_cands):
        fields = ("pt", "eta", "phi", "pid", "from_pv")
        other = ak.zip({**{k: pf_cands[k] for k in fields}, "index": ak.local_index(pf_cands)})
        pairs = ak.cartesian({"c": cand, "p": other}, nested=True)
        return pairs.c, pairs.p

    @staticmethod
    def _ecal_energy(cand, ecal_towers) -> ak.Array:
        """Electron energy from its ECAL cluster: the measured towers within
        ``ELECTRON_DRESSING_DR`` of its calorimeter impact point (bremsstrahlung and FSR
        photons included, as in an experiment's supercluster); direction from the track.
        Without ECAL towers (outside the ECAL), the track momentum is kept."""
        pairs = ak.cartesian({"c": cand, "t": ecal_towers}, nested=True)
        c, tw = pairs.c, pairs.t
        dr2 = (c.eta_calo - tw.eta) ** 2 + delta_phi(c.phi_calo, tw.phi) ** 2
        energy = ak.sum(ak.where(dr2 < ELECTRON_DRESSING_DR**2, tw.energy, 0.0), axis=-1)
        pt = ak.where(energy > 0, energy / np.cosh(cand.eta), cand.pt)
        return ak.with_field(cand, pt, "pt")

    @staticmethod
    def _calibrate(cand, cfg) -> ak.Array:
        """Divide the momenta by the card's energy-scale calibration at the candidate's |eta|."""
        flat_eta = np.abs(ak.to_numpy(ak.flatten(cand.eta)))
        scale = ak.unflatten(cfg.scale(flat_eta), ak.num(cand))
        return ak.with_field(cand, cand.pt / scale, "pt")

    def _leptons(self, tracks, pf_cands, apid, cfg, rng, ecal_towers=None) -> ak.Array:
        """Electrons or muons: tracks of that flavour, efficiency, isolation (from PF)."""
        idx = ak.local_index(tracks)
        sel = (abs(tracks.pid) == apid) & (tracks.pt > cfg.pt_min) & (abs(tracks.eta) < cfg.eta_max)
        cand = tracks[sel]
        cand_idx = idx[sel]
        cand, cand_idx = _apply_efficiency(cand, cand_idx, cfg.efficiency, rng)
        veto = ELECTRON_DRESSING_DR if apid == 11 else 0.0
        iso = self._isolation(cand, pf_cands, cand_idx, cfg, veto_photons=veto)
        if apid == 11:
            cand = self._ecal_energy(cand, ecal_towers)
        cand = self._calibrate(cand, cfg)
        keep = iso < cfg.isolation_max
        cand = cand[keep]
        return ak.zip(
            {
                "pt": cand.pt,
                "eta": cand.eta,
                "phi": cand.phi,
                "mass": cand.mass,
                "charge": cand.charge,
                "iso": iso[keep],
                "track_index": cand_idx[keep],
                "gen_index": cand.gen_index,
            }
        )

    def _photons(self, pf_cands, pf_index, rng) -> ak.Array:
        cfg = self.card.photon
        sel = (
            (pf_cands.pid == PF_PHOTON)
            & (pf_cands.pt > cfg.pt_min)
            & (abs(pf_cands.eta) < cfg.eta_max)
        )
        cand, cand_idx = pf_cands[sel], pf_index[sel]
        cand, cand_idx = _apply_efficiency(cand, cand_idx, cfg.efficiency, rng)
        iso = self._isolation(cand, pf_cands, cand_idx, cfg)
        keep = iso < cfg.isolation_max
        cand = cand[keep]
        return ak.zip(
            {
                "pt": cand.pt,
                "eta": cand.eta,
                "phi": cand.phi,
                "mass": cand.mass,
                "iso": iso[keep],
                "pf_index": cand_idx[keep],
            }
        )
