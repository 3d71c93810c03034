"""``colliderlab dataset|train|evaluate tracking`` and ``colliderlab bench tracking``."""

from __future__ import annotations

import json
from pathlib import Path

from colliderlab.core.errors import ConfigError


def _dataset_dir(args, mu: float, n: int, seed: int) -> Path:
    return Path(args.data_dir) / "tracking" / f"{args.process}-mu{mu:g}-n{n}-seed{seed}"


def _make(args, mu: float, n: int, seed: int) -> Path:
    from colliderlab.tracking.simulate import make_dataset

    directory = _dataset_dir(args, mu, n, seed)
    make_dataset(
        directory,
        n,
        mu=mu,
        seed=seed,
        process=args.process,
        progress=args.progress,
        workers=args.workers,
        scheduler=args.scheduler,
    )
    return directory


def _events(args, mu: float, n: int, seed: int):
    """The events of ``--input`` (TrackML files) or of a (cached) simulated dataset."""
    from colliderlab.tracking.io import list_events, read_event

    directory = Path(args.input) if args.input else _make(args, mu, n, seed)
    prefixes = list_events(directory)
    if not prefixes:
        raise ConfigError(
            f"no TrackML events (event*-hits.csv[.gz]) in {directory}; point --input at a "
            "directory of TrackML files or leave it out to simulate events."
        )
    return [read_event(p) for p in prefixes[:n]], directory


def _finders(args):
    from colliderlab.tracking.finders import make_finder

    finders = {}
    for name in args.finders:
        if name == "gnn":
            if not args.gnn:
                raise ConfigError(
                    "the gnn finder needs a trained model: pass --gnn RUN_DIR (made by "
                    "`colliderlab train tracking --model gnn`) or leave gnn out of --finders."
                )
            options = {} if args.gnn_threshold is None else {"threshold": args.gnn_threshold}
            finders[name] = make_finder(
                "gnn", checkpoint=args.gnn, device=args.gnn_device, **options
            )
        else:
            finders[name] = make_finder(name)
    return finders


def _threads(n: int) -> None:
    import os

    os.environ.setdefault("NUMBA_NUM_THREADS", str(n))
    import torch

    torch.set_num_threads(n)


def run_dataset(args) -> int:
    directory = _make(args, args.pileup, args.events, args.seed)
    print(json.dumps({"path": str(directory), "events": args.events, "mu": args.pileup}))
    return 0


def run_train(args) -> int:
    from colliderlab.tracking.gnn import TrainConfig, train

    if args.model != "gnn":
        raise ConfigError(
            f"only the gnn finder is trained; got --model {args.model!r}. The classical finders "
            "(ckf, dbscan) need no training: run `colliderlab evaluate tracking`."
        )
    config = _train_config(args, TrainConfig)
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1; got {args.threads}.")
    _threads(args.threads)
    if args.val_events < 0:
        raise ConfigError(f"--val-events must be >= 0; got {args.val_events}.")
    if args.val_events and args.input:
        raise ConfigError(
            "--val-events simulates validation events; with --input (TrackML files) leave it "
            "out, or simulate the training events too."
        )
    from colliderlab.tracking.gnn import _device

    _device(args.device)  # a clear error before any event is made
    events, directory = _events(args, args.pileup, args.events, args.seed)
    val = None
    if args.val_events:
        val_seed = args.val_seed if args.val_seed is not None else args.seed + 1000
        if val_seed == args.seed:
            raise ConfigError("--val-seed must differ from --seed (the training events).")
        val, _ = _events(args, args.pileup, args.val_events, val_seed)
    out = Path(args.output or f"runs/tracking/gnn-mu{args.pileup:g}")
    result = train(
        events,
        out,
        config,
        val=val,
        progress=args.progress,
        on_epoch=_print_epoch,
        device=args.device,
        workers=args.workers,
        scheduler=args.scheduler,
        recompute=args.recompute,
    )
    print(json.dumps({"data": str(directory), "output": str(out), **_jsonable(result)}, indent=2))
    return 0


def _print_epoch(entry) -> None:
    """One line per finished epoch on stderr (stage, epoch, losses, validation metrics)."""
    import sys

    text = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()
    )
    print(text, file=sys.stderr, flush=True)


#: ``train tracking`` options that set a TrainConfig field of the same name (dashes for
#: underscores); left out, the TrainConfig default holds.
TRAIN_OPTIONS = (
    ("epochs", int, "GNN epochs"),
    ("hidden", int, "width of the interaction network"),
    ("iterations", int, "message-passing iterations"),
    ("lr", float, "Adam learning rate"),
    ("lr_step", int, "halve the learning rate every this many epochs"),
    ("filter_epochs", int, "epochs of the edge-filter MLP before the GNN (0: no filter)"),
    ("filter_efficiency", float, "the filter keeps this fraction of true pT > 1 GeV edges"),
    ("filter_hidden", int, "width of the edge-filter MLP"),
    ("filter_layers", int, "hidden layers of the edge-filter MLP"),
    ("map_level", str, "graph construction map: layer or module"),
    ("aggregation", str, "message aggregation: sum, mean or max"),
    ("mlp_layers", int, "hidden layers per MLP of the network"),
    ("pos_weight", float, "weight of the true edges in the loss"),
    ("loss_pt_min", float, "true edges below this pT (GeV) do not enter the loss"),
    ("lr_decay", float, "factor of the learning rate every --lr-step epochs"),
)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _train_config(args, config_cls):
    """The TrainConfig of the ``train tracking`` options; a bad value names its option."""
    fields = {k: getattr(args, k) for k, _, _ in TRAIN_OPTIONS if getattr(args, k) is not None}
    if args.cells is not None:
        fields["cells"] = args.cells
    fields["seed"] = args.train_seed
    try:
        return config_cls(**fields).validate()
    except ConfigError as err:
        text = str(err)
        for key, _, _ in TRAIN_OPTIONS:
            text = text.replace(f"TrainConfig.{key} ", f"{_flag(key)} ")
        raise ConfigError(text) from None


def _jsonable(result):
    if isinstance(result, dict):
        return {k: v for k, v in result.items() if k != "history"}
    return {}


def run_evaluate(args) -> int:
    from colliderlab.core.files import write_atomic, write_json
    from colliderlab.tracking.evaluate import evaluate_finders, markdown_table, plot_efficiency

    _threads(args.threads)
    events, directory = _events(args, args.pileup, args.events, args.seed + 1000)
    finders = _finders(args)
    result = evaluate_finders(events, finders, pt_min=args.pt_min, progress=args.progress)
    out = Path(args.output or f"runs/tracking/evaluation-mu{args.pileup:g}")
    out.mkdir(parents=True, exist_ok=True)
    plot_efficiency(events, result["submissions"], out / "efficiency.png", pt_min=args.pt_min)
    source = f"TrackML files in {directory}" if args.input else f"simulated, MU = {args.pileup:g}"
    text = (
        f"Track finders on {len(events)} event(s) ({source}, "
        f"{result['rows'][0]['hits_per_event']:,.0f} hits per event)\n\n"
        + markdown_table(result["rows"], args.pt_min)
        + "\n"
    )
    write_atomic(out / "results.md", lambda p: p.write_text(text))
    write_json(out / "results.json", {"rows": result["rows"], "events": result["events"]})
    print(text)
    return 0


def run_bench(args) -> int:
    from colliderlab.core.files import write_atomic, write_json
    from colliderlab.tracking.evaluate import plot_scaling, scaling, scaling_markdown

    _threads(1)
    events_by_mu = {mu: _events(args, mu, args.events, args.seed + 2000)[0] for mu in args.pileup}
    result = scaling(events_by_mu, _finders(args), progress=args.progress)
    out = Path(args.output or "runs/tracking/scaling")
    out.mkdir(parents=True, exist_ok=True)
    plot_scaling(result, out / "scaling.png")
    write_json(out / "scaling.json", result)
    text = scaling_markdown(result) + "\n"
    write_atomic(out / "scaling.md", lambda p: p.write_text(text))
    print(text)
    return 0


def add_parsers(dsub, tsub, esub) -> None:
    """``dataset tracking``, ``train tracking`` and ``evaluate tracking``."""
    import argparse

    def data_options(p, events: int, pileup: float):
        p.add_argument("--events", type=int, default=events, help=f"events ({events})")
        p.add_argument(
            "--pileup", type=float, default=pileup, metavar="MU", help=f"mean pile-up ({pileup:g})"
        )
        p.add_argument("--process", default="ttbar", help="hard scatter (ttbar)")
        p.add_argument("--seed", type=int, default=1, help="seed of the events (1)")
        p.add_argument("--data-dir", default="colliderlab-data", help="dataset cache directory")
        p.add_argument("--input", default=None, help="read TrackML CSV files from this directory")
        dask_options(p)
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    p = dsub.add_parser("tracking", help="TrackML-like events: ttbar + Poisson(MU) pile-up")
    data_options(p, 10, 200.0)
    p.set_defaults(func="colliderlab.cli.tracking:run_dataset")

    p = tsub.add_parser("tracking", help="train the GNN track finder (resumable)")
    data_options(p, 20, 50.0)
    p.add_argument("--model", default="gnn", help="gnn")
    for key, kind, text in TRAIN_OPTIONS:
        p.add_argument(_flag(key), type=kind, default=None, help=f"{text} (TrainConfig default)")
    p.add_argument(
        "--cells",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the hits' cell features (count, charge) to the node features",
    )
    p.add_argument("--train-seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    p.add_argument(
        "--recompute",
        action="store_true",
        help="recompute each message-passing iteration in the backward pass: ~2x less memory, "
        "~35%% more time, the same gradients",
    )
    p.add_argument(
        "--val-events",
        type=int,
        default=0,
        help="simulate this many validation events: their edge metrics per epoch (0)",
    )
    p.add_argument(
        "--val-seed", type=int, default=None, help="seed of the validation events (--seed + 1000)"
    )
    p.add_argument("-o", "--output", default=None)
    p.set_defaults(func="colliderlab.cli.tracking:run_train")

    p = esub.add_parser("tracking", help="track finders side by side: score, efficiency, time")
    data_options(p, 3, 200.0)
    finder_options(p)
    p.add_argument("--pt-min", type=float, default=1.0, help="efficiency for pT above (1 GeV)")
    p.add_argument("--threads", type=int, default=1, help="threads (1: the one-core numbers)")
    p.add_argument("-o", "--output", default=None)
    p.set_defaults(func="colliderlab.cli.tracking:run_evaluate")


def dask_options(p) -> None:
    """Where the events are simulated (the finders run in this process, one core)."""
    p.add_argument(
        "--workers", type=int, default=None, help="local Dask workers for the events (cores)"
    )
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler")


def finder_options(p) -> None:
    p.add_argument(
        "--finders", nargs="+", default=["ckf", "dbscan"], help="finders (ckf dbscan; add gnn)"
    )
    p.add_argument("--gnn", default=None, metavar="RUN_DIR", help="trained GNN (train tracking)")
    p.add_argument(
        "--gnn-threshold",
        type=float,
        default=None,
        metavar="T",
        help="GNN edge-score cut for track building, in [0, 1) (0.5)",
    )
    p.add_argument("--gnn-device", default=None, help="where the GNN runs: cpu or cuda (cpu)")


def add_bench_parser(bsub) -> None:
    import argparse

    b = bsub.add_parser("tracking", help="track finders: time and memory per event vs pile-up")
    b.add_argument("--pileup", type=float, nargs="+", default=[0.0, 50.0, 100.0, 200.0])
    b.add_argument("--events", type=int, default=2, help="events per pile-up value (2)")
    b.add_argument("--process", default="ttbar")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--data-dir", default="colliderlab-data")
    b.add_argument("--input", default=None, help=argparse.SUPPRESS)
    dask_options(b)
    b.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    finder_options(b)
    b.add_argument("-o", "--output", default=None)
    b.set_defaults(func="colliderlab.cli.tracking:run_bench")
