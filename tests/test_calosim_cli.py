"""The calosim commands: dataset, train, evaluate (tiny sizes)."""

from __future__ import annotations

import json

import h5py
import pytest

from colliderlab.cli.main import main


@pytest.mark.slow
def test_dataset_train_evaluate(tmp_path, capsys):
    common = ["--showers", "300", "--data-dir", str(tmp_path), "--no-progress"]
    assert main(["dataset", "calosim", *common]) == 0
    path = json.loads(capsys.readouterr().out)["path"]
    with h5py.File(path) as f:
        assert f["showers"].shape == (300, 368)  # atlas5: 8 + 160 + 190 + 5 + 5 voxels
        assert f["incident_energies"].shape == (300, 1)
    out = tmp_path / "vae"
    assert (
        main(["train", "calosim", *common, "--model", "vae", "--epochs", "2", "-o", str(out)]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["n_params"] > 0
    rc = main(["evaluate", "calosim", *common, "--models", str(out), "-o", str(tmp_path / "e")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Reference simulation" in text
    assert "speed-up" in text
    assert (tmp_path / "e" / "results.md").is_file()
    # a model name that does not exist
    assert main(["train", "calosim", *common, "--model", "gann", "-o", str(tmp_path / "x")]) == 2
