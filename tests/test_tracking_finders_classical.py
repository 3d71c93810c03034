"""The classical track finders: triplet seeding + helix following ("ckf") and DBSCAN on
helix-unrolled coordinates ("dbscan").

Score thresholds are the values measured on the data below minus a margin (stated at
each assertion); the finders are deterministic, so the margin only absorbs changes of
numerics between platforms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from colliderlab.core.errors import ConfigError, UnknownNameError
from colliderlab.tracking.event import TrackingEvent
from colliderlab.tracking.finders import finder_names, make_finder
from colliderlab.tracking.io import read_event
from colliderlab.tracking.score import trackml_score

DATA = Path(__file__).parent / "data" / "trackml"
FINDERS = ("ckf", "dbscan")


@pytest.fixture(scope="module")
def real_event() -> TrackingEvent:
    """The thinned real TrackML event 1 (5,527 hits, 548 particles)."""
    return read_event(DATA / "event000000001", cells=False)


@pytest.fixture(scope="module")
def submissions(real_event) -> dict[str, pd.DataFrame]:
    return {name: make_finder(name).find(real_event) for name in FINDERS}


def _empty_event() -> TrackingEvent:
    hits = pd.DataFrame(
        {
            c: np.array([], np.int64 if c.endswith("id") else np.float32)
            for c in ("hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id")
        }
    )
    return TrackingEvent(0, hits, pd.DataFrame(), pd.DataFrame())


def _straight_track_event() -> TrackingEvent:
    """One straight (infinite-momentum) track from the origin through the barrel layers."""
    layers = [
        (8, 2, 32.0),
        (8, 4, 72.0),
        (8, 6, 116.0),
        (8, 8, 172.0),
        (13, 2, 260.0),
        (13, 4, 360.0),
        (13, 6, 500.0),
        (13, 8, 660.0),
        (17, 2, 820.0),
        (17, 4, 1020.0),
    ]
    phi, cot = 0.7, 0.3
    r = np.array([la[2] for la in layers])
    hits = pd.DataFrame(
        {
            "hit_id": np.arange(1, len(layers) + 1, dtype=np.int64),
            "x": (r * np.cos(phi)).astype(np.float32),
            "y": (r * np.sin(phi)).astype(np.float32),
            "z": (r * cot).astype(np.float32),
            "volume_id": [la[0] for la in layers],
            "layer_id": [la[1] for la in layers],
            "module_id": np.arange(1, len(layers) + 1),
        }
    )
    return TrackingEvent(1, hits, pd.DataFrame(), pd.DataFrame())


def test_finders_are_registered():
    assert set(FINDERS) <= set(finder_names())


def test_unknown_finder_name_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="ckf"):
        make_finder("ckff")


@pytest.mark.parametrize("name", FINDERS)
def test_one_row_per_hit(name, real_event, submissions):
    sub = submissions[name]
    assert list(sub.columns) == ["hit_id", "track_id"]
    assert len(sub) == real_event.n_hits
    assert sub["hit_id"].is_unique
    assert set(sub["hit_id"]) == set(real_event.hits["hit_id"])
    assert (sub["track_id"] >= 0).all()


def test_ckf_score_on_the_real_event(real_event, submissions):
    # measured 0.882 (normalised by the truth weight of the thinned event); margin 0.04
    assert trackml_score(real_event.truth, submissions["ckf"]) >= 0.84


def test_dbscan_score_on_the_real_event(real_event, submissions):
    # measured 0.492; margin 0.05
    assert trackml_score(real_event.truth, submissions["dbscan"]) >= 0.44


def test_ckf_tracks_are_pure_on_the_real_event(real_event, submissions):
    """Nearly every ckf track is dominated by one particle (the fake rate is small)."""
    merged = submissions["ckf"].merge(real_event.truth[["hit_id", "particle_id"]], on="hit_id")
    merged = merged[merged["track_id"] > 0]
    purity = merged.groupby("track_id")["particle_id"].agg(
        lambda p: p.value_counts().iloc[0] / len(p)
    )
    # measured: 99.4% of the tracks have purity > 0.5
    assert (purity > 0.5).mean() >= 0.97


@pytest.mark.parametrize("name", FINDERS)
def test_deterministic(name, real_event, submissions):
    again = make_finder(name).find(real_event)
    pd.testing.assert_frame_equal(again, submissions[name])


@pytest.mark.parametrize("name", FINDERS)
def test_empty_event_gives_an_empty_submission(name):
    sub = make_finder(name).find(_empty_event())
    assert list(sub.columns) == ["hit_id", "track_id"]
    assert len(sub) == 0


def test_ckf_refuses_non_finite_hit_coordinates():
    event = _straight_track_event()
    event.hits.loc[3, "z"] = np.nan
    with pytest.raises(ConfigError, match=r"'z' has 1 NaN or infinite value.*hit_id 4"):
        make_finder("ckf").find(event)


def test_ckf_cell_sort_refuses_a_cell_outside_the_grid():
    from colliderlab.tracking.ckf import _cell_sort

    with pytest.raises(ValueError, match="outside"):
        _cell_sort(np.array([0, 5], np.int64), np.zeros(2), 4)


@pytest.mark.parametrize("name", FINDERS)
def test_single_straight_track_is_one_track(name):
    sub = make_finder(name).find(_straight_track_event())
    assert sub["track_id"].nunique() == 1
    assert (sub["track_id"] > 0).all()


def test_ckf_learned_layer_map(real_event):
    """fit() learns the pixel-layer triplets from truth; the score stays at the geometric one."""
    finder = make_finder("ckf").fit([real_event])
    assert finder.layer_triplets_
    assert all(len(t) == 3 for t in finder.layer_triplets_)
    # measured 0.892; margin 0.04
    assert trackml_score(real_event.truth, finder.find(real_event)) >= 0.85


@pytest.mark.parametrize(
    ("name", "option", "value"),
    [
        ("ckf", "min_pt", -1.0),
        ("ckf", "max_z0", 0.0),
        ("ckf", "window_sigma", float("nan")),
        ("ckf", "fit_hits", 2),
        ("ckf", "max_holes", 1.5),
        ("ckf", "min_hits_passes", (9, 2)),
        ("ckf", "max_seeds_per_hit", 0),
        ("ckf", "max_seeds_per_hit", 1000),
        ("dbscan", "eps", 0.0),
        ("dbscan", "min_samples", 0),
        ("dbscan", "n_curvatures", "many"),
        ("dbscan", "min_layer_fraction", 1.5),
        ("dbscan", "z0_values", ()),
    ],
)
def test_bad_option_names_the_option(name, option, value):
    with pytest.raises(ConfigError, match=option):
        make_finder(name, **{option: value})


def test_unknown_option_is_a_config_error_listing_the_options():
    with pytest.raises(ConfigError, match=r"'window'.*window_sigma"):
        make_finder("ckf", window=3)


def test_simulated_event_at_low_pileup():
    """ttbar + 10 pile-up interactions through colliderlab's TrackML-like simulation."""
    from colliderlab.tracking.simulate import generate_events

    event = next(generate_events(1, mu=10, seed=3))
    # measured: ckf 0.975, dbscan 0.523 (14,048 hits); margins 0.05
    assert trackml_score(event.truth, make_finder("ckf").find(event)) >= 0.91
    assert trackml_score(event.truth, make_finder("dbscan").find(event)) >= 0.47


# ----------------------------------------------------------------- ckf search internals


def _toy_layers(rng: np.random.Generator, n: int = 3000):
    """Hits on a barrel layer (r = 100 +- 2 mm, |z| < 500) and a disk (z = 600 +- 3 mm,
    30 < r < 170) with random modules; arrays in the order of the ckf search grid."""
    from colliderlab.tracking.ckf import _hit_grid

    phi = rng.uniform(-np.pi, np.pi, 2 * n)
    r = np.r_[rng.uniform(98.0, 102.0, n), rng.uniform(30.0, 170.0, n)]
    z = np.r_[rng.uniform(-500.0, 500.0, n), rng.uniform(597.0, 603.0, n)]
    layer = np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)]
    barrel = np.array([True, False])
    order, grid_start, key, _, _, lay_other = _hit_grid(r, phi, z, layer, barrel)
    x, y = (r * np.cos(phi))[order], (r * np.sin(phi))[order]
    module = rng.integers(0, 40, 2 * n)[order]
    return dict(
        hp=np.ascontiguousarray(np.column_stack((x, y, z[order], r[order], phi[order]))),
        x=x,
        y=y,
        z=z[order],
        r=r[order],
        phi=phi[order],
        layer=layer[order],
        module=module,
        grid_start=grid_start,
        key=key,
        lay_other=lay_other,
        barrel=barrel,
    )


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def test_ckf_fast_atan2_and_sincos_match_libm():
    """The finder's branch-free trigonometry: atan2 within 2e-9 rad of libm in every
    quadrant, on the axes and at the origin; sin and cos within 1e-10 over +-10 turns."""
    from numba import njit

    from colliderlab.tracking.ckf import _atan2, _sincos

    @njit
    def both(y, x, a):
        t = np.empty(len(y))
        s = np.empty(len(a))
        c = np.empty(len(a))
        for i in range(len(y)):
            t[i] = _atan2(y[i], x[i])
        for i in range(len(a)):
            s[i], c[i] = _sincos(a[i])
        return t, s, c

    rng = np.random.default_rng(5)
    ang = rng.uniform(-np.pi, np.pi, 200_000)
    rad = 10.0 ** rng.uniform(-3, 6, ang.size)
    y = np.concatenate([rad * np.sin(ang), [0.0, 1.0, -1.0, 0.0, 2.0, -3.0, 1.0, -1.0]])
    x = np.concatenate([rad * np.cos(ang), [1.0, 0.0, 0.0, 0.0, 2.0, -3.0, -1.0, 1.0]])
    a = np.concatenate(
        [rng.uniform(-20 * np.pi, 20 * np.pi, 200_000), np.arange(-8, 9) * np.pi / 4]
    )
    t, s, c = both(y, x, a)
    assert np.max(np.abs(t - np.arctan2(y, x))) < 2e-9
    assert t[-5] == 0.0  # atan2(0, 0)
    assert np.max(np.abs(s - np.sin(a))) < 1e-10
    assert np.max(np.abs(c - np.cos(a))) < 1e-10


def test_ckf_cell_sort_and_track_grouping_match_numpy():
    """The grid's counting sort equals a stable lexsort by (cell, key), also for crowded
    cells (merge sort) and empty ones; the recovery's grouping of hits by track label
    equals a stable argsort of the labels, labels without hits left out."""
    from colliderlab.tracking.ckf import _cell_sort, _group_tracks

    rng = np.random.default_rng(11)
    cell = np.concatenate([rng.integers(0, 50, 3000), np.full(500, 57)])  # 57: crowded
    key = np.round(rng.normal(0.0, 100.0, cell.size), 1)  # ties in key
    order, start = _cell_sort(cell, key, 60)
    assert np.array_equal(order, np.lexsort((key, cell)))
    assert np.array_equal(start, np.searchsorted(cell[order], np.arange(61)))
    label = rng.integers(0, 40, 5000)
    label[label == 7] = 0  # track 7 has no hits
    start, hits, labels = _group_tracks(label, 40)
    on = np.flatnonzero(label > 0)
    assert np.array_equal(hits, on[np.argsort(label[on], kind="stable")])
    assert np.array_equal(labels, np.unique(label[on]))
    assert np.array_equal(np.diff(start), np.bincount(label[on])[labels])


def test_ckf_compaction_keeps_the_free_hits_and_their_grid():
    """The copy of the free hits each iteration works on equals numpy's selection, and its
    grid starts are those of the selection (``searchsorted`` of the kept indices)."""
    from colliderlab.tracking.ckf import _compact

    rng = np.random.default_rng(4)
    t = _toy_layers(rng)
    n = len(t["x"])
    taken = rng.random(n) < 0.4
    layer = t["layer"].astype(np.int64)
    key = np.ascontiguousarray(t["key"])
    free, fhp, fkey, fmodule, flayer, fgrid = _compact(
        taken, t["hp"], key, t["module"], layer, t["grid_start"]
    )
    keep = np.flatnonzero(~taken)
    assert np.array_equal(free, keep)
    assert np.array_equal(fhp, t["hp"][keep])
    assert np.array_equal(fkey, key[keep])
    assert np.array_equal(fmodule, t["module"][keep])
    assert np.array_equal(flayer, layer[keep])
    assert np.array_equal(fgrid, np.searchsorted(keep, t["grid_start"]))


def test_ckf_grid_is_sorted_by_layer_phi_bin_and_key():
    from colliderlab.tracking.ckf import _PHI_BINS

    t = _toy_layers(np.random.default_rng(3))
    b = t["grid_start"]
    assert b[0] == 0
    assert b[-1] == len(t["x"])
    assert len(b) == 2 * _PHI_BINS + 1
    for cell in range(2 * _PHI_BINS):
        s, e = b[cell], b[cell + 1]
        assert np.all(t["layer"][s:e] == cell // _PHI_BINS)
        phi_bin = np.floor((t["phi"][s:e] + np.pi) / (2 * np.pi) * _PHI_BINS)
        assert np.all(np.minimum(phi_bin, _PHI_BINS - 1) == cell % _PHI_BINS)
        assert np.all(np.diff(t["key"][s:e]) >= 0)
    # the other coordinate's range per layer: r on the barrel, z on the disk
    assert 98.0 <= t["lay_other"][0, 0] < t["lay_other"][0, 1] <= 102.0
    assert 597.0 <= t["lay_other"][1, 0] < t["lay_other"][1, 1] <= 603.0


@pytest.mark.parametrize("lk", [0, 1], ids=["barrel", "disk"])
def test_ckf_layer_search_finds_what_a_scan_of_the_whole_layer_finds(lk):
    """The grid search (phi bins, key range bounded by the layer's thickness) returns the
    same candidates and best hit as a scan of every hit of the layer."""
    from colliderlab.tracking.ckf import _search

    rng = np.random.default_rng(7 + lk)
    t = _toy_layers(rng)
    used = rng.random(len(t["x"])) < 0.2
    cand, cchi = np.empty(4096, np.int64), np.empty(4096)
    on = np.flatnonzero(t["layer"] == lk)
    n_found = 0
    for _ in range(300):
        # a straight track from near the origin to a point of the layer
        ph = rng.uniform(-np.pi, np.pi)
        if lk == 0:
            pr, pz = 100.0, rng.uniform(-450.0, 450.0)
        else:
            pr, pz = rng.uniform(40.0, 160.0), 600.0
        px, py = pr * np.cos(ph), pr * np.sin(ph)
        dvec = np.array([px, py, pz]) + rng.normal(0.0, 5.0, 3)
        dx, dy, dz = dvec / np.linalg.norm(dvec)
        w_rphi, w_long = rng.uniform(0.5, 20.0), rng.uniform(0.5, 40.0)
        best, nc = _search(
            lk, px, py, pz, dx, dy, dz, w_rphi, w_long,
            t["hp"], t["module"],
            t["grid_start"], t["lay_other"], used, t["barrel"], 5, cand, cchi,
        )  # fmt: skip
        # the scan: every hit of the layer, the same window definitions
        cphi, sphi = px / pr, py / pr
        if lk == 0:
            tt = (t["r"][on] - pr) / (dx * cphi + dy * sphi)
        else:
            tt = (t["z"][on] - pz) / dz
        ex = t["x"][on] - (px + tt * dx)
        ey = t["y"][on] - (py + tt * dy)
        res_rphi = -ex * sphi + ey * cphi
        res_long = (t["z"][on] - (pz + tt * dz)) if lk == 0 else ex * cphi + ey * sphi
        wphi = (w_rphi + 0.05 * w_long) / pr + 0.002
        ok = (
            ~used[on]
            & (t["module"][on] != 5)
            & (np.abs(_wrap(t["phi"][on] - np.arctan2(py, px))) <= wphi)
            & (np.abs(res_rphi) <= w_rphi)
            & (np.abs(res_long) <= w_long)
        )
        assert sorted(cand[:nc]) == sorted(on[ok])
        if ok.any():
            chi2 = (res_rphi / w_rphi) ** 2 + (res_long / w_long) ** 2
            assert best == on[ok][np.argmin(chi2[ok])]
            n_found += 1
        else:
            assert best == -1
    assert n_found > 50  # the windows are wide enough to find hits most of the time


def test_ckf_sibling_search_keeps_the_best_hit_of_each_of_three_modules():
    """Siblings: the best candidate per other module, the three best modules, best first;
    a second hit on a kept module never displaces another module."""
    from colliderlab.tracking.ckf import _sibling

    # a straight track along x (y = 0, z = 0.2 x) crossing a barrel layer at r = 100;
    # candidate hits at r = 100.5 (on the helix tangent, path ~0.5 mm), offset in y
    n = 7
    xs = np.r_[100.0, np.full(n, 100.5)]
    ys = np.r_[0.0, 0.004, 0.002, 0.006, -0.003, 0.0045, 0.001, 0.08]
    zs = 0.2 * xs
    modules = np.array([0, 1, 2, 3, 4, 1, 2, 5])
    rs, phis = np.hypot(xs, ys), np.arctan2(ys, xs)
    layer = np.zeros(n + 1, np.int64)
    barrel = np.array([True])
    from colliderlab.tracking.ckf import _hit_grid

    order, grid_start, _, _, _, lay_other = _hit_grid(rs, phis, zs, layer, barrel)
    # circle of huge radius through the first hit, clockwise (sense -1), so that it moves
    # along +x there: centre at (100, -R)
    rad = 1e7
    res = (
        np.array([0.01]),
        np.array([0.015]),
    )
    hp = np.ascontiguousarray(np.column_stack((xs, ys, zs, rs, phis)))
    sib = _sibling(
        0, hp, 0, modules[0],  # the hit, read from the unsorted copy
        100.0, -rad, rad, -1.0, 0.2, 0.001, 4.0, 0.5,
        np.ascontiguousarray(hp[order]), modules[order],
        grid_start, lay_other, np.zeros(n + 1, np.bool_), barrel, res[0], res[1],
    )  # fmt: skip
    picked = [int(order[s]) for s in sib if s >= 0]
    # per module the hit nearest the prediction y = 0 (module 1: 0.004 vs 0.0045 -> hit 1;
    # module 2: 0.002 vs 0.001 -> hit 6), modules ranked by that distance; hit 7 (0.08,
    # chi2 ~2) is outside the sibling window
    assert picked == [6, 4, 1]
