"""``colliderlab bench ...``: benchmarks printed as JSON on stdout."""

from __future__ import annotations

import json


def run_generate(args) -> int:
    from colliderlab.bench.generate import bench_generate
    from colliderlab.core.errors import ConfigError

    if args.events <= 0:
        raise ConfigError(f"--events must be positive; got {args.events}.")
    result = bench_generate(
        args.process, args.events, args.chunk_size, args.pileup, scaling=not args.skip_scaling
    )
    print(json.dumps(result, indent=2))
    return 0


def run_simulate(args) -> int:
    from colliderlab.bench.simulate import bench_simulate
    from colliderlab.core.errors import ConfigError

    if args.events <= 0:
        raise ConfigError(f"--events must be positive; got {args.events}.")
    result = bench_simulate(args.process, args.events, tuple(args.pileup), args.detector)
    print(json.dumps(result, indent=2))
    return 0


def run_tagging(args) -> int:
    import colliderlab.tagging.models  # noqa: F401 - registers the models
    from colliderlab.bench.tagging import bench_tagging, markdown
    from colliderlab.core.registry import lookup

    for m in args.models or []:
        lookup("tagger", m)
    result = bench_tagging(args.models, args.particles, min_time=args.min_time)
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


def run_higgsml(args) -> int:
    from colliderlab.bench.higgsml import bench_higgsml
    from colliderlab.core.errors import ConfigError

    if args.events < 100:
        raise ConfigError(f"--events must be at least 100; got {args.events}.")
    print(json.dumps(bench_higgsml(args.csv, args.events, args.seed), indent=2))
    return 0
