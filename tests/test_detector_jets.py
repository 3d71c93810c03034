"""Jet substructure functions against brute-force definitions."""

from __future__ import annotations

import itertools

import awkward as ak
import numpy as np
import pytest

from colliderlab.detector.jets import energy_correlation_ratios, response


def test_energy_correlation_ratios_match_the_definition():
    rng = np.random.default_rng(3)
    jets = []
    for n in (3, 5, 9):
        jets.append(
            [
                {"pt": p, "eta": e, "phi": f}
                for p, e, f in zip(
                    rng.uniform(1, 80, n),
                    rng.normal(0, 0.3, n),
                    rng.normal(3.1, 0.3, n),
                    strict=True,
                )
            ]
        )
    jets.append([{"pt": 10.0, "eta": 0.0, "phi": 0.0}] * 2)  # < 3 constituents: 0 by convention
    c2, d2 = energy_correlation_ratios(ak.Array(jets))
    for k, jet in enumerate(jets[:3]):
        z = np.array([c["pt"] for c in jet])
        z = z / z.sum()

        def dr(a, b, jet=jet):
            dphi = (jet[a]["phi"] - jet[b]["phi"] + np.pi) % (2 * np.pi) - np.pi
            return np.hypot(jet[a]["eta"] - jet[b]["eta"], dphi)

        idx = range(len(jet))
        e2 = sum(z[i] * z[j] * dr(i, j) for i, j in itertools.combinations(idx, 2))
        e3 = sum(
            z[i] * z[j] * z[m] * dr(i, j) * dr(i, m) * dr(j, m)
            for i, j, m in itertools.combinations(idx, 3)
        )
        assert c2[k] == pytest.approx(e3 / e2**2, rel=1e-10)
        assert d2[k] == pytest.approx(e3 / e2**3, rel=1e-10)
    assert c2[3] == 0.0
    assert d2[3] == 0.0


def test_jet_calibration_response_function():
    # r(pT) = c0 + c1 / ln(pT): at pT = e^4 GeV with c = (1.0, -0.4), r = 0.9
    assert response(np.array([np.exp(4.0)]), (1.0, -0.4))[0] == pytest.approx(0.9)
