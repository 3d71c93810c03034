"""``colliderlab generate``."""

from __future__ import annotations

import json
import sys

from colliderlab.core.errors import ConfigError


def process_table() -> str:
    """The process catalogue as an aligned text table (name, description, parameters)."""
    from colliderlab.generate.processes import list_processes

    rows = []
    for p in list_processes():
        params = ", ".join(f"{k}={v.default}" for k, v in p.params.items() if k != "ecm")
        rows.append((p.name, p.description + (f"  [{params}]" if params else "")))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {desc}" for name, desc in rows)


def run(args) -> int:
    from colliderlab.generate import GenerationConfig, VertexSpread, generate
    from colliderlab.generate.config import parse_assignments

    if args.list:
        print(process_table())
        print(
            "\nall Pythia processes take ecm=13600 (GeV); set parameters with -p NAME=VALUE",
            file=sys.stderr,
        )
        return 0
    missing = [
        flag
        for flag, v in (
            ("PROCESS", args.process),
            ("-n/--events", args.events),
            ("-o/--output", args.output),
        )
        if v is None
    ]
    if missing:
        raise ConfigError(
            f"generate needs {', '.join(missing)}: e.g. `colliderlab generate ttbar -n 1000 -o "
            "ttbar`. `colliderlab generate --list` shows the processes."
        )
    config = GenerationConfig(
        process=args.process,
        n_events=args.events,
        seed=args.seed,
        params=parse_assignments(args.param, "a process parameter (-p)"),
        settings=tuple(args.settings),
        pileup=args.pileup,
        chunk_size=args.chunk_size,
        vertex=VertexSpread(sigma_xy=args.sigma_xy, sigma_z=args.sigma_z, sigma_t=args.sigma_t),
        format=args.format,
    )
    ds = generate(
        config,
        args.output,
        workers=args.workers,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        repair=args.repair,
        progress=args.progress,
    )
    sigma, err = ds.cross_section
    summary = {
        "dataset": str(ds.directory),
        "process": config.process,
        "n_events": ds.n_events,
        "n_chunks": len(ds.chunks),
        "seed": config.seed,
        "pileup": config.pileup,
        "cross_section_pb": sigma,
        "cross_section_err_pb": err,
        "bytes": sum(c["bytes"] for c in ds.chunks),
    }
    print(json.dumps(summary, indent=2))
    return 0
