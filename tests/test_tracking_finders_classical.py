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
