"""``colliderlab bench generate``: colliderlab generation against a bare pythia8mc loop.

Measured in one process, one after the other and repeated (best of ``repeat``), so that the
ratio is robust to a noisy machine:

* ``bare``: ``pythia.next()`` plus a plain Python loop copying the final-state particles'
  pdgId, charge, four-momentum, mass and production vertex into numpy arrays: what a user
  writes by hand to get the same particle data out of Pythia.
* ``colliderlab``: one chunk through colliderlab's own code: the same particles plus the
  truth record, the luminous-region vertices, the awkward event array and the Parquet file
  with its sha256.

Both include Pythia's initialisation and are timed in CPU seconds of this process
(``time.process_time``: events per second *per core*, insensitive to other load on the
machine). Then the Dask runs (wall-clock, cluster already started) with 1 and 2 local workers (the
same events in chunks), and the peak memory of the worker processes for N and 2N events.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def bare_loop(settings, seed: int, n_events: int, veto=None) -> float:
    """CPU seconds for init + ``n_events`` of a bare pythia8mc loop extracting the final state."""
    from colliderlab.generate.pythia import make_pythia

    t0 = time.process_time()
    gen = make_pythia(settings, seed=seed, veto=veto)
    py = gen.pythia
    for _ in range(n_events):
        py.next()
        rows = []
        for q in py.event:
            if q.isFinal():
                rows.append(
                    (
                        q.id(),
                        q.charge(),
                        q.px(),
                        q.py(),
                        q.pz(),
                        q.e(),
                        q.m(),
                        q.xProd(),
                        q.yProd(),
                        q.zProd(),
                        q.tProd(),
                    )
                )
        np.array(rows)
    return time.process_time() - t0


def colliderlab_chunk(config, out_dir: Path) -> float:
    """CPU seconds for one colliderlab chunk of ``config.n_events`` events, written to Parquet."""
    from colliderlab.core.seeding import chunk_seed
    from colliderlab.generate.engine import generate_chunk
    from colliderlab.io.store import write_chunk

    t0 = time.process_time()
    events, _ = generate_chunk(config, 0, chunk_seed(config.seed, 0))
    write_chunk(events, out_dir / "bench.parquet", "parquet")
    return time.process_time() - t0


class PeakRSS:
    """Samples the resident memory of this process's children (the Dask workers)."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak_worker = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for child in self._proc.children(recursive=True):
                try:
                    self.peak_worker = max(self.peak_worker, child.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _warm_up() -> None:
    import colliderlab.generate.engine
    import colliderlab.io.store  # noqa: F401


def dask_run(config, workers: int) -> tuple[float, int]:
    """(wall seconds, peak worker RSS in bytes) of ``generate`` on a LocalCluster.

    The cluster is started before the clock starts: this is the generation throughput.
    """
    from colliderlab.generate.run import generate
    from colliderlab.io.chunked import dask_client

    with tempfile.TemporaryDirectory() as tmp, dask_client(workers) as client:
        client.wait_for_workers(workers)
        client.run(_warm_up)  # imports happen before the clock starts
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            generate(config, Path(tmp) / "ds", client=client, progress=False)
            wall = time.perf_counter() - t0
    return wall, mem.peak_worker


def bench_generate(
    process: str = "ttbar",
    n_events: int = 400,
    chunk_size: int | None = None,
    pileup: float = 0.0,
    seed: int = 1,
    repeat: int = 3,
    scaling: bool = True,
) -> dict[str, Any]:
    """Run the generation benchmark; return a JSON-able dict of rates and ratios."""
    import dataclasses
    import os

    from colliderlab.core.env import versions
    from colliderlab.core.seeding import chunk_seed, pythia_seed
    from colliderlab.generate.config import GenerationConfig
    from colliderlab.generate.processes import get_process

    one_chunk = GenerationConfig(
        process, n_events=n_events, seed=seed, chunk_size=n_events, pileup=pileup
    )
    _, spec = get_process(process).resolve({})
    # The bare loop uses the same Pythia seed as the chunk's hard-scatter generator.
    hard_seed = pythia_seed(chunk_seed(seed, 0).spawn(3)[0])
    t_bare, t_cl = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            if pileup == 0:
                t_bare.append(bare_loop(spec.settings, hard_seed, n_events, spec.veto))
            t_cl.append(colliderlab_chunk(one_chunk, Path(tmp)))
    result: dict[str, Any] = {
        "process": process,
        "events": n_events,
        "pileup": pileup,
        "repeat": repeat,
        "colliderlab_events_per_s_per_core": n_events / min(t_cl),
    }
    if t_bare:
        result["bare_pythia_events_per_s_per_core"] = n_events / min(t_bare)
        result["ratio_colliderlab_over_bare"] = min(t_bare) / min(t_cl)
        result["goal_ratio"] = 0.9
    if scaling:
        cs = chunk_size or max(1, n_events // 8)
        # Dask measurements: 2N events (N events per worker with 2 workers), then 4N.
        n_dask = 2 * n_events
        cfg = GenerationConfig(process, n_events=n_dask, seed=seed, chunk_size=cs, pileup=pileup)
        w1, _ = dask_run(cfg, 1)
        w2, mem2 = dask_run(cfg, 2)
        cfg2 = dataclasses.replace(cfg, n_events=2 * n_dask)
        w2n, mem2n = dask_run(cfg2, 2)
        result.update(
            {
                "chunk_size": cs,
                "dask_events": n_dask,
                "dask_1_worker_events_per_s": n_dask / w1,
                "dask_2_workers_events_per_s": n_dask / w2,
                "speedup_2_over_1_workers": w1 / w2,
                "goal_speedup": 1.8,
                "peak_worker_rss_MiB_N": mem2 / 2**20,
                "peak_worker_rss_MiB_2N": mem2n / 2**20,
                "dask_2_workers_2N_events_per_s": 2 * n_dask / w2n,
                "cores": os.cpu_count(),
            }
        )
    result["versions"] = {
        k: v
        for k, v in versions().items()
        if k in ("colliderlab", "pythia8mc", "awkward", "pyarrow", "dask", "python")
    }
    return result
