"""The command line: version, listing, errors as one paragraph, JSON results, export."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from colliderlab.cli.main import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_is_fast_and_imports_nothing_heavy():
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "colliderlab.cli.main", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout.startswith("colliderlab ")
    assert time.perf_counter() - t0 < 5  # generous for a loaded CI machine; ~0.1 s normally
    probe = (
        "import sys, colliderlab.cli.main; "
        "print(any(m in sys.modules for m in ('awkward', 'pythia8mc', 'dask', 'numpy')))"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )


def test_list_shows_every_process_with_a_description(capsys):
    code, out, _ = run_cli(capsys, "generate", "--list")
    assert code == 0
    for name in ("ttbar_semilep", "qcd_dijet", "wprime_xy", "gun_gamma", "minbias"):
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 20


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["generate", "ttbr", "-n", "5", "-o", "{tmp}/x"],
            "unknown process 'ttbr'. Did you mean 'ttbar'",
        ),
        (["generate", "z_ll", "-n", "0", "-o", "{tmp}/x"], "positive integer"),
        (["generate", "z_ll", "-n", "5"], "needs -o/--output"),
        (
            ["generate", "z_ll", "-n", "5", "-o", "{tmp}/x", "--set", "Foo:bar=1"],
            "Pythia rejected the setting 'Foo:bar = 1'",
        ),
        (["generate", "z_ll", "-n", "5", "-o", "{tmp}/x", "--set", "nonsense"], "Key = Value"),
        (
            ["generate", "z_ll", "-n", "5", "-o", "{tmp}/x", "-p", "flavor=mu"],
            "Did you mean 'flavour'",
        ),
        (["info", "{tmp}"], "not a colliderlab dataset"),
    ],
)
def test_bad_input_gets_one_paragraph_error(capsys, tmp_path, argv, message):
    code, _out, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.startswith("colliderlab ")


def test_env_reports_versions(capsys):
    code, out, _ = run_cli(capsys, "env", "--json")
    v = json.loads(out)
    assert code == 0
    assert v["pythia8mc"] == "8.317.2"
    assert v["colliderlab"]


@pytest.mark.slow
def test_info_and_hepmc_export(capsys, tmp_path, zmumu_dataset):
    code, out, _ = run_cli(capsys, "info", str(zmumu_dataset.directory), "--json")
    info = json.loads(out)
    assert code == 0
    assert info["verified"]
    assert info["n_events"] == 300
    target = tmp_path / "z.hepmc3"
    code, out, _ = run_cli(
        capsys, "export", str(zmumu_dataset.directory), "-o", str(target), "--max-events", "7"
    )
    assert code == 0
    assert json.loads(out)["events"] == 7
    import pyhepmc

    from colliderlab.io import load

    events = load(zmumu_dataset.directory)
    with pyhepmc.open(str(target)) as f:
        read = list(f)
    assert len(read) == 7
    first = read[0]
    final = [p for p in first.particles if p.status == 1]
    assert len(final) == len(events.particles[0])
    assert [p.pid for p in final] == events.particles.pid[0].tolist()
    assert final[0].momentum.e == pytest.approx(float(events.particles.E[0][0]))
    beams = [p for p in first.particles if p.status == 4]
    assert [p.pid for p in beams] == [2212, 2212]
    # Energy is conserved between the beams and the final state (GeV).
    assert sum(p.momentum.e for p in final) == pytest.approx(13600.0, rel=1e-6)
    assert first.cross_section.xsec() == pytest.approx(zmumu_dataset.cross_section[0])


@pytest.mark.slow
def test_demo_writes_summary_and_plot(tmp_path, capsys):
    code = main(["demo", "-o", str(tmp_path / "demo"), "-n", "200", "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "z_ll" in out
    assert "ttbar" in out
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    # generator-level facts (tolerances: 1 GeV on medians of >= 150 resonances)
    assert summary["z_peak_truth_GeV"] == pytest.approx(91.19, abs=1.0)
    assert summary["top_peak_GeV"] == pytest.approx(172.5, abs=1.0)
    # ttbar: ~6 jets above 20 GeV per event and on average more than one b tag
    assert 4 < summary["ttbar_jets_per_event"] < 8
    assert 0.8 < summary["ttbar_btags_per_event"] < 1.6
    assert (tmp_path / "demo" / "demo.png").stat().st_size > 10_000
