"""Jet-tagging metrics: ROC, AUC, rejection, aggregation, tables, mass sculpting and plots."""

from __future__ import annotations

import math
import re

import matplotlib
import numpy as np
import pytest
from scipy.stats import mannwhitneyu, norm

from colliderlab.tagging.metrics import (
    accuracy,
    aggregate,
    auc,
    js_divergence,
    mass_sculpting,
    plot_mass_sculpting,
    plot_roc,
    plot_scores,
    rejection_at,
    results_table,
    roc_curve,
    summarize,
    threshold_at,
)

matplotlib.use("Agg")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The hand-computed example: background 0.1, 0.4; signal 0.35, 0.8.
LABELS = np.array([0, 0, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8])


def _gaussians(d: float, n: int = 20_000, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """n background jets ~ N(0, 1) and n signal jets ~ N(d, 1)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n)
    scores = np.concatenate([rng.normal(0.0, 1.0, n), rng.normal(d, 1.0, n)])
    return labels, scores


# --------------------------------------------------------------------------- known values


def test_hand_computed_example():
    eps_b, eps_s, thr = roc_curve(LABELS, SCORES)
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.4, 0.35, 0.1])
    np.testing.assert_array_equal(eps_s, [0.0, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(eps_b, [0.0, 0.0, 0.5, 0.5, 1.0])
    # Pairs (s, b): (0.35, 0.1) win, (0.35, 0.4) lose, (0.8, .) win twice -> 3/4.
    assert auc(LABELS, SCORES) == 0.75
    assert auc(LABELS, SCORES, weights=np.ones(4)) == pytest.approx(0.75)
    assert accuracy(LABELS, SCORES) == 0.75  # predictions 0, 0, 0, 1
    assert accuracy(LABELS, SCORES, threshold=0.3) == 0.75  # 0, 1, 1, 1
    assert threshold_at(LABELS, SCORES, 0.5) == 0.8
    assert threshold_at(LABELS, SCORES, 0.6) == 0.35
    assert threshold_at(LABELS, SCORES, 1.0) == 0.35
    assert rejection_at(LABELS, SCORES, 0.5) == math.inf  # the cut 0.8 tags no background
    assert rejection_at(LABELS, SCORES, 1.0) == 2.0


def test_perfect_separation():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert auc(labels, scores) == 1.0
    assert rejection_at(labels, scores, 0.3) == math.inf
    assert rejection_at(labels, scores, 0.5) == math.inf
    assert rejection_at(labels, scores, 1.0) == math.inf
    summary = summarize(labels, scores)
    assert summary == {"auc": 1.0, "accuracy": 1.0, "rej_30": math.inf, "rej_50": math.inf}


def test_reversed_scores_give_zero_auc():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    assert auc(labels, scores) == 0.0
    assert auc(labels, scores, weights=np.full(6, 2.5)) == 0.0
    assert accuracy(labels, scores) == 0.0


def test_all_tied_scores():
    labels = np.array([0, 1, 0, 1, 1])
    scores = np.full(5, 0.42)
    assert auc(labels, scores) == 0.5
    assert auc(labels, scores, weights=[1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(0.5)
    eps_b, eps_s, _ = roc_curve(labels, scores)
    np.testing.assert_array_equal(eps_b, [0.0, 1.0])
    np.testing.assert_array_equal(eps_s, [0.0, 1.0])
    # Along the diagonal tie segment eps_B = eps_S.
    assert rejection_at(labels, scores, 0.5) == pytest.approx(2.0)


def test_rejection_interpolates_along_a_tie():
    # ROC points (eps_s, eps_b): (0, 0), (0.5, 0), (1, 0.5) [tie at 0.5], (1, 1).
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    assert rejection_at(labels, scores, 0.75) == pytest.approx(4.0)
    assert rejection_at(labels, scores, 0.3) == math.inf


def test_auc_equals_mann_whitney_exactly():
    rng = np.random.default_rng(7)
    for n_s, n_b, decimals in ((50, 80, 1), (400, 300, 2), (1000, 1500, 6)):
        sig = np.round(rng.normal(0.5, 1.0, n_s), decimals)  # coarse rounding makes many ties
        bkg = np.round(rng.normal(0.0, 1.0, n_b), decimals)
        labels = np.concatenate([np.ones(n_s, int), np.zeros(n_b, int)])
        order = rng.permutation(n_s + n_b)
        scores = np.concatenate([sig, bkg])
        u = mannwhitneyu(sig, bkg).statistic
        assert auc(labels[order], scores[order]) == u / (n_s * n_b)
        weighted = auc(labels[order], scores[order], weights=np.ones(n_s + n_b))
        assert weighted == pytest.approx(u / (n_s * n_b), rel=1e-12)


@pytest.mark.parametrize("d", [0.5, 1.0, 2.0])
def test_two_gaussians_match_analytic_values(d):
    labels, scores = _gaussians(d)
    assert auc(labels, scores) == pytest.approx(norm.cdf(d / math.sqrt(2.0)), abs=0.01)
    # At eps_S = 0.5 the cut is the signal median d, where eps_B = P(N(0, 1) > d) = Phi(-d).
    assert threshold_at(labels, scores, 0.5) == pytest.approx(d, abs=0.05)
    assert rejection_at(labels, scores, 0.5) == pytest.approx(1.0 / norm.cdf(-d), rel=0.05)
    assert rejection_at(labels, scores, 0.3) == pytest.approx(
        1.0 / norm.cdf(norm.ppf(0.3) - d), rel=0.05
    )


def test_threshold_at_is_the_tightest_cut_reaching_the_efficiency():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 501)
    scores = rng.random(501)
    sig = np.sort(scores[labels == 1])
    for eps in (0.05, 0.3, 0.5, 0.77, 1.0):
        t = threshold_at(labels, scores, eps)
        n_pass = int(np.sum(sig >= t))
        assert n_pass == math.ceil(eps * sig.size - 1e-9)
        assert np.mean(sig >= t) >= eps - 1e-12


def test_integer_weights_equal_repeated_entries():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)
    weights = rng.integers(0, 4, 300)
    weights[:2] = 1  # keep both classes with positive weight in any case
    labels[:2] = [0, 1]
    rep_labels = np.repeat(labels, weights)
    rep_scores = np.repeat(scores, weights)

    eps_b_w, eps_s_w, thr_w = roc_curve(labels, scores, weights)
    eps_b_r, eps_s_r, thr_r = roc_curve(rep_labels, rep_scores)
    # Zero-weight jets can add thresholds that leave both efficiencies unchanged.
    keep = np.isin(thr_w, thr_r)
    np.testing.assert_array_equal(thr_w[keep], thr_r)
    np.testing.assert_allclose(eps_b_w[keep], eps_b_r, rtol=1e-12)
    np.testing.assert_allclose(eps_s_w[keep], eps_s_r, rtol=1e-12)

    assert auc(labels, scores, weights) == pytest.approx(auc(rep_labels, rep_scores), rel=1e-12)
    assert accuracy(labels, scores, 0.4, weights) == pytest.approx(
        accuracy(rep_labels, rep_scores, 0.4)
    )
    for eps in (0.3, 0.5):
        assert rejection_at(labels, scores, eps, weights) == pytest.approx(
            rejection_at(rep_labels, rep_scores, eps), rel=1e-9
        )
        assert threshold_at(labels, scores, eps, weights) == threshold_at(
            rep_labels, rep_scores, eps
        )
    assert summarize(labels, scores, weights) == pytest.approx(summarize(rep_labels, rep_scores))


# --------------------------------------------------------------------------- several runs


def test_aggregate_mean_and_std():
    runs = [
        {"auc": 0.93, "accuracy": 0.86, "rej_30": 240.0, "rej_50": 80.0, "n_params": 1000},
        {"auc": 0.94, "accuracy": 0.87, "rej_30": 250.0, "rej_50": 90.0, "n_params": 1000},
        {"auc": 0.95, "accuracy": 0.88, "rej_30": 260.0, "rej_50": 85.0, "n_params": 1000},
    ]
    agg = aggregate(runs)
    assert agg["n_runs"] == 3
    assert agg["auc"] == pytest.approx((0.94, 0.01))
    assert agg["rej_30"] == pytest.approx((250.0, 10.0))
    assert agg["rej_50"] == pytest.approx((85.0, np.std([80, 90, 85], ddof=1)))
    assert agg["n_params"] == (1000.0, 0.0)

    single = aggregate(runs[:1])
    assert single["n_runs"] == 1
    assert single["auc"] == (0.93, 0.0)

    inf_runs = [{"rej_50": math.inf}, {"rej_50": math.inf}]
    assert aggregate(inf_runs)["rej_50"] == (math.inf, 0.0)


def test_aggregate_rejects_bad_runs():
    with pytest.raises(ValueError, match="non-empty list"):
        aggregate([])
    with pytest.raises(ValueError, match="run 1 has keys"):
        aggregate([{"auc": 0.9}, {"accuracy": 0.8}])
    with pytest.raises(ValueError, match="'auc' must be a number"):
        aggregate([{"auc": "high"}])


def test_results_table_formats_numbers():
    agg = {
        "auc": (0.9341, 0.0021),
        "accuracy": (0.8612, 0.0009),
        "rej_30": (245.2, 12.4),
        "rej_50": (81.7, 3.2),
        "n_params": (49_000.0, 0.0),
        "train_s_per_epoch": (12.34, 0.56),
        "n_runs": 5,
    }
    plain = {"auc": 0.9, "accuracy": 0.8, "rej_30": math.inf, "rej_50": 7.25}
    table = results_table({"particlenet": agg, "cut|based": plain})
    lines = table.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("| model | AUC | accuracy |")
    assert "parameters" in lines[0]
    assert "train s / epoch" in lines[0]
    assert "runs" in lines[0]
    row = lines[2]
    for text in ("0.934 ± 0.002", "0.861 ± 0.001", "245 ± 12", "82 ± 3", "49,000", "12.3 ± 0.6"):
        assert text in row
    assert row.rstrip(" |").endswith("5")
    other = lines[3]
    assert "cut\\|based" in other
    for text in ("0.900", "0.800", "inf", "7.2"):  # 7.25 rounds half to even
        assert text in other
    assert "±" not in other
    n_cells = [len(re.findall(r"(?<!\\)\|", line)) for line in lines]  # unescaped pipes
    assert n_cells == [n_cells[0]] * 4

    assert "±" not in results_table({"m": aggregate([plain])})
    with pytest.raises(ValueError, match=r"results\['m'\] lacks \['rej_50'\]"):
        results_table({"m": {"auc": 0.9, "accuracy": 0.8, "rej_30": 3.0}})


# --------------------------------------------------------------------------- mass sculpting


def test_js_divergence_known_values():
    p = np.array([0.2, 0.3, 0.5])
    assert js_divergence(p, p) == 0.0
    assert js_divergence(3 * p, p) == pytest.approx(0.0, abs=1e-15)  # normalised first
    assert js_divergence([1, 1, 0, 0], [0, 0, 2, 5]) == 1.0
    expected = 0.5 * math.log2(4 / 3) + 0.25 * (math.log2(2 / 3) + 1.0)
    assert js_divergence([1, 0], [0.5, 0.5]) == pytest.approx(expected)
    assert js_divergence([1, 0], [0.5, 0.5]) == pytest.approx(js_divergence([0.5, 0.5], [1, 0]))
    with pytest.raises(ValueError, match="same number of bins"):
        js_divergence([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        js_divergence([1, -1], [1, 1])


def test_mass_sculpting():
    rng = np.random.default_rng(2)
    mass = rng.exponential(60.0, 20_000)
    bins = np.linspace(0, 300, 31)
    # A score independent of the mass leaves the shape alone.
    h_all, h_pass, jsd_flat = mass_sculpting(mass, rng.random(mass.size), 0.5, bins)
    assert h_all.sum() == pytest.approx(1.0)
    assert h_pass.sum() == pytest.approx(1.0)
    assert jsd_flat < 0.01
    # A score that learned the mass sculpts it towards the cut region.
    score = np.exp(-0.5 * ((mass - 172.5) / 30.0) ** 2) + 0.05 * rng.random(mass.size)
    _, _, jsd_mass = mass_sculpting(mass, score, 0.5, bins)
    assert jsd_mass > 0.5
    # No jet passing: no shape after the cut.
    _, h_none, jsd_none = mass_sculpting(mass, score, 10.0, bins)
    assert not h_none.any()
    assert math.isnan(jsd_none)
    with pytest.raises(ValueError, match="same, non-zero length"):
        mass_sculpting(mass, score[:-1], 0.5, bins)


# --------------------------------------------------------------------------- plots


def _assert_png(path, tmp_path):
    assert path.is_file()
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_plots_write_png_files(tmp_path):
    rc_before = {k: str(v) for k, v in matplotlib.rcParams.items()}
    labels, good = _gaussians(2.0, n=2000)
    _, weak = _gaussians(0.7, n=2000, seed=4)
    perfect = labels + 0.1 * np.random.default_rng(0).random(labels.size)

    curves = {
        "good": roc_curve(labels, good)[:2],
        "weak": roc_curve(labels, weak),  # the full 3-tuple is accepted too
        "perfect": roc_curve(labels, perfect)[:2],  # only infinite rejection below eps_S = 1
    }
    path = plot_roc(curves, tmp_path / "roc.png")
    assert path == tmp_path / "roc.png"
    _assert_png(path, tmp_path)

    path = plot_scores(
        {"good": (labels, good), "weak": (labels, weak), "perfect": (labels, perfect)},
        tmp_path / "sub" / "scores.png",
    )
    _assert_png(path, tmp_path / "sub")

    rng = np.random.default_rng(9)
    bkg = labels == 0
    mass = rng.exponential(60.0, int(bkg.sum()))
    sculpting = {
        "good": (good[bkg], threshold_at(labels, good, 0.5)),
        "weak": (weak[bkg], threshold_at(labels, weak, 0.5)),
        "perfect": (perfect[bkg], threshold_at(labels, perfect, 0.5)),  # no QCD jet passes
    }
    path = plot_mass_sculpting(mass, sculpting, np.linspace(0, 300, 31), tmp_path / "mass.png")
    _assert_png(path, tmp_path)
    # The CMS style applies inside the plot helpers only.
    assert {k: str(v) for k, v in matplotlib.rcParams.items()} == rc_before


def test_plots_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_roc({}, tmp_path / "roc.png")
    with pytest.raises(ValueError, match="same length"):
        plot_roc({"m": ([0.0, 1.0], [0.0, 0.5, 1.0])}, tmp_path / "roc.png")
    with pytest.raises(ValueError, match="labels"):
        plot_scores({"m": ([0, 0], [0.1, 0.2])}, tmp_path / "scores.png")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("labels", "scores", "weights", "message"),
    [
        ([0, 2, 1], [0.1, 0.2, 0.3], None, r"0 \(background\) or 1 \(signal\), found \[2\]"),
        ([0.0, 0.5, 1.0], [0.1, 0.2, 0.3], None, r"found \[0.5\]"),
        (["b", "s"], [0.1, 0.2], None, "labels must be 0/1 numbers"),
        ([1, 1, 1], [0.1, 0.2, 0.3], None, r"no background \(label 0\)"),
        ([0, 0], [0.1, 0.2], None, r"no signal \(label 1\)"),
        ([], [], None, "labels is empty"),
        ([[0, 1]], [[0.1, 0.2]], None, "labels must be 1-D"),
        ([0, 1, 1], [0.1, 0.2], None, "scores has 2 entries but labels has 3"),
        ([0, 1, 1], [0.1, np.nan, 0.3], None, r"scores must be finite.*index 1"),
        ([0, 1], [0.1, np.inf], None, "scores must be finite"),
        ([0, 1], [[0.9, 0.1], [0.2, 0.8]], None, r"scores\[:, 1\]"),
        ([0, 1], ["a", "b"], None, "scores must be numbers"),
        ([0, 1], [0.1, 0.2], [1.0], "weights has 1 entries but labels has 2"),
        ([0, 1], [0.1, 0.2], [1.0, -1.0], "non-negative"),
        ([0, 1], [0.1, 0.2], [1.0, 0.0], "signal weights sum to zero"),
    ],
)
def test_bad_inputs_raise_value_error(labels, scores, weights, message):
    for func in (roc_curve, auc, summarize):
        with pytest.raises(ValueError, match=message):
            func(labels, scores, weights)


@pytest.mark.parametrize("eps", [0.0, -0.1, 1.5, float("nan")])
def test_bad_efficiency_raises(eps):
    with pytest.raises(ValueError, match=r"eps_s must be a signal efficiency in \(0, 1\]"):
        rejection_at(LABELS, SCORES, eps)
    with pytest.raises(ValueError, match="eps_s must be"):
        threshold_at(LABELS, SCORES, eps)


def test_bad_threshold_raises():
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        accuracy(LABELS, SCORES, threshold=float("nan"))
