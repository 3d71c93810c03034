"""Chunked, resumable, verified processing on Dask: the engine behind generate and simulate.

A task ``task(config, index, directory) -> sidecar`` makes chunk ``index`` of a dataset: it
writes the chunk file and then its sidecar (both atomically) and returns the sidecar, which
holds at least ``index``, ``file``, ``sha256``, ``n_events`` and ``config_digest``.
:func:`run_chunks` skips the chunks that are complete and intact, runs the others on a Dask
cluster (a LocalCluster with one single-threaded worker process per core by default, an
existing scheduler, or a given client), shows a progress bar, and writes the manifest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from colliderlab.core.errors import ChecksumError, ConfigError, DatasetError, OutputError
from colliderlab.core.files import sha256_file, write_json
from colliderlab.io.store import (
    CHUNK_DIR,
    MANIFEST,
    Dataset,
    chunk_path,
    sidecar_path,
    write_chunk,
)

log = logging.getLogger(__name__)


def finish_chunk(
    events, directory: str | os.PathLike[str], index: int, fmt: str, config_digest: str, **meta: Any
) -> dict[str, Any]:
    """Write chunk ``index`` (atomically), then its sidecar; return the sidecar.

    The sidecar is written last: a chunk counts as done only once both files exist.
    """
    path = chunk_path(directory, index, fmt)
    digest = write_chunk(events, path, fmt)
    side = {
        "index": index,
        "file": f"{CHUNK_DIR}/{path.name}",
        "sha256": digest,
        "bytes": path.stat().st_size,
        "config_digest": config_digest,
        **meta,
    }
    write_json(sidecar_path(directory, index), side)
    return side


def chunk_status(digest: str, directory: Path, index: int) -> dict[str, Any] | None:
    """The sidecar of a complete, intact chunk; ``None`` if the chunk must be (re)made.

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
    if side.get("config_digest") != digest:
        return None
    path = directory / side["file"]
    if not path.is_file() or sha256_file(path) != recorded:
        raise ChecksumError(
            f"chunk {path} is missing or does not match the sha256 recorded when it was "
            f"written ({recorded[:12]}...): it was corrupted or truncated. Add --repair to the "
            "same command to regenerate it."
        )
    return side


def check_output(digest: str, directory: Path, overwrite: bool) -> None:
    """Make ``directory`` ready for the dataset ``digest`` (resume, refuse, or overwrite)."""
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
        if old.get("config_digest") == digest:
            return  # resume (or a no-op if complete)
        if not overwrite:
            what = old.get("description") or old.get("config", {}).get("process", "?")
            raise OutputError(
                f"{directory} already holds another dataset ({what!r}, with other settings, "
                "seed or size). Choose another output directory, or add --overwrite "
                "to replace it."
            )
        remove_dataset(directory)
    elif directory.is_dir() and any(directory.iterdir()):
        if not overwrite:
            raise OutputError(
                f"{directory} is not empty and is not a colliderlab dataset. Choose an empty or "
                "new output directory, or add --overwrite to write into it anyway."
            )
        remove_dataset(directory)
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


def remove_dataset(directory: Path) -> None:
    """Remove what a colliderlab dataset consists of (nothing else in the directory)."""
    (directory / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(directory / CHUNK_DIR, ignore_errors=True)


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
    # Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536, which switches off glibc's
    # dynamic mmap threshold: every large numpy temporary is then a fresh mmap whose pages are
    # zeroed on first touch (the shower simulation 1.5-1.8x slower per block). Our tasks
    # write their outputs and return small results; the default allocator is kept.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with (
        dask.config.set(
            {"distributed.worker.daemon": False, "distributed.nanny.pre-spawn-environ": environ}
        ),
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def map_tasks(
    task: Callable[..., Any],
    items: Sequence[Any],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    on_result: Callable[[Any], None] | None = None,
    key: str = "colliderlab",
    scatter: bool = False,
) -> None:
    """Run ``task(item)`` for every item, on Dask unless there is nothing to spread.

    ``on_result`` gets each result in this process as its task completes (in completion
    order). The tasks run on ``client``, else on the Dask scheduler at ``scheduler``, else on a
    new LocalCluster of ``workers`` single-threaded processes (default: one per core). With
    ``workers == 1``, or at most one item, and neither a client nor a scheduler given, they run
    one after the other in this process (the same results, without a cluster's start-up).
    Each task must write its own output atomically: a run that is killed or fails keeps the
    outputs of the tasks that completed. The first failing task's exception is raised after
    the others have been cancelled. ``scatter=True`` sends the items to the workers first
    (``Client.scatter``) instead of inside the task graph: for items of megabytes (events),
    which Dask would otherwise warn about and route through the scheduler.
    """
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ConfigError(
            f"workers must be an integer >= 1 (Dask worker processes); got {workers!r}."
        )
    items = list(items)
    done = on_result or (lambda result: None)
    if client is None and not scheduler and (workers == 1 or len(items) <= 1):
        for item in items:
            done(task(item))
        return
    if not items:
        return
    own = client is None
    with dask_client(workers, scheduler) if own else contextlib.nullcontext(client) as cl:
        run = uuid.uuid4().hex[:8]  # keys unique on a shared scheduler
        if scatter:
            items = cl.scatter(items)
        futures = [
            cl.submit(task, item, pure=False, key=f"{key}-{run}-{i}")
            for i, item in enumerate(items)
        ]
        _collect(cl, futures, done)


def _collect(client: Any, futures: list[Any], done: Callable[[Any], None]) -> None:
    """``done(result)`` for each future as it completes; on a failure (or an interrupt) the
    other futures are cancelled and the exception is raised."""
    from distributed import as_completed

    try:
        for fut in as_completed(futures):
            done(fut.result())
    except BaseException:
        client.cancel(futures)
        raise


def run_chunks(
    config: Any,
    directory: str | os.PathLike[str],
    task: Callable[[Any, int, str], dict[str, Any]],
    *,
    n_chunks: int,
    n_events: int,
    manifest: Callable[[list[dict[str, Any]] | None], dict[str, Any]],
    desc: str,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    repair: bool = False,
    progress: bool | None = None,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
) -> Dataset:
    """Make the missing chunks of the dataset ``config`` (see the module doc) in ``directory``.

    ``check_output`` must have been called. ``manifest(None)`` is the manifest written while
    the run is incomplete, ``manifest(chunks)`` the final one.
    """
    from tqdm.auto import tqdm

    directory = Path(directory)
    digest = config.digest()
    done: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for i in range(n_chunks):
        try:
            side = chunk_status(digest, directory, i)
        except ChecksumError:
            if not repair:
                raise
            log.warning("remaking corrupted chunk %d", i)
            side = None
        if side is None:
            todo.append(i)
        else:
            done[i] = side
    if not todo and (directory / MANIFEST).is_file():
        with contextlib.suppress(DatasetError):
            return Dataset(directory)  # complete already
    write_json(directory / MANIFEST, manifest(None))

    bar = tqdm(
        total=n_events,
        unit="ev",
        desc=desc,
        smoothing=0.1,
        disable=(None if progress is None else not progress),
    )
    bar.update(sum(s["n_events"] for s in done.values()))
    bar.set_postfix_str(f"chunks {len(done)}/{n_chunks}")
    try:
        if todo:
            own = client is None
            with dask_client(workers, scheduler) if own else contextlib.nullcontext(client) as cl:
                futures = [
                    cl.submit(
                        task,
                        config,
                        i,
                        str(directory.resolve()),
                        pure=False,
                        key=f"colliderlab-{digest[:8]}-{i}",
                    )
                    for i in todo
                ]

                def finished(side: dict[str, Any]) -> None:
                    done[side["index"]] = side
                    bar.update(side["n_events"])
                    bar.set_postfix_str(f"chunks {len(done)}/{n_chunks}")
                    if on_chunk is not None:
                        on_chunk(side)

                _collect(cl, futures, finished)
    finally:
        bar.close()
    write_json(directory / MANIFEST, manifest([done[i] for i in range(n_chunks)]))
    return Dataset(directory)
