"""Calorimeter showers and tracking events made on Dask: the same data as in one process."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from colliderlab.core.errors import ConfigError, DatasetError
from colliderlab.io.chunked import dask_client, map_tasks


@pytest.fixture(scope="module")
def client():
    with dask_client(2) as c:  # the LocalCluster of the commands
        yield c


def _trim_threshold(_):
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def _write_square(task):
    """Write task**2 to a file named after it; fail for 3 (a stand-in for a bad input)."""
    value, directory = task
    if value == 3:
        raise DatasetError(f"task {value} cannot be made")
    (Path(directory) / f"{value}.txt").write_text(str(value * value))
    return value * value


def _pid(_):
    return os.getpid()


def _total(array):
    return float(array.sum())


def test_large_items_are_scattered_instead_of_sent_in_the_graph(client):
    """Items of megabytes (events) go to the workers by Client.scatter with scatter=True:
    no 'large graph' warning, the same results; without it Dask warns (one warning per
    task at 16 MB each, which is what a graph build printed)."""
    import warnings

    items = [np.full(2_000_000, float(v)) for v in (1, 2)]  # 16 MB each
    for scatter in (True, False):
        results: list[float] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            map_tasks(_total, items, client=client, on_result=results.append, scatter=scatter)
        assert sorted(results) == [2e6, 4e6]
        large = [w for w in caught if "large graph" in str(w.message)]
        assert bool(large) is (not scatter)


def test_map_tasks_in_process_and_on_dask(tmp_path, client):
    items = [(v, str(tmp_path)) for v in (1, 2, 4, 5)]
    local: list[int] = []
    map_tasks(_write_square, items, workers=1, on_result=local.append)
    assert local == [1, 4, 16, 25]  # in order, in this process
    remote: list[int] = []
    map_tasks(_write_square, items, client=client, on_result=remote.append)
    assert sorted(remote) == [1, 4, 16, 25]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.txt", "2.txt", "4.txt", "5.txt"]
    pids: list[int] = []
    map_tasks(_pid, range(4), client=client, on_result=pids.append)
    assert os.getpid() not in pids  # run by the workers
    pids.clear()
    map_tasks(_pid, range(4), workers=1, on_result=pids.append)
    assert pids == [os.getpid()] * 4
    # the workers keep glibc's dynamic mmap threshold (Dask's MALLOC_TRIM_THRESHOLD_ made
    # the shower simulation 1.5-1.8x slower per block)
    seen: list[str | None] = []
    map_tasks(_trim_threshold, range(2), client=client, on_result=seen.append)
    assert seen == [None, None]
    # the worker's exception arrives as it was raised, with its message
    with pytest.raises(DatasetError, match="task 3 cannot be made"):
        map_tasks(_write_square, [(3, str(tmp_path)), (6, str(tmp_path))], client=client)
    with pytest.raises(ConfigError, match="workers must be an integer >= 1"):
        map_tasks(_write_square, items, workers=0)


def test_calosim_dataset_on_dask_equals_the_one_made_in_process(tmp_path, client):
    from colliderlab.calosim.io import read_calochallenge_h5
    from colliderlab.calosim.shower import make_dataset

    kwargs = {"seed": 4, "e_min": 1e3, "e_max": 1e5, "block": 40, "progress": False}
    one = make_dataset(tmp_path / "one.h5", "atlas5", "gamma", 100, **kwargs)
    spread = make_dataset(tmp_path / "dask.h5", "atlas5", "gamma", 100, client=client, **kwargs)
    e1, s1 = read_calochallenge_h5(one, geometry="atlas5")
    e2, s2 = read_calochallenge_h5(spread, geometry="atlas5")
    assert np.array_equal(e1, e2)
    assert np.array_equal(s1, s2)  # three blocks on two workers: the same showers
    assert s1.shape == (100, 368)
    assert (s1.sum(axis=1) > 0).all()
    assert not (tmp_path / "dask.h5.parts").exists()


def test_tracking_dataset_on_dask_equals_the_one_made_in_process(tmp_path, client):
    from colliderlab.tracking.simulate import make_dataset

    one = make_dataset(tmp_path / "one", 2, mu=0, seed=21, progress=False)
    spread = make_dataset(tmp_path / "dask", 2, mu=0, seed=21, progress=False, client=client)
    assert one["written"] == spread["written"] == 2
    files = sorted(p.name for p in (tmp_path / "one").glob("event*.csv.gz"))
    assert len(files) == 8  # hits, cells, particles, truth of two events
    assert files == sorted(p.name for p in (tmp_path / "dask").glob("event*.csv.gz"))
    for name in files:
        a = gzip.decompress((tmp_path / "one" / name).read_bytes())
        b = gzip.decompress((tmp_path / "dask" / name).read_bytes())
        assert a == b, name
    # complete: nothing to do, so no cluster is needed
    again = make_dataset(tmp_path / "dask", 2, mu=0, seed=21, progress=False, workers=2)
    assert (again["written"], again["skipped"]) == (0, 2)
