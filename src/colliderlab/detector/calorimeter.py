"""Calorimeter towers: geometry, shower deposits with lateral spread and longitudinal
profile, smearing, electronic noise and thresholds."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import gammainc, ndtr, ndtri

from colliderlab.detector.card import Calorimeter, Depth

# Longitudinal shower profiles dE/dt ~ t^(a-1) exp(-b t) (Longo-Sestili; PDG review
# "Passage of particles through matter", section on shower profiles).
EM_B = 0.5  # per X0
EM_C = {"electron": -0.5, "photon": 0.5}  # t_max = ln(E / E_c) + C_j
HAD_B = 0.8  # per lambda: 95% containment within t_max + 2.5 lambda (E / GeV)^0.13 at 100 GeV
EM_TMAX_SPREAD = 0.10  # event-by-event relative spread of t_max (Grindhammer-Peters ~10%)
HAD_TMAX_SPREAD = 0.30  # hadronic showers fluctuate much more


def depth_fractions(
    depth: Depth,
    energy: np.ndarray,
    rng: np.random.Generator,
    photon: np.ndarray | None = None,
) -> np.ndarray:
    """Fractions (n, n_segments) of each shower's energy in the depth segments.

    ``unit: X0`` uses the electromagnetic profile, t_max = ln(E / E_c) + C (C = -0.5 for
    electrons, +0.5 for photons, ``photon`` flags them); ``unit: lambda`` the hadronic one,
    t_max = 0.2 ln(E / GeV) + 0.7 (PDG). t_max fluctuates shower by shower (log-normal) and
    the last segment collects the tail, so the fractions sum to 1.
    """
    e = np.maximum(np.asarray(energy, dtype=float), 1e-6)
    if depth.unit == "X0":
        c = np.where(photon, EM_C["photon"], EM_C["electron"]) if photon is not None else -0.5
        t_max, b, spread = np.log(e / depth.critical_energy) + c, EM_B, EM_TMAX_SPREAD
    else:
        t_max, b, spread = 0.2 * np.log(e) + 0.7, HAD_B, HAD_TMAX_SPREAD
    t_max = np.maximum(t_max, 0.05) * np.exp(spread * rng.standard_normal(len(e)))
    a = 1.0 + b * t_max
    cdf = gammainc(a[:, None], b * np.asarray(depth.edges)[None, 1:-1])
    cdf = np.concatenate([np.zeros((len(e), 1)), cdf, np.ones((len(e), 1))], axis=1)
    return np.diff(cdf, axis=1)


@dataclasses.dataclass
class Towers:
    """Reconstructed towers of a chunk (flat): event index, tower id, energy, centre."""

    event: np.ndarray
    tower: np.ndarray  # global tower id
    energy: np.ndarray  # measured energy, GeV
    segments: np.ndarray  # (n, n_segments) measured energy per depth segment, GeV
    sigma: np.ndarray  # resolution at that energy, GeV
    eta: np.ndarray
    phi: np.ndarray
    key: np.ndarray  # event * n_towers + tower (sorted)


class TowerGridMap:
    """Maps (eta, phi) to tower ids over the grids of a calorimeter (both signs of eta)."""

    def __init__(self, calo: Calorimeter) -> None:
        self.calo = calo
        self.grids = calo.grids
        sizes = [2 * g.n_eta * g.n_phi for g in self.grids]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.n_towers = int(self.offsets[-1])

    def _grid_of(self, abseta: np.ndarray) -> np.ndarray:
        out = np.full(abseta.shape, -1, dtype=np.int64)
        for k, g in enumerate(self.grids):
            out[(abseta >= g.eta_min) & (abseta < g.eta_max)] = k
        return out

    def deposit(self, event, eta, phi, energy):
        """Spread deposits over 3x3 towers (Gaussian of width ``lateral_spread``); sum per tower.

        ``energy`` is (n,) or (n, k) (e.g. per depth segment). Returns (keys, energies):
        sorted unique ``event * n_towers + tower`` and the summed true energies (GeV), of
        shape (m,) or (m, k). Deposits outside every grid are lost (beyond the acceptance).
        """
        abseta = np.abs(eta)
        grid = self._grid_of(abseta)
        keys, weights = [], []
        for k, g in enumerate(self.grids):
            sel = np.flatnonzero(grid == k)
            if not len(sel):
                continue
            deta = (g.eta_max - g.eta_min) / g.n_eta
            dphi = 2 * np.pi / g.n_phi
            u = (abseta[sel] - g.eta_min) / deta
            v = (phi[sel] + np.pi) / dphi
            iu, iv = np.floor(u), np.floor(v)
            side = (eta[sel] >= 0).astype(np.int64)
            wu = self._weights(u - iu, self.calo.lateral_spread / deta)
            wv = self._weights(v - iv, self.calo.lateral_spread / dphi)
            for du in (-1, 0, 1):
                ieta = np.clip(iu + du, 0, g.n_eta - 1).astype(np.int64)
                for dv in (-1, 0, 1):
                    w = wu[du + 1] * wv[dv + 1]
                    keep = w > 0
                    if not keep.any():
                        continue
                    iphi = ((iv + dv) % g.n_phi).astype(np.int64)
                    tower = self.offsets[k] + (side * g.n_eta + ieta) * g.n_phi + iphi
                    keys.append((event[sel] * self.n_towers + tower)[keep])
                    e_sel = energy[sel]
                    weights.append((e_sel * (w if e_sel.ndim == 1 else w[:, None]))[keep])
        extra = np.shape(energy)[1:]
        if not keys:
            return np.zeros(0, dtype=np.int64), np.zeros((0, *extra))
        uniq, inv = np.unique(np.concatenate(keys), return_inverse=True)
        w = np.concatenate(weights)
        if not extra:
            return uniq, np.bincount(inv, weights=w, minlength=len(uniq))
        return uniq, np.stack(
            [np.bincount(inv, weights=w[:, j], minlength=len(uniq)) for j in range(extra[0])],
            axis=1,
        )

    @staticmethod
    def _weights(frac: np.ndarray, sigma: float) -> list[np.ndarray]:
        """Fractions in the cells -1, 0, +1 of a Gaussian centred at ``frac`` in [0, 1)."""
        if sigma <= 0:
            zero = np.zeros_like(frac)
            return [zero, np.ones_like(frac), zero]
        lo = ndtr((0.0 - frac) / sigma)
        hi = ndtr((1.0 - frac) / sigma)
        return [lo, hi - lo, 1.0 - hi]

    def central_key(self, event, eta, phi):
        """Key of the tower hit by the centre of each shower (-1 outside every grid)."""
        abseta = np.abs(eta)
        grid = self._grid_of(abseta)
        out = np.full(eta.shape, -1, dtype=np.int64)
        for k, g in enumerate(self.grids):
            sel = grid == k
            deta = (g.eta_max - g.eta_min) / g.n_eta
            ieta = np.clip(((abseta[sel] - g.eta_min) / deta).astype(np.int64), 0, g.n_eta - 1)
            iphi = (((phi[sel] + np.pi) / (2 * np.pi / g.n_phi)).astype(np.int64)) % g.n_phi
            side = (eta[sel] >= 0).astype(np.int64)
            out[sel] = (
                event[sel] * self.n_towers
                + self.offsets[k]
                + (side * g.n_eta + ieta) * g.n_phi
                + iphi
            )
        return out

    def centres(self, tower: np.ndarray, rng: np.random.Generator):
        """(eta, phi) of towers, smeared uniformly within the tower (as Delphes does)."""
        eta = np.zeros(tower.shape)
        phi = np.zeros(tower.shape)
        grid = np.searchsorted(self.offsets, tower, side="right") - 1
        for k, g in enumerate(self.grids):
            sel = grid == k
            local = tower[sel] - self.offsets[k]
            iphi = local % g.n_phi
            rest = local // g.n_phi
            side, ieta = rest // g.n_eta, rest % g.n_eta
            deta = (g.eta_max - g.eta_min) / g.n_eta
            dphi = 2 * np.pi / g.n_phi
            n = int(sel.sum())
            a = g.eta_min + (ieta + rng.uniform(0, 1, n)) * deta
            eta[sel] = np.where(side == 1, a, -a)
            phi[sel] = -np.pi + (iphi + rng.uniform(0, 1, n)) * dphi
        return eta, phi

    def noise_keys(self, n_events: int, rng: np.random.Generator):
        """Towers without any deposit whose electronic noise alone passes ``energy_min``.

        Rather than drawing noise for every empty tower, the number of noisy towers per
        (event, eta row) is Binomial(n_phi, P(noise > energy_min)) and their energies come
        from the Gaussian tail above the threshold: the same distribution, at little cost.
        Returns (keys, energies).
        """
        keys, energies = [], []
        thr = self.calo.energy_min
        for k, g in enumerate(self.grids):
            deta = (g.eta_max - g.eta_min) / g.n_eta
            row_eta = g.eta_min + (np.arange(g.n_eta) + 0.5) * deta
            sigma = self.calo.noise_sigma(row_eta)
            with np.errstate(divide="ignore"):
                p_tail = np.where(sigma > 0, ndtr(-thr / np.where(sigma > 0, sigma, 1.0)), 0.0)
            if not (p_tail > 0).any():
                continue
            counts = rng.binomial(g.n_phi, np.broadcast_to(p_tail, (n_events, 2, g.n_eta)))
            n = int(counts.sum())
            if not n:
                continue
            ev, side, ieta = (
                np.repeat(a.ravel(), counts.ravel()) for a in np.indices(counts.shape)
            )
            iphi = rng.integers(0, g.n_phi, n)
            tower = self.offsets[k] + (side * g.n_eta + ieta) * g.n_phi + iphi
            s = sigma[ieta]
            u = rng.uniform(0, 1, n)
            lo = ndtr(thr / s)
            energies.append(s * ndtri(np.minimum(lo + u * (1 - lo), 1 - 1e-16)))
            keys.append(ev * self.n_towers + tower)
        if not keys:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        keys, energies = np.concatenate(keys), np.concatenate(energies)
        uniq, first = np.unique(keys, return_index=True)  # two noisy hits of one tower: keep one
        return uniq, energies[first]

    def measure(
        self,
        keys,
        true_energy,
        n_events: int,
        rng: np.random.Generator,
        premeasured=None,
    ) -> Towers:
        """Smear the tower energies (log-normal, mean = true energy), add the towers that
        noise alone lights up, and apply the threshold.

        ``true_energy`` is (m,) or (m, n_segments): the true deposit (per depth segment); the
        measured energy is shared among the segments like the true one. A noise-only tower is one
        noisy readout channel, in a random segment.

        ``premeasured`` (same shape as ``true_energy``, GeV), used with a calorimeter response
        model (``FastSimulation(calo_model=...)``): deposits whose fluctuations were already
        drawn by a shower simulation. They are added to the smeared true deposits without the
        card's stochastic and constant terms; a tower with premeasured energy only still gets
        the card's noise term ``resolution.noise`` (log-normal, mean kept, as for the others).
        """
        true_seg = np.asarray(true_energy, dtype=float)
        if true_seg.ndim == 1:  # (m,) -> (m, 1); also for m = 0 (a calorimeter left empty)
            true_seg = true_seg[:, None]
        n_seg = true_seg.shape[1]
        true_total = true_seg.sum(axis=1)
        tower = keys % self.n_towers
        eta, phi = self.centres(tower, rng)
        sigma_true = self.calo.resolution.sigma(true_total, np.abs(eta))
        with np.errstate(divide="ignore", invalid="ignore"):
            s2 = np.log1p((sigma_true / true_total) ** 2)
            mu = np.log(true_total) - 0.5 * s2
            measured = np.where(
                true_total > 0, np.exp(mu + np.sqrt(s2) * rng.standard_normal(len(keys))), 0.0
            )
            segments = true_seg * np.where(true_total > 0, measured / true_total, 0.0)[:, None]
        if premeasured is not None:
            pre_seg = np.asarray(premeasured, dtype=float).reshape(true_seg.shape)
            pre_total = pre_seg.sum(axis=1)
            noise = self.calo.resolution.sigma(np.zeros(len(keys)), np.abs(eta))  # the n term
            only_pre = (true_total <= 0) & (pre_total > 0)
            with np.errstate(divide="ignore", invalid="ignore"):  # log-normal, as above
                s2n = np.log1p((noise / pre_total) ** 2)
                noisy = np.exp(
                    np.log(pre_total) - 0.5 * s2n + np.sqrt(s2n) * rng.standard_normal(len(keys))
                )
            measured = measured + np.where(only_pre, noisy, pre_total)
            segments = segments + pre_seg
            with np.errstate(divide="ignore", invalid="ignore"):  # the noise goes with the rest
                share = np.where(true_total + pre_total > 0, measured / segments.sum(axis=1), 0.0)
            segments = segments * np.where(np.isfinite(share), share, 0.0)[:, None]
        nkeys, nenergy = self.noise_keys(n_events, rng)
        at = np.searchsorted(keys, nkeys)  # both sorted: merge by insertion
        occupied = np.zeros(len(nkeys), dtype=bool)
        inside = at < len(keys)
        occupied[inside] = keys[at[inside]] == nkeys[inside]
        nkeys, nenergy, at = nkeys[~occupied], nenergy[~occupied], at[~occupied]
        if len(nkeys):
            ntower = nkeys % self.n_towers
            neta, nphi = self.centres(ntower, rng)
            nseg = np.zeros((len(nkeys), n_seg))
            nseg[np.arange(len(nkeys)), rng.integers(0, n_seg, len(nkeys))] = nenergy
            keys = np.insert(keys, at, nkeys)
            tower = np.insert(tower, at, ntower)
            eta = np.insert(eta, at, neta)
            phi = np.insert(phi, at, nphi)
            measured = np.insert(measured, at, nenergy)
            segments = np.insert(segments, at, nseg, axis=0)
        sigma = self.calo.resolution.sigma(measured, np.abs(eta))
        # Towers need E > energy_min; the significance cut is applied by particle flow to the
        # neutral excess over the expected charged deposit (see reco.FastSimulation).
        keep = measured > self.calo.energy_min
        return Towers(
            event=(keys // self.n_towers)[keep],
            tower=tower[keep],
            energy=measured[keep],
            segments=segments[keep],
            sigma=sigma[keep],
            eta=eta[keep],
            phi=phi[keep],
            key=keys[keep],
        )
