"""Jet-tagging datasets, loaders, training (resume, checkpoints) and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from colliderlab.cli.main import main
from colliderlab.core.errors import ConfigError, DatasetError, UnknownNameError
from colliderlab.tagging import (
    JetSet,
    TrainConfig,
    build_dataset,
    load_dataset,
    read_jets,
    read_top_tagging_hdf5,
    train,
)
from colliderlab.tagging.train import CHECKPOINT, load_checkpoint, trained_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def top_path(tmp_path_factory):
    # 240 jets: enough to check the physics of the labels and to train for a few steps
    return build_dataset(
        "top", tmp_path_factory.mktemp("tagdata"), n_jets=240, workers=2, progress=False
    )


@pytest.fixture(scope="session")
def top_data(top_path):
    return load_dataset(top_path)


def test_top_dataset_follows_the_reference_definition(top_data, top_path):
    n = {s: len(js) for s, js in top_data.items()}
    assert n == {"train": 144, "val": 48, "test": 48}  # 60/20/20 of 240
    allj = JetSet.concatenate(list(top_data.values()))
    assert allj.label.mean() == pytest.approx(0.5)  # balanced classes
    assert ((allj.jet["pt"] > 550) & (allj.jet["pt"] < 650)).all()
    assert (abs(allj.jet["eta"]) < 2.0).all()
    top, qcd = allj.label == 1, allj.label == 0
    # contained top jets: soft-drop mass near m_t, QCD far below; tau32 lower for tops
    assert np.median(allj.jet["msoftdrop"][top]) == pytest.approx(172.5, abs=15)
    assert np.median(allj.jet["msoftdrop"][qcd]) < 100
    assert allj.jet["tau_32"][top].mean() < allj.jet["tau_32"][qcd].mean() - 0.1
    # constituents: ordered by pT, padded with zeros, their sum is the (raw) jet
    pt = allj.constituents["pt"]
    assert (np.diff(pt, axis=1) <= 0).all()
    assert (allj.n_particles >= 1).all()
    px = (pt * np.cos(allj.constituents["phi"])).sum(1)
    py = (pt * np.sin(allj.constituents["phi"])).sum(1)
    raw = np.hypot(px, py)
    assert np.median(raw / allj.jet["pt"]) == pytest.approx(1.0, abs=0.1)
    # the same request is served from the cache
    assert build_dataset("top", top_path.parent.parent, n_jets=240, progress=False) == top_path


def test_particle_inputs_shapes_and_padding(top_data):
    js = top_data["train"]
    features, vectors, mask = js.particle_inputs(32)
    assert features.shape == (len(js), 32, 13)
    assert vectors.shape == (len(js), 32, 4)
    assert ((mask == 0) | (mask == 1)).all()
    assert (features[mask == 0] == 0).all()
    # E >= |p| for every real particle (massless or pion-mass PF candidates)
    p = np.linalg.norm(vectors[..., :3], axis=-1)
    assert (vectors[..., 3][mask == 1] >= p[mask == 1] * (1 - 1e-5)).all()


@pytest.mark.parametrize("model", ["cut", "bdt", "pfn"])
def test_training_separates_tops_from_qcd(top_data, tmp_path, model):
    config = TrainConfig(model=model, epochs=3, batch_size=32, max_particles=32)
    result = train(config, top_data, tmp_path / model, progress=False)
    m = result["metrics"]
    assert set(m) >= {"auc", "accuracy", "rej_30", "rej_50"}
    # even tiny trainings on 144 jets separate contained tops from QCD
    assert m["auc"] > 0.75
    saved = json.loads((tmp_path / model / "result.json").read_text())
    assert saved["metrics"]["auc"] == pytest.approx(m["auc"])


def test_training_resumes_from_its_checkpoint(top_data, tmp_path):
    config = TrainConfig("pfn", epochs=2, batch_size=32, max_particles=16)
    full = train(config, top_data, tmp_path / "full", progress=False)

    def kill_after_first_epoch(entry):
        if entry["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, top_data, tmp_path / "part", progress=False, on_epoch=kill_after_first_epoch)
    assert load_checkpoint(tmp_path / "part" / CHECKPOINT)["epoch"] == 1
    # the rerun starts at epoch 2 and ends exactly where the uninterrupted run did
    resumed = train(config, top_data, tmp_path / "part", progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["metrics"]["auc"] == pytest.approx(full["metrics"]["auc"], abs=1e-9)
    assert resumed["history"][1]["val_loss"] == pytest.approx(
        full["history"][1]["val_loss"], rel=1e-6
    )
    # another configuration in the same directory is refused
    with pytest.raises(ConfigError, match="another configuration"):
        train(
            TrainConfig("pfn", epochs=3, batch_size=32, max_particles=16),
            top_data,
            tmp_path / "part",
            progress=False,
        )
    model, config = trained_model(tmp_path / "part")
    assert config.model == "pfn"
    assert not model.training
    # a checkpoint of another model is refused with a clear message
    with pytest.raises(ConfigError, match="checkpoint of model 'pfn'"):
        load_checkpoint(tmp_path / "part" / CHECKPOINT, expect_model="particlenet")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DatasetError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


def _write_public_file(path, n=40, n_part=200, seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    cols = {}
    n_real = rng.integers(5, 60, n)
    for i in range(n_part):
        real = i < n_real
        pt = np.where(real, 100.0 / (i + 1), 0.0)
        eta = rng.normal(0, 0.3, n)
        phi = rng.normal(0, 0.3, n)
        cols[f"E_{i}"] = pt * np.cosh(eta)
        cols[f"PX_{i}"] = pt * np.cos(phi)
        cols[f"PY_{i}"] = pt * np.sin(phi)
        cols[f"PZ_{i}"] = pt * np.sinh(eta)
    cols["truthE"] = np.zeros(n)
    cols["ttv"] = np.zeros(n)
    cols["is_signal_new"] = rng.integers(0, 2, n)
    df = pd.DataFrame(cols)
    df.to_hdf(path, key="table", mode="w")
    return df


def test_public_top_tagging_hdf5_round_trip(tmp_path):
    df = _write_public_file(tmp_path / "train.h5")
    js = read_top_tagging_hdf5(tmp_path / "train.h5", max_particles=100)
    assert len(js) == 40
    assert js.max_particles == 100
    assert (js.label == df["is_signal_new"].to_numpy()).all()
    assert (
        js.n_particles
        == np.minimum(np.count_nonzero(df[[f"E_{i}" for i in range(100)]], axis=1), 100)
    ).all()
    # the jet is the sum of the (first 200) constituents
    px = df[[f"PX_{i}" for i in range(200)]].sum(axis=1).to_numpy()
    py = df[[f"PY_{i}" for i in range(200)]].sum(axis=1).to_numpy()
    assert np.allclose(js.jet["pt"], np.hypot(px, py), rtol=1e-5)
    assert np.allclose(js.constituents["pt"][:, 0], 100.0, rtol=1e-5)


def test_public_file_with_wrong_columns(tmp_path):
    import pandas as pd

    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_hdf(tmp_path / "x.h5", key="table", mode="w")
    with pytest.raises(DatasetError, match="top-tagging columns"):
        read_top_tagging_hdf5(tmp_path / "x.h5")
    (tmp_path / "y.h5").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="cannot read"):
        read_top_tagging_hdf5(tmp_path / "y.h5")
    with pytest.raises(DatasetError, match="not a colliderlab jet file"):
        read_jets(tmp_path / "x.h5")


def test_bad_jets_are_refused(top_data, tmp_path):
    js = top_data["val"].subset(slice(0, 10))
    empty = js.subset(slice(None))
    for k in empty.constituents:
        empty.constituents[k] = empty.constituents[k].copy()
        empty.constituents[k][3] = 0
    with pytest.raises(DatasetError, match="no constituents"):
        empty.check()
    nan = js.subset(slice(None))
    nan.constituents["eta"] = nan.constituents["eta"].copy()
    nan.constituents["eta"][2, 0] = np.nan
    with pytest.raises(DatasetError, match="NaN/inf"):
        nan.check()
    with pytest.raises(UnknownNameError, match="particlenet"):
        TrainConfig("particlenett").validate()


def test_cli_train_and_bad_model(top_path, tmp_path, capsys):
    data_dir = str(top_path.parent.parent)
    code = main(
        [
            "train",
            "tagging",
            "--dataset",
            "top",
            "--jets",
            "240",
            "--data-dir",
            data_dir,
            "--model",
            "bdt",
            "-o",
            str(tmp_path / "bdt"),
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "bdt"
    assert out["metrics"]["auc"] > 0.75
    code = main(["train", "tagging", "--model", "transformerx", "--data-dir", data_dir])
    assert code == 2
    assert "unknown tagger 'transformerx'" in capsys.readouterr().err


def test_evaluate_writes_table_and_plots(top_path, tmp_path, capsys):
    data_dir = str(top_path.parent.parent)
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "tagging",
            "--dataset",
            "top",
            "--jets",
            "240",
            "--data-dir",
            data_dir,
            "--models",
            "cut",
            "bdt",
            "efn",
            "--seeds",
            "2",
            "--epochs",
            "1",
            "--max-particles",
            "16",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    for model in ("cut", "bdt", "efn"):
        assert f"| {model} |" in table
    results = json.loads((out / "results.json").read_text())["results"]
    assert results["bdt"]["n_runs"] == 2
    mean, std = results["bdt"]["auc"]
    assert 0.75 < mean <= 1.0
    assert std >= 0
    for plot in ("roc.png", "scores.png", "mass_sculpting.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    # a second evaluation reuses the finished trainings
    before = (out / "runs" / "efn-seed1" / "result.json").stat().st_mtime_ns
    assert (
        main(
            [
                "evaluate",
                "tagging",
                "--dataset",
                "top",
                "--jets",
                "240",
                "--data-dir",
                data_dir,
                "--models",
                "efn",
                "--seeds",
                "1",
                "--epochs",
                "1",
                "--max-particles",
                "16",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "runs" / "efn-seed1" / "result.json").stat().st_mtime_ns == before


def test_bench_tagging_compares_onnx_with_pytorch(capsys):
    assert (
        main(
            [
                "bench",
                "tagging",
                "--models",
                "pfn",
                "--particles",
                "16",
                "--min-time",
                "0.05",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    row = result["results"][0]
    assert row["model"] == "pfn"
    assert row["n_params"] > 1000
    for batch in ("batch_1", "batch_1024"):
        assert row[batch]["max_abs_diff"] < 1e-5  # ONNX Runtime reproduces PyTorch
        assert row[batch]["torch_jets_per_s"] > 0
        assert row[batch]["onnx_jets_per_s"] > 0


def test_torchrun_ddp_training(top_path, tmp_path):
    import os
    import subprocess
    import sys

    # two CPU processes (gloo) train one model with DistributedDataParallel (the GPUs of a GPU
    # machine hidden: one process per GPU is the rule there)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "colliderlab.cli.main",
        "train",
        "tagging",
        "--dataset",
        "top",
        "--jets",
        "240",
        "--data-dir",
        str(top_path.parent.parent),
        "--model",
        "pfn",
        "--epochs",
        "2",
        "--max-particles",
        "16",
        "--batch-size",
        "32",
        "-o",
        str(tmp_path / "ddp"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert result["metrics"]["auc"] > 0.65  # learns (each rank sees half the 144 jets)


def test_w_and_quark_gluon_datasets(tmp_path):
    w = JetSet.concatenate(
        list(
            load_dataset(
                build_dataset("w", tmp_path, n_jets=40, workers=2, progress=False)
            ).values()
        )
    )
    assert ((w.jet["pt"] > 300) & (w.jet["pt"] < 400)).all()
    # contained W jets peak near m_W in soft-drop mass; QCD jets lie lower
    assert np.median(w.jet["msoftdrop"][w.label == 1]) == pytest.approx(80.4, abs=12)
    assert np.median(w.jet["msoftdrop"][w.label == 0]) < 60
    qg = JetSet.concatenate(
        list(
            load_dataset(
                build_dataset("qg", tmp_path, n_jets=60, workers=2, progress=False)
            ).values()
        )
    )
    assert ((qg.jet["pt"] > 500) & (qg.jet["pt"] < 550)).all()
    assert (abs(qg.jet["eta"]) < 1.7).all()
    assert "msoftdrop" not in qg.jet  # AK4 jets: no large-R substructure
    # gluons radiate more (C_A / C_F = 9/4): more constituents, wider jets than quarks
    quark, gluon = qg.label == 1, qg.label == 0
    assert qg.jet["n_constituents"][gluon].mean() > 1.15 * qg.jet["n_constituents"][quark].mean()
    assert qg.jet["girth"][gluon].mean() > qg.jet["girth"][quark].mean()


def test_one_process_per_gpu_under_torchrun(monkeypatch):
    """local_device: cuda:LOCAL_RANK when PyTorch sees GPUs, the CPU when it sees none, and a
    clear error when torchrun starts more processes on a node than it has GPUs."""
    import torch

    from colliderlab.core.distributed import local_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert local_device() == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="--nproc-per-node 1"):
        local_device()
