"""The dataset store: Dask runs, determinism, round trips, resume, corruption, bad input."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import awkward as ak
import numpy as np
import pytest

from colliderlab.core.errors import ChecksumError, ConfigError, DatasetError, OutputError
from colliderlab.core.files import sha256_file
from colliderlab.core.seeding import chunk_seed, chunk_seeds
from colliderlab.generate import GenerationConfig, generate
from colliderlab.generate.engine import generate_chunk
from colliderlab.io import Dataset, load
from colliderlab.io.store import read_chunk

pytestmark = pytest.mark.slow


def shas(ds):
    return [c["sha256"] for c in ds.chunks]


def test_chunk_seed_is_the_spawned_sequence():
    spawned = chunk_seeds(42, 5)
    for i in range(5):
        assert chunk_seed(42, i).generate_state(4).tolist() == spawned[i].generate_state(4).tolist()


def test_manifest_describes_the_dataset(zmumu_dataset, zmumu_config):
    m = zmumu_dataset.manifest
    assert m["complete"]
    assert m["kind"] == "generation"
    assert m["n_events"] == 300
    assert len(m["chunks"]) == 3
    assert m["config"]["seed"] == 11
    assert m["config"]["process"] == "z_ll"
    assert "23:onIfAny = 13" in m["pythia_settings"]
    assert m["versions"]["pythia8mc"] == "8.317.2"
    sigma, err = zmumu_dataset.cross_section
    assert 1.0e3 < sigma < 2.5e3
    assert 0 < err < 0.1 * sigma
    for c in m["chunks"]:
        assert sha256_file(zmumu_dataset.directory / c["file"]) == c["sha256"]
    assert zmumu_dataset.verify() == []


def test_parquet_round_trip_equals_generated_events(zmumu_dataset, zmumu_config):
    events, _ = generate_chunk(zmumu_config, 1, chunk_seed(zmumu_config.seed, 1))
    back = read_chunk(zmumu_dataset.directory / zmumu_dataset.chunks[1]["file"])
    assert ak.array_equal(events, back)
    assert back.event_id[0] == 100  # global event numbers continue across chunks
    full = load(zmumu_dataset.directory)
    assert len(full) == 300
    assert ak.all(full.particles.pt >= 0)  # vector behaviour is attached on read
    assert ak.all(abs(full.particles.eta[full.particles.pt > 1]) < 20)


def test_same_seed_byte_identical_whatever_the_workers(tmp_path, zmumu_dataset, zmumu_config):
    one = generate(zmumu_config, tmp_path / "w1", workers=1, progress=False)
    assert shas(one) == shas(zmumu_dataset)  # zmumu_dataset ran on 2 workers
    other = generate(
        dataclasses.replace(zmumu_config, seed=12, n_events=100),
        tmp_path / "s12",
        workers=1,
        progress=False,
    )
    assert shas(other)[0] != shas(one)[0]


def test_root_round_trip(tmp_path, zmumu_dataset, zmumu_config):
    cfg = dataclasses.replace(zmumu_config, format="root", n_events=100)
    ds = generate(cfg, tmp_path / "root", workers=1, progress=False)
    assert ds.chunks[0]["file"].endswith(".root")
    import uproot

    with uproot.open(tmp_path / "root" / ds.chunks[0]["file"]) as f:
        tree = f["events"]
        assert tree.num_entries == 100
        assert {"nparticles", "particles_px", "truth_pid", "weight"} <= set(tree.keys())
    root_events = load(tmp_path / "root", vector=False)
    parquet_events = read_chunk(zmumu_dataset.directory / zmumu_dataset.chunks[0]["file"])
    assert root_events.fields == parquet_events.fields
    assert ak.array_equal(root_events, parquet_events)
    some = load(tmp_path / "root", columns=["weight", "particles"], vector=False)
    assert some.fields == ["weight", "particles"]
    assert ak.array_equal(some.particles, parquet_events.particles)


def test_corrupted_chunk_is_detected_and_repaired(tmp_path, zmumu_dataset, zmumu_config):
    work = tmp_path / "ds"
    shutil.copytree(zmumu_dataset.directory, work)
    victim = work / zmumu_dataset.chunks[1]["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    ds = Dataset(work)
    assert ds.verify() == [victim]
    with pytest.raises(ChecksumError, match=str(victim)):
        ds.read()
    with pytest.raises(ChecksumError, match="--repair"):
        generate(zmumu_config, work, workers=1, progress=False)
    repaired = generate(zmumu_config, work, workers=1, progress=False, repair=True)
    assert shas(repaired) == shas(zmumu_dataset)


def test_truncated_chunk_is_detected(tmp_path, zmumu_dataset, zmumu_config):
    work = tmp_path / "ds"
    shutil.copytree(zmumu_dataset.directory, work)
    victim = work / zmumu_dataset.chunks[0]["file"]
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(ChecksumError, match="chunk-000000"):
        generate(zmumu_config, work, workers=1, progress=False)


def test_killed_run_resumes_to_identical_dataset(tmp_path, zmumu_dataset, zmumu_config):
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "colliderlab.cli.main",
        "generate",
        "z_ll",
        "-p",
        "flavour=mu",
        "-n",
        "300",
        "--chunk-size",
        "100",
        "--seed",
        "11",
        "--workers",
        "1",
        "-o",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "chunks" / "chunk-000000.json").exists():
        time.sleep(0.2)
    assert (out / "chunks" / "chunk-000000.json").exists(), "the first chunk never completed"
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the run and its Dask workers
    proc.wait()
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    with pytest.raises(DatasetError, match="incomplete"):
        Dataset(out)
    done_before = {p.name for p in (out / "chunks").glob("*.json")}
    assert 1 <= len(done_before) < 3
    first_mtime = (out / "chunks" / "chunk-000000.parquet").stat().st_mtime_ns
    resumed = generate(zmumu_config, out, workers=1, progress=False)
    assert shas(resumed) == shas(zmumu_dataset)
    # The chunk completed before the kill was kept, not regenerated.
    assert (out / "chunks" / "chunk-000000.parquet").stat().st_mtime_ns == first_mtime
    assert not list((out / "chunks").glob(".*.tmp"))


def test_output_directory_holding_another_dataset(tmp_path, zmumu_dataset, zmumu_config):
    work = tmp_path / "ds"
    shutil.copytree(zmumu_dataset.directory, work)
    other = dataclasses.replace(zmumu_config, n_events=100, seed=99)
    with pytest.raises(OutputError, match=r"already holds another dataset.*--overwrite"):
        generate(other, work, workers=1, progress=False)
    ds = generate(other, work, workers=1, progress=False, overwrite=True)
    assert ds.n_events == 100
    assert len(list((work / "chunks").glob("*.parquet"))) == 1


def test_non_dataset_directory_and_unwritable_output(tmp_path, zmumu_config):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("keep me")
    with pytest.raises(OutputError, match="not empty and is not a colliderlab dataset"):
        generate(zmumu_config, tmp_path / "busy", workers=1, progress=False)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="cannot write to the output directory"):
        generate(zmumu_config, tmp_path / "afile" / "sub", workers=1, progress=False)


def test_disk_full_leaves_no_partial_chunk(tmp_path, monkeypatch, zmumu_config):
    import colliderlab.io.store as store

    def full(events, path):
        path.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(store.__dict__, "_write_parquet", full)
    events, _ = generate_chunk(
        dataclasses.replace(zmumu_config, n_events=5, chunk_size=5), 0, chunk_seed(1, 0)
    )
    target = tmp_path / "c.parquet"
    with pytest.raises(OutputError, match="no space left"):
        store.write_chunk(events, target, "parquet")
    assert list(tmp_path.iterdir()) == []


def test_atomic_outputs_have_the_permissions_of_a_plain_file(tmp_path):
    """Outputs written through a temporary file are readable like any new file (0o666 less
    the umask), not 0o600 like the temporary file: other users of a shared filesystem read
    them."""
    import os
    import stat

    from colliderlab.core.files import write_json

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_json(tmp_path / "out.json", {"a": 1})
    mode = stat.S_IMODE(os.stat(tmp_path / "out.json").st_mode)
    assert mode == stat.S_IMODE(os.stat(plain).st_mode)


@pytest.mark.parametrize("n", [0, -5])
def test_non_positive_event_count(n):
    with pytest.raises(ConfigError, match="positive integer"):
        GenerationConfig("z_ll", n_events=n)


def test_foreign_and_damaged_directories(tmp_path):
    with pytest.raises(DatasetError, match="not a colliderlab dataset"):
        Dataset(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        Dataset(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"store_version": 99, "complete": True}))
    with pytest.raises(DatasetError, match="store_version 99"):
        Dataset(tmp_path)
    (tmp_path / "x.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match="cannot read chunk"):
        read_chunk(tmp_path / "x.parquet")


def test_luminosity_weights_are_unit_for_unweighted_generation(zmumu_dataset):
    ev = load(zmumu_dataset.directory, columns=["weight", "n_pileup"], vector=False)
    assert np.all(ak.to_numpy(ev.weight) == 1.0)
    assert ev.fields == ["weight", "n_pileup"]


def test_existing_scheduler_address(tmp_path, zmumu_dataset, zmumu_config):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        ds = generate(
            dataclasses.replace(zmumu_config, n_events=100),
            tmp_path / "sched",
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    # The first chunk is the same bytes as in the 3-chunk dataset made on a LocalCluster.
    assert shas(ds)[0] == shas(zmumu_dataset)[0]
