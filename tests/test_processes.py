"""The process catalogue: names, parameters, and settings that Pythia accepts."""

from __future__ import annotations

import pytest

from colliderlab.core.errors import ConfigError, PythiaSettingError, UnknownNameError
from colliderlab.generate.processes import get_process, list_processes
from colliderlab.generate.pythia import make_pythia

REQUIRED = {
    "ttbar",
    "ttbar_allhad",
    "ttbar_semilep",
    "qcd_dijet",
    "wjets",
    "zjets",
    "z_ll",
    "z_tautau",
    "h_tautau",
    "vh_bb",
    "zprime_ttbar",
    "wprime_xy",
    "minbias",
    "gun_e",
    "gun_gamma",
    "gun_pi",
    "gun_mu",
}


def test_catalogue_has_the_required_processes():
    assert REQUIRED <= {p.name for p in list_processes()}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_process_setting_is_accepted_by_pythia(name):
    _params, spec = get_process(name).resolve()
    assert get_process(name).description
    make_pythia(spec.settings, init=False)  # raises PythiaSettingError on any rejected key


def test_unknown_process_lists_valid_names_and_suggests():
    with pytest.raises(UnknownNameError) as err:
        get_process("ttbr")
    msg = str(err.value)
    assert "Did you mean 'ttbar'" in msg
    assert "qcd_dijet" in msg  # the valid names are listed
    assert isinstance(err.value, KeyError)


def test_parameters_are_typed_and_checked():
    params, spec = get_process("qcd_dijet").resolve({"pthat_min": "500"})
    assert params["pthat_min"] == 500.0
    assert "PhaseSpace:pTHatMin = 500.0" in spec.settings
    with pytest.raises(ConfigError, match=r"pthat_mn.*Did you mean 'pthat_min'"):
        get_process("qcd_dijet").resolve({"pthat_mn": 5})
    with pytest.raises(ConfigError, match="expects a float"):
        get_process("qcd_dijet").resolve({"pthat_min": "lots"})
    with pytest.raises(ConfigError, match="one of"):
        get_process("h_tautau").resolve({"production": "ttH"})
    with pytest.raises(ConfigError, match="mx \\+ my < mw"):
        get_process("wprime_xy").resolve({"mw": 500})


def test_wprime_masses_reach_pythia():
    _, spec = get_process("wprime_xy").resolve({"mw": 3000, "mx": 400, "my": 80})
    assert "34:m0 = 3000.0" in spec.settings
    assert any(s.startswith("9000001:new = X void 1 0 0 400.0") for s in spec.settings)


def test_pythia_rejection_quotes_pythia():
    with pytest.raises(PythiaSettingError, match=r"Foo:bar = 3.*not found in settings"):
        make_pythia(["Foo:bar = 3"], init=False)
    with pytest.raises(PythiaSettingError, match="out of range"):
        make_pythia(["PhaseSpace:pTHatMin = -5"], init=False)


def test_missing_pythia_data_files_are_named(tmp_path):
    """Pythia without its xmldoc (a copied or --target install): the error says where Pythia
    looked and how to point it at the files (PYTHIA8DATA), not 'setting rejected'."""
    import os
    import subprocess
    import sys

    code = "from colliderlab.generate.pythia import make_pythia; make_pythia([], init=False)"
    env = {**os.environ, "PYTHIA8DATA": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "could not read its settings database" in run.stderr
    assert f"{tmp_path}/Index.xml not found" in run.stderr
    assert "PYTHIA8DATA" in run.stderr
