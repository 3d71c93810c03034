"""Entry point of the ``colliderlab`` command.

Only argparse and the version are imported here, so ``colliderlab --version`` is instant;
each subcommand imports what it needs when it runs. Errors a user can cause
(:class:`~colliderlab.core.errors.ColliderlabError`) are printed as one paragraph on stderr
with exit code 2; results go to stdout as JSON or tables, logs and progress bars to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from colliderlab._version import __version__


def _add_run_options(p) -> None:
    """Options of every chunked, Dask-parallel, resumable command."""
    p.add_argument("--format", choices=("parquet", "root"), default="parquet")
    p.add_argument("--workers", type=int, default=None, help="local Dask workers (default: cores)")
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="use an existing Dask scheduler, e.g. tcp://host:8786",
    )
    p.add_argument("--overwrite", action="store_true", help="replace another dataset in -o")
    p.add_argument("--repair", action="store_true", help="remake corrupted chunks")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


def _add_generate(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate events with Pythia 8 (chunked, on Dask, resumable)",
        description="Generate events of a named process. Rerunning the same command resumes an "
        "interrupted run; the same seed gives byte-identical Parquet chunks.",
    )
    p.add_argument("process", nargs="?", help="process name (see --list)")
    p.add_argument("--list", action="store_true", help="list the processes and their parameters")
    p.add_argument("-n", "--events", type=int, help="number of events")
    p.add_argument("-o", "--output", help="output dataset directory")
    p.add_argument("--seed", type=int, default=1, help="master seed (default 1)")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="process parameter, e.g. -p pthat_min=500 (repeatable)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="settings",
        metavar="KEY=VALUE",
        help="any Pythia 8 setting, e.g. --set PhaseSpace:pTHatMin=200 (repeatable)",
    )
    p.add_argument(
        "--pileup",
        type=float,
        default=0.0,
        metavar="MU",
        help="overlay Poisson(MU) minimum-bias interactions per event",
    )
    p.add_argument("--sigma-z", type=float, default=50.0, help="luminous-region z width, mm (50)")
    p.add_argument("--sigma-xy", type=float, default=0.015, help="transverse width, mm (0.015)")
    p.add_argument("--sigma-t", type=float, default=0.0, help="time spread, ns (0: off)")
    p.add_argument("--chunk-size", type=int, default=500, help="events per chunk file (500)")
    _add_run_options(p)
    p.set_defaults(func="colliderlab.cli.generate:run")


def _add_simulate(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="fast detector simulation of a generated dataset (chunked, resumable)",
        description="Run the Delphes-class detector simulation over a generated dataset.",
    )
    p.add_argument("input", help="generated dataset directory")
    p.add_argument("-o", "--output", required=True, help="output dataset directory")
    _add_sim_options(p)
    p.set_defaults(func="colliderlab.cli.simulate:run")


def _add_sim_options(p) -> None:
    p.add_argument(
        "--detector",
        default="generic_lhc",
        metavar="CARD",
        help="detector card: a shipped name (generic_lhc) or a YAML file",
    )
    p.add_argument("--sim-seed", type=int, default=1, help="seed of the detector response (1)")
    p.add_argument(
        "--hits",
        action="store_true",
        help="also write the tracker hits (Hit collection) for tracking studies",
    )
    p.add_argument(
        "--towers",
        action="store_true",
        help="also write the calorimeter towers with their depth segments (EcalTower, HcalTower)",
    )
    p.add_argument(
        "--calo-model",
        default=None,
        metavar="PATH",
        help="ECAL response of photons and electrons from a shower simulation: 'reference' "
        "(the calosim reference, Pb/LAr), 'reference:GEOMETRY', or a `train calosim` directory",
    )
    _add_run_options(p)


def _add_pipeline(sub) -> None:
    p = sub.add_parser("pipeline", help="generate and simulate in one go: DIR/gen and DIR/reco")
    p.add_argument("process", help="process name (see generate --list)")
    p.add_argument("-n", "--events", type=int, required=True, help="number of events")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=1, help="generation seed (default 1)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE")
    p.add_argument("--pileup", type=float, default=0.0, metavar="MU")
    p.add_argument("--chunk-size", type=int, default=500)
    _add_sim_options(p)
    p.set_defaults(func="colliderlab.cli.simulate:run_pipeline")


def _add_validate(sub) -> None:
    p = sub.add_parser(
        "validate-detector", help="physics validation plots of a detector card (docs/validation)"
    )
    p.add_argument("--detector", default="generic_lhc", metavar="CARD")
    p.add_argument("-o", "--output", default="docs/validation", help="output directory")
    p.add_argument("--scale", type=float, default=1.0, help="sample-size multiplier (1.0)")
    p.set_defaults(func="colliderlab.cli.validate:run")


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="summarise and verify a dataset")
    p.add_argument("dataset", help="dataset directory")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 verification")
    p.set_defaults(func="colliderlab.cli.info:run")


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a generated dataset to another format (HepMC3)")
    p.add_argument("dataset", help="dataset directory")
    p.add_argument("-o", "--output", required=True, help="output file (.hepmc3)")
    p.add_argument("--max-events", type=int, default=None)
    p.set_defaults(func="colliderlab.cli.export:run")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (speed, scaling, memory) as JSON")
    bsub = p.add_subparsers(dest="bench", required=True)
    g = bsub.add_parser("generate", help="colliderlab generation vs a bare pythia8mc loop")
    g.add_argument("--process", default="ttbar")
    g.add_argument("--events", type=int, default=400, help="events per measurement")
    g.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="chunk size for the Dask measurements (default: events/8)",
    )
    g.add_argument("--pileup", type=float, default=0.0)
    g.add_argument("--json", action="store_true", help="print JSON only")
    g.add_argument("--skip-scaling", action="store_true", help="skip the 1- and 2-worker runs")
    g.set_defaults(func="colliderlab.cli.bench:run_generate")
    s = bsub.add_parser("simulate", help="detector simulation vs generation of the same events")
    s.add_argument("--process", default="ttbar")
    s.add_argument("--events", type=int, default=200, help="events at pile-up 0 (1/4 with pile-up)")
    s.add_argument("--pileup", type=float, nargs="+", default=[0.0, 50.0])
    s.add_argument("--detector", default="generic_lhc", metavar="CARD")
    s.add_argument("--json", action="store_true", help="print JSON only")
    s.set_defaults(func="colliderlab.cli.bench:run_simulate")
    t = bsub.add_parser("tagging", help="tagger inference: PyTorch eager vs ONNX Runtime")
    t.add_argument("--models", nargs="+", default=None, help="default: every deep tagger")
    t.add_argument("--particles", type=int, default=64, help="particles per jet (64)")
    t.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    t.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    t.set_defaults(func="colliderlab.cli.bench:run_tagging")
    h = bsub.add_parser("higgsml", help="HiggsML pipeline and BDT training at 250k events")
    h.add_argument("csv", help="source file in the HiggsML format (resampled to --events rows)")
    h.add_argument("--events", type=int, default=250_000, help="rows (default 250000)")
    h.add_argument("--seed", type=int, default=1)
    h.set_defaults(func="colliderlab.cli.bench:run_higgsml")
    from colliderlab.cli import tracking

    tracking.add_bench_parser(bsub)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the quick-start job: generate, summarise, plot")
    p.add_argument("-o", "--output", default="demo-output", help="output directory")
    p.add_argument("-n", "--events", type=int, default=2000, help="events per process")
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(func="colliderlab.cli.demo:run")


def _add_env(sub) -> None:
    p = sub.add_parser("env", help="versions of colliderlab and its dependencies")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="colliderlab.cli.env:run")


def _add_tasks(sub) -> None:
    from colliderlab.cli import calosim, higgsml, tagging, tracking

    ds = sub.add_parser("dataset", help="build a task's dataset (cached)")
    dsub = ds.add_subparsers(dest="task", required=True)
    tr = sub.add_parser("train", help="train a model for a task")
    tsub = tr.add_subparsers(dest="task", required=True)
    ev = sub.add_parser("evaluate", help="compare the models of a task")
    esub = ev.add_subparsers(dest="task", required=True)
    tagging.add_parsers(dsub, tsub, esub)
    higgsml.add_parsers(dsub, tsub, esub)
    calosim.add_parsers(dsub, tsub, esub)
    tracking.add_parsers(dsub, tsub, esub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colliderlab",
        description="Machine learning across the collider data pipeline, on data it generates.",
    )
    parser.add_argument("--version", action="version", version=f"colliderlab {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (
        _add_generate,
        _add_simulate,
        _add_pipeline,
        _add_validate,
        _add_info,
        _add_export,
        _add_tasks,
        _add_bench,
        _add_demo,
        _add_env,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    module_name, _, func_name = args.func.partition(":")
    import importlib

    from colliderlab.core.errors import ColliderlabError

    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(args) or 0)
    except ColliderlabError as err:
        print(f"colliderlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"colliderlab {args.command}: interrupted. Completed chunks are kept; rerun the "
            "same command to resume.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
