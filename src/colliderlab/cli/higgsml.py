"""``colliderlab dataset higgsml``, ``train higgsml``, ``evaluate higgsml``."""

from __future__ import annotations

import json
from pathlib import Path


def _dataset_path(args) -> Path:
    from colliderlab.higgsml.dataset import build_dataset

    return build_dataset(
        args.data_dir,
        events_per_sample=args.events,
        seed=args.data_seed,
        lumi_fb=args.lumi,
        tau_tagging=args.tau_tagging,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=args.progress,
    )


def _data(args):
    from colliderlab.core.errors import DatasetError
    from colliderlab.higgsml.csvio import read_higgsml_csv

    path = Path(args.csv) if args.csv else _dataset_path(args)
    if not path.is_file():
        raise DatasetError(
            f"{path} does not exist; give a file in the HiggsML CSV format (Kaggle "
            "training.csv or the CERN Open Data atlas-higgs-challenge-2014-v2.csv[.gz])."
        )
    return read_higgsml_csv(path), path


def run_dataset(args) -> int:
    path = _dataset_path(args)
    meta = json.loads(path.with_suffix(".json").read_text())
    print(json.dumps({"path": str(path), "samples": meta["samples"]}, indent=2))
    return 0


def run_train(args) -> int:
    from colliderlab.higgsml.analysis import train_method
    from colliderlab.higgsml.methods import make_method

    make_method(args.method)  # a bad name fails before any event is generated
    data, path = _data(args)
    out = Path(args.output or f"runs/higgsml/{args.method}-seed{args.seed}")
    result = train_method(
        data, args.method, out, seed=args.seed, b_reg=args.b_reg, smooth=args.smooth
    )
    print(json.dumps({"data": str(path), **result}, indent=2))
    return 0


def run_evaluate(args) -> int:
    from colliderlab.higgsml.analysis import DEFAULT_METHODS, run_analysis
    from colliderlab.higgsml.methods import make_method

    methods = args.methods or list(DEFAULT_METHODS)
    for m in methods:
        make_method(m)
    data, path = _data(args)
    out = Path(args.output or "runs/higgsml/evaluation")
    run_analysis(
        data,
        out,
        methods=methods,
        seed=args.seed,
        b_reg=args.b_reg,
        smooth=args.smooth,
        train_fraction=args.train_fraction,
        bkg_norm_unc=args.bkg_norm_unc,
        weight_scale=args.weight_scale,
        progress=args.progress,
    )
    print(f"data: {path}\n")
    print((out / "results.md").read_text())
    return 0


def add_parsers(dsub, tsub, esub) -> None:
    """``dataset higgsml``, ``train higgsml`` and ``evaluate higgsml``."""
    import argparse

    def data_options(p, with_csv=True):
        if with_csv:
            p.add_argument(
                "--csv",
                default=None,
                metavar="FILE",
                help="a file in the HiggsML format (Kaggle training.csv or the CERN Open Data "
                "file) instead of colliderlab's generated dataset",
            )
        p.add_argument("--data-dir", default="colliderlab-data", help="dataset cache directory")
        p.add_argument(
            "--events", type=int, default=4000, help="events generated per sample (4000)"
        )
        p.add_argument("--lumi", type=float, default=139.0, help="luminosity in fb^-1 (139)")
        p.add_argument(
            "--data-seed",
            type=int,
            nargs="+",
            default=[1],
            help="seed of the dataset; several seeds: the union of their samples "
            "(--events each; samples already generated are reused)",
        )
        p.add_argument(
            "--tau-tagging",
            choices=("weighted", "random"),
            default="weighted",
            help="hadronic tau: every candidate weighted by its tag probability (weighted, the "
            "default: ~100x more fake-tau background events) or the detector's random tags",
        )
        p.add_argument("--workers", type=int, default=None)
        p.add_argument("--scheduler", default=None, metavar="ADDRESS")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    def threshold_options(p):
        p.add_argument("--b-reg", type=float, default=10.0, help="AMS regularisation (10)")
        p.add_argument(
            "--smooth",
            type=int,
            default=0,
            metavar="K",
            help="choose the threshold on the running mean of the validation AMS curve over "
            "K neighbouring thresholds (0: its highest point)",
        )

    p = dsub.add_parser("higgsml", help="the H -> tautau dataset (HiggsML features, CSV)")
    data_options(p, with_csv=False)
    p.set_defaults(func="colliderlab.cli.higgsml:run_dataset")

    p = tsub.add_parser("higgsml", help="train one H -> tautau classifier")
    data_options(p)
    p.add_argument(
        "--method", required=True, help="cuts, bdt, bdt_low, dnn, dnn_low, dnn_high, ensemble"
    )
    p.add_argument(
        "--seed", type=int, default=1, help="split (without KaggleSet) and training seed"
    )
    threshold_options(p)
    p.add_argument("-o", "--output", default=None, help="output directory")
    p.set_defaults(func="colliderlab.cli.higgsml:run_train")

    p = esub.add_parser("higgsml", help="cuts vs BDT vs DNN: AMS, AUC, discovery significance")
    data_options(p)
    p.add_argument(
        "--methods", nargs="+", default=None, help="default: cuts bdt dnn dnn_low ensemble"
    )
    p.add_argument("--seed", type=int, default=1)
    threshold_options(p)
    p.add_argument(
        "--bkg-norm-unc", type=float, default=0.1, help="background normalisation uncertainty"
    )
    p.add_argument(
        "--weight-scale",
        type=float,
        default=1.0,
        help="multiply the weights (a slice of the challenge file: file rows / slice rows)",
    )
    p.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        metavar="F",
        help="train on a random fraction F of the training part (learning curves)",
    )
    p.add_argument("-o", "--output", default=None, help="output directory")
    p.set_defaults(func="colliderlab.cli.higgsml:run_evaluate")
