"""Running a generation: chunks on Dask, resumable, verified, with a progress bar.

``generate(config, "out/")`` plans ``config.n_chunks`` chunks, skips those already complete
(their sidecar exists and the file matches its sha256), generates the others on a Dask
cluster (a LocalCluster with one single-threaded worker per core by default, or the
scheduler at ``scheduler=ADDRESS``), and writes the manifest. The same seed gives
byte-identical Parquet chunks whatever the number of workers, and a killed run, started again
with the same command, generates only what is missing.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from colliderlab.core.env import data_versions
from colliderlab.core.errors import ChecksumError, DatasetError, OutputError
from colliderlab.core.files import sha256_file, write_json
from colliderlab.core.seeding import chunk_seed
from colliderlab.generate.config import SCHEMA_VERSION, GenerationConfig
from colliderlab.generate.processes import get_process
from colliderlab.io.store import (
    CHUNK_DIR,
    MANIFEST,
    STORE_VERSION,
    Dataset,
    chunk_path,
    combine_cross_sections,
    sidecar_path,
    write_chunk,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- one chunk
def run_chunk(config: GenerationConfig, index: int, directory: str) -> dict[str, Any]:
    """Generate, write and checksum chunk ``index`` (runs on a Dask worker)."""
    from colliderlab.generate.engine import generate_chunk

    events, meta = generate_chunk(config, index, chunk_seed(config.seed, index))
    path = chunk_path(directory, index, config.format)
    digest = write_chunk(events, path, config.format)
    side = {
        "index": index,
        "file": f"{CHUNK_DIR}/{path.name}",
        "sha256": digest,
        "bytes": path.stat().st_size,
        "config_digest": config.digest(),
        **meta,
    }
    write_json(sidecar_path(directory, index), side)
    return side


def chunk_status(config: GenerationConfig, directory: Path, index: int) -> dict[str, Any] | None:
    """The sidecar of a complete, intact chunk; ``None`` if the chunk must be generated.

    Raises :class:`ChecksumError` if the chunk was completed once but its file no longer
    matches its recorded sha256 (corrupted or truncated).
    """
    side_path = sidecar_path(directory, index)
    if not side_path.is_file():
        return None  # never completed (a data file without sidecar is a leftover: redo it)
    try:
        side = json.loads(side_path.read_text())
        recorded = side["sha256"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
        return None
    if side.get("config_digest") != config.digest():
        return None
    path = directory / side["file"]
    if not path.is_file() or sha256_file(path) != recorded:
        raise ChecksumError(
            f"chunk {path} is missing or does not match the sha256 recorded when it was "
            f"written ({recorded[:12]}...): it was corrupted or truncated. Add --repair to the "
            "same command to regenerate it."
        )
    return side


# ----------------------------------------------------------------------------- the run
def _check_output(config: GenerationConfig, directory: Path, overwrite: bool) -> None:
    manifest = directory / MANIFEST
    if directory.exists() and not directory.is_dir():
        raise OutputError(
            f"the output {directory} exists and is not a directory; choose another -o."
        )
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = {}
        if old.get("config_digest") == config.digest():
            return  # resume (or a no-op if complete)
        if not overwrite:
            what = old.get("config", {}).get("process", "?")
            raise OutputError(
                f"{directory} already holds another dataset (process {what!r}, different "
                "settings, seed or size). Choose another output directory, or add --overwrite "
                "to replace it."
            )
        _remove_dataset(directory)
    elif directory.is_dir() and any(directory.iterdir()):
        if not overwrite:
            raise OutputError(
                f"{directory} is not empty and is not a colliderlab dataset. Choose an empty or "
                "new output directory, or add --overwrite to write into it anyway."
            )
        _remove_dataset(directory)
    try:
        (directory / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
        probe = directory / CHUNK_DIR / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputError(
            f"cannot write to the output directory {directory}: {err.strerror or err}. Choose a "
            "directory you can write to (-o), or fix its permissions."
        ) from err


def _remove_dataset(directory: Path) -> None:
    """Remove what a colliderlab dataset consists of (nothing else in the directory)."""
    (directory / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(directory / CHUNK_DIR, ignore_errors=True)


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


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` if given, else to a new LocalCluster."""
    import dask
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as err:
            raise OutputError(
                f"cannot connect to the Dask scheduler at {scheduler!r}: {err}. Check the "
                "address (e.g. tcp://host:8786) and that the scheduler is running."
            ) from err
        with client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    with (
        dask.config.set({"distributed.worker.daemon": False}),
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


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
    from tqdm.auto import tqdm

    from colliderlab.generate.pythia import make_pythia

    directory = Path(output)
    _check_output(config, directory, overwrite)
    # Fail fast on settings Pythia rejects (no init: that happens on the workers).
    _, spec = get_process(config.process).resolve(config.params)
    make_pythia((*spec.settings, *config.settings), init=False)

    done: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for i in range(config.n_chunks):
        try:
            side = chunk_status(config, directory, i)
        except ChecksumError:
            if not repair:
                raise
            log.warning("regenerating corrupted chunk %d", i)
            side = None
        if side is None:
            todo.append(i)
        else:
            done[i] = side
    if not todo and (directory / MANIFEST).is_file():
        with contextlib.suppress(DatasetError):
            if Dataset(directory).manifest.get("complete"):
                return Dataset(directory)
    write_json(directory / MANIFEST, _manifest(config, None))

    bar = tqdm(
        total=config.n_events,
        unit="ev",
        desc=f"generate {config.process}",
        disable=(None if progress is None else not progress),
        smoothing=0.1,
    )
    bar.update(sum(s["n_events"] for s in done.values()))
    bar.set_postfix_str(f"chunks {len(done)}/{config.n_chunks}")
    try:
        if todo:
            with (
                contextlib.nullcontext(client)
                if client is not None
                else dask_client(workers, scheduler)
            ) as client:
                from distributed import as_completed

                futures = [
                    client.submit(
                        run_chunk,
                        config,
                        i,
                        str(directory.resolve()),
                        pure=False,
                        key=f"colliderlab-chunk-{config.digest()[:8]}-{i}",
                    )
                    for i in todo
                ]
                try:
                    for fut in as_completed(futures):
                        side = fut.result()
                        done[side["index"]] = side
                        bar.update(side["n_events"])
                        bar.set_postfix_str(f"chunks {len(done)}/{config.n_chunks}")
                        if on_chunk is not None:
                            on_chunk(side)
                except BaseException:
                    client.cancel(futures)
                    raise
    finally:
        bar.close()
    chunks = [done[i] for i in range(config.n_chunks)]
    write_json(directory / MANIFEST, _manifest(config, chunks))
    return Dataset(directory)
