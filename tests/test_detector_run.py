"""``simulate`` and ``pipeline``: Dask runs, determinism, resume, bad input."""

from __future__ import annotations

import json

import awkward as ak
import pytest

from colliderlab.cli.main import main
from colliderlab.core.errors import DatasetError
from colliderlab.detector.run import simulate
from colliderlab.io import Dataset, load

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reco_dataset(tmp_path_factory, zmumu_dataset):
    return simulate(
        zmumu_dataset.directory,
        tmp_path_factory.mktemp("reco") / "zmumu",
        workers=2,
        progress=False,
    )


def test_simulated_dataset_is_complete_and_readable(reco_dataset, zmumu_dataset):
    m = reco_dataset.manifest
    assert m["kind"] == "simulation"
    assert m["complete"]
    assert reco_dataset.n_events == zmumu_dataset.n_events
    assert m["card"]["name"] == "generic_lhc"
    assert m["cross_section"] == zmumu_dataset.manifest["cross_section"]
    ev = load(reco_dataset.directory)
    for coll in (
        "Jet",
        "FatJet",
        "Electron",
        "Muon",
        "Photon",
        "Tau",
        "PFCand",
        "Track",
        "MET",
        "PV",
        "GenPart",
        "JetPFCand",
    ):
        assert coll in ev.fields
    # Z -> mumu: most events have a reconstructed muon; every muon points to a real track
    assert ak.mean(ak.num(ev.Muon) >= 1) > 0.6
    assert ak.all(ev.Track[ev.Muon.track_index].pid == ev.Muon.charge * -13)
    # jet constituents point to PF candidates of the same event
    assert ak.all(ev.JetPFCand.pf_index < ak.num(ev.PFCand))


def test_same_seed_same_bytes_and_resume(tmp_path, reco_dataset, zmumu_dataset):
    again = simulate(zmumu_dataset.directory, tmp_path / "again", workers=1, progress=False)
    assert [c["sha256"] for c in again.chunks] == [c["sha256"] for c in reco_dataset.chunks]
    # lose one chunk (as a killed run would): a rerun remakes just that one, identically
    (tmp_path / "again" / again.chunks[1]["file"]).unlink()
    (tmp_path / "again" / "chunks" / "chunk-000001.json").unlink()
    kept = (tmp_path / "again" / again.chunks[0]["file"]).stat().st_mtime_ns
    resumed = simulate(zmumu_dataset.directory, tmp_path / "again", workers=1, progress=False)
    assert [c["sha256"] for c in resumed.chunks] == [c["sha256"] for c in reco_dataset.chunks]
    assert (tmp_path / "again" / again.chunks[0]["file"]).stat().st_mtime_ns == kept
    other = simulate(zmumu_dataset.directory, tmp_path / "seed2", seed=2, workers=1, progress=False)
    assert other.chunks[0]["sha256"] != reco_dataset.chunks[0]["sha256"]


def test_input_must_be_a_generation_output(tmp_path, reco_dataset):
    with pytest.raises(DatasetError, match="needs the output of `colliderlab generate`"):
        simulate(reco_dataset.directory, tmp_path / "x", workers=1, progress=False)
    with pytest.raises(DatasetError, match="not a colliderlab dataset"):
        simulate(tmp_path, tmp_path / "y", workers=1, progress=False)


def test_incompatible_generation_schema(tmp_path, zmumu_dataset):
    import shutil

    work = tmp_path / "old"
    shutil.copytree(zmumu_dataset.directory, work)
    manifest = json.loads((work / "manifest.json").read_text())
    manifest["schema_version"] = 0
    (work / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="event schema 0"):
        simulate(work, tmp_path / "out", workers=1, progress=False)


def test_pipeline_command(tmp_path, capsys):
    code = main(
        [
            "pipeline",
            "z_ll",
            "-n",
            "60",
            "--chunk-size",
            "30",
            "-o",
            str(tmp_path / "p"),
            "--workers",
            "2",
            "--no-progress",
            "--hits",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["generation"]["n_events"] == 60
    assert out["simulation"]["n_events"] == 60
    assert Dataset(tmp_path / "p" / "reco").kind == "simulation"
    reco = load(tmp_path / "p" / "reco")
    # --hits: every track links to its hits, and a central track has ~13 of them
    assert ak.all(ak.num(reco.Hit) > 0)
    assert ak.sum(reco.Track.n_hits) == ak.sum(reco.Hit.track_index >= 0)


def test_bad_card_fails_before_generating(tmp_path, capsys):
    code = main(
        ["pipeline", "z_ll", "-n", "10", "-o", str(tmp_path / "p"), "--detector", "generic_lhx"]
    )
    assert code == 2
    assert "Did you mean 'generic_lhc'" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
