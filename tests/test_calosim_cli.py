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
    train = ["train", "calosim", *common, "--model", "vae", "--epochs", "2", "-o", str(out)]
    assert main([*train, "--model-arg", "energy_model=iaf", "--model-arg", "hidden=[32]"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_params"] > 0
    assert dict(result["config"]["model_kwargs"])["energy_model"] == "iaf"
    evaluate = ["evaluate", "calosim", *common, "--models", str(out), f"{out}@bfloat16"]
    evaluate += ["-o", str(tmp_path / "e")]
    by_energy = ["--timing-energies", "1", "100", "--timing-showers", "20"]
    assert main([*evaluate, "--large-batch", "100", "--extra-batches", "150", *by_energy]) == 0
    text = capsys.readouterr().out
    assert "Reference simulation" in text
    assert "speed-up batch 100" in text
    assert "batch 150" in text
    assert (tmp_path / "e" / "results.md").is_file()
    timing = json.loads((tmp_path / "e" / "reference_timing.json").read_text())
    assert timing["s_per_shower"] > 0
    rows = json.loads((tmp_path / "e" / "evaluation.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["vae", "vae@bfloat16"]  # DIR@PRECISION: same model
    assert rows[0]["n_params"] == rows[1]["n_params"]
    assert rows[0]["s_per_shower_batch150"] > 0
    # speed-up vs energy: the reference's cost grows with the energy (about 35x from 1 to
    # 100 GeV: the number of spots), the model's does not
    assert "Speed-up vs incident energy" in text
    assert "Speed-up vs incident energy" in (tmp_path / "e" / "results.md").read_text()
    low, high = json.loads((tmp_path / "e" / "speed_vs_energy.json").read_text())
    assert (low["E_GeV"], high["E_GeV"]) == (1.0, 100.0)
    assert high["reference_s"] > 5 * low["reference_s"]
    assert 0 < high["vae"] < 5 * low["vae"]
    assert main([*evaluate, "--timing-energies", "0"]) == 2  # refused before any work
    assert main([*evaluate[:-2], f"{out}@float16", "-o", str(tmp_path / "f")]) == 2
    assert not (tmp_path / "f").exists()
    # a model name that does not exist
    assert main(["train", "calosim", *common, "--model", "gann", "-o", str(tmp_path / "x")]) == 2


def test_train_model_kwargs_from_the_command_line():
    import argparse

    from colliderlab.cli.calosim import _model_kwargs
    from colliderlab.core.errors import ConfigError

    args = argparse.Namespace(
        geometry="atlas5", per_layer=True, model_arg=["sample_noise=1", "hidden=[64, 32]"]
    )
    kwargs = _model_kwargs(args)
    assert kwargs == {"layer_sizes": (8, 160, 190, 5, 5), "sample_noise": 1, "hidden": [64, 32]}
    args.per_layer, args.model_arg = False, ["name=abc"]
    assert _model_kwargs(args) == {"name": "abc"}
    args.model_arg = ["oops"]
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        _model_kwargs(args)


def test_model_spec_with_a_sampling_precision(tmp_path):
    """``--models DIR@bfloat16``: the directory and the precision; an unknown precision is
    refused by name; a directory whose own name holds an '@' is taken as it is."""
    from colliderlab.calosim.evaluate import _precision_spec
    from colliderlab.core.errors import ConfigError

    assert _precision_spec("runs/vae@bfloat16") == ("runs/vae", "bfloat16")
    assert _precision_spec("runs/vae") == ("runs/vae", None)
    with pytest.raises(ConfigError, match="float16"):
        _precision_spec("runs/vae@float16")
    odd = tmp_path / "vae@v2"
    odd.mkdir()
    assert _precision_spec(str(odd)) == (str(odd), None)


def _torchrun(args, port):
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(port), "-m", "colliderlab.cli.main", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_torchrun_ddp_training_and_resume(tmp_path, capsys, monkeypatch):
    common = ["--showers", "240", "--data-dir", str(tmp_path), "--no-progress"]
    out = tmp_path / "ddp"
    train = ["train", "calosim", *common, "--model", "vae", "--batch-size", "60", "-o", str(out)]
    train += ["--model-arg", "hidden=[32]", "--model-arg", "latent_dim=4"]
    # under torchrun the showers must exist first (each process would simulate them)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([*train, "--epochs", "1"]) == 2
    assert "run `colliderlab dataset calosim`" in capsys.readouterr().err
    monkeypatch.delenv("WORLD_SIZE")
    assert main(["dataset", "calosim", *common]) == 0

    # two CPU processes (gloo) train one model with DistributedDataParallel
    proc = _torchrun([*train, "--epochs", "2"], 29541)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["processes"] == 2
    assert result["max_weight_difference_between_processes"] == 0.0  # gradients averaged
    losses = [h["train_loss"] for h in result["history"]]
    assert len(losses) == 2
    assert losses[1] < losses[0]  # it learns
    # raising --epochs resumes from the checkpoint of epoch 2
    proc = _torchrun([*train, "--epochs", "3"], 29542)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((out / "result.json").read_text())
    assert [h["train_loss"] for h in again["history"]][:2] == losses
    assert len(again["history"]) == 3
    # the WGAN is refused under torchrun, by name
    gan = ["train", "calosim", *common, "--model", "wgan", "--epochs", "1"]
    gan += ["-o", str(tmp_path / "g")]
    proc = _torchrun(gan, 29543)
    assert proc.returncode != 0
    assert "the WGAN trains in one process only" in proc.stderr
