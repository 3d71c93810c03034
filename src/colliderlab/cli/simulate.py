"""``colliderlab simulate`` and ``colliderlab pipeline``."""

from __future__ import annotations

import json
from pathlib import Path


def _summary(ds) -> dict:
    return {
        "dataset": str(ds.directory),
        "kind": ds.kind,
        "n_events": ds.n_events,
        "n_chunks": len(ds.chunks),
        "bytes": sum(c["bytes"] for c in ds.chunks),
    }


def run(args) -> int:
    from colliderlab.detector.run import simulate

    ds = simulate(
        args.input,
        args.output,
        card=args.detector,
        seed=args.sim_seed,
        format=args.format,
        hits=args.hits,
        towers=args.towers,
        calo_model=args.calo_model,
        workers=args.workers,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        repair=args.repair,
        progress=args.progress,
    )
    print(json.dumps(_summary(ds), indent=2))
    return 0


def run_pipeline(args) -> int:
    from colliderlab.detector.card import load_card
    from colliderlab.detector.run import resolve_calo_model, simulate
    from colliderlab.generate import GenerationConfig, generate
    from colliderlab.generate.config import parse_assignments
    from colliderlab.io.chunked import dask_client

    card = load_card(args.detector)  # a bad card fails before any event is generated
    if args.calo_model is not None:  # so does a bad calorimeter model
        resolve_calo_model(args.calo_model)
    config = GenerationConfig(
        process=args.process,
        n_events=args.events,
        seed=args.seed,
        params=parse_assignments(args.param, "a process parameter (-p)"),
        settings=tuple(args.settings),
        pileup=args.pileup,
        chunk_size=args.chunk_size,
    )
    out = Path(args.output)
    with dask_client(args.workers, args.scheduler) as client:
        gen = generate(
            config,
            out / "gen",
            client=client,
            overwrite=args.overwrite,
            repair=args.repair,
            progress=args.progress,
        )
        reco = simulate(
            out / "gen",
            out / "reco",
            card=card,
            seed=args.sim_seed,
            format=args.format,
            hits=args.hits,
            towers=args.towers,
            calo_model=args.calo_model,
            client=client,
            overwrite=args.overwrite,
            repair=args.repair,
            progress=args.progress,
        )
    print(
        json.dumps(
            {
                "generation": _summary(gen),
                "simulation": _summary(reco),
                "cross_section_pb": gen.cross_section[0],
            },
            indent=2,
        )
    )
    return 0
