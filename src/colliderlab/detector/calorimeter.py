"""Calorimeter towers: geometry, shower deposits with lateral spread, smearing, thresholds."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import ndtr

from colliderlab.detector.card import Calorimeter


@dataclasses.dataclass
class Towers:
    """Reconstructed towers of a chunk (flat): event index, tower id, energy, centre."""

    event: np.ndarray
    tower: np.ndarray  # global tower id
    energy: np.ndarray  # measured energy, GeV
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

        Returns (keys, energies): sorted unique ``event * n_towers + tower`` and summed true
        energies (GeV). Deposits outside every grid are lost (beyond the acceptance).
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
                    weights.append((energy[sel] * w)[keep])
        if not keys:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        uniq, inv = np.unique(np.concatenate(keys), return_inverse=True)
        return uniq, np.bincount(inv, weights=np.concatenate(weights))

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

    def measure(self, keys, true_energy, rng: np.random.Generator) -> Towers:
        """Smear the tower energies (log-normal, mean = true energy) and apply the thresholds."""
        tower = keys % self.n_towers
        eta, phi = self.centres(tower, rng)
        sigma_true = self.calo.resolution.sigma(true_energy, np.abs(eta))
        with np.errstate(divide="ignore", invalid="ignore"):
            s2 = np.log1p((sigma_true / true_energy) ** 2)
            mu = np.log(true_energy) - 0.5 * s2
        measured = np.where(
            true_energy > 0, np.exp(mu + np.sqrt(s2) * rng.standard_normal(len(keys))), 0.0
        )
        sigma = self.calo.resolution.sigma(measured, np.abs(eta))
        # Towers need E > energy_min; the significance cut is applied by particle flow to the
        # neutral excess over the expected charged deposit (see reco.FastSimulation).
        keep = measured > self.calo.energy_min
        return Towers(
            event=(keys // self.n_towers)[keep],
            tower=tower[keep],
            energy=measured[keep],
            sigma=sigma[keep],
            eta=eta[keep],
            phi=phi[keep],
            key=keys[keep],
        )
