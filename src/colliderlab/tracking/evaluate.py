"""Track finders side by side: TrackML score, efficiency, fake and duplicate rates, time and
memory per event, and their scaling with pile-up.

* :func:`measure`: runs one finder on one event and returns its submission, the wall time and
  the peak extra resident memory: the peak RSS while the finder runs minus the RSS before it
  started. On Linux the peak is the kernel's high-water mark (``VmHWM``, reset through
  ``/proc/self/clear_refs`` before the run, after the heap's free pages are handed back with
  glibc's ``malloc_trim``, so that memory freed by earlier work does not hide the finder's);
  elsewhere a thread samples the RSS every few milliseconds (it misses peaks inside
  compiled code that holds the GIL).
* :func:`evaluate_finders`: every finder on every event: the table of
  :func:`markdown_table`, per-event rows, efficiency vs pT and eta.
* :func:`scaling`: time and memory per event vs the number of hits (pile-up) for each
  finder, with the exponent alpha of a power-law fit t ~ N_hits^alpha (1 = linear).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from colliderlab.core.errors import ConfigError
from colliderlab.tracking.event import TrackingEvent
from colliderlab.tracking.finders import TrackFinder


def _proc_status_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (e.g. ``VmRSS``, ``VmHWM``), None if absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere), so that a measurement does not start with resident pages it can reuse."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark; False where the kernel does not offer it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _proc_status_kb("VmHWM") is not None


class _PeakRSS:
    """Peak resident memory of this process while the ``with`` block runs: the kernel's
    high-water mark where it can be reset (Linux), else the maximum of the RSS sampled in a
    thread; ``extra_mb`` is the peak minus the RSS at the start."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process(os.getpid())
        self.interval = interval
        _trim_heap()
        self._kernel = _reset_peak_rss()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = None if self._kernel else threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> _PeakRSS:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        if self._kernel:
            hwm = _proc_status_kb("VmHWM")
            if hwm is not None:
                self.peak = max(self.peak, hwm * 1024)

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def measure(finder: TrackFinder, event: TrackingEvent) -> tuple[pd.DataFrame, float, float]:
    """``(submission, seconds, peak extra MB)`` of ``finder.find(event)``, checked.

    The submission must have one row per hit of the event and unique hit ids.
    """
    with _PeakRSS() as mem:
        t0 = time.perf_counter()
        submission = finder.find(event)
        seconds = time.perf_counter() - t0
    check_submission(event, submission, getattr(finder, "name", type(finder).__name__))
    return submission, seconds, mem.extra_mb


def warm_up(finder: TrackFinder, event: TrackingEvent, n_hits: int = 500) -> None:
    """Run ``finder`` once, untimed, on the first ``n_hits`` hits of ``event`` (numba
    compilation or loading from its cache, torch start-up), so that timings measure the work."""
    hits = event.hits.iloc[:n_hits].reset_index(drop=True)
    truth = event.truth[event.truth["hit_id"].isin(hits["hit_id"])].reset_index(drop=True)
    small = TrackingEvent(event.event_id, hits, event.particles, truth, None)
    finder.find(small)


def check_submission(event: TrackingEvent, submission: pd.DataFrame, who: str = "finder") -> None:
    """Raise ConfigError unless ``submission`` has one row per hit of ``event``."""
    missing = {"hit_id", "track_id"} - set(submission.columns)
    if missing:
        raise ConfigError(f"{who}: the submission lacks the column(s) {sorted(missing)}.")
    hits = event.hits["hit_id"].to_numpy()
    ids = submission["hit_id"].to_numpy()
    if len(ids) != len(hits) or not np.array_equal(np.sort(ids), np.sort(hits)):
        raise ConfigError(
            f"{who}: the submission has {len(ids)} rows for an event of {len(hits)} hits; it "
            "must list every hit id of the event exactly once."
        )


def evaluate_finders(
    events: Sequence[TrackingEvent],
    finders: Mapping[str, TrackFinder],
    *,
    pt_min: float = 1.0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Every finder on every event.

    Efficiency, fake and duplicate rates come from
    :func:`colliderlab.tracking.score.track_metrics` with the counts summed over events.
    Returns ``{"rows": [...one per finder...], "events": [...one per finder and event...],
    "submissions": {name: [DataFrame per event]}}``. A row holds the mean TrackML score and its
    standard error over events, the efficiency, fake and duplicate rates (pT > ``pt_min``),
    the median time per event (after :func:`warm_up`) and the largest peak extra memory.
    """
    from tqdm.auto import tqdm

    from colliderlab.tracking.score import track_metrics, trackml_score

    if not events:
        raise ConfigError("evaluate_finders needs at least one event.")
    if not finders:
        raise ConfigError("evaluate_finders needs at least one track finder.")
    per_event: list[dict[str, Any]] = []
    submissions: dict[str, list[pd.DataFrame]] = {name: [] for name in finders}
    total = len(events) * len(finders)
    bar = tqdm(total=total, desc="track finding", unit="event", disable=progress is False)
    for name, finder in finders.items():
        warm_up(finder, events[0])
        for event in events:
            sub, seconds, mb = measure(finder, event)
            submissions[name].append(sub)
            row = {"finder": name, "event_id": event.event_id, "n_hits": event.n_hits}
            row.update(
                {"score": trackml_score(event.truth, sub), "seconds": seconds, "peak_mb": mb}
            )
            per_event.append(row)
            bar.update()
    bar.close()
    table = pd.DataFrame(per_event)
    rows = []
    for name, group in table.groupby("finder", sort=False):
        n = len(group)
        agg = track_metrics(list(events), submissions[name], pt_min=pt_min)
        rows.append(
            {
                "finder": name,
                "events": n,
                "score": float(group["score"].mean()),
                "score_err": float(group["score"].std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
                **{
                    k: float(agg[k])
                    for k in ("efficiency", "fake_rate", "duplicate_rate", "n_tracks")
                },
                "seconds_per_event": float(group["seconds"].median()),
                "peak_mb": float(group["peak_mb"].max()),
                "hits_per_event": float(group["n_hits"].mean()),
            }
        )
    return {"rows": rows, "events": per_event, "submissions": submissions, "pt_min": pt_min}


def markdown_table(rows: Sequence[Mapping[str, Any]], pt_min: float = 1.0) -> str:
    """The finders' table in Markdown (score +- standard error over events)."""
    head = (
        f"| finder | TrackML score | efficiency (pT > {pt_min:g} GeV) | fake rate | "
        "duplicate rate | time / event (s) | peak extra memory (MB) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['finder']} | {r['score']:.4f} ± {r['score_err']:.4f} | "
            f"{r.get('efficiency', float('nan')):.3f} | {r.get('fake_rate', float('nan')):.3f} | "
            f"{r.get('duplicate_rate', float('nan')):.3f} | {r['seconds_per_event']:.3f} | "
            f"{r['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def power_law_exponent(n_hits: Sequence[float], values: Sequence[float]) -> float:
    """Slope of log(value) vs log(n_hits): 1 for linear scaling, 2 for quadratic."""
    x = np.log(np.asarray(n_hits, dtype=float))
    y = np.log(np.maximum(np.asarray(values, dtype=float), 1e-12))
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def scaling(
    events_by_mu: Mapping[float, Sequence[TrackingEvent]],
    finders: Mapping[str, TrackFinder],
    *,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Time and peak extra memory per event vs pile-up, and the power-law exponents.

    Every finder first runs once on a few hundred hits (:func:`warm_up`), which is not counted.
    """
    from tqdm.auto import tqdm

    mus = sorted(events_by_mu)
    for finder in finders.values():
        warm_up(finder, events_by_mu[mus[0]][0])
    rows = []
    total = len(finders) * sum(len(events_by_mu[mu]) for mu in mus)
    bar = tqdm(total=total, desc="scaling", unit="event", disable=progress is False)
    for name, finder in finders.items():
        for mu in mus:
            times, mems, hits = [], [], []
            for event in events_by_mu[mu]:
                _, seconds, mb = measure(finder, event)
                times.append(seconds)
                mems.append(mb)
                hits.append(event.n_hits)
                bar.update()
            rows.append(
                {
                    "finder": name,
                    "mu": mu,
                    "hits_per_event": float(np.mean(hits)),
                    "seconds_per_event": float(np.median(times)),
                    "peak_mb": float(np.max(mems)),
                }
            )
    bar.close()
    table = pd.DataFrame(rows)
    exponents = {}
    for name, group in table.groupby("finder", sort=False):
        exponents[name] = {
            "time": power_law_exponent(group["hits_per_event"], group["seconds_per_event"]),
            "memory": power_law_exponent(group["hits_per_event"], group["peak_mb"].clip(lower=1)),
        }
    return {"rows": rows, "exponents": exponents}


def scaling_markdown(result: Mapping[str, Any]) -> str:
    lines = [
        "| finder | MU | hits / event | time / event (s) | peak extra memory (MB) |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['finder']} | {r['mu']:g} | {r['hits_per_event']:,.0f} | "
            f"{r['seconds_per_event']:.3f} | {r['peak_mb']:.0f} |"
        )
    lines += ["", "| finder | alpha (time ~ N_hits^alpha) | alpha (memory) |", "|---|---|---|"]
    for name, e in result["exponents"].items():
        lines.append(f"| {name} | {e['time']:.2f} | {e['memory']:.2f} |")
    return "\n".join(lines)


def _style():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ATLAS)
    return plt, mplhep


def plot_scaling(result: Mapping[str, Any], path: str | Path) -> Path:
    """Time and memory per event vs hits per event (log-log), one line per finder."""
    from colliderlab.core.files import write_atomic

    plt, mplhep = _style()
    table = pd.DataFrame(result["rows"])
    fig, axes = plt.subplots(1, 2, figsize=(16, 7))
    for name, group in table.groupby("finder", sort=False):
        alpha = result["exponents"][name]["time"]
        axes[0].plot(
            group["hits_per_event"],
            group["seconds_per_event"],
            "o-",
            label=f"{name} (alpha = {alpha:.2f})",
        )
        axes[1].plot(group["hits_per_event"], group["peak_mb"].clip(lower=1), "o-", label=name)
    for ax, ylabel in zip(axes, ("time per event [s]", "peak extra memory [MB]"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("hits per event")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small")
    for mu, n in table.groupby("mu")["hits_per_event"].mean().items():
        axes[0].annotate(f"MU={mu:g}", (n, axes[0].get_ylim()[0]), fontsize="x-small", rotation=90)
    mplhep.label.exp_label(exp="colliderlab", llabel="Simulation", ax=axes[0], data=False)
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, format=Path(path).suffix[1:] or "png", dpi=110))
    plt.close(fig)
    return Path(path)


def efficiency_table(
    events: Sequence[TrackingEvent],
    submissions: Sequence[pd.DataFrame],
    variable: str,
    bins: Sequence[float],
    pt_min: float = 1.0,
) -> pd.DataFrame:
    """Efficiency vs ``variable`` ("pt" or "eta") over several events (see score module)."""
    from colliderlab.tracking.score import efficiency_vs

    return efficiency_vs(events, submissions, variable=variable, bins=bins, pt_min=pt_min)


PT_BINS = (0.1, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 100.0)
ETA_BINS = tuple(np.round(np.linspace(-4.0, 4.0, 17), 2))


def plot_efficiency(
    events: Sequence[TrackingEvent],
    submissions: Mapping[str, Sequence[pd.DataFrame]],
    path: str | Path,
    pt_min: float = 1.0,
) -> Path:
    """Tracking efficiency vs pT and vs eta (pT > ``pt_min``), one marker set per finder."""
    from colliderlab.core.files import write_atomic

    plt, mplhep = _style()
    fig, axes = plt.subplots(1, 2, figsize=(16, 7))
    for name, subs in submissions.items():
        for ax, variable, bins, cut in (
            (axes[0], "pt", PT_BINS, 0.0),
            (axes[1], "eta", ETA_BINS, pt_min),
        ):
            t = efficiency_table(events, subs, variable, bins, pt_min=cut)
            t = t[t["n_particles"] > 0]
            centre = 0.5 * (t["lo"] + t["hi"])
            half = 0.5 * (t["hi"] - t["lo"])
            yerr = np.stack(
                [t["efficiency"] - t["efficiency_lo"], t["efficiency_hi"] - t["efficiency"]]
            )
            ax.errorbar(centre, t["efficiency"], xerr=half, yerr=yerr, fmt="o", label=name)
    axes[0].set_xscale("log")
    axes[0].set_xlabel(r"particle $p_T$ [GeV]")
    axes[1].set_xlabel(rf"particle $\eta$ ($p_T$ > {pt_min:g} GeV)")
    for ax in axes:
        ax.set_ylabel("tracking efficiency")
        ax.set_ylim(0, 1.15)
        ax.legend(fontsize="small", loc="lower right")
    mplhep.label.exp_label(exp="colliderlab", llabel="Simulation", ax=axes[0], data=False)
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, format=Path(path).suffix[1:] or "png", dpi=110))
    plt.close(fig)
    return Path(path)
