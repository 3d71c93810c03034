"""Validation plots of the fast detector simulation (mplhep style) and their summary table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    return plt


def _log_pt_axis(ax, ticks=(20, 30, 50, 100, 200, 500, 1000)) -> None:
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_validation(v: dict, directory: str | Path) -> list[Path]:
    """Write the validation figures of ``run_validation``'s result into ``directory``."""
    plt = _style()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = []

    def save(fig, name):
        path = d / name
        fig.tight_layout()
        fig.savefig(path, dpi=70)
        plt.close(fig)
        files.append(path)

    fig, ax = plt.subplots(figsize=(10, 8))
    bins = np.linspace(70, 110, 41)
    for key, label in (("z_mumu", "Z -> mu mu"), ("z_ee", "Z -> e e")):
        ax.hist(
            v[key]["masses"],
            bins=bins,
            histtype="step",
            lw=2,
            label=f"{label}: peak {v[key]['peak']:.2f} GeV",
        )
    ax.axvline(91.1876, color="grey", ls="--", label="PDG $m_Z$")
    ax.set_xlabel("$m_{\\ell\\ell}$ (reconstructed) [GeV]")
    ax.set_ylabel("events / GeV")
    ax.legend(fontsize=16)
    save(fig, "z_peaks.png")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(18, 8))
    jets = v["jets"]
    pt = [r["pt_mean"] for r in jets]
    a1.plot(pt, [r["response"] for r in jets], "o-", label="median reco / gen")
    a1.axhline(1.0, color="grey", ls="--")
    a1.set_ylim(0.9, 1.1)
    _log_pt_axis(a1)
    a1.set_xlabel("generator jet $p_T$ [GeV]")
    a1.set_ylabel("jet response")
    a1.legend(fontsize=16)
    a2.plot(pt, [r["resolution"] for r in jets], "o-", label="colliderlab (AK4 PF, CHS)")
    a2.plot(pt, [r["cms_reference"] for r in jets], "s--", label="CMS PF jets, arXiv:1607.03663")
    _log_pt_axis(a2)
    a2.set_xlabel("generator jet $p_T$ [GeV]")
    a2.set_ylabel("$\\sigma(p_T)/p_T$")
    a2.legend(fontsize=16)
    save(fig, "jet_response_resolution.png")

    fig, ax = plt.subplots(figsize=(10, 8))
    tr = v["track_resolution"]
    ax.plot([r["pt"] for r in tr], [r["measured"] for r in tr], "o", label="simulated tracks")
    ax.plot([r["pt"] for r in tr], [r["card"] for r in tr], "--", label="card (|eta| < 0.5)")
    _log_pt_axis(ax, (0.5, 1, 2, 5, 10, 20))
    ax.set_xlabel("charged-hadron $p_T$ [GeV]")
    ax.set_ylabel("$\\sigma(p_T)/p_T$")
    ax.legend(fontsize=16)
    save(fig, "track_resolution.png")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(18, 8))
    f = v["fatjets"]
    a1.hist(
        f["top_msd"],
        bins=np.linspace(0, 300, 31),
        histtype="step",
        lw=2,
        density=True,
        label="top jets (Z' -> tt)",
    )
    a1.hist(
        f["qcd_msd"],
        bins=np.linspace(0, 300, 31),
        histtype="step",
        lw=2,
        density=True,
        label="QCD jets",
    )
    a1.hist(
        f["w_msd"],
        bins=np.linspace(0, 300, 31),
        histtype="step",
        lw=2,
        density=True,
        label="W jets (W + jet), $p_T$ 300-450",
    )
    a1.axvline(172.5, color="grey", ls="--")
    a1.axvline(80.4, color="grey", ls=":")
    a1.set_xlabel("soft-drop mass, AK8 (top, QCD: $p_T$ 550-650 GeV) [GeV]")
    a1.set_ylabel("a.u.")
    a1.legend(fontsize=16)
    a2.hist(
        f["top_tau32"], bins=np.linspace(0, 1, 26), histtype="step", lw=2, density=True, label="top"
    )
    a2.hist(
        f["qcd_tau32"], bins=np.linspace(0, 1, 26), histtype="step", lw=2, density=True, label="QCD"
    )
    a2.set_xlabel("$\\tau_{32}$")
    a2.legend(fontsize=16)
    save(fig, "boosted_top.png")
    return files


def summary_markdown(v: dict) -> str:
    """The validation numbers as Markdown tables."""
    lines = [
        "| quantity | measured | reference |",
        "|---|---|---|",
        f"| Z line shape, generator truth (Voigt fit) | {v['z_truth_peak']:.2f} GeV | 91.19 GeV |",
        f"| Z -> mumu peak, reconstructed (Voigt fit) | {v['z_mumu']['peak']:.2f} GeV | truth peak, bare muons (FSR) |",
        f"| Z -> ee peak, reconstructed (Voigt fit) | {v['z_ee']['peak']:.2f} GeV | truth peak |",
        f"| top-jet mass peak (pT 550-650, top + 3 quarks in jet) | {v['fatjets']['top_mass_peak']:.1f} GeV | ~172.5 GeV |",
        f"| top-jet soft-drop mass peak (same jets) | {v['fatjets']['top_msd_peak']:.1f} GeV | ~172.5 GeV |",
        f"| W-jet soft-drop mass peak (pT 300-450) | {v['fatjets']['w_msd_peak']:.1f} GeV | ~80.4 GeV |",
        f"| median D2: top / QCD | {np.median(v['fatjets']['top_d2']):.2f} / {np.median(v['fatjets']['qcd_d2']):.2f} | top < QCD |",
        f"| mean tau32: top / QCD | {np.nanmean(v['fatjets']['top_tau32']):.2f} / {np.nanmean(v['fatjets']['qcd_tau32']):.2f} | top < QCD |",
    ]
    for name, b in v["btag"].items():
        lines.append(
            f"| b-tag rate of {name} jets (pT > 30) | {b['measured']:.3f} (n = {b['n']}) | card {b['card']:.3f} |"
        )
    lines += [
        "",
        "| jet pT bin [GeV] | response | resolution | CMS resolution |",
        "|---|---|---|---|",
    ]
    for r in v["jets"]:
        lines.append(
            f"| {r['pt_lo']}-{r['pt_hi']} | {r['response']:.3f} | {r['resolution']:.3f} | {r['cms_reference']:.3f} |"
        )
    lines += ["", "| track pT [GeV] | sigma(pT)/pT measured | card |", "|---|---|---|"]
    for r in v["track_resolution"]:
        lines.append(f"| {r['pt']:.1f} | {r['measured']:.4f} | {r['card']:.4f} |")
    return "\n".join(lines) + "\n"


def write_summary(v: dict, directory: str | Path) -> Path:
    d = Path(directory)
    slim = {k: val for k, val in v.items() if k not in ("z_mumu", "z_ee", "fatjets")}
    slim["z_truth_peak"] = v["z_truth_peak"]
    slim["z_mumu_peak"] = v["z_mumu"]["peak"]
    slim["z_ee_peak"] = v["z_ee"]["peak"]
    slim["top_msd_peak"] = v["fatjets"]["top_msd_peak"]
    slim["top_mass_peak"] = v["fatjets"]["top_mass_peak"]
    slim["w_msd_peak"] = v["fatjets"]["w_msd_peak"]
    (d / "summary.json").write_text(json.dumps(slim, indent=2) + "\n")
    path = d / "summary.md"
    path.write_text(summary_markdown(v))
    return path
