"""Triplet seeding and helix track following: the classical reference track finder ("ckf").

The finder follows the pattern of the combinatorial-Kalman-filter track finders of the LHC
experiments and of the best classical entries of the TrackML challenge (Amrouche et al.,
arXiv:1904.06778; results in arXiv:2105.01160), in a compact form:

1. **Seeding.** Triplets of hits on three consecutive pixel layers. The allowed layer
   triplets (the *layer-connection map*) come from the geometry: straight lines from the
   luminous region (|z0| <= 150 mm, |eta| <= 4) are followed through the pixel layers and
   every three consecutive layers crossed form a triplet. :meth:`CKFFinder.fit` can replace
   this map by the triplets seen in the truth of training events. The hits of each layer
   sit in a (phi, z) grid (phi bins, sorted by z on barrels and by r on disks, as in the
   ATLAS and ACTS seed finders, arXiv:2106.13593), so the inner hits of a middle hit are
   searched only in the phi window allowed by ``min_pt`` and ``max_d0`` and in the z (r)
   range allowed by |z0| <= ``max_z0``, and the outer hits only around the doublet's
   extrapolation, in phi and in z (r) within the cot theta cut below; a middle hit whose
   inner z (r) range, or a doublet whose extrapolated z (r) range, misses all the hits of
   the layer is dropped before the search (the barrel-to-disk triplets otherwise scan all
   phi bins), and on a disk the radius range of a doublet's extrapolation is bounded on
   the inside even where the cot theta range reaches 0 (MU=200: seeding 1.8 -> 0.7
   s/event, the same seeds). The hits are stored in the order of the grid (the finder
   works on them in that order throughout), so the queries read contiguous memory, and a
   query does one binary search per phi bin (the start of the key range) and scans to its
   end (MU=200: seeding 0.63 -> 0.59 s/event, the same seeds). The layer triplets that
   share their (inner, middle) layers share the doublets of a middle hit, built once (the
   barrel-barrel pairs have three outer layers each, a barrel and two disks), and the
   phi turn asin(r / 2R) of each hit is computed once per iteration, not per doublet
   (MU=200: seeding 0.39 -> 0.32 s/event, the same seeds). The outer hits of all the
   doublets of a middle hit are fetched with one grid query per outer layer, over the union
   of the doublets' windows, and sorted by key; each doublet then takes its own window
   from that short list by a binary search (one grid query per doublet and outer layer
   before: MU=200, 140,683 hits per event: seeding 0.216 -> 0.189 s/event, the whole
   finder 6% faster side by side, the same seeds and tracks).
   Doublet cuts: the phi opening, |z0| <= ``max_z0`` and |cot theta| <= ``max_cot``.
   Triplet cuts: the circle through the three points has pT >= ``min_pt`` and transverse
   impact parameter |d0| <= ``max_d0``; the two segments agree in cot theta within
   ``seed_sigma`` times the multiple-scattering spread expected at the seed's momentum.
   Of the triplets of one middle hit (per layer triplet) only the ``max_seeds_per_hit``
   of least chi2 are kept.
   Seeding runs in *iterations* (the iterative tracking of CMS, arXiv:1405.6569,
   ``_ITERATIONS``): first the easy prompt tracks (pT >= 0.5 GeV, |d0| <= 0.3 mm), then pT
   >= 0.3, 0.2 and 0.14 GeV with |d0| <= 0.6, 1 and 2 mm, accepting long tracks only (the
   first entry of ``min_hits_passes``; the fourth also the second entry's); with two
   early iterations, the second at pT >= 0.25 GeV and |d0| <= 1 mm (2 mm: MU=200 score
   0.9329 / 0.9330 on seed1001 / seed1002, 1 mm: 0.9333 / 0.9338 and seeding 4% faster;
   four: see ``_ITERATIONS``); after each iteration the hits of the accepted
   tracks are removed (each iteration works on a copy of the free hits in the grid
   order: the windows no longer scan the hits of the tracks found; MU=200: seeding 0.32
   -> 0.27 s/event, following 0.35 -> 0.31, the same tracks) and the leftover hits are
   seeded again, last with the full cuts
   (``min_pt`` = 0.1 GeV, ``max_d0``) and all the passes. The early iterations are cheap
   (narrow windows) and each later one sees fewer hits, so the combinatorics of the wide
   low-pT windows fall; tracks also no longer lose hits to the fakes of the low-pT seeds.
   In the simulated MU=200 ttbar events the particles of pT < 0.3 GeV carry ~24% of the
   score weight; seeding them (the last iteration) is worth +0.09 in score. (MU=200, second
   iteration at pT >= 0.3 / 0.25 / 0.22 / 0.2 GeV: 0.915 / 0.918 / 0.917 / 0.916.)
   The early iterations also accept only |z0| <= ``_EARLY_MAX_Z0`` = 130 mm (the
   luminous region has sigma_z ~ 55 mm; the rare tracks further out are seeded by the
   last iteration with ``max_z0``): fewer doublets (MU=200, seed1001: early |z0| <= 200
   / 150 / 130 / 120 / 100 mm: score 0.9328 / 0.9329 / 0.9329 / 0.9324 / 0.9300; at 130
   seeding 0.61 -> 0.45 s/event, total 1.41 -> 1.19 s/event; seed1002 0.9332 -> 0.9330,
   1.25 -> 1.18 s/event).
2. **Following.** The helix of the track (circle in x-y, fitted to the last
   ``fit_hits`` hits with the non-iterative weighted circle fit of Karimaki 1991, and a
   straight line z(s) in the arc length s) is extrapolated to the next layer it crosses, barrel
   cylinder or endcap disk, in order of arc length. Hits are searched in a window of
   ``window_sigma`` standard deviations of the hit resolution and of the multiple
   scattering over the extrapolation distance (in the seeding's (phi, z or r) grid: the
   phi bins of the window, and in each the key range the prediction can reach within the
   layer's thickness; MU=200: following 0.42 -> 0.33 s/event, recovery 0.13 -> 0.11, the
   same tracks as the scan of the layer's phi range; the coordinates of a hit are stored
   side by side, ``hp[i] = (x, y, z, r, phi)``, one cache line per hit: following and
   recovery another 8% faster); the hit of least chi2 is added,
   with its *siblings*: further hits of the track on the overlapping modules of the same layer
   (up to three more; a particle crossing a pixel endcap disk leaves 2-4 hits on ~55% of
   the disks, ~20% of the weight of the simulated MU=200 events sits on such layers).
   The siblings are not taken from the layer's search window but predicted from the
   accepted hit itself, along the tangent of the fitted helix there, to each candidate's
   radius (barrel) or z (disk): over the 3-25 mm between overlapping modules the
   prediction error is the resolution of the two hits plus the direction error (multiple
   scattering and fit) times the distance, so the sibling window is ~10x narrower than
   the layer window (MU=200: +0.06 in score, half the fake tracks). A candidate whose z
   (barrel) or r (disk) is further from the hit's than any accepted sibling can be is
   dropped before the prediction (following ~2% faster, the same tracks). A layer crossed
   inside its active envelope without a compatible hit is a hole; following stops after
   ``max_holes`` holes or when the helix leaves the detector or turns back inward
   (loopers are followed for their first half turn: a barrel inside the current radius,
   outside it when following inward, is not a candidate for the next layer, as its
   crossing would come after the turning point; before this rule such crossings were
   taken when no other layer was ahead, MU=200: +0.005 in score, fake rate 0.042 ->
   0.037, following 10% faster). Following runs outward from the
   seed, then inward from its first hit. Last, the layers that the track crosses between
   two of its hits but that were never searched (those skipped by the seed triplet, e.g.
   the second barrel layer crossed near its end by a track seeded on barrel 1 and two
   disks) are searched with the helix fitted to the hits around the gap and interpolated
   to the layer (``_fill_gaps``; for the candidates long enough to be accepted; MU=200:
   +0.007 in score, fake rate 0.051 -> 0.046; the missing inner hits of found tracks
   drop from 0.022 to 0.015 of the score weight).
3. **Ambiguity resolution.** Seeds are processed best first (smallest seed chi2); a seed
   with a hit that already belongs to an accepted track is skipped, and following uses
   free hits only, so every hit belongs to at most one track. Candidates are accepted in
   passes of decreasing length requirement (``min_hits_passes``): long, clean tracks
   first, then shorter ones from the hits that are left. A seed once followed to fewer
   hits than a pass needs is not followed again in that pass, also when a later seeding
   iteration finds it again (with fewer free hits its track can only be shorter; MU=200:
   following 8% faster, the same score).
4. **Hit recovery** (``_recover``). After the last iteration the helix of every accepted
   track is refitted on all its hits (circle and z(s) line), and the free hits it still
   leaves are collected: the siblings of its hits (predicted with the full-track helix)
   and, on every layer the helix crosses before its turning point without a hit of the
   track (also beyond the track's ends), the free hit nearest to the crossing in a wide
   window (``_RECOVER_SIGMA`` standard deviations of the resolution, the fit error and
   the multiple scattering from the nearest hit of the track), with its siblings. A free
   hit adds to the score when it belongs to the track's particle and costs nothing
   otherwise, unless it breaks the track's majority, hence the wide window (MU=200,
   seed1001 / seed1002 / real TrackML event: without 0.918 / 0.919 / 0.846; 3 sigma
   0.918 / - / -; 5 sigma 0.920; 10 sigma 0.924 / 0.925 / 0.873; 15 sigma 0.925 / 0.926 /
   0.884; 25 sigma 0.925; without the extrapolation beyond the ends (3 sigma) 0.918;
   a second recovery pass +0.0001). The helix is also followed past its turning point,
   up to ``_RECOVER_TURN`` turns from the innermost hit: the crossings of the return leg
   of a looper (barrel layers crossed inward, disks further along) are searched in the
   same way, also on the layers the track already has hits on (MU=200, seed1001:
   0.925 without, 0.927 / 0.930 / 0.931 / 0.931 / 0.927 up to 0.6 / 0.75 / 0.8 / 0.85 /
   1 turn, fake rate 0.037 -> 0.040 at 0.8; seed1002 0.926 -> 0.932; the real TrackML
   event 0.884 -> 0.881).

All combinatorial loops are numba-compiled (``cache=True``); the first call of a process
compiles them (a few seconds, cached on disk afterwards). The helix crossings and arc
lengths of following, gap filling and recovery use branch-free polynomial ``_atan2``
(1.8e-9 rad) and ``_sincos`` (1e-11) instead of libm's (atan2 and sincos were ~14% of the
time; MU=200: the whole finder 11-12% faster, the same tracks on five events). The
search, window, fit and sibling helpers are inlined into their callers at numba's IR
level (``inline="always"``): no reference counting of their array arguments per call
(4% faster; the first compilation takes ~15 s longer; inlining following and gap filling
too gained nothing and doubled it).

Units: mm, GeV, rad; the field is a 2 T solenoid along z (pT = 0.0006 GeV/mm * R).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numba import njit

from colliderlab.core.errors import ConfigError
from colliderlab.core.registry import register
from colliderlab.tracking.event import TrackingEvent
from colliderlab.tracking.finders import KIND, TrackFinder

#: pT (GeV) per mm of radius of curvature in the 2 T field: 0.3 * B[T] * 1e-3.
PT_PER_MM = 0.3 * 2.0 * 1e-3
#: Multiple-scattering angle times momentum per layer step (GeV rad). Highland's formula
#: with x/X0 ~ 2.5% per layer (arXiv:1904.06778) gives 0.002; the value is tuned (x2.5) to
#: cover energy loss, the extra material of several layers in long steps and the fit error
#: of the helix. 0.005 is the compromise of the simulated MU=200 events (best at 0.004,
#: +0.013 in score over 0.007) and the real TrackML event (best at 0.007, -0.010 at 0.005).
MS_PER_LAYER = 0.005
#: Pixel volumes (seeding) and barrel volumes of the TrackML detector.
PIXEL_VOLUMES = (7, 8, 9)
#: Hit resolution (mm) per volume: (r-phi, longitudinal = z for barrels, r for disks),
#: the spread of the TrackML hits around their true positions.
HIT_RESOLUTION = {
    7: (0.015, 0.015),
    8: (0.01, 0.015),
    9: (0.015, 0.015),
    12: (0.02, 0.35),
    13: (0.02, 0.3),
    14: (0.02, 0.35),
    16: (0.13, 3.1),
    17: (0.025, 3.1),
    18: (0.13, 3.1),
}
_MAX_TRACK_HITS = 64
#: Overlap siblings (further hits of a track on other modules of the same layer): at most
#: ``_MAX_SIBLINGS`` per layer (the pixel endcap disks give a particle up to 4 hits per
#: layer), predicted from the accepted hit along the helix tangent with a direction error
#: of ``_SIBLING_MS / p + _SIBLING_DIR_ERR`` rad (p in GeV), over at most
#: ``_SIBLING_MAX_PATH`` mm (the true siblings lie 3-25 mm away).
_MAX_SIBLINGS = 3  # :func:`_sibling` keeps the best three
_SIBLING_MS = 0.01
_SIBLING_DIR_ERR = 0.005
_SIBLING_MAX_PATH = 40.0
#: Number of phi bins per layer of the seeding search grid.
_PHI_BINS = 128
#: Largest allowed ``max_seeds_per_hit`` (size of the per-middle-hit seed buffer).
_MAX_SEEDS_PER_HIT = 256
#: Seeding iterations before the last one at (min_pt, max_d0, all passes): (pT GeV,
#: |d0| mm, number of the passes of ``min_hits_passes`` run, 0 = all); each is clipped to
#: (>= min_pt, <= max_d0). Long tracks only in both (MU=200: (0.3, 2.0) with all passes
#: scores 0.832, with the first pass only 0.841: its short tracks are low-pT fakes;
#: later, with the rest of the finder improved: (0.3, 2.0) 0.915, (0.25, 2.0) 0.918).
#: Four iterations (2026-11-24; MU=200, the finder with the default 0.1 GeV last): the
#: former [(0.5, 0.3, 1), (0.25, 1.0, 1)] scored 0.9347 / 0.9312 on the samples of
#: ``colliderlab dataset tracking --pileup 200 --events 5 --seed 1`` / of ``evaluate
#: --seed 3``; these 0.9364 / 0.9308 and 9% faster side by side (the fourth iteration's
#: second pass takes the 7-hit tracks before the last iteration seeds the rest);
#: [(0.5, 0.3, 1), (0.25, 1.0, 1), (0.15, 2.0, 1)] 0.9358 / 0.9319, 2% faster; the
#: third iteration with two passes too 0.9359 / 0.9301, 10% faster.
_ITERATIONS = [(0.5, 0.3, 1), (0.3, 0.6, 1), (0.2, 1.0, 1), (0.14, 2.0, 2)]
#: Largest |z0| (mm) of the seeds of the iterations before the last one (clipped to
#: ``max_z0``); the last iteration seeds with ``max_z0``.
_EARLY_MAX_Z0 = 130.0
#: Search the layers skipped between the hits of a followed track (its seed's gaps).
_FILL_GAPS = True
#: Final hit recovery with the full-track helix (passes; window in sigma; longest
#: extrapolation beyond the track's ends in mm; turns followed from the innermost hit).
_RECOVER_PASSES = 1
_RECOVER_SIGMA = 15.0
_RECOVER_MAX_EXT = 1e9
_RECOVER_TURN = 0.8
#: LLVM fast-math flags of the compiled kernels: reassociation, contraction, reciprocals
#: and fast library functions, but not the no-NaN / no-infinity assumptions (empty layers
#: have infinite key ranges). MU=200: 5% faster, the same tracks.
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


# --------------------------------------------------------------------------- geometry


@functools.lru_cache(maxsize=1)
def _default_layers() -> pd.DataFrame:
    """The layer table of the shipped TrackML geometry (one row per layer)."""
    from colliderlab.tracking.geometry import default_geometry

    rows = [
        (ly.volume_id, ly.layer_id, ly.barrel, ly.position, ly.r_min, ly.r_max, ly.z_min, ly.z_max)
        for ly in default_geometry().layers
    ]
    return pd.DataFrame(
        rows,
        columns=["volume_id", "layer_id", "barrel", "position", "r_min", "r_max", "z_min", "z_max"],
    )


def _layer_table(hits: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Layers of the default geometry plus any layer of ``hits`` it lacks (from the hits),
    and the row of each hit's layer in that table."""
    table = _default_layers()
    code = hits["volume_id"].to_numpy(np.int64) * (1 << 32) + hits["layer_id"].to_numpy(np.int64)
    inverse, uniques = pd.factorize(code)
    t_code = table["volume_id"].to_numpy(np.int64) * (1 << 32) + table["layer_id"].to_numpy(
        np.int64
    )
    row = {int(c): i for i, c in enumerate(t_code)}
    extra = []
    r = z = None
    for u, c in enumerate(uniques):
        if int(c) in row:
            continue
        if r is None:
            r = np.hypot(hits["x"].to_numpy(np.float64), hits["y"].to_numpy(np.float64))
            z = hits["z"].to_numpy(np.float64)
        idx = inverse == u
        rr, zz = r[idx], z[idx]
        barrel = np.ptp(rr) < np.ptp(zz)
        pos = float(np.median(rr if barrel else zz))
        row[int(c)] = len(table) + len(extra)
        first = int(np.argmax(idx))
        vol, lay = int(hits["volume_id"].iloc[first]), int(hits["layer_id"].iloc[first])
        extra.append(
            (vol, lay, barrel, pos, rr.min() - 5, rr.max() + 5, zz.min() - 5, zz.max() + 5)
        )
    if extra:
        table = pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)
    lut = np.array([row[int(c)] for c in uniques], np.int64)
    return table, lut[inverse]


def _geometric_triplets(table: pd.DataFrame, z0_max: float = 150.0) -> np.ndarray:
    """Consecutive pixel-layer triplets crossed by straight lines from the luminous region.

    Lines start at (r=0, z0) with z0 in [-z0_max, z0_max] and |eta| <= 4; the layers a line
    crosses inside their envelopes, in order of distance, give the triplets (indices into
    ``table``).
    """
    pix = np.flatnonzero(table["volume_id"].isin(PIXEL_VOLUMES).to_numpy())
    barrel = table["barrel"].to_numpy(bool)[pix]
    pos = table["position"].to_numpy(np.float64)[pix]
    rmin, rmax = table["r_min"].to_numpy(np.float64)[pix], table["r_max"].to_numpy(np.float64)[pix]
    zmin, zmax = table["z_min"].to_numpy(np.float64)[pix], table["z_max"].to_numpy(np.float64)[pix]
    found: set[tuple[int, int, int]] = set()
    z0 = np.linspace(-z0_max, z0_max, 7)[:, None, None]
    cot = np.sinh(np.linspace(-4.0, 4.0, 1601))[None, :, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r_cross = np.where(barrel, pos, (pos - z0) / cot)  # (z0, eta, layer)
        z_cross = z0 + cot * r_cross
    inside = np.where(
        barrel,
        (z_cross >= zmin) & (z_cross <= zmax),
        (r_cross > 0) & (r_cross >= rmin) & (r_cross <= rmax),
    )
    r_cross = np.where(inside, r_cross, np.inf).reshape(-1, len(pix))
    for row in r_cross:
        seq = [int(pix[k]) for k in np.argsort(row, kind="stable") if np.isfinite(row[k])]
        for i in range(len(seq) - 2):
            found.add((seq[i], seq[i + 1], seq[i + 2]))
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 3)


# --------------------------------------------------------------------------- numba kernels


@njit(cache=True, fastmath=_FAST)
def _wrap(a):
    while a > np.pi:
        a -= 2 * np.pi
    while a < -np.pi:
        a += 2 * np.pi
    return a


# atan(t) / t as a polynomial in u = t^2 on [0, 1] (least-squares Chebyshev fit, degree 9):
# |_atan2 - math.atan2| <= 1.8e-9 rad, an arc error below 1 um for radii below 500 m
_ATAN_C = (
    0.9999999975465801,
    -0.33333282298605577,
    0.1999823069011253,
    -0.14261574040466019,
    0.10940200362489404,
    -0.08372067088857983,
    0.05746359976664859,
    -0.030717541375555428,
    0.010680732754406966,
    -0.0017437033292294173,
)


@njit(cache=True, fastmath=_FAST)
def _atan2(y, x):
    """``math.atan2`` to 1.8e-9 rad without branches (libm's is ~25 ns a call)."""
    ax = abs(x)
    ay = abs(y)
    big = max(ax, ay)
    t = min(ax, ay) / big if big > 0.0 else 0.0
    u = t * t
    u2 = u * u
    u4 = u2 * u2
    c = _ATAN_C
    p = (
        (c[0] + c[1] * u)
        + (c[2] + c[3] * u) * u2
        + ((c[4] + c[5] * u) + (c[6] + c[7] * u) * u2) * u4
        + (c[8] + c[9] * u) * u4 * u4
    )
    r = t * p
    r = 0.5 * np.pi - r if ay > ax else r
    r = np.pi - r if x < 0.0 else r
    return -r if y < 0.0 else r


@njit(cache=True, fastmath=_FAST)
def _sincos(a):
    """``(math.sin(a), math.cos(a))`` to 1e-11 without branches: Taylor polynomials on
    ``[-pi/4, pi/4]`` after reduction by quarter turns."""
    k = math.floor(a * (2.0 / np.pi) + 0.5)
    r = a - k * (0.5 * np.pi)
    q = np.int64(k)
    r2 = r * r
    s = r * (
        1.0
        + r2
        * (
            -1.0 / 6.0
            + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0 - r2 / 39916800.0)))
        )
    )
    c = 1.0 + r2 * (
        -0.5
        + r2
        * (
            1.0 / 24.0
            + r2
            * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0 + r2 / 479001600.0)))
        )
    )
    odd = (q & 1) == 1
    sn = c if odd else s
    cs = s if odd else c
    sn = -sn if (q & 2) == 2 else sn
    cs = -cs if ((q + 1) & 2) == 2 else cs
    return sn, cs


@njit(cache=True, inline="always", fastmath=_FAST)
def _lower_bound(a, s, e, v):
    """The first index i in [s, e) with a[i] >= v (e if none); ``a[s:e]`` is sorted.

    A binary search on the index range: no array view is made (``np.searchsorted`` on a
    slice costs a reference-counted view per call in the innermost loops).
    """
    while s < e:
        m = (s + e) >> 1
        if a[m] < v:
            s = m + 1
        else:
            e = m
    return s


@njit(cache=True, inline="always", fastmath=_FAST)
def _lower_bound_col(a, col, s, e, v):
    """:func:`_lower_bound` on column ``col`` of the 2-D array ``a``."""
    while s < e:
        m = (s + e) >> 1
        if a[m, col] < v:
            s = m + 1
        else:
            e = m
    return s


@njit(cache=True, inline="always", fastmath=_FAST)
def _bin_span(c, w):
    """The phi bins (``bb % _PHI_BINS`` for ``bb`` in [lo, hi]) that hold phi = c +- w."""
    if w >= np.pi:
        return 0, _PHI_BINS - 1
    b_lo = math.floor((c - w + np.pi) / (2 * np.pi) * _PHI_BINS)
    b_hi = math.floor((c + w + np.pi) / (2 * np.pi) * _PHI_BINS)
    if b_hi - b_lo >= _PHI_BINS:
        return 0, _PHI_BINS - 1
    return b_lo, b_hi


@njit(cache=True, fastmath=_FAST)
def _circle3(x0, y0, x1, y1, x2, y2):
    """Centre, radius and sense (+1 counter-clockwise) of the circle through three points."""
    ax = x1 - x0
    ay = y1 - y0
    bx = x2 - x0
    by = y2 - y0
    d = 2.0 * (ax * by - ay * bx)
    a2 = ax * ax + ay * ay
    b2 = bx * bx + by * by
    if abs(d) < 1e-9 * (a2 + b2):
        # straight line: a circle of 1e7 mm radius on the left of the chord
        n = math.sqrt(b2) + 1e-30
        big = 1e7
        return x0 - by / n * big, y0 + bx / n * big, big, 1.0
    ux = (by * a2 - ay * b2) / d
    uy = (ax * b2 - bx * a2) / d
    return x0 + ux, y0 + uy, math.sqrt(ux * ux + uy * uy), 1.0 if d > 0 else -1.0


@njit(cache=True, inline="always", fastmath=_FAST)
def _bin_query(lk, c, w, lo, hi, nb, bstart, bkey, hp, out, nout):
    """Hits of layer ``lk`` with |phi - c| <= w and key (z on barrels, r on disks) in
    [lo, hi], appended to ``out`` from ``nout`` on; the new count.

    The hits of a layer are kept in ``nb`` phi bins, sorted by key inside each bin, so a
    query is one binary search per bin crossed (the (phi, z) binning of the ATLAS and ACTS
    seed finders). The hits are stored in that order (``bkey``, ``phi`` and ``out`` are
    positions in it), so a query reads contiguous memory.
    """
    if hi < lo:
        return nout
    if w >= np.pi:
        b_lo = 0
        b_hi = nb - 1
    else:
        b_lo = math.floor((c - w + np.pi) / (2 * np.pi) * nb)
        b_hi = math.floor((c + w + np.pi) / (2 * np.pi) * nb)
        if b_hi - b_lo >= nb:
            b_lo = 0
            b_hi = nb - 1
    base = lk * nb
    for bb in range(b_lo, b_hi + 1):
        b = bb % nb
        s = bstart[base + b]
        e = bstart[base + b + 1]
        if e <= s:
            continue
        if bkey[e - 1] < lo or bkey[s] > hi:
            continue
        # one binary search for the start, then a scan up to the end of the key range
        a = _lower_bound(bkey, s, e, lo)
        for j in range(a, e):
            if bkey[j] > hi:
                break
            if abs(_wrap(hp[j, 4] - c)) > w:
                continue
            if nout == out.shape[0]:
                return nout
            out[nout] = j
            nout += 1
    return nout


@njit(cache=True, fastmath=_FAST)
def _find_seeds(
    hp,
    nb,
    bstart,
    bkey,
    lay_barrel,
    lay_pos,
    lay_rmin,
    lay_kmin,
    lay_kmax,
    triplets,
    min_radius,
    max_z0,
    max_d0,
    max_cot,
    seed_sigma,
    ms_per_layer,
    max_seeds,
    used,
):
    """Triplets passing the cuts: (n, 3) hit indices and their quality (chi2, smaller is
    better). For each middle hit and layer triplet only the ``max_seeds`` best are kept.

    Hits flagged in ``used`` are not seeded from. The hits (all arrays, and the indices
    returned) are in the order of the seeding grid (layer, phi bin, ``bkey``), see
    :func:`_bin_query`.
    """
    cap = 4096
    out = np.empty((cap, 3), np.int64)
    qual = np.empty(cap)
    n = 0
    sin_half = 1.0 / (2.0 * min_radius)
    min_pt_seed = PT_PER_MM * min_radius
    inner = np.empty(4096, np.int64)
    outer = np.empty(4096, np.int64)
    okey = np.empty(4096)
    # the doublets of a middle hit: inner hit, cot theta, phi difference, chord; and their
    # window on the outer layer at hand (valid, key range, phi centre and half-width)
    d_i0 = np.empty(4096, np.int64)
    d_cot = np.empty(4096)
    d_dphi = np.empty(4096)
    d_c01 = np.empty(4096)
    d_ok = np.zeros(4096, np.bool_)
    d_klo = np.empty(4096)
    d_khi = np.empty(4096)
    d_phi2 = np.empty(4096)
    d_w2 = np.empty(4096)
    # the layer triplets come sorted by their (inner, middle) layer pair: the doublets of
    # a middle hit are built once for all the outer layers of its pair
    n_t = triplets.shape[0]
    max_group = 1
    t0 = 0
    while t0 < n_t:
        t1 = t0
        while (
            t1 < n_t and triplets[t1, 0] == triplets[t0, 0] and triplets[t1, 1] == triplets[t0, 1]
        ):
            t1 += 1
        max_group = max(max_group, t1 - t0)
        t0 = t1
    loc_i = np.empty((max_group * _MAX_SEEDS_PER_HIT, 3), np.int64)
    loc_q = np.empty(max_group * _MAX_SEEDS_PER_HIT)
    nloc = np.zeros(max_group, np.int64)
    worst = np.zeros(max_group, np.int64)
    # asin(r / 2R_min) of every hit: the phi turn of a min_pt track from the beamline
    as_r = np.empty(hp.shape[0])
    for i in range(hp.shape[0]):
        as_r[i] = math.asin(min(1.0, hp[i, 3] * sin_half))
    t0 = 0
    while t0 < n_t:
        l0 = triplets[t0, 0]
        l1 = triplets[t0, 1]
        t1 = t0
        while t1 < n_t and triplets[t1, 0] == l0 and triplets[t1, 1] == l1:
            t1 += 1
        s1 = bstart[l1 * nb]
        e1 = bstart[(l1 + 1) * nb]
        r0min = max(lay_rmin[l0], 20.0)
        as0 = math.asin(min(1.0, r0min * sin_half))
        for i1 in range(s1, e1):
            if used[i1]:
                continue
            r1 = hp[i1, 3]
            z1 = hp[i1, 2]
            x1 = hp[i1, 0]
            y1 = hp[i1, 1]
            phi1 = hp[i1, 4]
            as1 = as_r[i1]
            inv_r1 = 1.0 / r1
            w0 = as1 - as0 + max_d0 * (1.0 / r0min - inv_r1) + 0.005
            # key range of the inner layer allowed by |z0| <= max_z0
            if lay_barrel[l0]:
                f = lay_pos[l0] / r1
                klo = z1 * f - max_z0 * (1.0 - f) - 1.0
                khi = z1 * f + max_z0 * (1.0 - f) + 1.0
            else:
                zl = lay_pos[l0]
                ra = r1 * (zl + max_z0) / (z1 + max_z0) if z1 + max_z0 != 0.0 else -1.0
                rb = r1 * (zl - max_z0) / (z1 - max_z0) if z1 - max_z0 != 0.0 else -1.0
                if ra <= 0.0 or rb <= 0.0:
                    klo = 0.0
                    khi = 1e9
                else:
                    klo = min(ra, rb) - 1.0
                    khi = max(ra, rb) + 1.0
            if khi < lay_kmin[l0] or klo > lay_kmax[l0]:
                continue
            ni = _bin_query(l0, phi1, w0, klo, khi, nb, bstart, bkey, hp, inner, 0)
            for g in range(t1 - t0):
                nloc[g] = 0
                worst[g] = 0
            # the doublets of this middle hit
            nd = 0
            for ii in range(ni):
                i0 = inner[ii]
                if used[i0]:
                    continue
                r0 = hp[i0, 3]
                dr01 = r1 - r0
                if dr01 < 1.0:
                    continue
                cot01 = (z1 - hp[i0, 2]) / dr01
                if abs(cot01) > max_cot:
                    continue
                if abs(hp[i0, 2] - r0 * cot01) > max_z0:
                    continue
                dphi01 = _wrap(phi1 - hp[i0, 4])
                lim = as1 - as_r[i0] + max_d0 * (1.0 / r0 - inv_r1) + 0.003
                if abs(dphi01) > lim:
                    continue
                d_i0[nd] = i0
                d_cot[nd] = cot01
                d_dphi[nd] = dphi01
                d_c01[nd] = math.sqrt((x1 - hp[i0, 0]) ** 2 + (y1 - hp[i0, 1]) ** 2)
                nd += 1
            if nd == 0:
                continue
            for g in range(t1 - t0):
                l2 = triplets[t0 + g, 2]
                # the window of each doublet on the outer layer, and their union
                u_klo = np.inf
                u_khi = -np.inf
                u_plo = np.inf
                u_phi = -np.inf
                for d in range(nd):
                    d_ok[d] = False
                    cot01 = d_cot[d]
                    r0 = hp[d_i0[d], 3]
                    dr01 = r1 - r0
                    if lay_barrel[l2]:
                        r2p = lay_pos[l2]
                    elif cot01 != 0.0:
                        r2p = r1 + (lay_pos[l2] - z1) / cot01
                    else:
                        continue
                    if r2p <= r1:
                        continue
                    # longitudinal window: cot theta within the seed cut (MS at min_pt and
                    # hit resolution), with margin for chord vs arc length
                    nrm2 = 1.0 + cot01 * cot01
                    dcot = 1.3 * seed_sigma * (
                        ms_per_layer / min_pt_seed * nrm2 + 0.03 / (r2p - r1) + 0.03 / dr01
                    ) + 0.01 * abs(cot01)
                    if lay_barrel[l2]:
                        zc = z1 + cot01 * (r2p - r1)
                        k2lo = zc - dcot * (r2p - r1) - 1.0
                        k2hi = zc + dcot * (r2p - r1) + 1.0
                    else:
                        # r = r1 + dzl / cot over the cot range; dzl and cot01 have the
                        # same sign here (r2p > r1): the steepest cot gives the smallest
                        # radius, and the range is open outwards when it reaches cot = 0
                        dzl = lay_pos[l2] - z1
                        c_steep = cot01 + dcot if cot01 > 0.0 else cot01 - dcot
                        c_flat = cot01 - dcot if cot01 > 0.0 else cot01 + dcot
                        k2lo = r1 + dzl / c_steep - 1.0
                        if c_flat * cot01 <= 0.0:
                            k2hi = 1e9
                        else:
                            k2hi = r1 + dzl / c_flat + 1.0
                    # the doublet's extrapolation misses the hits of the outer layer
                    if k2hi < lay_kmin[l2] or k2lo > lay_kmax[l2]:
                        continue
                    off = d_dphi[d] * (r2p - r1) / dr01
                    dterm = abs(1.0 / r2p - inv_r1 - (inv_r1 - 1.0 / r0) * (r2p - r1) / dr01)
                    w2 = (
                        max_d0 * dterm
                        + ms_per_layer / min_pt_seed * (r2p - r1) / r1 * 0.5
                        + 0.1 * (r2p - r1) * sin_half * (r2p * sin_half) ** 2
                        + 0.004
                    )
                    d_ok[d] = True
                    d_klo[d] = k2lo
                    d_khi[d] = k2hi
                    d_phi2[d] = phi1 + off
                    d_w2[d] = w2
                    u_klo = min(u_klo, k2lo)
                    u_khi = max(u_khi, k2hi)
                    u_plo = min(u_plo, off - w2)
                    u_phi = max(u_phi, off + w2)
                if u_khi < u_klo:
                    continue
                # one grid query for all the doublets, the hits sorted by key: each doublet
                # then takes its window by a binary search (a query per doublet costs 3x)
                no = _bin_query(
                    l2,
                    _wrap(phi1 + 0.5 * (u_plo + u_phi)),
                    0.5 * (u_phi - u_plo),
                    u_klo,
                    u_khi,
                    nb,
                    bstart,
                    bkey,
                    hp,
                    outer,
                    0,
                )
                for sa in range(1, no):  # insertion sort by key (a few tens of hits)
                    sv = outer[sa]
                    sk = bkey[sv]
                    sb = sa - 1
                    while sb >= 0 and bkey[outer[sb]] > sk:
                        outer[sb + 1] = outer[sb]
                        sb -= 1
                    outer[sb + 1] = sv
                for sa in range(no):
                    okey[sa] = bkey[outer[sa]]
                base = g * _MAX_SEEDS_PER_HIT
                for d in range(nd):
                    if not d_ok[d]:
                        continue
                    i0 = d_i0[d]
                    x0 = hp[i0, 0]
                    y0 = hp[i0, 1]
                    dz01 = z1 - hp[i0, 2]
                    c01 = d_c01[d]
                    phi2 = d_phi2[d]
                    w2 = d_w2[d]
                    k2hi = d_khi[d]
                    for oo in range(_lower_bound(okey, 0, no, d_klo[d]), no):
                        if okey[oo] > k2hi:
                            break
                        i2 = outer[oo]
                        if abs(_wrap(hp[i2, 4] - phi2)) > w2:
                            continue
                        if used[i2]:
                            continue
                        r2 = hp[i2, 3]
                        dr12 = r2 - r1
                        if dr12 < 1.0:
                            continue
                        xc, yc, rad, _ = _circle3(x0, y0, x1, y1, hp[i2, 0], hp[i2, 1])
                        if rad < min_radius:
                            continue
                        d0 = abs(math.sqrt(xc * xc + yc * yc) - rad)
                        if d0 > max_d0:
                            continue
                        c12 = math.sqrt((hp[i2, 0] - x1) ** 2 + (hp[i2, 1] - y1) ** 2)
                        s01 = 2 * rad * math.asin(min(1.0, c01 / (2 * rad)))
                        s12 = 2 * rad * math.asin(min(1.0, c12 / (2 * rad)))
                        t01 = dz01 / s01
                        t12 = (hp[i2, 2] - z1) / s12
                        tl = 0.5 * (t01 + t12)
                        pt = PT_PER_MM * rad
                        p = pt * math.sqrt(1.0 + tl * tl)
                        sig = (ms_per_layer / p) * (1.0 + tl * tl) + 0.03 / s12 + 0.03 / s01
                        chi = (t12 - t01) / sig
                        if abs(chi) > seed_sigma:
                            continue
                        q = chi * chi + (d0 / max_d0) ** 2
                        # keep the max_seeds best of this middle hit and layer triplet
                        # (replace the worst)
                        nl = nloc[g]
                        if nl < max_seeds:
                            loc_i[base + nl, 0] = i0
                            loc_i[base + nl, 1] = i1
                            loc_i[base + nl, 2] = i2
                            loc_q[base + nl] = q
                            nloc[g] = nl + 1
                            if nl + 1 == max_seeds:
                                w = 0
                                for k in range(max_seeds):
                                    if loc_q[base + k] > loc_q[base + w]:
                                        w = k
                                worst[g] = w
                        elif q < loc_q[base + worst[g]]:
                            w = worst[g]
                            loc_i[base + w, 0] = i0
                            loc_i[base + w, 1] = i1
                            loc_i[base + w, 2] = i2
                            loc_q[base + w] = q
                            w = 0
                            for k in range(max_seeds):
                                if loc_q[base + k] > loc_q[base + w]:
                                    w = k
                            worst[g] = w
            total = 0
            for g in range(t1 - t0):
                total += nloc[g]
            if n + total > cap:
                cap = 2 * cap + total
                o2 = np.empty((cap, 3), np.int64)
                o2[:n] = out[:n]
                out = o2
                q2 = np.empty(cap)
                q2[:n] = qual[:n]
                qual = q2
            for g in range(t1 - t0):
                base = g * _MAX_SEEDS_PER_HIT
                for k in range(nloc[g]):
                    out[n, 0] = loc_i[base + k, 0]
                    out[n, 1] = loc_i[base + k, 1]
                    out[n, 2] = loc_i[base + k, 2]
                    qual[n] = loc_q[base + k]
                    n += 1
        t0 = t1
    return out[:n], qual[:n]


@njit(cache=True, inline="always", fastmath=_FAST)
def _fit_circle(xs, ys, ws, n):
    """Weighted circle fit of Karimaki (NIM A305 (1991) 187): centre and radius (mm).

    Non-iterative and well conditioned for the nearly straight arcs of high-pT tracks (the
    algebraic Kasa fit is biased towards small radii on short arcs); lines get a radius of
    1e7 mm. Coordinates are taken relative to the middle point.
    """
    x0 = xs[n // 2]
    y0 = ys[n // 2]
    sw = xm = ym = xx = xy = yy = xr = yr = rr = r2m = 0.0
    for i in range(n):
        w = ws[i]
        u = xs[i] - x0
        v = ys[i] - y0
        q = u * u + v * v
        sw += w
        xm += w * u
        ym += w * v
        xx += w * u * u
        xy += w * u * v
        yy += w * v * v
        xr += w * u * q
        yr += w * v * q
        rr += w * q * q
        r2m += w * q
    xm /= sw
    ym /= sw
    xx /= sw
    xy /= sw
    yy /= sw
    xr /= sw
    yr /= sw
    rr /= sw
    r2m /= sw
    cxx = xx - xm * xm
    cxy = xy - xm * ym
    cyy = yy - ym * ym
    cxr = xr - xm * r2m
    cyr = yr - ym * r2m
    crr = rr - r2m * r2m
    if crr <= 0.0:
        return x0 + 1e7, y0, 1e7
    q1 = crr * cxy - cxr * cyr
    q2 = crr * (cxx - cyy) - cxr * cxr + cyr * cyr
    ph = 0.5 * _atan2(2.0 * q1, q2)
    sp, cp = _sincos(ph)
    kappa = (sp * cxr - cp * cyr) / crr
    delta = -kappa * r2m + sp * xm - cp * ym
    root = math.sqrt(max(1.0 - 4.0 * delta * kappa, 1e-12))
    rho = 2.0 * kappa / root
    d = 2.0 * delta / (1.0 + root)
    if abs(rho) < 1e-7:
        rho = 1e-7 if rho >= 0 else -1e-7
    k = 1.0 / rho + d
    return x0 + k * sp, y0 - k * cp, 1.0 / abs(rho)


@njit(cache=True, inline="always", fastmath=_FAST)
def _search(
    lk,
    px,
    py,
    pz,
    dx,
    dy,
    dz,
    w_rphi,
    w_long,
    hp,
    module,
    grid_start,
    lay_other,
    used,
    lay_barrel,
    skip_module,
    cand,
    cchi,
):
    """Free hits of layer ``lk`` in the window around the point p moving along d.

    The prediction is moved along d to each hit's own radius (barrel) or z (disk) before
    the residuals (r-phi, and z or r) are compared with the half widths ``w_rphi, w_long``.
    Returns the best hit (-1 if none) and the number of candidates written to ``cand`` /
    ``cchi`` (normalised chi2). Hits on module ``skip_module`` are ignored.
    """
    pr = math.sqrt(px * px + py * py)
    if pr < 1e-6:
        return -1, 0
    cphi = px / pr
    sphi = py / pr
    wphi = (w_rphi + 0.05 * w_long) / pr + 0.002
    c = _atan2(py, px)
    barrel = lay_barrel[lk]
    # the key range (z on a barrel, r on a disk) that can hold a hit within the window:
    # the prediction moves along d to the hit's r (barrel) or z (disk), at most to the
    # extremes of the layer's hits (``lay_other``)
    if barrel:
        vr = dx * cphi + dy * sphi
        if abs(vr) < 1e-3:
            return -1, 0
        t_max = max(lay_other[lk, 1] - pr, pr - lay_other[lk, 0], 0.0) / abs(vr)
        klo = pz - t_max * abs(dz) - w_long
        khi = pz + t_max * abs(dz) + w_long
        kcol = 2
    else:
        if abs(dz) < 1e-6:
            return -1, 0
        t_max = max(lay_other[lk, 1] - pz, pz - lay_other[lk, 0], 0.0) / abs(dz)
        d_rad = abs(dx * cphi + dy * sphi)
        d_perp = abs(-dx * sphi + dy * cphi)
        a_max = pr + t_max * d_rad + w_long
        b_max = t_max * d_perp + w_rphi
        klo = pr - t_max * d_rad - w_long
        khi = math.sqrt(a_max * a_max + b_max * b_max)
        kcol = 3
    best_h = -1
    best_c = 1e30
    nc = 0
    b_lo, b_hi = _bin_span(c, wphi)
    for bb in range(b_lo, b_hi + 1):
        s = grid_start[lk * _PHI_BINS + bb % _PHI_BINS]
        e = grid_start[lk * _PHI_BINS + bb % _PHI_BINS + 1]
        if e <= s or hp[e - 1, kcol] < klo or hp[s, kcol] > khi:
            continue
        for h in range(_lower_bound_col(hp, kcol, s, e, klo), e):
            if hp[h, kcol] > khi:
                break
            if used[h] or module[h] == skip_module or abs(_wrap(hp[h, 4] - c)) > wphi:
                continue
            if barrel:
                t = (hp[h, 3] - pr) / vr
            else:
                t = (hp[h, 2] - pz) / dz
            ex = hp[h, 0] - (px + t * dx)
            ey = hp[h, 1] - (py + t * dy)
            res_rphi = -ex * sphi + ey * cphi
            res_long = hp[h, 2] - (pz + t * dz) if barrel else ex * cphi + ey * sphi
            if abs(res_rphi) > w_rphi or abs(res_long) > w_long:
                continue
            c2 = (res_rphi / w_rphi) ** 2 + (res_long / w_long) ** 2
            if nc < cand.shape[0]:
                cand[nc] = h
                cchi[nc] = c2
                nc += 1
            if c2 < best_c:
                best_c = c2
                best_h = h
    return best_h, nc


@njit(cache=True, inline="always", fastmath=_FAST)
def _before(a, b, barrel, hp):
    """True when hit a comes before hit b on the same layer (smaller r, or smaller |z|)."""
    if barrel:
        return hp[a, 3] < hp[b, 3]
    return abs(hp[a, 2]) < abs(hp[b, 2])


@njit(cache=True, inline="always", fastmath=_FAST)
def _window(lk, ms, nrm, tanl, f_rphi, f_z, window_sigma, sig_rphi, sig_long, lay_barrel):
    """Half-widths (r-phi, longitudinal) of the hit search window on layer ``lk``:
    ``window_sigma`` times the hit resolution, the multiple-scattering displacement ``ms``
    (mm, transverse) and the extrapolation's fit variances ``f_rphi``, ``f_z`` in quadrature;
    on a disk the longitudinal direction is r, stretched by 1 / |tan lambda|."""
    w_rphi = window_sigma * math.sqrt(sig_rphi[lk] ** 2 + ms * ms + f_rphi)
    if lay_barrel[lk]:
        return w_rphi, window_sigma * math.sqrt(sig_long[lk] ** 2 + (ms * nrm) ** 2 + f_z)
    ct = 1.0 / max(abs(tanl), 0.05)
    return w_rphi, window_sigma * math.sqrt(
        sig_long[lk] ** 2 + (ms * nrm * ct) ** 2 + f_z * ct * ct
    )


@njit(cache=True, inline="always", fastmath=_FAST)
def _sibling(
    lk,
    hsrc,
    h,
    hmod,
    xc,
    yc,
    rad,
    sense,
    tanl,
    theta_err,
    window_sigma,
    sibling_chi2,
    hp,
    module,
    grid_start,
    lay_other,
    used,
    lay_barrel,
    sig_rphi,
    sig_long,
):
    """The siblings of hit ``h`` of ``hsrc`` (its coordinates x, y, z, r, phi; on module
    ``hmod``) on layer ``lk``: the free hits of ``hp`` on other modules of the layer nearest
    to the helix through it, the best one per module, best first; up to three (-1 for none),
    within ``sibling_chi2``. ``hsrc`` is ``hp`` itself during following; the recovery
    searches the free hits for the siblings of the track's hits.
    """
    px = hsrc[h, 0]
    py = hsrc[h, 1]
    pz = hsrc[h, 2]
    pr = hsrc[h, 3]
    hphi = hsrc[h, 4]
    nrm = math.sqrt(1.0 + tanl * tanl)
    dx = -sense * (py - yc) / rad / nrm
    dy = sense * (px - xc) / rad / nrm
    dz = tanl / nrm
    cphi = px / pr
    sphi = py / pr
    barrel = lay_barrel[lk]
    s2r = 2.0 * sig_rphi[lk] ** 2
    s2l = 2.0 * sig_long[lk] ** 2
    t_max = _SIBLING_MAX_PATH
    wmax = window_sigma * math.sqrt(s2r + (theta_err * t_max) ** 2)
    # the best three modules so far: hit, chi2, module (hit -1: empty)
    b0 = b1 = b2 = -1
    c0 = c1 = c2 = sibling_chi2
    m0 = m1 = m2 = -1
    # bound on |z - pz| (barrel) or |r - pr| (disk) of an accepted candidate (|t| <= t_max,
    # chi2 < sibling_chi2): the key range searched
    m2max = (theta_err * t_max) ** 2
    ws2 = window_sigma * window_sigma * sibling_chi2
    if barrel:
        kbound = t_max * abs(dz) + math.sqrt(ws2 * (s2l + m2max * nrm * nrm)) + 0.01
        kcol = 2
        kc = pz
    else:
        ctm = 1.0 / max(abs(tanl), 0.05)
        kbound = (
            t_max * math.sqrt(dx * dx + dy * dy)
            + math.sqrt(ws2 * (s2r + m2max + s2l + m2max * nrm * nrm * ctm * ctm))
            + 0.01
        )
        kcol = 3
        kc = pr
    wphi = wmax / pr + 0.002
    b_lo, b_hi = _bin_span(hphi, wphi)
    for bb in range(b_lo, b_hi + 1):
        s = grid_start[lk * _PHI_BINS + bb % _PHI_BINS]
        e = grid_start[lk * _PHI_BINS + bb % _PHI_BINS + 1]
        if e <= s or hp[e - 1, kcol] < kc - kbound or hp[s, kcol] > kc + kbound:
            continue
        for k in range(_lower_bound_col(hp, kcol, s, e, kc - kbound), e):
            if hp[k, kcol] > kc + kbound:
                break
            if used[k] or module[k] == hmod:
                continue
            if abs(_wrap(hp[k, 4] - hphi)) > wphi:
                continue
            if barrel:
                vr = dx * cphi + dy * sphi
                if abs(vr) < 1e-3:
                    continue
                t = (hp[k, 3] - pr) / vr
            else:
                if abs(dz) < 1e-6:
                    continue
                t = (hp[k, 2] - pz) / dz
            if abs(t) > t_max:
                continue
            ex = hp[k, 0] - (px + t * dx)
            ey = hp[k, 1] - (py + t * dy)
            res_rphi = -ex * sphi + ey * cphi
            res_long = hp[k, 2] - (pz + t * dz) if barrel else ex * cphi + ey * sphi
            m2 = (theta_err * t) ** 2
            v_rphi = window_sigma * window_sigma * (s2r + m2)
            if barrel:
                v_long = window_sigma * window_sigma * (s2l + m2 * nrm * nrm)
            else:
                ct = 1.0 / max(abs(tanl), 0.05)
                v_long = window_sigma * window_sigma * (s2l + m2 * nrm * nrm * ct * ct)
            c = res_rphi * res_rphi / v_rphi + res_long * res_long / v_long
            if c >= c2 and c >= c1 and c >= c0:
                continue
            mk = module[k]
            if b0 >= 0 and mk == m0:
                if c < c0:
                    b0, c0 = k, c
                continue
            if b1 >= 0 and mk == m1:
                if c < c1:
                    b1, c1 = k, c
                    if c1 < c0:
                        b0, c0, m0, b1, c1, m1 = b1, c1, m1, b0, c0, m0
                continue
            if b2 >= 0 and mk == m2:
                if c < c2:
                    b2, c2 = k, c
                    if c2 < c1:
                        b1, c1, m1, b2, c2, m2 = b2, c2, m2, b1, c1, m1
                        if c1 < c0:
                            b0, c0, m0, b1, c1, m1 = b1, c1, m1, b0, c0, m0
                continue
            # a new module: it enters the three best when better than the third
            if c >= c2:
                continue
            if c < c0:
                b2, c2, m2 = b1, c1, m1
                b1, c1, m1 = b0, c0, m0
                b0, c0, m0 = k, c, mk
            elif c < c1:
                b2, c2, m2 = b1, c1, m1
                b1, c1, m1 = k, c, mk
            else:
                b2, c2, m2 = k, c, mk
    return b0, b1, b2


@njit(cache=True, inline="always", fastmath=_FAST)
def _add_with_siblings(
    buf,
    n,
    h,
    lk,
    xc,
    yc,
    rad,
    sense,
    tanl,
    theta_err,
    window_sigma,
    sibling_chi2,
    hp,
    module,
    grid_start,
    lay_other,
    used,
    lay_barrel,
    sig_rphi,
    sig_long,
    inward,
):
    """Append hit ``h`` of layer ``lk`` and up to ``_MAX_SIBLINGS`` siblings to ``buf``,
    ordered along the track; the new length."""
    start = n
    buf[n] = h
    n += 1
    sibs = _sibling(
        lk,
        hp,
        h,
        module[h],
        xc,
        yc,
        rad,
        sense,
        tanl,
        theta_err,
        window_sigma,
        sibling_chi2,
        hp,
        module,
        grid_start,
        lay_other,
        used,
        lay_barrel,
        sig_rphi,
        sig_long,
    )
    for sib in sibs:
        if sib < 0:
            break
        buf[n] = sib
        n += 1
    # insertion sort of the layer's hits along the track (outward: r or |z| increasing)
    for i in range(start + 1, n):
        v = buf[i]
        j = i - 1
        while j >= start and _before(v, buf[j], lay_barrel[lk], hp) != inward:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v
    return n


@njit(cache=True, fastmath=_FAST)
def _follow(
    seed,
    hp,
    hlayer,
    module,
    grid_start,
    lay_other,
    used,
    lay_barrel,
    lay_pos,
    lay_rmin,
    lay_rmax,
    lay_zmin,
    lay_zmax,
    sig_rphi,
    sig_long,
    fit_hits,
    window_sigma,
    ms_per_layer,
    max_holes,
    sibling_chi2,
    buf,
    visited,
):
    """Follow one seed outwards; the track's hits go to ``buf``, their number is returned."""
    n_layers = lay_pos.shape[0]
    for k in range(n_layers):
        visited[k] = False
    cand = np.empty(32, np.int64)
    cchi = np.empty(32)
    # ---- the seed and the siblings of its hits
    xc, yc, rad, sense = _circle3(
        hp[seed[0], 0],
        hp[seed[0], 1],
        hp[seed[1], 0],
        hp[seed[1], 1],
        hp[seed[2], 0],
        hp[seed[2], 1],
    )
    a0 = _atan2(hp[seed[0], 1] - yc, hp[seed[0], 0] - xc)
    a2 = _atan2(hp[seed[2], 1] - yc, hp[seed[2], 0] - xc)
    tanl = (hp[seed[2], 2] - hp[seed[0], 2]) / max(rad * abs(_wrap(a2 - a0)), 1e-6)
    nrm = math.sqrt(1.0 + tanl * tanl)
    n = 0
    for k in range(3):
        h = seed[k]
        lk = hlayer[h]
        visited[lk] = True
        p_seed = PT_PER_MM * rad * nrm
        n = _add_with_siblings(
            buf,
            n,
            h,
            lk,
            xc,
            yc,
            rad,
            sense,
            tanl,
            _SIBLING_MS / p_seed + _SIBLING_DIR_ERR,
            window_sigma,
            sibling_chi2,
            hp,
            module,
            grid_start,
            lay_other,
            used,
            lay_barrel,
            sig_rphi,
            sig_long,
            False,
        )
    n = _extend(
        buf,
        n,
        hp,
        hlayer,
        module,
        grid_start,
        lay_other,
        used,
        lay_barrel,
        lay_pos,
        lay_rmin,
        lay_rmax,
        lay_zmin,
        lay_zmax,
        sig_rphi,
        sig_long,
        fit_hits,
        window_sigma,
        ms_per_layer,
        max_holes,
        sibling_chi2,
        visited,
        cand,
        cchi,
        False,  # outward
    )
    # inward: the same search on the reversed track (layers inside the seed)
    buf[:n] = buf[:n][::-1].copy()
    n = _extend(
        buf,
        n,
        hp,
        hlayer,
        module,
        grid_start,
        lay_other,
        used,
        lay_barrel,
        lay_pos,
        lay_rmin,
        lay_rmax,
        lay_zmin,
        lay_zmax,
        sig_rphi,
        sig_long,
        fit_hits,
        window_sigma,
        ms_per_layer,
        max_holes,
        sibling_chi2,
        visited,
        cand,
        cchi,
        True,  # inward
    )
    return n


@njit(cache=True, fastmath=_FAST)
def _extend(
    buf,
    n,
    hp,
    hlayer,
    module,
    grid_start,
    lay_other,
    used,
    lay_barrel,
    lay_pos,
    lay_rmin,
    lay_rmax,
    lay_zmin,
    lay_zmax,
    sig_rphi,
    sig_long,
    fit_hits,
    window_sigma,
    ms_per_layer,
    max_holes,
    sibling_chi2,
    visited,
    cand,
    cchi,
    inward,
):
    """Extend the track ``buf[:n]`` layer by layer beyond its last hit; the new length.

    ``inward`` False: the helix must move away from the beamline (first half turn);
    True: towards it (the track is stored in reverse order).
    """
    n_layers = lay_pos.shape[0]
    out_sign = -1.0 if inward else 1.0
    h0 = buf[0]
    h1 = buf[n - 1]
    tanl = (hp[h1, 2] - hp[h0, 2]) / max(
        math.sqrt((hp[h1, 0] - hp[h0, 0]) ** 2 + (hp[h1, 1] - hp[h0, 1]) ** 2), 1e-3
    )
    xs = np.empty(fit_hits)
    ys = np.empty(fit_hits)
    ws = np.empty(fit_hits)
    holes = 0
    # the reference point where the extrapolation starts (last hit, or last prediction)
    hole_ref = False
    ref_alpha = 0.0
    ref_z = 0.0
    while n < _MAX_TRACK_HITS - 1 - _MAX_SIBLINGS:
        # ---- fit: circle to the last hits, line z(s) to the same hits
        m = min(n, fit_hits)
        for k in range(m):
            h = buf[n - m + k]
            xs[k] = hp[h, 0]
            ys[k] = hp[h, 1]
            ws[k] = 1.0 / (sig_rphi[hlayer[h]] ** 2 + 1e-4)
        if m == 3:
            xc, yc, rad, _ = _circle3(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])
        else:
            xc, yc, rad = _fit_circle(xs, ys, ws, m)
        a_first = _atan2(ys[0] - yc, xs[0] - xc)
        a_last = _atan2(ys[m - 1] - yc, xs[m - 1] - xc)
        sense = 1.0 if _wrap(a_last - a_first) >= 0 else -1.0
        # z(s): weighted line; s = arc length from the first fitted hit
        sw = swx = swy = swxx = swxy = 0.0
        for k in range(m):
            h = buf[n - m + k]
            s = rad * abs(_wrap(_atan2(hp[h, 1] - yc, hp[h, 0] - xc) - a_first))
            lk = hlayer[h]
            # z(s) on a disk: z is exact, s inherits the error of r
            sz = sig_long[lk] if lay_barrel[lk] else 0.02 + sig_long[lk] * abs(tanl)
            w = 1.0 / (sz * sz)
            sw += w
            swx += w * s
            swy += w * hp[h, 2]
            swxx += w * s * s
            swxy += w * s * hp[h, 2]
        den = sw * swxx - swx * swx
        if den <= 1e-12 * sw * sw:
            break
        # resolution of the fitted hits, and the lever arm (xy chord) of the fit
        s2rphi = 0.0
        for k in range(m):
            s2rphi += sig_rphi[hlayer[buf[n - m + k]]] ** 2
        s2rphi = s2rphi / m + 0.01**2
        lever = max(math.sqrt((xs[m - 1] - xs[0]) ** 2 + (ys[m - 1] - ys[0]) ** 2), 1.0)
        s2z = 1.0 / sw * m
        tanl = (sw * swxy - swx * swy) / den
        z_at0 = (swy - tanl * swx) / sw
        hl = buf[n - 1]
        a_hit = _atan2(hp[hl, 1] - yc, hp[hl, 0] - xc)
        if not hole_ref:
            ref_alpha = a_hit
            ref_z = z_at0 + tanl * rad * abs(_wrap(a_hit - a_first))
        s_hit = rad * sense * _wrap(ref_alpha - a_hit)  # >= 0: arc from the last hit to ref
        # ---- next layer: the smallest positive arc length to a crossing inside an envelope
        best_s = 1e30
        best_l = -1
        best_a = 0.0
        d = math.sqrt(xc * xc + yc * yc)
        # radius of the reference point: an outward (inward) crossing of a barrel inside
        # (outside) it would come after the turning point of the helix
        sr, cr = _sincos(ref_alpha)
        r_ref = math.sqrt((xc + rad * cr) ** 2 + (yc + rad * sr) ** 2)
        for lk in range(n_layers):
            if visited[lk]:
                continue
            if lay_barrel[lk]:
                rl = lay_pos[lk]
                if d < 1e-9 or rl > d + rad or rl < abs(rad - d):
                    continue
                if (rl < r_ref - 1.0) if not inward else (rl > r_ref + 1.0):
                    continue
                # the arc to a crossing is at least as long as the radial distance
                if abs(rl - r_ref) >= best_s:
                    continue
                aa = (d * d + rl * rl - rad * rad) / (2 * d)
                hh = math.sqrt(max(0.0, rl * rl - aa * aa))
                ex = xc / d
                ey = yc / d
                for sgn in (-1.0, 1.0):
                    px = aa * ex - sgn * hh * ey
                    py = aa * ey + sgn * hh * ex
                    al = _atan2(py - yc, px - xc)
                    da = sense * _wrap(al - ref_alpha)
                    if da < 0:
                        da += 2 * np.pi
                    s = da * rad
                    if s < 0.5 or s >= best_s:
                        continue
                    zz = ref_z + tanl * s
                    if zz < lay_zmin[lk] - 1.0 or zz > lay_zmax[lk] + 1.0:
                        continue
                    # outward only (inward when asked): tangent . position > 0
                    if out_sign * (-sense * (py - yc) * px + sense * (px - xc) * py) <= 0:
                        continue
                    best_s = s
                    best_l = lk
                    best_a = al
            else:
                if abs(tanl) < 1e-9:
                    continue
                s = (lay_pos[lk] - ref_z) / tanl
                if s < 0.5 or s >= best_s or s > np.pi * rad:
                    continue
                al = ref_alpha + sense * s / rad
                s_al, c_al = _sincos(al)
                px = xc + rad * c_al
                py = yc + rad * s_al
                rr = math.sqrt(px * px + py * py)
                if rr < lay_rmin[lk] - 1.0 or rr > lay_rmax[lk] + 1.0:
                    continue
                if out_sign * (-sense * (py - yc) * px + sense * (px - xc) * py) <= 0:
                    continue
                best_s = s
                best_l = lk
                best_a = al
        if best_l < 0:
            break
        lk = best_l
        visited[lk] = True
        s_al, c_al = _sincos(best_a)
        px = xc + rad * c_al
        py = yc + rad * s_al
        pz = ref_z + tanl * best_s
        nrm = math.sqrt(1.0 + tanl * tanl)
        dx = -sense * (py - yc) / rad / nrm
        dy = sense * (px - xc) / rad / nrm
        dz = tanl / nrm
        # window: resolution (+ fit error) and multiple scattering over the step
        p = PT_PER_MM * rad * nrm
        step = (best_s + s_hit) * nrm
        ms = ms_per_layer / p * step
        # fit error of the extrapolation (parabola/line fits of m points over the lever arm,
        # Gluckstern-like): u = distance from the centre of the fitted arc / lever arm
        u = 0.5 + best_s / lever
        f_rphi = s2rphi / m * (2.25 + 12.0 * u * u + 180.0 * u**4)
        f_z = s2z / m * (1.0 + 12.0 * u * u)
        w_rphi, w_long = _window(
            lk, ms, nrm, tanl, f_rphi, f_z, window_sigma, sig_rphi, sig_long, lay_barrel
        )
        best_h, _ = _search(
            lk,
            px,
            py,
            pz,
            dx,
            dy,
            dz,
            w_rphi,
            w_long,
            hp,
            module,
            grid_start,
            lay_other,
            used,
            lay_barrel,
            -1,
            cand,
            cchi,
        )
        if best_h < 0:
            holes += 1
            if holes > max_holes:
                break
            hole_ref = True
            ref_alpha = best_a
            ref_z = pz
            continue
        hole_ref = False
        theta_err = _SIBLING_MS / p + _SIBLING_DIR_ERR
        n = _add_with_siblings(
            buf,
            n,
            best_h,
            lk,
            xc,
            yc,
            rad,
            sense,
            tanl,
            theta_err,
            window_sigma,
            sibling_chi2,
            hp,
            module,
            grid_start,
            lay_other,
            used,
            lay_barrel,
            sig_rphi,
            sig_long,
            inward,
        )
    return n


@njit(cache=True, fastmath=_FAST)
def _fill_gaps(
    buf,
    n,
    hp,
    hlayer,
    module,
    grid_start,
    lay_other,
    used,
    lay_barrel,
    lay_pos,
    lay_rmin,
    lay_rmax,
    lay_zmin,
    lay_zmax,
    sig_rphi,
    sig_long,
    fit_hits,
    window_sigma,
    ms_per_layer,
    sibling_chi2,
    visited,
    cand,
    cchi,
):
    """Search the layers that the track crosses between two of its hits but that were
    never searched (the layers skipped by its seed triplet); the new length.

    ``buf[:n]`` is the followed track, outermost hit first. Between each two consecutive
    hits the helix is fitted to the nearest hits (up to ``fit_hits``) and interpolated to
    each unvisited layer crossed in between; the best free hit in the window (resolution,
    interpolation error and multiple scattering from the nearer hit) is added with its
    siblings at the end of ``buf``.
    """
    n_layers = lay_pos.shape[0]
    n0 = n
    half = max(fit_hits // 2, 2)
    xs = np.empty(fit_hits + 2)
    ys = np.empty(fit_hits + 2)
    ws = np.empty(fit_hits + 2)
    for i in range(n0 - 1):
        hb = buf[i]  # outer hit
        ha = buf[i + 1]  # inner hit
        if hlayer[ha] == hlayer[hb]:
            continue
        r_lo = min(hp[ha, 3], hp[hb, 3])
        r_hi = max(hp[ha, 3], hp[hb, 3])
        z_lo = min(hp[ha, 2], hp[hb, 2])
        z_hi = max(hp[ha, 2], hp[hb, 2])
        any_layer = False
        for lk in range(n_layers):
            if visited[lk]:
                continue
            if lay_barrel[lk]:
                if lay_pos[lk] > r_lo + 0.5 and lay_pos[lk] < r_hi - 0.5:
                    any_layer = True
                    break
            elif lay_pos[lk] > z_lo + 0.5 and lay_pos[lk] < z_hi - 0.5:
                any_layer = True
                break
        if not any_layer:
            continue
        # ---- local helix: circle and z(s) through the hits around the gap
        j0 = max(0, i + 1 - half)
        j1 = min(n0, i + 1 + half)
        m = j1 - j0
        if m < 3:
            continue
        for k in range(m):
            h = buf[j0 + k]
            xs[k] = hp[h, 0]
            ys[k] = hp[h, 1]
            ws[k] = 1.0 / (sig_rphi[hlayer[h]] ** 2 + 1e-4)
        if m == 3:
            xc, yc, rad, _ = _circle3(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])
        else:
            xc, yc, rad = _fit_circle(xs, ys, ws, m)
        a_a = _atan2(hp[ha, 1] - yc, hp[ha, 0] - xc)
        a_b = _atan2(hp[hb, 1] - yc, hp[hb, 0] - xc)
        sense = 1.0 if _wrap(a_b - a_a) >= 0 else -1.0
        s_ab = rad * abs(_wrap(a_b - a_a))
        if s_ab < 1.0:
            continue
        tanl0 = (hp[hb, 2] - hp[ha, 2]) / s_ab
        sw = swx = swy = swxx = swxy = 0.0
        s2rphi = 0.0
        for k in range(m):
            h = buf[j0 + k]
            sk = rad * sense * _wrap(_atan2(hp[h, 1] - yc, hp[h, 0] - xc) - a_a)
            lk = hlayer[h]
            sz = sig_long[lk] if lay_barrel[lk] else 0.02 + sig_long[lk] * abs(tanl0)
            w = 1.0 / (sz * sz)
            sw += w
            swx += w * sk
            swy += w * hp[h, 2]
            swxx += w * sk * sk
            swxy += w * sk * hp[h, 2]
            s2rphi += sig_rphi[lk] ** 2
        den = sw * swxx - swx * swx
        if den <= 1e-12 * sw * sw:
            continue
        tanl = (sw * swxy - swx * swy) / den
        z_a = (swy - tanl * swx) / sw
        s2rphi = s2rphi / m + 0.01**2
        s2z = 1.0 / sw * m
        nrm = math.sqrt(1.0 + tanl * tanl)
        p = PT_PER_MM * rad * nrm
        d = math.sqrt(xc * xc + yc * yc)
        for lk in range(n_layers):
            if visited[lk] or n >= _MAX_TRACK_HITS - 1 - _MAX_SIBLINGS:
                continue
            best_s = -1.0
            best_a = 0.0
            if lay_barrel[lk]:
                rl = lay_pos[lk]
                if not (rl > r_lo + 0.5 and rl < r_hi - 0.5):
                    continue
                if d < 1e-9 or rl > d + rad or rl < abs(rad - d):
                    continue
                aa = (d * d + rl * rl - rad * rad) / (2 * d)
                hh = math.sqrt(max(0.0, rl * rl - aa * aa))
                ex = xc / d
                ey = yc / d
                for sgn in (-1.0, 1.0):
                    qx = aa * ex - sgn * hh * ey
                    qy = aa * ey + sgn * hh * ex
                    al = _atan2(qy - yc, qx - xc)
                    sq = rad * sense * _wrap(al - a_a)
                    if sq < 0.5 or sq > s_ab - 0.5:
                        continue
                    zq = z_a + tanl * sq
                    if zq < lay_zmin[lk] - 1.0 or zq > lay_zmax[lk] + 1.0:
                        continue
                    best_s = sq
                    best_a = al
            else:
                zl = lay_pos[lk]
                if not (zl > z_lo + 0.5 and zl < z_hi - 0.5) or abs(tanl) < 1e-9:
                    continue
                sq = (zl - z_a) / tanl
                if sq < 0.5 or sq > s_ab - 0.5:
                    continue
                al = a_a + sense * sq / rad
                s_al, c_al = _sincos(al)
                qx = xc + rad * c_al
                qy = yc + rad * s_al
                rq = math.sqrt(qx * qx + qy * qy)
                if rq < lay_rmin[lk] - 1.0 or rq > lay_rmax[lk] + 1.0:
                    continue
                best_s = sq
                best_a = al
            if best_s < 0.0:
                continue
            visited[lk] = True
            s_al, c_al = _sincos(best_a)
            px = xc + rad * c_al
            py = yc + rad * s_al
            pz = z_a + tanl * best_s
            dx = -sense * (py - yc) / rad / nrm
            dy = sense * (px - xc) / rad / nrm
            dz = tanl / nrm
            ms = ms_per_layer / p * min(best_s, s_ab - best_s) * nrm
            f_rphi = s2rphi / m * 4.0
            f_z = s2z / m * 2.0
            w_rphi, w_long = _window(
                lk, ms, nrm, tanl, f_rphi, f_z, window_sigma, sig_rphi, sig_long, lay_barrel
            )
            best_h, _ = _search(
                lk,
                px,
                py,
                pz,
                dx,
                dy,
                dz,
                w_rphi,
                w_long,
                hp,
                module,
                grid_start,
                lay_other,
                used,
                lay_barrel,
                -1,
                cand,
                cchi,
            )
            if best_h < 0:
                continue
            n = _add_with_siblings(
                buf,
                n,
                best_h,
                lk,
                xc,
                yc,
                rad,
                sense,
                tanl,
                _SIBLING_MS / p + _SIBLING_DIR_ERR,
                window_sigma,
                sibling_chi2,
                hp,
                module,
                grid_start,
                lay_other,
                used,
                lay_barrel,
                sig_rphi,
                sig_long,
                False,
            )
    return n


@njit(cache=True, fastmath=_FAST)
def _run(
    seeds,
    order,
    hp,
    hlayer,
    module,
    grid_start,
    lay_other,
    lay_barrel,
    lay_pos,
    lay_rmin,
    lay_rmax,
    lay_zmin,
    lay_zmax,
    sig_rphi,
    sig_long,
    fit_hits,
    window_sigma,
    ms_per_layer,
    max_holes,
    sibling_chi2,
    passes,
    fill_gaps,
    used,
    label,
    track,
    tried,
):
    """Greedy following of the ordered seeds in passes.

    Accepted tracks get labels ``track + 1, ...`` in ``label`` and their hits are flagged in
    ``used``; returns the last label given. ``tried`` holds the length found for each seed
    (0 = not followed yet; updated).
    """
    buf = np.empty(_MAX_TRACK_HITS, np.int64)
    visited = np.zeros(lay_pos.shape[0], np.bool_)
    cand = np.empty(32, np.int64)
    cchi = np.empty(32)
    for pi in range(passes.shape[0]):
        min_hits = passes[pi]
        for j in range(order.shape[0]):
            k = order[j]
            s = seeds[k]
            if used[s[0]] or used[s[1]] or used[s[2]]:
                continue
            if tried[k] != 0 and tried[k] < min_hits:
                # the seed was followed on the same free hits minus some: it can only shrink
                continue
            n = _follow(
                s,
                hp,
                hlayer,
                module,
                grid_start,
                lay_other,
                used,
                lay_barrel,
                lay_pos,
                lay_rmin,
                lay_rmax,
                lay_zmin,
                lay_zmax,
                sig_rphi,
                sig_long,
                fit_hits,
                window_sigma,
                ms_per_layer,
                max_holes,
                sibling_chi2,
                buf,
                visited,
            )
            if fill_gaps and n >= min_hits - 2:
                n = _fill_gaps(
                    buf,
                    n,
                    hp,
                    hlayer,
                    module,
                    grid_start,
                    lay_other,
                    used,
                    lay_barrel,
                    lay_pos,
                    lay_rmin,
                    lay_rmax,
                    lay_zmin,
                    lay_zmax,
                    sig_rphi,
                    sig_long,
                    fit_hits,
                    window_sigma,
                    ms_per_layer,
                    sibling_chi2,
                    visited,
                    cand,
                    cchi,
                )
            tried[k] = n
            if n < min_hits:
                continue
            track += 1
            for i in range(n):
                used[buf[i]] = True
                label[buf[i]] = track
    return track


@njit(cache=True, fastmath=_FAST)
def _recover(
    tstart,
    thits,
    tlabel,
    hp,
    hlayer,
    module,
    free,
    fhp,
    fmodule,
    fgrid,
    lay_other,
    fused,
    label,
    lay_barrel,
    lay_pos,
    lay_rmin,
    lay_rmax,
    lay_zmin,
    lay_zmax,
    sig_rphi,
    sig_long,
    window_sigma,
    ms_per_layer,
    sibling_chi2,
    max_ext,
    max_turn,
):
    """Hit recovery after all tracks are built: refit each accepted track's helix on all
    its hits and add the free hits compatible with it (layers without a hit of the track,
    crossed before the turning point, and siblings on overlapping modules); the number of
    hits added.

    The tracks' hits are read from ``hp``; the hits that can be added are searched
    among the free hits, ``fhp`` in their grid ``fgrid`` (``free`` maps them back),
    flagged in ``fused`` when taken.
    """
    n_layers = lay_pos.shape[0]
    added = 0
    cand = np.empty(32, np.int64)
    cchi = np.empty(32)
    buf = np.empty(_MAX_SIBLINGS + 2, np.int64)
    lay_cnt = np.zeros(n_layers, np.int64)
    xs = np.empty(_MAX_TRACK_HITS * 2)
    ys = np.empty(_MAX_TRACK_HITS * 2)
    ws = np.empty(_MAX_TRACK_HITS * 2)
    ss = np.empty(_MAX_TRACK_HITS * 2)
    for t in range(tstart.shape[0] - 1):
        a = tstart[t]
        m = tstart[t + 1] - a
        if m < 4 or m > _MAX_TRACK_HITS * 2:
            continue
        trk = tlabel[t]
        # innermost and outermost hit
        hi_in = thits[a]
        hi_out = thits[a]
        for k in range(m):
            h = thits[a + k]
            xs[k] = hp[h, 0]
            ys[k] = hp[h, 1]
            ws[k] = 1.0 / (sig_rphi[hlayer[h]] ** 2 + 1e-4)
            if hp[h, 3] < hp[hi_in, 3]:
                hi_in = h
            if hp[h, 3] > hp[hi_out, 3]:
                hi_out = h
        xc, yc, rad = _fit_circle(xs, ys, ws, m)
        a0 = _atan2(hp[hi_in, 1] - yc, hp[hi_in, 0] - xc)
        a1 = _atan2(hp[hi_out, 1] - yc, hp[hi_out, 0] - xc)
        sense = 1.0 if _wrap(a1 - a0) >= 0 else -1.0
        s_out = rad * abs(_wrap(a1 - a0))
        if s_out < 1.0:
            continue
        tanl0 = (hp[hi_out, 2] - hp[hi_in, 2]) / s_out
        sw = swx = swy = swxx = swxy = 0.0
        s2rphi = 0.0
        s_min = 1e30
        s_max = -1e30
        for k in range(n_layers):
            lay_cnt[k] = 0
        for k in range(m):
            h = thits[a + k]
            sk = rad * sense * _wrap(_atan2(hp[h, 1] - yc, hp[h, 0] - xc) - a0)
            ss[k] = sk
            s_min = min(s_min, sk)
            s_max = max(s_max, sk)
            lk = hlayer[h]
            lay_cnt[lk] += 1
            sz = sig_long[lk] if lay_barrel[lk] else 0.02 + sig_long[lk] * abs(tanl0)
            w = 1.0 / (sz * sz)
            sw += w
            swx += w * sk
            swy += w * hp[h, 2]
            swxx += w * sk * sk
            swxy += w * sk * hp[h, 2]
            s2rphi += sig_rphi[lk] ** 2
        den = sw * swxx - swx * swx
        if den <= 1e-12 * sw * sw:
            continue
        tanl = (sw * swxy - swx * swy) / den
        z_a = (swy - tanl * swx) / sw
        s2rphi = s2rphi / m + 0.01**2
        s2z = 1.0 / sw * m
        nrm = math.sqrt(1.0 + tanl * tanl)
        p = PT_PER_MM * rad * nrm
        theta_err = _SIBLING_MS / p + _SIBLING_DIR_ERR
        lever = max(s_max - s_min, 1.0)
        d = math.sqrt(xc * xc + yc * yc)
        # ---- siblings of the track's hits, with the full-track helix
        for k in range(m):
            h = thits[a + k]
            lk = hlayer[h]
            if lay_cnt[lk] > _MAX_SIBLINGS:
                continue
            sib = _sibling(
                lk,
                hp,
                h,
                module[h],
                xc,
                yc,
                rad,
                sense,
                tanl,
                theta_err,
                window_sigma,
                sibling_chi2,
                fhp,
                fmodule,
                fgrid,
                lay_other,
                fused,
                lay_barrel,
                sig_rphi,
                sig_long,
            )[0]
            if sib < 0:
                continue
            clash = False
            for q in range(m):
                if module[thits[a + q]] == fmodule[sib]:
                    clash = True
            if clash:
                continue
            fused[sib] = True
            label[free[sib]] = trk
            lay_cnt[lk] += 1
            added += 1
        # ---- layers without a hit of the track, and (``max_turn`` > 0.5) the crossings
        # of the return leg of a looper, up to ``max_turn`` turns from the innermost hit
        s_lim = max_turn * 2.0 * np.pi * rad
        cs = np.empty(2)
        ca = np.empty(2)
        for lk in range(n_layers):
            nq = 0
            if lay_barrel[lk]:
                rl = lay_pos[lk]
                if d < 1e-9 or rl > d + rad or rl < abs(rad - d):
                    continue
                aa = (d * d + rl * rl - rad * rad) / (2 * d)
                hh = math.sqrt(max(0.0, rl * rl - aa * aa))
                ex = xc / d
                ey = yc / d
                for sgn in (-1.0, 1.0):
                    qx = aa * ex - sgn * hh * ey
                    qy = aa * ey + sgn * hh * ex
                    al = _atan2(qy - yc, qx - xc)
                    if (-sense * (qy - yc) * qx + sense * (qx - xc) * qy) > 0:
                        # outgoing branch (before the turning point)
                        if lay_cnt[lk] > 0:
                            continue
                        sq = rad * sense * _wrap(al - a0)
                    else:
                        da = sense * (al - a0)
                        da = da - 2.0 * np.pi * math.floor(da / (2.0 * np.pi))
                        sq = rad * da
                        if sq <= s_max + 1.0 or sq > s_lim:
                            continue
                    zq = z_a + tanl * sq
                    if zq < lay_zmin[lk] - 1.0 or zq > lay_zmax[lk] + 1.0:
                        continue
                    cs[nq] = sq
                    ca[nq] = al
                    nq += 1
            else:
                if abs(tanl) < 1e-9:
                    continue
                sq = (lay_pos[lk] - z_a) / tanl
                if sq < -np.pi * rad or sq > max(np.pi * rad, s_lim):
                    continue
                al = a0 + sense * sq / rad
                s_al, c_al = _sincos(al)
                qx = xc + rad * c_al
                qy = yc + rad * s_al
                rq = math.sqrt(qx * qx + qy * qy)
                if rq < lay_rmin[lk] - 1.0 or rq > lay_rmax[lk] + 1.0:
                    continue
                if (-sense * (qy - yc) * qx + sense * (qx - xc) * qy) > 0:
                    if lay_cnt[lk] > 0 or sq > np.pi * rad:
                        continue
                elif sq <= s_max + 1.0:
                    continue
                cs[0] = sq
                ca[0] = al
                nq = 1
            for iq in range(nq):
                best_s = cs[iq]
                best_a = ca[iq]
                ext = max(0.0, best_s - s_max, s_min - best_s)
                if ext > max_ext:
                    continue
                ds = 1e30
                for k in range(m):
                    ds = min(ds, abs(best_s - ss[k]))
                s_al, c_al = _sincos(best_a)
                px = xc + rad * c_al
                py = yc + rad * s_al
                pz = z_a + tanl * best_s
                dx = -sense * (py - yc) / rad / nrm
                dy = sense * (px - xc) / rad / nrm
                dz = tanl / nrm
                ms = ms_per_layer / p * ds * nrm
                u = ext / lever
                f_rphi = s2rphi / m * (4.0 + 12.0 * u * u + 180.0 * u**4)
                f_z = s2z / m * (2.0 + 12.0 * u * u)
                w_rphi, w_long = _window(
                    lk, ms, nrm, tanl, f_rphi, f_z, window_sigma, sig_rphi, sig_long, lay_barrel
                )
                best_h, _ = _search(
                    lk,
                    px,
                    py,
                    pz,
                    dx,
                    dy,
                    dz,
                    w_rphi,
                    w_long,
                    fhp,
                    fmodule,
                    fgrid,
                    lay_other,
                    fused,
                    lay_barrel,
                    -1,
                    cand,
                    cchi,
                )
                if best_h < 0:
                    continue
                nb = _add_with_siblings(
                    buf,
                    0,
                    best_h,
                    lk,
                    xc,
                    yc,
                    rad,
                    sense,
                    tanl,
                    theta_err,
                    window_sigma,
                    sibling_chi2,
                    fhp,
                    fmodule,
                    fgrid,
                    lay_other,
                    fused,
                    lay_barrel,
                    sig_rphi,
                    sig_long,
                    False,
                )
                for q in range(nb):
                    fused[buf[q]] = True
                    label[free[buf[q]]] = trk
                lay_cnt[lk] += nb
                added += nb
    return added


# --------------------------------------------------------------------------- the finder


def _check_positive(name: str, value, *, integer: bool = False, allow_zero: bool = False) -> None:
    ok_type = (
        isinstance(value, int | np.integer)
        if integer
        else isinstance(value, int | float | np.number)
    )
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"ckf option {name!r} must be {kind}, got {value!r}.")
    if not math.isfinite(float(value)) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"ckf option {name!r} must be finite and {bound}, got {value!r}.")


@register(KIND, "ckf")
class CKFFinder(TrackFinder):
    """Triplet seeding + helix track following + greedy ambiguity resolution.

    Parameters (the cuts; units mm, GeV)
    ----------
    min_pt:
        Smallest transverse momentum of a seed in the last seeding iteration (GeV);
        default 0.1 (a radius of curvature of 167 mm: the particle still crosses the
        pixel layers).
    max_z0:
        Largest |z| of a seed's doublets at the beamline (mm); default 160 (the luminous
        region has sigma_z ~ 55 mm; MU=200 score 0.9333 / 0.9335 / 0.9328 at 200 / 160 /
        140 on seed1001, 0.9338 / 0.9339 at 200 / 160 on seed1002, seeding 7% faster at
        160; the real TrackML event 0.882 at both).
    max_d0:
        Largest transverse impact parameter of a seed (mm); default 2.
    max_cot:
        Largest |cot theta| of a seed's doublets (|eta| <= ~4.1); default 30.
    seed_sigma:
        Largest difference of cot theta of the two segments of a triplet, in standard
        deviations of the expected multiple scattering and resolution; default 2.
    fit_hits:
        Number of last hits used by the helix fit during following; default 7 (the
        simulated MU=200 events score 0.910 at 6, 0.914 at 7, 0.911 at 8, 0.908 at 10;
        the real TrackML event 0.848 at 6, 0.845 at 7).
    window_sigma:
        Half size of the search window in standard deviations; default 4 (the simulated
        MU=200 events score 0.903 at 5, 0.905 at 4.5 and 4, 0.902 at 3.5, fake rate
        0.046 -> 0.042 at 4.5; the real TrackML event 0.851 at 5, 0.846 at 4.5; with the
        hit recovery, which collects the hits a narrower window misses: seed1001 0.931 at
        4.5, 0.933 at 4, 0.933 at 3.5; seed1002 0.932 at 4.5, 0.933 at 4; the real event
        0.881 at 5 and 4.5, 0.882 at 4).
    max_holes:
        Crossed layers without a hit allowed per track; default 2.
    sibling_chi2:
        Largest normalised chi2 of a sibling hit on an overlapping module, in units of
        its own window (``window_sigma`` standard deviations of the prediction from the
        accepted hit); default 0.5.
    min_hits_passes:
        The passes of the greedy resolution: the smallest number of hits of an accepted
        track in each pass; default (9, 7, 4). The early seeding iterations (pT >= 0.5,
        0.3 and 0.2 GeV) run the first pass only, the fourth (pT >= 0.14 GeV) the first
        two. (MU=200: (9, 6, 4) 0.914, (9, 7, 4)
        0.915 with fake rate 0.037 -> 0.036, (9, 7, 5) 0.915 with 0.031 but the real
        TrackML event -0.004; (10, 8, 6, 4) 0.917 but efficiency 0.989 -> 0.985 and
        +30% time.)
    max_seeds_per_hit:
        Most triplets kept per middle hit and layer triplet (those of least chi2);
        default 8, at most 256.
    """

    name = "ckf"

    def __init__(
        self,
        *,
        min_pt: float = 0.1,
        max_z0: float = 160.0,
        max_d0: float = 2.0,
        max_cot: float = 30.0,
        seed_sigma: float = 2.0,
        fit_hits: int = 7,
        window_sigma: float = 4.0,
        max_holes: int = 2,
        sibling_chi2: float = 0.5,
        min_hits_passes: Sequence[int] = (9, 7, 4),
        max_seeds_per_hit: int = 8,
    ) -> None:
        for name, value in (
            ("min_pt", min_pt),
            ("max_z0", max_z0),
            ("max_d0", max_d0),
            ("max_cot", max_cot),
            ("seed_sigma", seed_sigma),
            ("window_sigma", window_sigma),
            ("sibling_chi2", sibling_chi2),
        ):
            _check_positive(name, value)
        _check_positive("fit_hits", fit_hits, integer=True)
        _check_positive("max_holes", max_holes, integer=True, allow_zero=True)
        _check_positive("max_seeds_per_hit", max_seeds_per_hit, integer=True)
        if max_seeds_per_hit > _MAX_SEEDS_PER_HIT:
            raise ConfigError(
                f"ckf option 'max_seeds_per_hit' must be <= {_MAX_SEEDS_PER_HIT}, "
                f"got {max_seeds_per_hit}."
            )
        if fit_hits < 3:
            raise ConfigError(f"ckf option 'fit_hits' must be >= 3 (a circle), got {fit_hits}.")
        try:
            passes = [int(v) for v in min_hits_passes]
        except (TypeError, ValueError):
            raise ConfigError(
                "ckf option 'min_hits_passes' must be a sequence of integers, "
                f"got {min_hits_passes!r}."
            ) from None
        if not passes or any(v < 3 for v in passes) or any(int(v) != v for v in min_hits_passes):
            raise ConfigError(
                f"ckf option 'min_hits_passes' must be a non-empty sequence of integers >= 3, "
                f"got {min_hits_passes!r}."
            )
        self.min_pt = float(min_pt)
        self.max_z0 = float(max_z0)
        self.max_d0 = float(max_d0)
        self.max_cot = float(max_cot)
        self.seed_sigma = float(seed_sigma)
        self.fit_hits = int(fit_hits)
        self.window_sigma = float(window_sigma)
        self.max_holes = int(max_holes)
        self.sibling_chi2 = float(sibling_chi2)
        self.min_hits_passes = tuple(passes)
        self.max_seeds_per_hit = int(max_seeds_per_hit)
        #: learned layer triplets as ((volume, layer) x 3) or None for the geometric map
        self.layer_triplets_: list[tuple[tuple[int, int], ...]] | None = None

    def __repr__(self) -> str:
        return (
            f"CKFFinder(min_pt={self.min_pt}, max_z0={self.max_z0}, max_d0={self.max_d0}, "
            f"window_sigma={self.window_sigma}, max_holes={self.max_holes}, "
            f"min_hits_passes={self.min_hits_passes}, "
            f"max_seeds_per_hit={self.max_seeds_per_hit})"
        )

    # ------------------------------------------------------------------ learning
    def fit(self, events: Sequence[TrackingEvent], coverage: float = 0.995) -> CKFFinder:
        """Learn the layer-connection map: the pixel-layer triplets of true tracks.

        For every particle of pT >= ``min_pt`` its hits are ordered by distance from the
        origin; each three consecutive distinct pixel layers is a triplet. The most frequent
        triplets that cover ``coverage`` of all occurrences are kept.
        """
        counts: Counter[tuple[tuple[int, int], ...]] = Counter()
        for ev in events:
            hits = ev.hits.merge(ev.truth[["hit_id", "particle_id"]], on="hit_id")
            hits = hits[hits["particle_id"] > 0]
            pt = np.hypot(ev.particles["px"], ev.particles["py"])
            fast = set(ev.particles.loc[pt >= self.min_pt, "particle_id"])
            hits = hits[hits["particle_id"].isin(fast) & hits["volume_id"].isin(PIXEL_VOLUMES)]
            d = np.sqrt(hits["x"] ** 2 + hits["y"] ** 2 + hits["z"] ** 2)
            hits = hits.assign(_d=d).sort_values(["particle_id", "_d"])
            for _, g in hits.groupby("particle_id"):
                seq: list[tuple[int, int]] = []
                for v, la in zip(g["volume_id"], g["layer_id"], strict=True):
                    if not seq or seq[-1] != (v, la):
                        seq.append((int(v), int(la)))
                for i in range(len(seq) - 2):
                    counts[tuple(seq[i : i + 3])] += 1
        if not counts:
            raise ConfigError(
                "ckf fit: the events have no true pixel-layer triplets to learn from."
            )
        total = sum(counts.values())
        kept, acc = [], 0
        for trip, c in counts.most_common():
            kept.append(trip)
            acc += c
            if acc >= coverage * total:
                break
        self.layer_triplets_ = sorted(kept)
        return self

    # ------------------------------------------------------------------ finding
    def _triplets(self, table: pd.DataFrame) -> np.ndarray:
        if self.layer_triplets_ is None:
            return _cached_geometric_triplets(table)
        index = {
            (int(v), int(la)): i
            for i, (v, la) in enumerate(zip(table["volume_id"], table["layer_id"], strict=True))
        }
        rows = [[index[k] for k in t] for t in self.layer_triplets_ if all(k in index for k in t)]
        return np.array(rows, dtype=np.int64).reshape(-1, 3)

    def _iterations(self) -> list[tuple[float, float, float, tuple[int, ...]]]:
        """The seeding iterations as (min_pt GeV, max_d0 mm, max_z0 mm, passes), tight
        ones first."""
        z0 = min(self.max_z0, _EARLY_MAX_Z0)
        its = [
            (max(self.min_pt, v), min(self.max_d0, d), z0, k or len(self.min_hits_passes))
            for v, d, k in _ITERATIONS
        ]
        its.append((self.min_pt, self.max_d0, self.max_z0, len(self.min_hits_passes)))
        out: list[tuple[float, float, float, tuple[int, ...]]] = []
        for v, d, zz, k in its:
            it = (v, d, zz, self.min_hits_passes[:k])
            if it not in out:
                out.append(it)
        return out

    def find(self, event: TrackingEvent) -> pd.DataFrame:
        hits = event.hits
        hit_id = hits["hit_id"].to_numpy(np.int64)
        if len(hits) < 3:
            return self.submission(hit_id, np.zeros(len(hits), np.int64))
        table, layer = _layer_table(hits)
        x = hits["x"].to_numpy(np.float64)
        y = hits["y"].to_numpy(np.float64)
        z = hits["z"].to_numpy(np.float64)
        for name, values in (("x", x), ("y", y), ("z", z)):
            if not np.isfinite(values).all():
                bad = hit_id[~np.isfinite(values)]
                raise ConfigError(
                    f"ckf: hit column {name!r} has {len(bad)} NaN or infinite value(s) (first "
                    f"hit_id {bad[0]}); every hit needs finite coordinates in mm."
                )
        phi = np.arctan2(y, x)
        r = np.hypot(x, y)
        barrel = table["barrel"].to_numpy(bool)
        order, grid_start, key, lay_kmin, lay_kmax, lay_other = _hit_grid(r, phi, z, layer, barrel)
        nb = _PHI_BINS
        x, y, z, r, phi, layer = (a[order] for a in (x, y, z, r, phi, layer))
        # the coordinates of each hit side by side (one cache line per hit in the searches)
        hp = np.ascontiguousarray(np.column_stack((x, y, z, r, phi)))
        module = hits["module_id"].to_numpy(np.int64)[order]
        res = np.array(
            [HIT_RESOLUTION.get(int(v), (0.05, 1.0)) for v in table["volume_id"]], np.float64
        )
        lay_rmax = table["r_max"].to_numpy(np.float64)
        used = np.zeros(len(x), np.bool_)
        label_sorted = np.zeros(len(x), np.int64)
        track = 0
        lay_pos = table["position"].to_numpy(np.float64)
        lay_rmin = table["r_min"].to_numpy(np.float64)
        # sorted by (inner, middle) layer: :func:`_find_seeds` groups them by that pair
        triplets = np.unique(self._triplets(table), axis=0).reshape(-1, 3)
        its = self._iterations()
        n_hits = np.int64(len(x))
        layer64 = layer.astype(np.int64)
        lay_zmin = table["z_min"].to_numpy(np.float64)
        lay_zmax = table["z_max"].to_numpy(np.float64)
        sig_rphi = np.ascontiguousarray(res[:, 0])
        sig_long = np.ascontiguousarray(res[:, 1])
        memo_keys = np.zeros(0, np.int64)
        memo_len = np.zeros(0, np.int64)
        for it_pt, it_d0, it_z0, passes in its:
            # the iteration works on the free hits only: the grid without the hits of the
            # tracks of the earlier iterations (they are most of the hits its seeding
            # windows would scan); ``free`` maps back
            free, fhp, fkey, fmodule, flayer, fgrid = _compact(
                used, hp, key, module, layer64, grid_start
            )
            fused = np.zeros(len(free), np.bool_)
            flabel = np.zeros(len(free), np.int64)
            seeds, quality = _find_seeds(
                fhp,
                nb,
                fgrid,
                fkey,
                barrel,
                lay_pos,
                lay_rmin,
                lay_kmin,
                lay_kmax,
                triplets,
                it_pt / PT_PER_MM,
                it_z0,
                it_d0,
                self.max_cot,
                self.seed_sigma,
                MS_PER_LAYER,
                self.max_seeds_per_hit,
                fused,
            )
            seed_order = np.argsort(quality, kind="stable").astype(np.int64)
            # a seed followed in an earlier iteration: its length then (it can only shrink)
            gseeds = free[seeds]
            keys = (gseeds[:, 0] * n_hits + gseeds[:, 1]) * n_hits + gseeds[:, 2]
            tried = np.zeros(len(seeds), np.int64)
            if len(memo_keys):
                at = np.minimum(np.searchsorted(memo_keys, keys), len(memo_keys) - 1)
                hit = memo_keys[at] == keys
                tried[hit] = memo_len[at[hit]]
            track = _run(
                seeds,
                seed_order,
                fhp,
                flayer,
                fmodule,
                fgrid,
                lay_other,
                barrel,
                lay_pos,
                lay_rmin,
                lay_rmax,
                lay_zmin,
                lay_zmax,
                sig_rphi,
                sig_long,
                self.fit_hits,
                self.window_sigma,
                MS_PER_LAYER,
                self.max_holes,
                self.sibling_chi2,
                np.array(passes, np.int64),
                _FILL_GAPS,
                fused,
                flabel,
                track,
                tried,
            )
            used[free[fused]] = True
            label_sorted[free[fused]] = flabel[fused]
            memo_keys, memo_len = _remember(memo_keys, memo_len, keys, tried)
        for _ in range(_RECOVER_PASSES if track > 0 else 0):
            tstart, th, tlabel = _group_tracks(label_sorted, track)
            # the recovery searches the free hits
            free, fhp, _, fmodule, _, fgrid = _compact(
                label_sorted > 0, hp, key, module, layer64, grid_start
            )
            _recover(
                tstart,
                th,
                tlabel,
                hp,
                layer64,
                module,
                free,
                fhp,
                fmodule,
                fgrid,
                lay_other,
                np.zeros(len(free), np.bool_),
                label_sorted,
                barrel,
                lay_pos,
                lay_rmin,
                lay_rmax,
                lay_zmin,
                lay_zmax,
                sig_rphi,
                sig_long,
                _RECOVER_SIGMA,
                MS_PER_LAYER,
                self.sibling_chi2,
                _RECOVER_MAX_EXT,
                _RECOVER_TURN,
            )
        label = np.empty(len(hits), np.int64)
        label[order] = label_sorted
        return self.submission(hit_id, label)


def _hit_grid(
    r: np.ndarray, phi: np.ndarray, z: np.ndarray, layer: np.ndarray, lay_barrel: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The search grid of the hits: ``_PHI_BINS`` phi bins per layer, sorted by key (z on
    barrels, r on disks) inside each bin (see :func:`_bin_query`).

    Returns the order of the hits in the grid, the start of each (layer, bin) in that order
    (``n_layers * _PHI_BINS + 1``), the keys in that order, and per layer the range of the
    keys (min, max) and of the other coordinate (r on barrels, z on disks; (n_layers, 2));
    empty layers have empty (inf, -inf) ranges.
    """
    n_layers = len(lay_barrel)
    nb = _PHI_BINS
    on_barrel = lay_barrel[layer]
    key = np.where(on_barrel, z, r)
    other = np.where(on_barrel, r, z)
    pbin = np.minimum(((phi + np.pi) / (2 * np.pi) * nb).astype(np.int64), nb - 1)
    order, grid_start = _cell_sort(layer.astype(np.int64) * nb + pbin, key, n_layers * nb)
    lay_kmin = np.full(n_layers, np.inf)
    lay_kmax = np.full(n_layers, -np.inf)
    lay_other = np.empty((n_layers, 2))
    lay_other[:, 0] = np.inf
    lay_other[:, 1] = -np.inf
    np.minimum.at(lay_kmin, layer, key)
    np.maximum.at(lay_kmax, layer, key)
    np.minimum.at(lay_other[:, 0], layer, other)
    np.maximum.at(lay_other[:, 1], layer, other)
    return order, grid_start, np.ascontiguousarray(key[order]), lay_kmin, lay_kmax, lay_other


@njit(cache=True)
def _cell_sort(cell, key, n_cells):
    """Order of the hits by (cell, key), stable, and the start of each cell in it
    (``n_cells + 1``): a counting sort by cell, then an insertion sort by key inside each
    cell (a few tens of hits at MU=200; a merge sort above 256)."""
    start = np.zeros(n_cells + 1, np.int64)
    for i in range(cell.shape[0]):
        if cell[i] < 0 or cell[i] >= n_cells:
            raise ValueError("_cell_sort: a cell index outside [0, n_cells)")
        start[cell[i] + 1] += 1
    for c in range(n_cells):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(cell.shape[0], np.int64)
    for i in range(cell.shape[0]):
        order[fill[cell[i]]] = i
        fill[cell[i]] += 1
    ck = np.empty(cell.shape[0])  # the keys in that order: the sorts run on contiguous data
    for a in range(cell.shape[0]):
        ck[a] = key[order[a]]
    for c in range(n_cells):
        s = start[c]
        e = start[c + 1]
        if e - s > 256:  # a crowded cell: a merge sort
            o = np.argsort(ck[s:e], kind="mergesort")
            order[s:e] = order[s:e][o]
            continue
        for a in range(s + 1, e):
            v = order[a]
            k = ck[a]
            b = a - 1
            while b >= s and ck[b] > k:
                order[b + 1] = order[b]
                ck[b + 1] = ck[b]
                b -= 1
            order[b + 1] = v
            ck[b + 1] = k
    return order, start


@njit(cache=True)
def _group_tracks(label, n_tracks):
    """The hits of each track (labels ``1..n_tracks``, 0 = none), grouped by label in hit
    order: ``(start, hits, labels)`` with the hits of ``labels[t]`` at
    ``hits[start[t]:start[t + 1]]``; labels without hits are left out."""
    count = np.zeros(n_tracks + 1, np.int64)
    for i in range(label.shape[0]):
        count[label[i]] += 1
    n_present = 0
    for t in range(1, n_tracks + 1):
        if count[t] > 0:
            n_present += 1
    start = np.empty(n_present + 1, np.int64)
    labels = np.empty(n_present, np.int64)
    slot = np.full(n_tracks + 1, -1, np.int64)
    fill = np.empty(n_present, np.int64)
    k = 0
    acc = 0
    for t in range(1, n_tracks + 1):
        if count[t] > 0:
            start[k] = acc
            fill[k] = acc
            labels[k] = t
            slot[t] = k
            acc += count[t]
            k += 1
    start[n_present] = acc
    hits = np.empty(acc, np.int64)
    for i in range(label.shape[0]):
        t = label[i]
        if t > 0:
            hits[fill[slot[t]]] = i
            fill[slot[t]] += 1
    return start, hits, labels


@njit(cache=True)
def _compact(taken, hp, key, module, layer, grid_start):
    """The hits not ``taken``, in grid order: ``(index, hp, key, module, layer, grid
    start)``, the grid start of each (layer, phi bin) cell counted anew (one pass; the
    iterations and the recovery work on these copies)."""
    n = 0
    for i in range(taken.shape[0]):
        if not taken[i]:
            n += 1
    free = np.empty(n, np.int64)
    fhp = np.empty((n, hp.shape[1]))
    fkey = np.empty(n)
    fmodule = np.empty(n, np.int64)
    flayer = np.empty(n, np.int64)
    fgrid = np.empty(grid_start.shape[0], np.int64)
    k = 0
    for c in range(grid_start.shape[0] - 1):
        fgrid[c] = k
        for i in range(grid_start[c], grid_start[c + 1]):
            if taken[i]:
                continue
            free[k] = i
            for j in range(hp.shape[1]):
                fhp[k, j] = hp[i, j]
            fkey[k] = key[i]
            fmodule[k] = module[i]
            flayer[k] = layer[i]
            k += 1
    fgrid[grid_start.shape[0] - 1] = k
    return free, fhp, fkey, fmodule, flayer, fgrid


def _remember(
    memo_keys: np.ndarray, memo_len: np.ndarray, keys: np.ndarray, tried: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The memo of followed seeds (sorted keys, lengths) with this iteration's added."""
    done = tried > 0
    k = np.concatenate([memo_keys, keys[done]])
    v = np.concatenate([memo_len, tried[done]])
    if len(k) == 0:
        return k, v
    o = np.argsort(k, kind="stable")
    k, v = k[o], v[o]
    # a seed followed again keeps its latest (last in the stable order) length
    last = np.r_[k[1:] != k[:-1], True]
    return k[last], v[last]


_TRIPLET_CACHE: dict[tuple, np.ndarray] = {}


def _cached_geometric_triplets(table: pd.DataFrame) -> np.ndarray:
    key = tuple(zip(table["volume_id"], table["layer_id"], strict=True))
    if key not in _TRIPLET_CACHE:
        _TRIPLET_CACHE[key] = _geometric_triplets(table)
    return _TRIPLET_CACHE[key]


__all__ = ["CKFFinder"]
