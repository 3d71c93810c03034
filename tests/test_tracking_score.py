"""The TrackML score, its hit weights, the throughput score and the efficiency / fake /
duplicate rates, on hand-made events of known answer and on the real TrackML event."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from colliderlab.core.errors import ConfigError, DatasetError
from colliderlab.tracking.event import TrackingEvent
from colliderlab.tracking.io import read_event
from colliderlab.tracking.score import (
    ORDER_PROFILE,
    efficiency_vs,
    hit_weights,
    match_tracks,
    order_weight_matrix,
    pt_weight,
    throughput_score,
    track_metrics,
    trackml_score,
    trackml_secondary,
)

DATA = Path(__file__).parent / "data" / "trackml"
#: Sum of the official weights over the thinned event's hits (the full event sums to 1).
THINNED_WEIGHT_SUM = 0.05126281115


@pytest.fixture(scope="module")
def real() -> TrackingEvent:
    return read_event(DATA / "event000000001", cells=False)


def truth_of(assign: dict[int, int], weights: dict[int, float] | None = None) -> pd.DataFrame:
    """Truth table from {hit_id: particle_id}; weight 1 per non-noise hit unless given."""
    hit = np.array(sorted(assign), dtype=np.int64)
    pid = np.array([assign[h] for h in hit], dtype=np.int64)
    w = np.array(
        [(weights or {}).get(h, 1.0 if p else 0.0) for h, p in zip(hit, pid, strict=False)]
    )
    return pd.DataFrame({"hit_id": hit, "particle_id": pid, "weight": w})


def sub_of(tracks: dict[int, int]) -> pd.DataFrame:
    hit = np.array(sorted(tracks), dtype=np.int64)
    return pd.DataFrame({"hit_id": hit, "track_id": np.array([tracks[h] for h in hit], np.int64)})


def reference_score(truth: pd.DataFrame, sub: pd.DataFrame) -> float:
    """Plain-Python double-majority score (track 0 = unassigned), for cross-checks."""
    pid = dict(zip(truth["hit_id"], truth["particle_id"], strict=False))
    w = dict(zip(truth["hit_id"], truth["weight"], strict=False))
    n_particle = Counter(truth["particle_id"])
    hits_of: dict[int, list[int]] = {}
    for h, t in zip(sub["hit_id"], sub["track_id"], strict=False):
        if t != 0:
            hits_of.setdefault(t, []).append(h)
    total = 0.0
    for hits in hits_of.values():
        counts = Counter(pid[h] for h in hits)
        p, n = counts.most_common(1)[0]
        if p != 0 and 2 * n > len(hits) and 2 * n > n_particle[p]:
            total += sum(w[h] for h in hits if pid[h] == p)
    return total / truth["weight"].sum()


# --------------------------------------------------------------------------- the score


def test_perfect_submission_scores_one_on_the_real_event(real: TrackingEvent) -> None:
    truth = real.truth
    sub = pd.DataFrame({"hit_id": truth["hit_id"], "track_id": truth["particle_id"]})
    assert trackml_score(truth, sub) == pytest.approx(1.0, abs=1e-12)
    # unnormalised: the matched weight is all the weight of the thinned event, which is only
    # ~5 % of the full event TrackML weighted to 1
    raw = trackml_score(truth, sub, normalize=False)
    assert raw == pytest.approx(truth["weight"].sum(), rel=1e-12)
    assert raw == pytest.approx(THINNED_WEIGHT_SUM, rel=1e-9)


def test_one_track_for_all_hits_scores_zero_on_the_real_event(real: TrackingEvent) -> None:
    sub = pd.DataFrame({"hit_id": real.truth["hit_id"], "track_id": 1})
    assert trackml_score(real.truth, sub) == 0.0


def test_one_track_for_all_hits_matches_a_dominant_particle() -> None:
    # particle 1 holds 6 of the 10 hits: > 50 % of the track and all of its own hits
    truth = truth_of({h: (1 if h <= 6 else h) for h in range(1, 11)})
    sub = sub_of({h: 5 for h in range(1, 11)})
    assert trackml_score(truth, sub) == pytest.approx(6 / 10)


def test_random_assignment_scores_about_zero(real: TrackingEvent) -> None:
    rng = np.random.default_rng(7)
    sub = pd.DataFrame(
        {"hit_id": real.truth["hit_id"], "track_id": rng.integers(1, 600, len(real.truth))}
    )
    assert trackml_score(real.truth, sub) < 0.01


def test_exactly_half_is_not_a_match() -> None:
    # track = particle 1 (4 hits) + 4 noise hits: 4/8 of the track is not > 50 %
    truth = truth_of({1: 1, 2: 1, 3: 1, 4: 1, 5: 0, 6: 0, 7: 0, 8: 0})
    assert trackml_score(truth, sub_of({h: 1 for h in range(1, 9)}), normalize=False) == 0.0
    # track = 2 of particle 1's 4 hits: 2/4 of the particle is not > 50 %
    truth = truth_of({1: 1, 2: 1, 3: 1, 4: 1})
    assert trackml_score(truth, sub_of({1: 1, 2: 1, 3: 0, 4: 0})) == 0.0
    # 3 of 4 is a match; its score is the weight of those 3 hits
    assert trackml_score(truth, sub_of({1: 1, 2: 1, 3: 1, 4: 0})) == pytest.approx(0.75)


def test_noise_hits_count_in_the_track_but_never_match() -> None:
    truth = truth_of({1: 1, 2: 1, 3: 1, 4: 1, 5: 0, 6: 0, 7: 0}, weights={5: 9.0})
    # 4 of 7 hits from particle 1: matched, score = particle 1's weight / total weight
    sub = sub_of({h: 1 for h in range(1, 8)})
    assert trackml_score(truth, sub, normalize=False) == pytest.approx(4.0)
    # a track of noise only never scores, even if the noise carries weight
    sub = sub_of({1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 2, 7: 2})
    assert trackml_score(truth, sub, normalize=False) == pytest.approx(4.0)


def test_splitting_a_particle() -> None:
    truth = truth_of({h: 1 for h in range(1, 7)}, weights={1: 3.0})
    # halves 3+3: neither holds > 50 % of the particle
    assert trackml_score(truth, sub_of({1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2})) == 0.0
    # 4+2: the larger part is matched, with the weight of its own hits (3+1+1+1 of 8)
    assert trackml_score(truth, sub_of({1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 2})) == pytest.approx(
        6 / 8
    )


def test_merging_two_particles() -> None:
    truth = truth_of({**{h: 1 for h in range(1, 7)}, **{h: 2 for h in range(7, 11)}})
    # 6 + 4 hits on one track: particle 1 is the majority (6/10) and is matched, 2 is lost
    assert trackml_score(truth, sub_of({h: 9 for h in range(1, 11)})) == pytest.approx(6 / 10)
    # 5 + 5: no majority, nothing matched
    truth = truth_of({**{h: 1 for h in range(1, 6)}, **{h: 2 for h in range(6, 11)}})
    assert trackml_score(truth, sub_of({h: 9 for h in range(1, 11)})) == 0.0


def test_unassigned_hits_belong_to_no_track() -> None:
    # all of particle 1 left unassigned (track 0): not a track, no score
    truth = truth_of({1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 2})
    assert trackml_score(truth, sub_of({1: 0, 2: 0, 3: 0, 4: 0, 5: 3, 6: 3})) == pytest.approx(
        2 / 6
    )


def test_score_agrees_with_a_plain_reference_on_perturbed_real_submissions(
    real: TrackingEvent,
) -> None:
    rng = np.random.default_rng(11)
    truth = real.truth
    for frac in (0.05, 0.3, 0.6):
        track = truth["particle_id"].to_numpy() % 100_003 + 1
        move = rng.random(len(track)) < frac
        track[move] = rng.integers(0, 600, move.sum())  # includes 0 = unassigned
        sub = pd.DataFrame({"hit_id": truth["hit_id"], "track_id": track}).sample(
            frac=1.0, random_state=1
        )
        assert trackml_score(truth, sub) == pytest.approx(reference_score(truth, sub), abs=1e-12)


def test_submission_problems_are_errors(real: TrackingEvent) -> None:
    truth = truth_of({1: 1, 2: 1, 3: 1, 4: 1})
    with pytest.raises(DatasetError, match=r"lacks 1 of the event's 4 hits \(hit_id 4\)"):
        trackml_score(truth, sub_of({1: 1, 2: 1, 3: 1}))
    # allow_missing: absent hits count as unassigned
    assert trackml_score(truth, sub_of({1: 1, 2: 1, 3: 1}), allow_missing=True) == 0.75
    dup = pd.DataFrame({"hit_id": [1, 1, 2, 3, 4], "track_id": [1, 2, 1, 1, 1]})
    with pytest.raises(DatasetError, match="more than once"):
        trackml_score(truth, dup)
    with pytest.raises(DatasetError, match="not in the event"):
        trackml_score(truth, sub_of({1: 1, 2: 1, 3: 1, 4: 1, 99: 1}))
    with pytest.raises(DatasetError, match="negative"):
        trackml_score(truth, sub_of({1: -1, 2: 1, 3: 1, 4: 1}))
    with pytest.raises(DatasetError, match="'track_id'"):
        trackml_score(truth, pd.DataFrame({"hit_id": [1, 2, 3, 4]}))


def test_match_table_counts() -> None:
    truth = truth_of({1: 1, 2: 1, 3: 1, 4: 2, 5: 0})
    pairs = match_tracks(truth, sub_of({1: 7, 2: 7, 3: 8, 4: 7, 5: 7}))
    row = pairs[(pairs.track_id == 7) & (pairs.particle_id == 1)].iloc[0]
    assert (row.n_common, row.n_track, row.n_particle) == (2, 4, 3)
    assert not row.majority  # 2 of 4 is not > 50 %
    assert len(pairs) == 4


# --------------------------------------------------------------------------- hit weights


def test_hit_weights_reproduce_the_official_weights_of_the_real_event(
    real: TrackingEvent,
) -> None:
    particles = real.particles.assign(secondary=trackml_secondary(real.particles["particle_id"]))
    w = hit_weights(real.truth, particles)
    official = real.truth["weight"].to_numpy()
    assert w.sum() == pytest.approx(1.0)
    # the same hits have zero weight (noise, < 4 hits, simulation secondaries): 1,227 of 5,527
    assert np.array_equal(w == 0, official == 0)
    assert (official == 0).sum() == 1227
    # the thinned file keeps the full event's normalisation: ours differ by one constant,
    # the sum of the file's weights, to the 6 significant digits the file is written with
    nonzero = official > 0
    ratio = official[nonzero] / w[nonzero]
    assert np.allclose(ratio, THINNED_WEIGHT_SUM, rtol=1e-5)


def test_without_the_secondary_flag_simulation_secondaries_get_weight(
    real: TrackingEvent,
) -> None:
    w = hit_weights(real.truth, real.particles)
    official = real.truth["weight"].to_numpy()
    assert ((w > 0) & (official == 0)).sum() > 0


def test_order_weights_follow_the_published_profile() -> None:
    mat = order_weight_matrix()
    assert mat.shape == (21, 20)
    # 9 hits: exactly the profile [10, 8, 6, 5, 3, 3, 3, 5, 6] / 49
    assert np.allclose(mat[9, :9], np.array(ORDER_PROFILE) / sum(ORDER_PROFILE))
    # each row with >= 4 hits sums to 1; the first hit weighs most
    for n in range(4, 21):
        assert mat[n].sum() == pytest.approx(1.0)
        assert mat[n, 0] == mat[n, :n].max()
    assert not mat[:4].any()


def test_pt_weight_values() -> None:
    pt = np.array([0.01, 0.05, 0.3, 0.5, 1.75, 3.0, 50.0, np.nan])
    assert np.allclose(pt_weight(pt), [0.0, 0.2, 0.2, 0.2, 0.6, 1.0, 1.0, 0.0])


def _toy(nhits: dict[int, int], pt: dict[int, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    hid = 1
    for p, n in nhits.items():
        for i in range(n):
            rows.append((hid, p, 10.0 * (i + 1)))  # tz grows along the track, vertex at 0
            hid += 1
    truth = pd.DataFrame(rows, columns=["hit_id", "particle_id", "tz"])
    parts = pd.DataFrame(
        {
            "particle_id": list(pt),
            "vz": 0.0,
            "px": list(pt.values()),
            "py": 0.0,
        }
    )
    return truth, parts


def test_hit_weights_of_a_toy_event() -> None:
    truth, parts = _toy({1: 9, 2: 9, 3: 3, 4: 25}, {1: 5.0, 2: 0.3, 3: 5.0, 4: 5.0})
    truth = pd.concat(
        [truth, pd.DataFrame({"hit_id": [999], "particle_id": [0], "tz": [1.0]})],
        ignore_index=True,
    )
    w = hit_weights(truth, parts)
    assert w.sum() == pytest.approx(1.0)
    pid = truth["particle_id"].to_numpy()
    prof = np.array(ORDER_PROFILE) / sum(ORDER_PROFILE)
    w1, w2, w3, w4 = (w[pid == p] for p in (1, 2, 3, 4))
    assert np.allclose(w1 / w1.sum(), prof)
    assert w2.sum() / w1.sum() == pytest.approx(0.2)  # pT weight 0.2 vs 1
    assert not w3.any()  # fewer than 4 hits
    assert w[pid == 0] == 0  # noise
    # 25 hits: the 20-hit row for the first 20 hits, nothing beyond
    assert np.allclose(w4[:20] / w4.sum(), order_weight_matrix()[20])
    assert not w4[20:].any()
    # the order comes from |tz - vz|, not from the row order
    shuffled = truth.sample(frac=1.0, random_state=3)
    w_shuffled = pd.Series(hit_weights(shuffled, parts), index=shuffled.index).sort_index()
    assert np.allclose(w_shuffled.to_numpy(), w)


def test_hit_weights_of_an_empty_event() -> None:
    truth, parts = _toy({}, {})
    assert hit_weights(truth, parts).shape == (0,)


# --------------------------------------------------------------------------- throughput


def test_throughput_score_formula() -> None:
    # the winner of the throughput phase (arXiv:2105.01160): accuracy 0.944 at 0.56 s/event
    expected = math.sqrt(math.log(1 + 600 / 0.56)) * (0.944 - 0.5)
    assert throughput_score(0.944, 0.56) == pytest.approx(expected, rel=1e-12)
    assert throughput_score(0.944, 0.56) == pytest.approx(1.1729, abs=1e-4)
    assert throughput_score(0.5, 1.0) == 0.0
    assert throughput_score(0.4, 0.01) == 0.0
    assert throughput_score(0.9, 601.0) == 0.0  # over the challenge's 600 s limit
    assert throughput_score(0.9, 1.0) > throughput_score(0.9, 10.0)
    with pytest.raises(ConfigError, match="time_per_event"):
        throughput_score(0.9, 0.0)
    with pytest.raises(ConfigError, match="score"):
        throughput_score(1.2, 1.0)


# --------------------------------------------------------------------------- efficiencies


def _metrics_event() -> tuple[TrackingEvent, pd.DataFrame]:
    """Particles A, B, C (6 hits, pT 2 GeV), D (6 hits, pT 0.5 GeV), 4 noise hits.

    Tracks: A found whole (track 1); B split 3+3 (tracks 2, 3); C not found; D whole
    (track 4, but below the pT cut); track 5 = 4 noise hits + 1 hit of C (a fake).
    """
    hits = {}
    hid = 1
    for p in (1, 2, 3, 4):
        for _ in range(6):
            hits[hid] = p
            hid += 1
    for _ in range(4):
        hits[hid] = 0
        hid += 1
    truth = truth_of(hits)
    track = {}
    for h, p in hits.items():
        track[h] = {1: 1, 2: 2, 3: 0, 4: 4, 0: 5}[p]
    for h in (10, 11, 12):
        track[h] = 3
    track[13] = 5  # one hit of C on the noise track
    sub = sub_of(track)
    particles = pd.DataFrame(
        {
            "particle_id": [1, 2, 3, 4],
            "vx": 0.0,
            "vy": 0.0,
            "vz": 0.0,
            "px": [2.0, 2.0, 2.0, 0.5],
            "py": 0.0,
            "pz": [0.0, 2.0, -2.0, 0.0],
            "q": 1,
            "nhits": 6,
        }
    )
    hits_df = pd.DataFrame(
        {
            "hit_id": truth["hit_id"],
            "x": 0.0,
            "y": 0.0,
            "z": 0.0,
            "volume_id": 0,
            "layer_id": 0,
            "module_id": 0,
        }
    )
    return TrackingEvent(1, hits_df, particles, truth), sub


def test_efficiency_fake_and_duplicate_rates() -> None:
    event, sub = _metrics_event()
    m = track_metrics(event, sub, pt_min=1.0, min_hits=5)
    assert m["n_reconstructible"] == 3  # A, B, C (D is below 1 GeV)
    assert m["efficiency"] == pytest.approx(1 / 3)  # only A is double-majority matched
    assert m["n_tracks"] == 5
    assert m["fake_rate"] == pytest.approx(1 / 5)  # track 5
    # majority-matched: A (1 track), B (2 tracks): one duplicated particle of two
    assert m["duplicate_rate"] == pytest.approx(1 / 2)
    assert m["efficiency_lo"] < 1 / 3 < m["efficiency_hi"]
    # with the pT cut lowered, D joins (found)
    assert track_metrics(event, sub, pt_min=0.0)["efficiency"] == pytest.approx(2 / 4)
    # short tracks are not candidates: with min_track_hits=4, B's halves drop out
    m4 = track_metrics(event, sub, min_track_hits=4)
    assert m4["n_tracks"] == 3
    assert m4["duplicate_rate"] == 0.0


def test_metrics_aggregate_over_events() -> None:
    event, sub = _metrics_event()
    perfect = sub_of(dict(zip(event.truth["hit_id"], event.truth["particle_id"], strict=False)))
    m = track_metrics([event, event], [sub, perfect])
    assert m["n_events"] == 2
    assert m["n_reconstructible"] == 6
    assert m["efficiency"] == pytest.approx(4 / 6)
    assert m["score"] == pytest.approx((trackml_score(event.truth, sub) + 1.0) / 2)
    with pytest.raises(ConfigError, match="one submission per event"):
        track_metrics([event, event], [sub])


def test_efficiency_vs_pt_and_eta() -> None:
    event, sub = _metrics_event()
    table = efficiency_vs(event, sub, "pt", bins=[0.0, 1.0, 3.0, 10.0])
    assert list(table["n_particles"]) == [1, 3, 0]
    assert list(table["n_matched"]) == [1, 1, 0]
    assert table["efficiency"].iloc[1] == pytest.approx(1 / 3)
    assert np.isnan(table["efficiency"].iloc[2])
    assert np.isnan(table["efficiency_lo"].iloc[2])
    # Clopper-Pearson 68 % for 1 of 1: [0.1587, 1]
    assert table["efficiency_lo"].iloc[0] == pytest.approx(0.158655, abs=1e-5)
    assert table["efficiency_hi"].iloc[0] == 1.0
    eta = efficiency_vs(event, sub, "eta", bins=[-2.0, -0.1, 0.1, 2.0])
    # eta(A) = 0, eta(B) = asinh(1) = 0.88, eta(C) = -0.88; D is below the default 1 GeV
    assert list(eta["n_particles"]) == [1, 1, 1]
    assert list(eta["n_matched"]) == [0, 1, 0]
    with pytest.raises(ConfigError, match="variable"):
        efficiency_vs(event, sub, "phi")


def test_perfect_submission_is_fully_efficient_on_the_real_event(real: TrackingEvent) -> None:
    sub = pd.DataFrame({"hit_id": real.truth["hit_id"], "track_id": real.truth["particle_id"]})
    particles = real.particles.assign(secondary=trackml_secondary(real.particles["particle_id"]))
    event = TrackingEvent(real.event_id, real.hits, particles, real.truth)
    m = track_metrics(event, sub)
    assert m["efficiency"] == 1.0
    assert m["fake_rate"] == 0.0
    assert m["duplicate_rate"] == 0.0
    assert m["n_reconstructible"] > 0
