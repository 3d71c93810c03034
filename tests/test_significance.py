"""Expected discovery significance from binned pyhf likelihoods (colliderlab.higgsml.significance).

Reference numbers are the closed-form Asimov significances of Cowan, Cranmer, Gross, Vitells
(arXiv:1007.1727): a one-bin pyhf model must reproduce them.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from colliderlab.core.errors import ConfigError
from colliderlab.higgsml.significance import (
    compare,
    counting_significance,
    discovery_significance,
    histograms,
    luminosity_to_match,
    significance_table,
    workspace,
)

NO_SYST = {"bkg_norm_unc": 0.0, "mc_stat": False}


def one_bin(s, b, name="z_tautau"):
    return {"signal": [s], "backgrounds": {name: [b]}}


def asimov_z(s, b):
    """Eq. 97 of arXiv:1007.1727, written out here independently of the module."""
    return math.sqrt(2.0 * ((s + b) * math.log(1.0 + s / b) - s))


@pytest.fixture(scope="module")
def events():
    """A toy H -> tautau score sample: signal peaks at 1, three backgrounds at lower scores."""
    rng = np.random.default_rng(7)
    n_sig, n_bkg = 4_000, 12_000
    scores = np.concatenate([rng.beta(5, 2, n_sig), rng.beta(2, 4, n_bkg)])
    labels = np.concatenate([np.ones(n_sig, int), np.zeros(n_bkg, int)])
    weights = np.concatenate([np.full(n_sig, 0.02), rng.uniform(0.5, 1.5, n_bkg)])
    procs = np.concatenate(
        [np.full(n_sig, "higgs"), rng.choice(["z_tautau", "ttbar", "wjets"], n_bkg)]
    )
    return scores, labels, weights, procs


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize(("s", "b"), [(50.0, 200.0), (10.0, 1000.0), (5.0, 1.0), (300.0, 20.0)])
def test_one_bin_without_systematics_matches_asimov_formula(s, b):
    z = discovery_significance(one_bin(s, b), **NO_SYST)
    assert z == pytest.approx(asimov_z(s, b), rel=0.01)  # tolerance: 1 %
    assert counting_significance(s, b) == pytest.approx(asimov_z(s, b), rel=1e-12)


@pytest.mark.parametrize(("s", "b", "unc"), [(50.0, 200.0, 0.1), (10.0, 1000.0, 0.05)])
def test_background_uncertainty_lowers_z_and_matches_cowan_formula(s, b, unc):
    z_stat = discovery_significance(one_bin(s, b), **NO_SYST)
    z_syst = discovery_significance(one_bin(s, b), bkg_norm_unc=unc, mc_stat=False)
    assert z_syst < 0.9 * z_stat
    # normsys is Gaussian in its parameter, Cowan's formula a Poisson control sample:
    # they agree within 3 % for a 5-10 % uncertainty.
    assert z_syst == pytest.approx(counting_significance(s, b, unc * b), rel=0.03)


def test_counting_significance_limits():
    s, b = 20.0, 400.0
    assert counting_significance(s, b, 1e-6) == pytest.approx(counting_significance(s, b), 1e-6)
    # s << b: Z0 -> s / sqrt(b + sigma_b^2)
    assert counting_significance(0.1, 1e4, 300.0) == pytest.approx(0.1 / math.sqrt(1e4 + 9e4), 1e-3)
    assert counting_significance(0.0, b) == 0.0


def test_mc_stat_uncertainty_lowers_z():
    h = one_bin(50.0, 200.0)
    h["backgrounds_sumw2"] = {"z_tautau": [400.0]}  # 10 % MC-stat uncertainty
    z_mc = discovery_significance(h, bkg_norm_unc=0.0, mc_stat=True)
    z = discovery_significance(h, **NO_SYST)
    assert z_mc < 0.9 * z
    assert z_mc == pytest.approx(counting_significance(50.0, 200.0, 20.0), rel=0.05)


# --------------------------------------------------------------------------- shapes and scaling


def test_two_bins_with_different_s_over_b_beat_the_merged_bin():
    split = {"signal": [40.0, 10.0], "backgrounds": {"z_tautau": [40.0, 160.0]}}
    merged = one_bin(50.0, 200.0)
    for opts in (NO_SYST, {"bkg_norm_unc": 0.1, "mc_stat": False}):
        assert discovery_significance(split, **opts) > 1.2 * discovery_significance(merged, **opts)
    # without systematics the bins add in quadrature
    expect = math.hypot(asimov_z(40.0, 40.0), asimov_z(10.0, 160.0))
    assert discovery_significance(split, **NO_SYST) == pytest.approx(expect, rel=0.01)


def test_four_times_the_luminosity_doubles_z_without_systematics():
    h = {
        "signal": [5.0, 12.0, 30.0],
        "backgrounds": {"z_tautau": [300.0, 90.0, 20.0], "ttbar": [50.0, 30.0, 5.0]},
    }
    z1 = discovery_significance(h, **NO_SYST)
    z4 = discovery_significance(h, lumi_scale=4.0, **NO_SYST)
    assert z4 == pytest.approx(2.0 * z1, rel=0.01)  # tolerance: 1 %


def test_luminosity_to_match_recovers_a_known_factor(events):
    h = histograms(*events, bins=5)
    opts = {"bkg_norm_unc": {"z_tautau": 0.05, "ttbar": 0.1, "wjets": 0.2}, "mc_stat": True}
    z3 = discovery_significance(h, lumi_scale=3.0, **opts)
    assert luminosity_to_match(h, z3, **opts) == pytest.approx(3.0, rel=0.01)
    z_half = discovery_significance(h, lumi_scale=0.5, **opts)
    assert luminosity_to_match(h, z_half, **opts) == pytest.approx(0.5, rel=0.01)


def test_luminosity_to_match_is_inf_when_systematics_saturate(caplog):
    # one bin, 10 % on b = 200: Z0 cannot exceed about s / (0.1 b) = 2.5
    with caplog.at_level(logging.WARNING, logger="colliderlab.higgsml.significance"):
        k = luminosity_to_match(one_bin(50.0, 200.0), 4.0, bkg_norm_unc=0.1, mc_stat=False)
    assert k == math.inf
    assert "cannot reach" in caplog.text


def test_bin_without_background_is_merged_not_fatal():
    h = {
        "signal": [5.0, 8.0, 20.0],
        "backgrounds": {"z_tautau": [100.0, 0.0, 10.0]},
        "edges": [0.0, 0.5, 0.8, 1.0],
    }
    spec = workspace(h, **NO_SYST)
    assert spec["observations"][0]["data"] == pytest.approx([105.0, 38.0])
    z = discovery_significance(h, **NO_SYST)
    merged = {"signal": [5.0, 28.0], "backgrounds": {"z_tautau": [100.0, 10.0]}}
    assert z == pytest.approx(discovery_significance(merged, **NO_SYST), rel=1e-6)
    # the last bin without background joins the previous one
    tail = {"signal": [5.0, 8.0], "backgrounds": {"z_tautau": [100.0, 0.0]}}
    assert math.isfinite(discovery_significance(tail))


def test_histograms_with_a_signal_only_bin_give_a_finite_z():
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.95])
    labels = np.array([0, 0, 1, 1, 1])
    h = histograms(scores, labels, None, bins=[0.0, 0.5, 1.0])
    assert h["backgrounds"]["background"].tolist() == [2.0, 0.0]
    assert math.isfinite(discovery_significance(h))


# --------------------------------------------------------------------------- histograms, workspace


def test_histograms_equal_signal_bins_and_process_split(events):
    scores, labels, weights, procs = events
    h = histograms(scores, labels, weights, procs, bins=4)
    assert sorted(h["backgrounds"]) == ["ttbar", "wjets", "z_tautau"]
    sig = labels == 1
    assert h["signal"].sum() == pytest.approx(weights[sig].sum())
    assert h["signal"] == pytest.approx(np.full(4, weights[sig].sum() / 4), rel=0.01)
    assert h["signal_sumw2"].sum() == pytest.approx((weights[sig] ** 2).sum())
    total_b = sum(h["backgrounds"].values()).sum()
    assert total_b == pytest.approx(weights[~sig].sum())
    assert h["edges"][0] == scores.min()
    assert h["edges"][-1] == scores.max()


@pytest.mark.filterwarnings("ignore:jsonschema.RefResolver is deprecated:DeprecationWarning")
def test_workspace_is_valid_pyhf_with_one_normsys_per_background(events):
    import pyhf

    h = histograms(*events, bins=3)
    spec = workspace(h, bkg_norm_unc={"z_tautau": 0.05, "ttbar": 0.1, "wjets": 0.2, "qcd": 0.5})
    model = pyhf.Workspace(spec).model()
    assert model.config.poi_name == "mu"
    assert {"norm_z_tautau", "norm_ttbar", "norm_wjets", "mcstat"} <= set(model.config.parameters)
    mods = {m["name"]: m for s in spec["channels"][0]["samples"] for m in s["modifiers"]}
    assert mods["norm_wjets"]["data"] == {"hi": 1.2, "lo": 0.8}
    expected = h["signal"] + sum(h["backgrounds"].values())
    assert spec["observations"][0]["data"] == pytest.approx(expected.tolist())
    # a spec goes in as well as hists
    assert discovery_significance(spec) == pytest.approx(
        discovery_significance(h, bkg_norm_unc={"z_tautau": 0.05, "ttbar": 0.1, "wjets": 0.2}),
        rel=1e-6,
    )


def test_compare_and_table(events):
    scores, labels, weights, procs = events
    cut = histograms((scores > 0.6).astype(float), labels, weights, procs, bins=[0.5, 1.5])
    analyses = {
        "cut-based": cut,
        "BDT": histograms(scores, labels, weights, procs, bins=3),
        "DNN": histograms(scores, labels, weights, procs, bins=8),
    }
    # 1 %: small enough that the one-bin cut-based analysis can still catch up
    rows = compare(analyses, bkg_norm_unc=0.01, mc_stat=False)
    assert [r["name"] for r in rows] == ["cut-based", "BDT", "DNN"]
    ref = rows[0]
    assert ref["z0_ratio"] == 1.0
    assert ref["lumi_factor"] == 1.0
    for row in rows[1:]:
        assert row["z0"] > ref["z0"]
        assert row["lumi_factor"] > 1.0
        assert discovery_significance(
            cut, bkg_norm_unc=0.01, mc_stat=False, lumi_scale=row["lumi_factor"]
        ) == pytest.approx(row["z0"], rel=1e-3)
    table = significance_table(rows)
    assert table.splitlines()[0].startswith("| analysis | Z0")
    assert "cut-based" in table.splitlines()[0]
    assert len(table.splitlines()) == 2 + len(rows)
    inf_row = dict(ref, name="x", lumi_factor=math.inf)
    assert "∞" in significance_table([*rows, inf_row])


# --------------------------------------------------------------------------- errors


def test_errors_on_bad_events():
    scores, labels = np.array([0.1, 0.5, 0.9]), np.array([0, 1, 1])
    with pytest.raises(ConfigError, match="NaN"):
        histograms([0.1, np.nan, 0.9], labels, None, bins=2)
    with pytest.raises(ConfigError, match="weights has 2 entries"):
        histograms(scores, labels, [1.0, 1.0], bins=2)
    with pytest.raises(ConfigError, match="labels must be"):
        histograms(scores, [0, 1], None, bins=2)
    with pytest.raises(ConfigError, match="processes"):
        histograms(scores, labels, None, ["a"], bins=2)
    with pytest.raises(ConfigError, match="no signal"):
        histograms(scores, [0, 0, 0], None, bins=2)
    with pytest.raises(ConfigError, match="negative sum of weights"):
        histograms([0.1, 0.2, 0.9], [0, 0, 1], [1.0, -3.0, 1.0], bins=[0.0, 0.5, 1.0])
    with pytest.raises(ConfigError, match="strictly increasing"):
        histograms(scores, labels, None, bins=[0.0, 0.0, 1.0])


def test_errors_on_bad_hists_and_options():
    with pytest.raises(ConfigError, match="no signal"):
        discovery_significance({"signal": [0.0], "backgrounds": {"b": [10.0]}})
    with pytest.raises(ConfigError, match="2 bins"):
        workspace({"signal": [1.0, 2.0], "backgrounds": {"b": [10.0]}})
    with pytest.raises(ConfigError, match=">= 0"):
        workspace({"signal": [1.0], "backgrounds": {"b": [-1.0]}})
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        workspace(one_bin(1.0, 10.0), bkg_norm_unc=1.5)
    with pytest.raises(ConfigError, match="For 'z_tatau': Did you mean 'z_tautau'"):
        workspace(one_bin(1.0, 10.0), bkg_norm_unc={"z_tatau": 0.1})
    with pytest.raises(ConfigError, match="only apply to histograms"):
        discovery_significance(workspace(one_bin(1.0, 10.0)), lumi_scale=2.0)
    with pytest.raises(ConfigError, match="z_target"):
        luminosity_to_match(one_bin(1.0, 10.0), -1.0)


def test_unknown_reference_is_named():
    analyses = {"cut-based": one_bin(5.0, 50.0), "BDT": one_bin(8.0, 50.0)}
    with pytest.raises(ConfigError, match="Did you mean 'cut-based'"):
        compare(analyses, reference="cut_based")
