"""Summary quantities and plots of generated datasets.

All functions take event arrays as read by :func:`colliderlab.io.load` (vector behaviour).
Masses and momenta in GeV.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import awkward as ak
import numpy as np

from colliderlab.generate.engine import TruthFlag


def truth_decay_mass(
    events: ak.Array, mother_pid: int, daughter_pids: tuple[int, ...]
) -> np.ndarray:
    """Invariant mass of the truth daughters (|pid| in ``daughter_pids``) of a resonance.

    The daughters are the hard-process entries (first copies) whose ``mother`` is a truth
    particle with |pid| == ``mother_pid``; one value per resonance with exactly two daughters.
    """
    truth = events.truth
    mother_pid_of = truth.pid[ak.where(truth.mother >= 0, truth.mother, 0)]
    is_daughter_pid = ak.zeros_like(truth.pid, dtype=bool)
    for pid in daughter_pids:
        is_daughter_pid = is_daughter_pid | (abs(truth.pid) == pid)
    sel = (
        (truth.mother >= 0)
        & (abs(mother_pid_of) == mother_pid)
        & is_daughter_pid
        & ((truth.flags & int(TruthFlag.HARD)) != 0)
    )
    dau = truth[sel]
    two = dau[ak.num(dau) == 2]
    return ak.to_numpy((two[:, 0] + two[:, 1]).mass)


def top_mass(events: ak.Array) -> np.ndarray:
    """Mass of the sum of each top's decay products (first copies of W and b), from the truth."""
    truth = events.truth
    is_top = (abs(truth.pid) == 6) & ((truth.flags & int(TruthFlag.RESONANCE)) != 0)
    out = []
    for ev_truth, tops in zip(
        ak.to_list(truth), ak.to_list(ak.local_index(truth)[is_top]), strict=True
    ):
        for t in tops:
            dau = [
                i
                for i, p in enumerate(ev_truth)
                if p["mother"] == t and p["flags"] & int(TruthFlag.HARD)
            ]
            if len(dau) < 2:
                continue
            px = sum(ev_truth[i]["px"] for i in dau)
            py = sum(ev_truth[i]["py"] for i in dau)
            pz = sum(ev_truth[i]["pz"] for i in dau)
            e = sum(ev_truth[i]["E"] for i in dau)
            out.append(np.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0)))
    return np.asarray(out)


def dilepton_mass(events: ak.Array, pt_min: float = 20.0, eta_max: float = 2.5) -> np.ndarray:
    """Mass of the leading opposite-sign same-flavour e/mu pair among final-state particles."""
    p = events.particles
    lep = p[((abs(p.pid) == 11) | (abs(p.pid) == 13)) & (p.pt > pt_min) & (abs(p.eta) < eta_max)]
    lep = lep[ak.argsort(lep.pt, ascending=False)]
    pairs = ak.combinations(lep, 2)
    a, b = ak.unzip(pairs)
    ok = a.pid == -b.pid
    good = pairs[ok]
    first = ak.drop_none(ak.firsts(good))
    return ak.to_numpy((first["0"] + first["1"]).mass)


def peak_position(values: np.ndarray, lo: float, hi: float) -> float:
    """Peak of a narrow resonance: median of the values in [lo, hi] (a window centred on it)."""
    v = values[(values > lo) & (values < hi)]
    return float(np.median(v)) if len(v) else float("nan")


def core_peak(values: np.ndarray, lo: float, hi: float, n_sigma: float = 1.5) -> float:
    """Centre of the Gaussian core of a peak: iterated mean within +-n_sigma RMS, started at
    the median in [lo, hi]. Robust against radiative (FSR) tails that pull a median."""
    v = values[(values > lo) & (values < hi)]
    if not len(v):
        return float("nan")
    centre, width = float(np.median(v)), float(np.std(v))
    for _ in range(20):
        core = v[np.abs(v - centre) < n_sigma * width]
        if len(core) < 5:
            break
        centre, width = float(core.mean()), float(core.std())
    return centre


def voigt_peak(
    values: np.ndarray, lo: float = 86.0, hi: float = 96.0, width: float = 2.4952, bins: int = 40
) -> tuple[float, float, float]:
    """Fit a Voigt profile (Breit-Wigner of fixed ``width`` (GeV, default Gamma_Z) convolved
    with a Gaussian) to the histogram of ``values`` in [lo, hi].

    Returns (peak mass, its error, Gaussian sigma) in GeV. The window around the peak keeps
    the radiative (FSR) tail mostly out of the fit.
    """
    from scipy.optimize import curve_fit
    from scipy.special import voigt_profile

    v = values[(values > lo) & (values < hi)]
    edges = np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(v, edges)
    centres = 0.5 * (edges[1:] + edges[:-1])

    def model(m, norm, mass, sigma):
        return norm * voigt_profile(m - mass, abs(sigma) + 1e-6, width / 2)

    p0 = [len(v) * (hi - lo) / bins, float(np.median(v)), 1.0]
    popt, pcov = curve_fit(model, centres, counts, p0=p0, sigma=np.sqrt(np.maximum(counts, 1)))
    return float(popt[1]), float(np.sqrt(pcov[1, 1])), float(abs(popt[2]))


def summary_row(name: str, events: ak.Array, sigma: tuple[float, float]) -> dict:
    """One row of the demo table: multiplicities and cross section of a dataset."""
    p = events.particles
    charged = ak.sum(p.charge != 0, axis=1)
    return {
        "process": name,
        "events": len(events),
        "sigma_pb": sigma[0],
        "sigma_err_pb": sigma[1],
        "mean_particles": float(ak.mean(ak.num(p))),
        "mean_charged": float(ak.mean(charged)),
    }


def format_table(rows: list[dict]) -> str:
    head = f"{'process':<14}{'events':>8}{'sigma [pb]':>16}{'<N final>':>11}{'<N charged>':>13}"
    lines = [head, "-" * len(head)]
    for r in rows:
        sig = f"{r['sigma_pb']:.4g}+-{r['sigma_err_pb']:.2g}"
        lines.append(
            f"{r['process']:<14}{r['events']:>8}{sig:>16}{r['mean_particles']:>11.1f}"
            f"{r['mean_charged']:>13.1f}"
        )
    return "\n".join(lines)


def plot_demo(samples: Mapping[str, ak.Array], path: str | Path) -> Path:
    """A three-panel figure: dilepton mass, reconstructed-from-truth top mass, multiplicity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    fig, axes = plt.subplots(1, 3, figsize=(24, 7.5))
    if "z_ll" in samples:
        m = dilepton_mass(samples["z_ll"])
        axes[0].hist(
            m, bins=np.linspace(60, 120, 61), histtype="step", lw=2, label="Z -> ll, OSSF e/mu"
        )
        axes[0].axvline(91.1876, color="grey", ls="--", label="PDG $m_Z$")
        axes[0].set_xlabel("$m_{\\ell\\ell}$ [GeV]")
        axes[0].set_ylabel("events / GeV")
        axes[0].legend(fontsize=16)
    if "ttbar" in samples:
        mt = top_mass(samples["ttbar"])
        axes[1].hist(
            mt, bins=np.linspace(150, 200, 51), histtype="step", lw=2, label="t -> W b (truth)"
        )
        axes[1].axvline(172.5, color="grey", ls="--", label="$m_t$ = 172.5 GeV")
        axes[1].set_xlabel("$m(\\mathrm{decay\\ products})$ [GeV]")
        axes[1].set_ylabel("tops / GeV")
        axes[1].legend(fontsize=16)
    for name, ev in samples.items():
        n = ak.to_numpy(ak.sum(ev.particles.charge != 0, axis=1))
        axes[2].hist(
            n, bins=np.linspace(0, 700, 71), histtype="step", lw=2, density=True, label=name
        )
    axes[2].set_xlabel("charged final-state particles")
    axes[2].set_ylabel("a.u.")
    axes[2].legend(fontsize=16)
    for ax in axes:
        ax.set_title("colliderlab: Pythia 8, 13.6 TeV", fontsize=16, loc="right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
