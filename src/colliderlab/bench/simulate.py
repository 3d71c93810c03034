"""``colliderlab bench simulate``: detector simulation speed next to generation of the same
events, in one run (CPU seconds of this process: per core), at several pile-up values.

Goal: the simulation at least 3x faster than the generation, so that Pythia, not the
detector, is the bottleneck. Memory: the peak of the simulation's allocations (tracemalloc:
numpy and awkward buffers) for chunks of N and 2N events, which scales with the chunk size.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import numpy as np


def _simulate_seconds(sim, events, seed: int, repeat: int = 2) -> float:
    """CPU seconds of simulating ``events`` (best of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        sim(events, np.random.default_rng(seed))
        best = min(best, time.process_time() - t0)
    return best


def _simulate_peak(sim, events, seed: int) -> float:
    """Peak traced MiB (numpy/awkward buffers) of simulating ``events``; timed separately,
    since tracing slows allocations down."""
    tracemalloc.start()
    sim(events, np.random.default_rng(seed))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def bench_simulate(
    process: str = "ttbar",
    n_events: int = 200,
    pileups: tuple[float, ...] = (0.0, 50.0),
    card: str = "generic_lhc",
    seed: int = 1,
) -> dict[str, Any]:
    import awkward as ak

    from colliderlab.core.env import versions
    from colliderlab.core.seeding import chunk_seed
    from colliderlab.detector.card import load_card
    from colliderlab.detector.reco import FastSimulation
    from colliderlab.generate.config import GenerationConfig
    from colliderlab.generate.engine import generate_chunk

    sim = FastSimulation(load_card(card))
    rows = []
    for mu in pileups:
        n = n_events if mu == 0 else max(10, n_events // 4)
        cfg = GenerationConfig(process, n_events=n, seed=seed, chunk_size=n, pileup=mu)
        t0 = time.process_time()
        events, _ = generate_chunk(cfg, 0, chunk_seed(seed, 0))
        t_gen = time.process_time() - t0
        sim(events[:2], np.random.default_rng(0))  # warm-up: imports, FastJet banner
        t_sim = _simulate_seconds(sim, events, seed)
        peak = _simulate_peak(sim, events, seed)
        peak_half = _simulate_peak(sim, events[: n // 2], seed)
        rows.append(
            {
                "pileup": mu,
                "events": n,
                "mean_particles": float(ak.mean(ak.num(events.particles))),
                "generation_events_per_s_per_core": n / t_gen,
                "simulation_events_per_s_per_core": n / t_sim,
                "ratio_simulation_over_generation": t_gen / t_sim,
                "goal_ratio": 3.0,
                "peak_traced_MiB_chunk_N": peak,
                "peak_traced_MiB_chunk_N_over_2": peak_half,
            }
        )
    return {
        "process": process,
        "card": card,
        "results": rows,
        "versions": {
            k: v
            for k, v in versions().items()
            if k in ("colliderlab", "pythia8mc", "awkward", "fastjet", "numpy")
        },
    }
