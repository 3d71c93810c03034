"""The generated calorimeter in the loop: electron (photon) energy resolution through the
detector simulation with the card's parametrisation, the reference shower simulation and
trained shower models.

:func:`energy_resolution` shoots single particles of fixed energies (the ``gun_e`` /
``gun_gamma`` processes, |eta| < ``eta_max``) through :class:`~colliderlab.detector.reco.
FastSimulation` once per configuration (same events, same seed), takes the leading
reconstructed electron (photon) of each event and measures, per energy, the scale (median
of E_reco / E_true) and the resolution (half the width of the central 68.3% interval of
E_reco / E_true, divided by the scale: robust against the tails of tower thresholds). It fits
``sigma / E = a / sqrt(E) (+) b (+) n / E`` (E in GeV; the noise term n stays in every
configuration: the card's tower noise is not part of the shower response). For the study the
card's electron/photon ``pt_min`` is lowered to 1 GeV and their efficiency set to 1, so that
low energies are kept (energies are measured, not efficiencies).

:func:`response_resolution` does the same with the response alone (no detector): the
calorimeter's own ``a / sqrt(E) (+) b``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from colliderlab.core.errors import ConfigError

#: Central fraction of the E_reco / E_true distribution whose half-width is the resolution.
CORE = 0.6827
_OBJECTS = {"e-": ("gun_e", "Electron"), "gamma": ("gun_gamma", "Photon")}


def core_width(ratio: np.ndarray) -> tuple[float, float, float]:
    """(scale, sigma / E, its statistical error) of ratios E_reco / E_true: the median and
    half of the central 68.3% interval divided by the median (= sigma for a Gaussian)."""
    r = np.asarray(ratio, dtype=float)
    r = r[np.isfinite(r)]
    if len(r) < 10:
        return math.nan, math.nan, math.nan
    lo, mid, hi = np.quantile(r, [(1 - CORE) / 2, 0.5, (1 + CORE) / 2])
    width = 0.5 * (hi - lo) / mid
    return float(mid), float(width), float(width / math.sqrt(2 * len(r)))


def fit_resolution(energies, sigma, error, *, noise: bool = True) -> dict[str, float]:
    """Fit ``sigma/E = a / sqrt(E) (+) b (+) n / E`` (E in GeV; a in sqrt(GeV), n in GeV);
    returns a, b, n (0 without ``noise``) and their errors."""
    from scipy.optimize import OptimizeWarning, curve_fit

    e, s, ds = (np.asarray(x, dtype=float) for x in (energies, sigma, error))
    ok = np.isfinite(s) & np.isfinite(ds) & (ds > 0)
    e, s, ds = e[ok], s[ok], ds[ok]
    k = 3 if noise else 2
    if len(e) < k:
        return {"a": math.nan, "b": math.nan, "n": math.nan}

    def model(x, *p):
        a, b = p[0], p[1]
        n = p[2] if noise else 0.0
        return np.sqrt(a**2 / x + b**2 + n**2 / x**2)

    p0 = [0.1, 0.01, 0.5][:k]
    with warnings.catch_warnings():  # a fit with as many points as parameters has no errors
        warnings.simplefilter("ignore", OptimizeWarning)
        popt, pcov = curve_fit(model, e, s, p0=p0, sigma=ds, absolute_sigma=True, maxfev=20000)
    err = np.sqrt(np.abs(np.diag(pcov)))
    out = {"a": abs(popt[0]), "b": abs(popt[1]), "n": abs(popt[2]) if noise else 0.0}
    out.update({"a_err": err[0], "b_err": err[1], "n_err": err[2] if noise else 0.0})
    return {k: float(v) for k, v in out.items()}


def _study_card(card):
    """The card with electrons and photons accepted from pT = 1 GeV at 100% efficiency (the
    study measures energies, not efficiencies)."""
    from colliderlab.detector.card import Binned, load_card

    card = load_card(card)

    def loose(cfg):
        eff = Binned((0.0, float(cfg.eta_max)), (min(cfg.pt_min, 1.0), math.inf), ((1.0,),))
        return dataclasses.replace(cfg, pt_min=min(cfg.pt_min, 1.0), efficiency=eff)

    return dataclasses.replace(card, electron=loose(card.electron), photon=loose(card.photon))


def _label(spec: str | None) -> str:
    if spec is None:
        return "card"
    p = Path(spec)
    return spec if spec.startswith("reference") else f"{p.parent.name}/{p.name}"


def energy_resolution(
    calo_models: Sequence[str | os.PathLike[str] | None],
    *,
    particle: str = "e-",
    energies: Sequence[float] = (10.0, 20.0, 50.0, 100.0, 200.0),
    n_events: int = 500,
    card: Any = "generic_lhc",
    eta_max: float = 1.3,
    seed: int = 1,
) -> dict[str, Any]:
    """Electron (photon) energy scale and resolution vs energy through the detector simulation.

    Args:
        calo_models: configurations: None (the card's parametrisation), ``"reference"``,
            ``"reference:GEOMETRY"`` or training directories (see ``FastSimulation``).
        particle: ``"e-"`` (gun_e, Electron collection) or ``"gamma"`` (gun_gamma, Photon).
        energies: gun energies, GeV.
        n_events: events per energy.
        card: detector card (name, file or DetectorCard); lepton/photon pt_min set to 1 GeV.
        eta_max: the gun's |eta| range (1.3: the ECAL barrel).
        seed: generation and detector seed.

    Returns:
        ``{"rows": [{"config", "a", "b", "n", ..., "points": [{"energy", "scale", "sigma",
        "sigma_err", "n"}]}], "energies", "particle", "card"}``.
    """
    from colliderlab.core.seeding import chunk_seed
    from colliderlab.detector.reco import FastSimulation
    from colliderlab.generate import GenerationConfig
    from colliderlab.generate.engine import generate_chunk

    if particle not in _OBJECTS:
        raise ConfigError(f"particle must be one of {', '.join(_OBJECTS)}; got {particle!r}.")
    process, collection = _OBJECTS[particle]
    card = _study_card(card)
    sims = [(_label(None if m is None else str(m)), m) for m in calo_models]
    sims = [(label, FastSimulation(card, calo_model=m)) for label, m in sims]
    points: dict[str, list[dict[str, float]]] = {label: [] for label, _ in sims}
    for k, energy in enumerate(energies):
        params = {"e_min": energy, "e_max": energy, "eta_min": -eta_max, "eta_max": eta_max}
        config = GenerationConfig(
            process, n_events=n_events, seed=seed + k, chunk_size=n_events, params=params
        )
        events, _ = generate_chunk(config, 0, chunk_seed(seed + k, 0))
        for label, sim in sims:
            reco = sim(events, np.random.default_rng([seed, k]))
            obj = reco[collection]
            lead = obj[np.asarray(_num(obj)) > 0][:, 0]
            e_reco = np.asarray(lead.pt) * np.cosh(np.asarray(lead.eta))
            scale, sigma, err = core_width(e_reco / float(energy))
            points[label].append(
                {
                    "energy": float(energy),
                    "scale": scale,
                    "sigma": sigma,
                    "sigma_err": err,
                    "n": len(e_reco),
                }
            )
    rows = []
    for label, pts in points.items():
        fit = fit_resolution(
            *(np.array([p[key] for p in pts]) for key in ("energy", "sigma", "sigma_err"))
        )
        rows.append({"config": label, **fit, "points": pts})
    return {
        "rows": rows,
        "energies": [float(e) for e in energies],
        "particle": particle,
        "card": card.name,
        "n_events": n_events,
        "eta_max": eta_max,
    }


def _num(obj):
    import awkward as ak

    return ak.num(obj)


def response_resolution(
    response,
    *,
    particle: str = "e-",
    energies=(2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0),
    n: int = 1000,
    seed: int = 1,
) -> dict[str, Any]:
    """Scale and resolution of a :class:`~colliderlab.calosim.response.CaloResponse` alone
    (``n`` particles per energy), with the fit ``a / sqrt(E) (+) b``."""
    from colliderlab.calosim.response import get_response

    response = get_response(response)
    pts = []
    for k, energy in enumerate(energies):
        e_reco = response(np.full(int(n), float(energy)), particle, seed=seed * 1000 + k)
        scale, sigma, err = core_width(e_reco / float(energy))
        pts.append(
            {"energy": float(energy), "scale": scale, "sigma": sigma, "sigma_err": err, "n": int(n)}
        )
    fit = fit_resolution(
        *(np.array([p[key] for p in pts]) for key in ("energy", "sigma", "sigma_err")), noise=False
    )
    return {"config": response.name, **fit, "points": pts}


def markdown(result: Mapping[str, Any]) -> str:
    """The table of :func:`energy_resolution`: per configuration the fit and, per energy,
    scale and sigma/E in %."""
    energies = result["energies"]
    head = ["configuration", "a (%·√GeV)", "b (%)", "n (GeV)"]
    head += [f"{e:g} GeV: scale, sigma/E (%)" for e in energies]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        cells = [row["config"], f"{100 * row['a']:.1f}", f"{100 * row['b']:.2f}", f"{row['n']:.2f}"]
        cells += [
            f"{p['scale']:.3f}, {100 * p['sigma']:.2f} ± {100 * p['sigma_err']:.2f}"
            for p in row["points"]
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """sigma/E and scale vs E, one curve per configuration (mplhep style), saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    path = Path(path)
    with matplotlib.style.context(mplhep.style.CMS):
        fig, (ax, bx) = plt.subplots(
            2, 1, figsize=(8, 8), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        grid = np.geomspace(min(result["energies"]), max(result["energies"]), 100)
        for row in result["rows"]:
            e = np.array([p["energy"] for p in row["points"]])
            s = np.array([p["sigma"] for p in row["points"]])
            ds = np.array([p["sigma_err"] for p in row["points"]])
            line = ax.errorbar(e, 100 * s, 100 * ds, fmt="o", label=row["config"])
            if np.isfinite(row["a"]):
                fit = np.sqrt(row["a"] ** 2 / grid + row["b"] ** 2 + row["n"] ** 2 / grid**2)
                ax.plot(grid, 100 * fit, color=line[0].get_color(), lw=1)
            bx.plot(e, [p["scale"] for p in row["points"]], "o-", color=line[0].get_color())
        ax.set_xscale("log")
        ax.set_ylabel(r"$\sigma_E / E$ (%)")
        what = "electrons" if result["particle"] == "e-" else "photons"
        ax.legend(title=f"{what}, |$\\eta$| < {result['eta_max']:g}", fontsize=14)
        bx.set_xlabel(r"$E_{true}$ (GeV)")
        bx.set_ylabel(r"$E_{reco}/E_{true}$")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        plt.close(fig)
    return path
