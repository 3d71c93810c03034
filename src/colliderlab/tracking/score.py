"""Track-finding scores and performance metrics: the TrackML score, its hit weights, the
throughput score, and efficiency / fake rate / duplicate rate.

**TrackML score** (Amrouche et al., "The Tracking Machine Learning challenge: Accuracy
phase", arXiv:1904.06778, and the challenge's ``trackml-library``, ``trackml/score.py``). A
reconstructed track (the hits sharing one ``track_id``) is *matched* to particle P when more
than half of the track's hits come from P **and** more than half of P's hits are on the track
(double majority, strict ``>``). Noise hits (``particle_id`` 0) count in the size of a track
but never make a match. The score is the sum of the truth weights of the hits of matched
tracks that belong to their particle, divided by the total truth weight of the event (1 for
the official files; the division makes it 1 for a perfect submission of any event). Every hit
gets at most one track, so a particle has at most one matched track.

**Hit weights** (same paper, section on the score, and ``trackml/weights.py``): the weight of
a hit of particle P is ``w_order(i, n) * w_pt(pT)``, normalised so the event sums to 1:

* ``n`` is P's number of hits in the event, ``i`` the hit's rank along the track, hits sorted
  by ``|tz - vz|`` (distance along the beam from the particle's vertex, as in the official
  code; ties by ``hit_id``). ``w_order`` is the 9-point profile ``[10, 8, 6, 5, 3, 3, 3, 5,
  6]`` stretched linearly over the ``n`` hits (the profile's points placed evenly on 0..n-1,
  linear interpolation at the integers), normalised so each particle's hits sum to 1: the
  first hits weigh most, the middle least, the last ones more again. Particles with fewer
  than 4 hits, and noise hits, weigh 0. Above 20 hits the 20-hit row is used and the hits
  beyond the 20th weigh 0.
* ``w_pt`` = 0.2 for 0.05 <= pT <= 0.5 GeV, rising linearly to 1 at pT = 3 GeV, 1 above,
  and 0 below 0.05 GeV; pT is the particle's initial transverse momentum (``px, py``).
* Particles produced in the detector simulation (secondaries of material interactions)
  weigh 0 in the official files. :func:`hit_weights` zeroes the particles whose
  ``secondary`` column (optional, bool) is True; :func:`trackml_secondary` derives that
  flag from the particle ids of the public TrackML files. With it the weights of the real
  event in ``tests/data/trackml`` are reproduced to 5e-6 relative (the file's precision),
  up to the event's normalisation (the file is a thinned event, its weights sum to 0.0513).

**Throughput score** (Amrouche et al., "The Tracking Machine Learning challenge: Throughput
phase", Comput. Softw. Big Sci. 7 (2023) 1, arXiv:2105.01160; the Codalab scoring program):
``sqrt(log(1 + 600 / t) * (S - 0.5)**2)`` for accuracy score S >= 0.5 and time per event
``t`` in seconds (0 < t <= 600), 0 for S < 0.5.

**Efficiency, fake and duplicate rates** (:func:`track_metrics`, :func:`efficiency_vs`),
the conventions of the GNN tracking pipelines (Exa.TrkX, arXiv:2103.06995) and ACTS:

* a particle is *reconstructible* when it has at least ``min_hits`` (default 5) hits, pT >=
  ``pt_min`` (GeV), optionally |eta| <= ``eta_max``, and is not flagged ``secondary``;
* a *candidate track* is a ``track_id`` != 0 with at least ``min_track_hits`` (default 3)
  hits;
* a track is *majority-matched* to P when more than half of its hits come from P (P != 0),
  and *double-majority matched* when, in addition, it holds more than half of P's hits;
* efficiency = reconstructible particles with a double-majority matched track / reconstructible
  particles;
* fake rate = candidate tracks majority-matched to no particle / candidate tracks;
* duplicate rate = reconstructible particles majority-matched by two or more candidate tracks
  / reconstructible particles majority-matched by at least one.

Uncertainties of these ratios are binomial: Clopper-Pearson 68.27 % intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from colliderlab.core.errors import ConfigError, DatasetError
from colliderlab.tracking.event import TrackingEvent

__all__ = [
    "efficiency_vs",
    "hit_weights",
    "match_tracks",
    "order_weight_matrix",
    "pt_weight",
    "throughput_score",
    "track_metrics",
    "trackml_score",
    "trackml_secondary",
]

#: The TrackML hit-order weight profile along a track (arXiv:1904.06778; trackml-library).
ORDER_PROFILE = (10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0)
#: Particles with fewer hits than this get weight 0.
ORDER_MIN_HITS = 4
#: Tracks longer than this use this row of the order weights; hits beyond it weigh 0.
ORDER_MAX_HITS = 20
#: TrackML throughput phase: the time limit per event (s) and the score's accuracy floor.
THROUGHPUT_MAX_TIME_S = 600.0
THROUGHPUT_MIN_ACCURACY = 0.5
_CL68 = 0.6826894921370859  # 1 sigma, two-sided


# --------------------------------------------------------------------------- hit weights


def order_weight_matrix(
    profile: Sequence[float] = ORDER_PROFILE,
    min_hits: int = ORDER_MIN_HITS,
    max_hits: int = ORDER_MAX_HITS,
) -> np.ndarray:
    """Order weights as a matrix ``W[n, i]``: hit ``i`` (0-based) of a particle with ``n`` hits.

    Row ``n`` (``min_hits <= n <= max_hits``) is ``profile`` stretched over ``n`` points
    (its points placed evenly on 0..n-1, linear interpolation at the integers) and
    normalised to sum 1; shorter rows are 0. Shape ``(max_hits + 1, max_hits)``.
    """
    prof = np.asarray(profile, dtype=np.float64)
    mat = np.zeros((max_hits + 1, max_hits))
    for n in range(min_hits, max_hits + 1):
        anchors = np.linspace(0.0, n - 1.0, len(prof))
        row = np.interp(np.arange(n, dtype=np.float64), anchors, prof)
        mat[n, :n] = row / row.sum()
    return mat


_ORDER = order_weight_matrix()


def pt_weight(pt: np.ndarray | float) -> np.ndarray:
    """TrackML pT weight: 0 below 0.05 GeV, 0.2 up to 0.5 GeV, linear to 1 at 3 GeV, then 1.

    ``pt`` in GeV; NaN (no particle) gives 0.
    """
    pt = np.asarray(pt, dtype=np.float64)
    w = np.interp(pt, [0.05, 0.5, 3.0], [0.2, 0.2, 1.0], left=0.0, right=1.0)
    return np.where(np.isfinite(pt), w, 0.0)


def trackml_secondary(particle_id: np.ndarray | pd.Series) -> np.ndarray:
    """True for particles of the public TrackML files that the detector simulation created.

    The TrackML particle id is a bit field; its lowest 16 bits are non-zero for particles
    produced in the simulation (material interactions), which the official weights set to 0.
    This reading of the bits is empirical, checked on the event in ``tests/data/trackml``:
    118 of its 548 particles are flagged, all with a vertex at radius >= 19 mm (the beam
    pipe and beyond); the 41 flagged particles with >= 4 hits all have weight 0, and every
    unflagged particle with >= 4 hits has weight > 0. Not meaningful for colliderlab's own
    particle ids.
    """
    pid = np.asarray(particle_id, dtype=np.int64)
    return (pid & 0xFFFF) != 0


def _require(df: pd.DataFrame, cols: Sequence[str], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DatasetError(
            f"the {name} table lacks the column(s) {', '.join(map(repr, missing))} "
            f"(found {', '.join(map(str, df.columns))})"
        )


def hit_weights(truth: pd.DataFrame, particles: pd.DataFrame) -> np.ndarray:
    """The TrackML weight of each truth hit (float64, aligned with ``truth`` rows, sum 1).

    ``truth`` needs ``hit_id, particle_id, tz``; ``particles`` needs ``particle_id, vz, px,
    py`` (mm, GeV) and may have a bool ``secondary`` column (True: weight 0). The definition
    is in the module docstring. Hits of particles missing from ``particles`` weigh 0. An
    event in which no hit has weight (no particle with 4 hits) gets all zeros.
    """
    _require(truth, ("hit_id", "particle_id", "tz"), "truth")
    _require(particles, ("particle_id", "vz", "px", "py"), "particles")
    n = len(truth)
    if n == 0:
        return np.zeros(0)
    pids = particles["particle_id"].to_numpy(np.int64)
    if len(np.unique(pids)) != len(pids):
        raise DatasetError("the particles table lists a particle_id more than once")
    tpid = truth["particle_id"].to_numpy(np.int64)
    row = pd.Index(pids).get_indexer(tpid)  # -1: noise or unknown particle
    known = row >= 0
    vz = np.where(known, particles["vz"].to_numpy(np.float64)[row], 0.0)
    pt = np.hypot(particles["px"].to_numpy(np.float64), particles["py"].to_numpy(np.float64))
    w_pt = np.where(known, pt_weight(pt)[row], 0.0)
    if "secondary" in particles.columns:
        sec = particles["secondary"].to_numpy(bool)
        w_pt = np.where(known & sec[row], 0.0, w_pt)
    w_pt[tpid == 0] = 0.0

    # rank of each hit along its particle's track: sort by (particle, |tz - vz|, hit_id)
    dz = np.abs(truth["tz"].to_numpy(np.float64) - vz)
    order = np.lexsort((truth["hit_id"].to_numpy(np.int64), dz, tpid))
    sorted_pid = tpid[order]
    start = np.r_[True, sorted_pid[1:] != sorted_pid[:-1]]
    group = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    counts = np.diff(np.r_[first, n])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first[group]
    nhits = np.empty(n, dtype=np.int64)
    nhits[order] = counts[group]

    capped = np.minimum(nhits, ORDER_MAX_HITS)
    inside = rank < ORDER_MAX_HITS
    w_order = np.zeros(n)
    w_order[inside] = _ORDER[capped[inside], rank[inside]]
    w = w_order * w_pt
    total = w.sum()
    return w / total if total > 0 else w


# --------------------------------------------------------------------------- matching


def _assign(truth: pd.DataFrame, submission: pd.DataFrame, allow_missing: bool) -> np.ndarray:
    """The submitted ``track_id`` of each truth row (0 = unassigned); validates the submission."""
    _require(submission, ("hit_id", "track_id"), "submission")
    _require(truth, ("hit_id", "particle_id"), "truth")
    sub_ids = submission["hit_id"].to_numpy()
    tracks = submission["track_id"].to_numpy()
    for name, arr in (("hit_id", sub_ids), ("track_id", tracks)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise DatasetError(
                f"the submission's {name} column must hold integers, found dtype {arr.dtype}"
            )
    if (tracks < 0).any():
        bad = np.flatnonzero(tracks < 0)[:5]
        raise DatasetError(
            f"track ids must be >= 0 (0 = unassigned); the submission has negative track ids "
            f"at hit_id {', '.join(map(str, sub_ids[bad]))}"
        )
    sub_index = pd.Index(sub_ids)
    if not sub_index.is_unique:
        dup = np.unique(sub_ids[sub_index.duplicated()])
        raise DatasetError(
            f"the submission assigns {len(dup)} hit(s) more than once (hit_id "
            f"{', '.join(map(str, dup[:5]))}); each hit belongs to at most one track"
        )
    truth_ids = truth["hit_id"].to_numpy()
    pos = sub_index.get_indexer(truth_ids)
    extra = ~sub_index.isin(truth_ids)
    if extra.any():
        bad = sub_ids[extra]
        raise DatasetError(
            f"the submission names {len(bad)} hit id(s) that are not in the event "
            f"({', '.join(map(str, bad[:5]))}); was it made for another event?"
        )
    missing = pos < 0
    if missing.any() and not allow_missing:
        bad = truth_ids[missing]
        raise DatasetError(
            f"the submission lacks {len(bad)} of the event's {len(truth_ids)} hits (hit_id "
            f"{', '.join(map(str, bad[:5]))}). Like the TrackML challenge, the score needs "
            "every hit: give unassigned hits track_id 0, or pass allow_missing=True to treat "
            "absent hits as unassigned."
        )
    out = np.zeros(len(truth_ids), dtype=np.int64)
    out[~missing] = tracks[pos[~missing]]
    return out


def match_tracks(
    truth: pd.DataFrame, submission: pd.DataFrame, *, allow_missing: bool = False
) -> pd.DataFrame:
    """Per (track, particle) pair: hit counts and weight, and whether the pair matches.

    One row per distinct ``(track_id, particle_id)`` among hits with ``track_id`` != 0:
    ``track_id, particle_id, n_common`` (hits of the particle on the track), ``weight``
    (their truth weight, when ``truth`` has a ``weight`` column, else 0), ``n_track``
    (hits on the track), ``n_particle`` (hits of the particle in the event), ``majority``
    (``2 n_common > n_track`` and particle != 0) and ``double_majority`` (``majority`` and
    ``2 n_common > n_particle``).
    """
    track = _assign(truth, submission, allow_missing)
    pid = truth["particle_id"].to_numpy(np.int64)
    weight = (
        truth["weight"].to_numpy(np.float64) if "weight" in truth.columns else np.zeros(len(pid))
    )
    p_uniq, p_inv, p_count = np.unique(pid, return_inverse=True, return_counts=True)
    assigned = track != 0
    t_uniq, t_inv, t_count = np.unique(track[assigned], return_inverse=True, return_counts=True)
    pairs = pd.DataFrame({"t": t_inv, "p": p_inv[assigned], "w": weight[assigned]})
    grouped = pairs.groupby(["t", "p"], sort=True)["w"].agg(["size", "sum"])
    ti = grouped.index.get_level_values("t").to_numpy()
    pi = grouped.index.get_level_values("p").to_numpy()
    n_common = grouped["size"].to_numpy(np.int64)
    table = pd.DataFrame(
        {
            "track_id": t_uniq[ti].astype(np.int64),
            "particle_id": p_uniq[pi].astype(np.int64),
            "n_common": n_common,
            "weight": grouped["sum"].to_numpy(np.float64),
            "n_track": t_count[ti].astype(np.int64),
            "n_particle": p_count[pi].astype(np.int64),
        }
    )
    table["majority"] = (2 * table["n_common"] > table["n_track"]) & (table["particle_id"] != 0)
    table["double_majority"] = table["majority"] & (2 * table["n_common"] > table["n_particle"])
    return table


def trackml_score(
    truth: pd.DataFrame,
    submission: pd.DataFrame,
    *,
    allow_missing: bool = False,
    normalize: bool = True,
) -> float:
    """The TrackML score of a submission (``hit_id, track_id``) for one event, in [0, 1].

    See the module docstring for the definition. ``truth`` needs ``hit_id, particle_id,
    weight``. The submission must list every hit of the event once (as the challenge
    required); ``track_id`` 0 marks unassigned hits, which belong to no track (the official
    code would treat 0 as one more track id; relabel 0 to a fresh id to reproduce that).
    ``allow_missing`` treats hits absent from the submission as unassigned. ``normalize``
    divides by the event's total truth weight (as the official code); without it the result
    is the matched weight itself. An event whose weights sum to 0 (no hits) scores 0.
    """
    _require(truth, ("hit_id", "particle_id", "weight"), "truth")
    pairs = match_tracks(truth, submission, allow_missing=allow_missing)
    matched = float(pairs.loc[pairs["double_majority"].to_numpy(), "weight"].sum())
    if not normalize:
        return matched
    total = float(truth["weight"].to_numpy(np.float64).sum())
    return matched / total if total > 0 else 0.0


def throughput_score(score: float, time_per_event: float) -> float:
    """The TrackML throughput-phase score from the accuracy ``score`` and ``time_per_event`` (s).

    ``sqrt(log(1 + 600 / t) * (score - 0.5)**2)`` (natural log) for ``score >= 0.5``, 0
    below (arXiv:2105.01160; Codalab scoring program). 600 s was the challenge's time limit
    per event: a slower time scores 0. Raises ConfigError for a score outside [0, 1] or a
    time <= 0 or not finite.
    """
    score = float(score)
    t = float(time_per_event)
    if not (0.0 <= score <= 1.0):
        raise ConfigError(f"score must be a TrackML accuracy score in [0, 1], got {score}")
    if not math.isfinite(t) or t <= 0.0:
        raise ConfigError(f"time_per_event must be a positive number of seconds, got {t}")
    if t > THROUGHPUT_MAX_TIME_S or score < THROUGHPUT_MIN_ACCURACY:
        return 0.0
    return math.sqrt(math.log1p(THROUGHPUT_MAX_TIME_S / t) * (score - THROUGHPUT_MIN_ACCURACY) ** 2)


# --------------------------------------------------------------------------- efficiencies


def _clopper_pearson(
    k: np.ndarray, n: np.ndarray, cl: float = _CL68
) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson interval of k successes in n trials (NaN where n = 0)."""
    from scipy.stats import beta

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    alpha = 1.0 - cl
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    empty = n == 0
    lo = np.where(empty, np.nan, lo)
    hi = np.where(empty, np.nan, hi)
    return lo, hi


def _particle_table(
    event: TrackingEvent,
    submission: pd.DataFrame,
    *,
    min_hits: int,
    min_track_hits: int,
    allow_missing: bool,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per particle of the event (with >= 1 hit): pt, eta, n_hits, matched, n_majority;
    and per candidate track: track_id, n_hits, fake. ``min_hits`` is not applied here."""
    pairs = match_tracks(event.truth, submission, allow_missing=allow_missing)
    pairs = pairs[pairs["n_track"].to_numpy() >= min_track_hits]
    parts = event.particles
    _require(parts, ("particle_id", "px", "py", "pz"), "particles")
    tpid = event.truth["particle_id"].to_numpy(np.int64)
    pid, n_hits = np.unique(tpid[tpid != 0], return_counts=True)
    row = pd.Index(parts["particle_id"].to_numpy(np.int64)).get_indexer(pid)
    if (row < 0).any():
        raise DatasetError(
            f"event {event.event_id}: {int((row < 0).sum())} truth particle id(s) are not in "
            "the particles table"
        )
    px = parts["px"].to_numpy(np.float64)[row]
    py = parts["py"].to_numpy(np.float64)[row]
    pz = parts["pz"].to_numpy(np.float64)[row]
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / pt, np.sign(pz) * np.inf))
    secondary = (
        parts["secondary"].to_numpy(bool)[row]
        if "secondary" in parts.columns
        else np.zeros(len(pid), bool)
    )
    maj = pairs[pairs["majority"].to_numpy()]
    n_major = maj.groupby("particle_id").size()
    dm = maj[maj["double_majority"].to_numpy()]["particle_id"].unique()
    table = pd.DataFrame(
        {
            "particle_id": pid,
            "pt": pt,
            "eta": eta,
            "n_hits": n_hits,
            "secondary": secondary,
            "matched": np.isin(pid, dm),
            "n_majority": n_major.reindex(pid, fill_value=0).to_numpy(np.int64),
        }
    )
    tracks = pairs.groupby("track_id").agg(n_hits=("n_track", "first"), real=("majority", "any"))
    tracks = pd.DataFrame(
        {
            "track_id": tracks.index.to_numpy(np.int64),
            "n_hits": tracks["n_hits"].to_numpy(np.int64),
            "fake": ~tracks["real"].to_numpy(bool),
        }
    )
    return table, tracks


def _as_lists(
    events: TrackingEvent | Sequence[TrackingEvent],
    submissions: pd.DataFrame | Sequence[pd.DataFrame],
) -> tuple[list[TrackingEvent], list[pd.DataFrame]]:
    ev = [events] if isinstance(events, TrackingEvent) else list(events)
    sub = [submissions] if isinstance(submissions, pd.DataFrame) else list(submissions)
    if len(ev) != len(sub):
        raise ConfigError(
            f"got {len(ev)} event(s) but {len(sub)} submission(s); give one submission per event"
        )
    return ev, sub


def _selection(
    table: pd.DataFrame,
    *,
    pt_min: float,
    min_hits: int,
    eta_max: float | None,
    exclude_secondaries: bool,
) -> np.ndarray:
    keep = (table["n_hits"].to_numpy() >= min_hits) & (table["pt"].to_numpy() >= pt_min)
    if eta_max is not None:
        keep &= np.abs(table["eta"].to_numpy()) <= eta_max
    if exclude_secondaries:
        keep &= ~table["secondary"].to_numpy(bool)
    return keep


def track_metrics(
    events: TrackingEvent | Sequence[TrackingEvent],
    submissions: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    pt_min: float = 1.0,
    min_hits: int = 5,
    eta_max: float | None = None,
    min_track_hits: int = 3,
    exclude_secondaries: bool = True,
    allow_missing: bool = False,
) -> dict[str, float]:
    """Efficiency, fake rate, duplicate rate and TrackML score of one or many events.

    ``events`` and ``submissions`` are one event and its submission, or equal-length
    sequences. Definitions in the module docstring; ``pt_min`` in GeV. Counts are summed
    over events before the ratios are taken; ``*_lo``/``*_hi`` are the Clopper-Pearson 68 %
    bounds; ``score`` is the mean TrackML score per event and ``score_std`` its standard
    deviation over events. A ratio with an empty denominator is NaN.
    """
    ev, sub = _as_lists(events, submissions)
    if min_hits < 1 or min_track_hits < 1:
        raise ConfigError("min_hits and min_track_hits must be >= 1")
    n_rec = n_eff = n_tracks = n_fake = n_found = n_dup = 0
    scores = []
    for event, submission in zip(ev, sub, strict=True):
        table, tracks = _particle_table(
            event,
            submission,
            min_hits=min_hits,
            min_track_hits=min_track_hits,
            allow_missing=allow_missing,
        )
        sel = table[
            _selection(
                table,
                pt_min=pt_min,
                min_hits=min_hits,
                eta_max=eta_max,
                exclude_secondaries=exclude_secondaries,
            )
        ]
        n_rec += len(sel)
        n_eff += int(sel["matched"].sum())
        n_found += int((sel["n_majority"] >= 1).sum())
        n_dup += int((sel["n_majority"] >= 2).sum())
        n_tracks += len(tracks)
        n_fake += int(tracks["fake"].sum())
        scores.append(trackml_score(event.truth, submission, allow_missing=allow_missing))

    out: dict[str, float] = {"n_events": len(ev)}
    for name, k, n in (
        ("efficiency", n_eff, n_rec),
        ("fake_rate", n_fake, n_tracks),
        ("duplicate_rate", n_dup, n_found),
    ):
        lo, hi = _clopper_pearson(np.array([k]), np.array([n]))
        out[name] = k / n if n else float("nan")
        out[f"{name}_lo"] = float(lo[0])
        out[f"{name}_hi"] = float(hi[0])
    out.update(
        n_reconstructible=n_rec,
        n_matched=n_eff,
        n_tracks=n_tracks,
        n_fake=n_fake,
        n_majority_matched=n_found,
        n_duplicated=n_dup,
        score=float(np.mean(scores)) if scores else float("nan"),
        score_std=float(np.std(scores)) if scores else float("nan"),
    )
    return out


def efficiency_vs(
    events: TrackingEvent | Sequence[TrackingEvent],
    submissions: pd.DataFrame | Sequence[pd.DataFrame],
    variable: Literal["pt", "eta"] = "pt",
    bins: Sequence[float] | np.ndarray | None = None,
    *,
    pt_min: float | None = None,
    min_hits: int = 5,
    eta_max: float | None = None,
    min_track_hits: int = 3,
    exclude_secondaries: bool = True,
    allow_missing: bool = False,
) -> pd.DataFrame:
    """Tracking efficiency in bins of the particles' true pT (GeV) or eta.

    Returns one row per bin: ``lo, hi`` (bin edges, a particle is in ``[lo, hi)``),
    ``n_particles`` (reconstructible), ``n_matched``, ``efficiency`` and its Clopper-Pearson
    68 % bounds ``efficiency_lo, efficiency_hi`` (NaN for an empty bin). ``pt_min`` defaults
    to 0 for ``variable="pt"`` (the bins set the range) and 1 GeV for ``"eta"``. Default
    bins: pT 0, 0.5, 1, 1.5, 2, 3, 5, 10, 100 GeV; eta -4..4 in steps of 0.5.
    """
    if variable not in ("pt", "eta"):
        raise ConfigError(f"variable must be 'pt' or 'eta', got {variable!r}")
    if bins is None:
        bins = (
            np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0])
            if variable == "pt"
            else np.linspace(-4.0, 4.0, 17)
        )
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0):
        raise ConfigError("bins must be at least two strictly increasing edges")
    if pt_min is None:
        pt_min = 0.0 if variable == "pt" else 1.0
    ev, sub = _as_lists(events, submissions)
    tables = []
    for event, submission in zip(ev, sub, strict=True):
        table, _ = _particle_table(
            event,
            submission,
            min_hits=min_hits,
            min_track_hits=min_track_hits,
            allow_missing=allow_missing,
        )
        keep = _selection(
            table,
            pt_min=pt_min,
            min_hits=min_hits,
            eta_max=eta_max,
            exclude_secondaries=exclude_secondaries,
        )
        tables.append(table[keep])
    allp = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame({variable: [], "matched": []})
    )
    x = allp[variable].to_numpy(np.float64)
    which = np.searchsorted(edges, x, side="right") - 1
    inside = (which >= 0) & (which < len(edges) - 1)
    nb = len(edges) - 1
    n = np.bincount(which[inside], minlength=nb)
    k = np.bincount(
        which[inside], weights=allp["matched"].to_numpy(np.float64)[inside], minlength=nb
    ).astype(np.int64)
    lo, hi = _clopper_pearson(k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    return pd.DataFrame(
        {
            "lo": edges[:-1],
            "hi": edges[1:],
            "n_particles": n.astype(np.int64),
            "n_matched": k,
            "efficiency": eff,
            "efficiency_lo": lo,
            "efficiency_hi": hi,
        }
    )
