"""Shared fixtures. Caches (matplotlib, Dask scratch) are pointed into a temporary directory."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _hermetic(tmp_path_factory):
    base = tmp_path_factory.mktemp("caches")
    os.environ.setdefault("MPLCONFIGDIR", str(base / "mpl"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    import dask

    with dask.config.set({"temporary-directory": str(base / "dask")}):
        yield


@pytest.fixture(scope="session")
def zmumu_config():
    from colliderlab.generate import GenerationConfig

    return GenerationConfig("z_ll", n_events=300, seed=11, chunk_size=100, params={"flavour": "mu"})


@pytest.fixture(scope="session")
def zmumu_dataset(tmp_path_factory, zmumu_config):
    """A small Z -> mumu dataset generated once through Dask with 2 workers."""
    from colliderlab.generate import generate

    return generate(
        zmumu_config, tmp_path_factory.mktemp("data") / "zmumu", workers=2, progress=False
    )
