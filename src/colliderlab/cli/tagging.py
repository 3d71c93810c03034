"""``colliderlab dataset tagging``, ``train tagging``, ``evaluate tagging``."""

from __future__ import annotations

import json
from pathlib import Path


def _dataset_path(args) -> Path:
    from colliderlab.tagging.datasets import build_dataset

    return build_dataset(
        args.dataset,
        args.data_dir,
        n_jets=args.jets,
        full=args.full,
        seed=args.data_seed,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=args.progress,
    )


def run_dataset(args) -> int:
    path = _dataset_path(args)
    from colliderlab.tagging.jets import jets_meta, read_jets

    counts = {s: len(read_jets(path, s)) for s in ("train", "val", "test")}
    print(json.dumps({"path": str(path), "jets": counts, "meta": jets_meta(path)["description"]}))
    return 0


def _data(args):
    from colliderlab.tagging.datasets import load_dataset
    from colliderlab.tagging.jets import read_top_tagging_hdf5

    if args.public:  # the public top-tagging files: train.h5 val.h5 test.h5
        d = Path(args.public)
        return {
            s: read_top_tagging_hdf5(d / f"{s}.h5", stop=args.jets)
            for s in ("train", "val", "test")
        }, "top"
    return load_dataset(_dataset_path(args)), args.dataset


def run_train(args) -> int:
    from colliderlab.tagging.train import TrainConfig, train

    config = TrainConfig(
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_particles=args.max_particles,
        seed=args.seed,
    ).validate()  # a bad model name fails before any event is generated
    data, dataset = _data(args)
    out = args.output or f"runs/{dataset}/{args.model}-seed{args.seed}"
    result = train(config, data, out, dataset=dataset, progress=args.progress)
    result.pop("history", None)
    print(json.dumps(result, indent=2))
    return 0


def run_evaluate(args) -> int:
    from colliderlab.tagging.evaluate import evaluate
    from colliderlab.tagging.train import TrainConfig, all_taggers

    models = args.models or all_taggers()
    for m in models:
        TrainConfig(model=m).validate()
    path = _dataset_path(args)
    out = args.output or f"runs/{args.dataset}/evaluation"
    evaluate(
        path,
        models,
        out,
        seeds=args.seeds,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_particles=args.max_particles,
        progress=args.progress,
        reuse_only=args.reuse_only,
    )
    print((Path(out) / "results.md").read_text())
    return 0


def add_parsers(dsub, tsub, esub) -> None:
    """``dataset tagging``, ``train tagging`` and ``evaluate tagging``."""
    import argparse

    def data_options(p):
        p.add_argument("--dataset", default="top", help="top, w or qg (default top)")
        p.add_argument("--data-dir", default="colliderlab-data", help="dataset cache directory")
        p.add_argument("--jets", type=int, default=None, help="total jets (default per dataset)")
        p.add_argument("--full", action="store_true", help="the full size (public-dataset-like)")
        p.add_argument("--data-seed", type=int, default=1, help="seed of the dataset")
        p.add_argument("--workers", type=int, default=None)
        p.add_argument("--scheduler", default=None, metavar="ADDRESS")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    def train_options(p):
        p.add_argument("--epochs", type=int, default=40)
        p.add_argument("--batch-size", type=int, default=128)
        p.add_argument("--lr", type=float, default=3e-3)
        p.add_argument("--max-particles", type=int, default=48)
        p.add_argument("-o", "--output", default=None, help="output directory")

    p = dsub.add_parser("tagging", help="jet-tagging datasets: top, w, qg")
    p.add_argument("dataset", help="top, w or qg")
    p.add_argument("-o", "--data-dir", default="colliderlab-data")
    p.add_argument("--jets", type=int, default=None)
    p.add_argument("--full", action="store_true")
    p.add_argument("--data-seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--scheduler", default=None, metavar="ADDRESS")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.set_defaults(func="colliderlab.cli.tagging:run_dataset")

    p = tsub.add_parser("tagging", help="train one jet tagger")
    data_options(p)
    train_options(p)
    p.add_argument("--model", required=True, help="cut, bdt, or a deep tagger (see evaluate)")
    p.add_argument("--seed", type=int, default=1, help="training seed")
    p.add_argument(
        "--public",
        default=None,
        metavar="DIR",
        help="train on the public top-tagging files DIR/{train,val,test}.h5",
    )
    p.set_defaults(func="colliderlab.cli.tagging:run_train")

    p = esub.add_parser("tagging", help="all taggers: table, ROC, scores, mass sculpting")
    data_options(p)
    train_options(p)
    p.add_argument("--models", nargs="+", default=None, help="default: every registered tagger")
    p.add_argument("--seeds", type=int, default=3, help="trainings per model (default 3)")
    p.add_argument(
        "--reuse-only",
        action="store_true",
        help="train nothing: tabulate the finished trainings in the output directory",
    )
    p.set_defaults(func="colliderlab.cli.tagging:run_evaluate")
