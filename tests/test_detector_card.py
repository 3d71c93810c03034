"""The detector card: the shipped default loads; bad cards get errors naming key and fix."""

from __future__ import annotations

import copy
from importlib import resources

import numpy as np
import pytest
import yaml

from colliderlab.core.errors import ConfigError, UnknownNameError
from colliderlab.detector.card import card_from_dict, load_card


@pytest.fixture
def raw():
    text = resources.files("colliderlab.detector.cards").joinpath("generic_lhc.yaml").read_text()
    return yaml.safe_load(text)


def test_generic_lhc_follows_the_delphes_cms_card():
    card = load_card("generic_lhc")
    assert card.field.bz == 3.8
    assert card.field.radius == 1290.0
    # Delphes CMS hadron tracking efficiency: 0.95 (|eta| < 1.5, pT > 1 GeV), 0.85 endcap.
    eff = card.tracker.efficiency["hadron"]
    assert eff(np.array([5.0, 5.0, 0.5, 0.05]), np.array([0.3, 2.0, 0.3, 0.3])).tolist() == [
        0.95,
        0.85,
        0.70,
        0.0,
    ]
    # sigma(pT)/pT of charged hadrons at 100 GeV, |eta| < 0.5: sqrt(0.01^2 + 0.015^2) = 1.8%
    res = card.tracker.resolution["hadron"](np.array([100.0]), np.array([0.2]))
    assert res[0] == pytest.approx(np.hypot(0.01, 0.015))
    # HCAL: sigma/E = sqrt(0.05^2 + 1.5^2/E) at 100 GeV = 15.8%
    sigma = card.hcal.resolution.sigma(np.array([100.0]), np.array([0.0]))
    assert sigma[0] / 100 == pytest.approx(np.sqrt(0.05**2 + 1.5**2 / 100), rel=1e-9)


def test_unknown_key_suggests_the_right_one(raw):
    raw["tracker"]["etamax"] = raw["tracker"].pop("eta_max")
    with pytest.raises(ConfigError, match=r"unknown key 'tracker.etamax'.*Did you mean 'eta_max'"):
        card_from_dict(raw)


def test_missing_key_is_named(raw):
    del raw["ecal"]["energy_min"]
    with pytest.raises(ConfigError, match=r"misses 'ecal.energy_min'"):
        card_from_dict(raw)


def test_negative_resolution_is_refused(raw):
    raw["hcal"]["resolution"]["stochastic"][0] = -1.5
    with pytest.raises(ConfigError, match=r"hcal.resolution.stochastic must be >= 0"):
        card_from_dict(raw)


def test_layer_outside_the_volume(raw):
    bad = copy.deepcopy(raw)
    bad["tracker"]["barrel_radii"][-1] = 1500.0
    with pytest.raises(ConfigError, match=r"r = 1500.0 mm lies outside the tracking volume"):
        card_from_dict(bad)


def test_wrong_type_and_bad_table(raw):
    raw["field"]["bz"] = "strong"
    with pytest.raises(ConfigError, match=r"field.bz must be a number"):
        card_from_dict(raw)


def test_bad_efficiency_table_shape(raw):
    raw["muon"]["efficiency"]["values"] = [[0.95]]
    with pytest.raises(ConfigError, match=r"muon.efficiency.values must be a table of 2 rows"):
        card_from_dict(raw)


def test_card_files_and_names(tmp_path, raw):
    path = tmp_path / "my.yaml"
    raw["name"] = "mine"
    path.write_text(yaml.safe_dump(raw))
    assert load_card(path).name == "mine"
    with pytest.raises(UnknownNameError, match=r"Did you mean 'generic_lhc'"):
        load_card("generic_lhx")
    (tmp_path / "broken.yaml").write_text("field: [unclosed")
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_card(tmp_path / "broken.yaml")
