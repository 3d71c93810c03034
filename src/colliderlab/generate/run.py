"""Running a generation: chunks on Dask, resumable, verified, with a progress bar.

``generate(config, "out/")`` plans ``config.n_chunks`` chunks, skips those already complete
(their sidecar exists and the file matches its sha256), generates the others on a Dask
cluster (a LocalCluster with one single-threaded worker per core by default, or the
scheduler at ``scheduler=ADDRESS``), and writes the manifest. The same seed gives
byte-identical Parquet chunks whatever the number of workers, and a killed run, started again
with the same command, generates only what is missing.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from colliderlab.core.env import data_versions
from colliderlab.core.seeding import chunk_seed
from colliderlab.generate.config import SCHEMA_VERSION, GenerationConfig
from colliderlab.generate.processes import get_process
from colliderlab.io.chunked import check_output, dask_client, finish_chunk, run_chunks
from colliderlab.io.store import (
    STORE_VERSION,
    Dataset,
    combine_cross_sections,
)

__all__ = ["dask_client", "generate", "run_chunk"]


# ----------------------------------------------------------------------------- one chunk
def run_chunk(config: GenerationConfig, index: int, directory: str) -> dict[str, Any]:
    """Generate, write and checksum chunk ``index`` (runs on a Dask worker)."""
    from colliderlab.generate.engine import generate_chunk

    events, meta = generate_chunk(config, index, chunk_seed(config.seed, index))
    return finish_chunk(events, directory, index, config.format, config.digest(), **meta)


def _manifest(config: GenerationConfig, chunks: list[dict[str, Any]] | None) -> dict[str, Any]:
    _, spec = get_process(config.process).resolve(config.params)
    m: dict[str, Any] = {
        "store_version": STORE_VERSION,
        "schema_version": SCHEMA_VERSION,
        "kind": "generation",
        "complete": chunks is not None,
        "config": config.to_dict(),
        "config_digest": config.digest(),
        "description": get_process(config.process).description,
        "pythia_settings": [*spec.settings, *config.settings],
        "seeding": "chunk i uses numpy.random.SeedSequence(seed, spawn_key=(i,)) == "
        "SeedSequence(seed).spawn(n_chunks)[i]",
        "n_chunks": config.n_chunks,
        "versions": data_versions(),
        "units": {"energy": "GeV", "length": "mm", "time": "ns", "cross_section": "pb"},
    }
    if chunks is not None:
        m["n_events"] = sum(c["n_events"] for c in chunks)
        m["chunks"] = chunks
        m["cross_section"] = combine_cross_sections(chunks)
        m["completed"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return m


def generate(
    config: GenerationConfig,
    output: str | os.PathLike[str],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    overwrite: bool = False,
    repair: bool = False,
    progress: bool | None = None,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
) -> Dataset:
    """Generate (or finish generating) the dataset ``config`` in ``output``.

    Parameters
    ----------
    workers : local Dask workers (default: one per core); ignored with ``scheduler``.
    scheduler : address of an existing Dask scheduler (``tcp://host:8786``).
    client : an existing ``distributed.Client`` to use (it is left open).
    overwrite : replace another dataset found in ``output``.
    repair : regenerate chunks whose files are corrupted instead of failing.
    progress : show a progress bar on stderr (``None``: only when stderr is a terminal).
    """
    from colliderlab.generate.pythia import make_pythia

    directory = Path(output)
    check_output(config.digest(), directory, overwrite)
    # Fail fast on settings Pythia rejects (no init: that happens on the workers).
    _, spec = get_process(config.process).resolve(config.params)
    make_pythia((*spec.settings, *config.settings), init=False)
    return run_chunks(
        config,
        directory,
        run_chunk,
        n_chunks=config.n_chunks,
        n_events=config.n_events,
        manifest=lambda chunks: _manifest(config, chunks),
        desc=f"generate {config.process}",
        workers=workers,
        scheduler=scheduler,
        client=client,
        repair=repair,
        progress=progress,
        on_chunk=on_chunk,
    )
