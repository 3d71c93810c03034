"""``colliderlab dataset calosim``, ``train calosim``, ``evaluate calosim``,
``evaluate calosim-loop``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from colliderlab.core.errors import ConfigError


def _path(args, n: int, seed: int) -> Path:
    return Path(args.data_dir) / "calosim" / f"{args.geometry}-{args.particle}-{n}-seed{seed}.h5"


def _dataset(args, n: int, seed: int) -> Path:
    from colliderlab.calosim.shower import make_dataset

    return make_dataset(
        _path(args, n, seed),
        args.geometry,
        args.particle,
        n,
        seed=seed,
        progress=args.progress,
        workers=args.workers,
        scheduler=args.scheduler,
    )


def _read(args, n: int, seed: int):
    from colliderlab.calosim.geometry import get_geometry
    from colliderlab.calosim.io import read_calochallenge_h5

    path = Path(args.h5) if getattr(args, "h5", None) else _dataset(args, n, seed)
    return read_calochallenge_h5(path, geometry=get_geometry(args.geometry)), path


def run_dataset(args) -> int:
    path = _dataset(args, args.showers, args.data_seed)
    print(json.dumps({"path": str(path), "showers": args.showers}))
    return 0


def _model_kwargs(args) -> dict:
    """``--per-layer`` (the geometry's layer sizes) and ``--model-arg KEY=VALUE`` (JSON values,
    else strings)."""
    from colliderlab.calosim.geometry import get_geometry

    kwargs = {}
    if args.per_layer:
        kwargs["layer_sizes"] = tuple(get_geometry(args.geometry).layer_sizes)
    for item in args.model_arg or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model-arg must be KEY=VALUE; got {item!r}.")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value
    return kwargs


def run_train(args) -> int:
    import torch

    from colliderlab.calosim.train import TrainConfig, train

    torch.set_num_threads(args.threads)
    config = TrainConfig(
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        model_kwargs=_model_kwargs(args),
    )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not args.h5 and not _path(args, args.showers, args.data_seed).exists():
        raise ConfigError(
            f"under torchrun the showers must exist before training (each of the {world} "
            "processes would simulate them): run `colliderlab dataset calosim` with the same "
            "--geometry, --particle, --showers, --data-dir and --data-seed first."
        )
    (energies, showers), path = _read(args, args.showers, args.data_seed)
    out = Path(args.output or f"runs/calosim/{args.geometry}-{args.particle}/{args.model}")
    if not args.h5:  # which showers: for `simulate --calo-model` (calibration, geometry)
        from colliderlab.calosim.response import RESPONSE_PARTICLES, write_run_info

        if args.particle in RESPONSE_PARTICLES:
            write_run_info(out, args.geometry, args.particle)
    result = train(config, energies, showers, out, progress=args.progress)
    result.pop("history", None)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"data": str(path), **result}, indent=2, default=str))
    return 0


def run_evaluate(args) -> int:
    import numpy as np
    import torch

    from colliderlab.calosim.evaluate import _precision_spec, evaluate_models
    from colliderlab.calosim.geometry import get_geometry
    from colliderlab.calosim.shower import simulate_showers
    from colliderlab.core.files import write_atomic, write_json

    bad = [g for g in args.timing_energies if not g > 0]
    if bad or args.timing_showers < 1:
        raise ConfigError(
            f"--timing-energies must be > 0 GeV and --timing-showers >= 1; got "
            f"{bad or args.timing_energies} and {args.timing_showers}."
        )
    for spec in args.models:  # a DIR@PRECISION with an unknown precision: before any work
        _precision_spec(spec)
    torch.set_num_threads(args.threads)
    geometry = get_geometry(args.geometry)
    # the reference: an independent sample (another seed than the training data)
    (energies, showers), _ = _read(args, args.showers, args.data_seed + 1000)
    models = {Path(d).name: d for d in args.models}  # DIR@bfloat16 -> "DIR-NAME@bfloat16"
    out = Path(args.output or f"runs/calosim/{args.geometry}-{args.particle}/evaluation")
    # the reference simulation's time per shower, at the same energies, timed like the
    # models (best of a few passes) before and after them: the machine may be shared
    n = min(len(energies), 1000)

    def reference_s(e=None) -> float:
        e = np.asarray(energies[:n]) if e is None else e
        best = float("inf")
        for _ in range(args.timing_repeats):
            t0 = time.perf_counter()
            simulate_showers(geometry, args.particle, e, seed=1)
            best = min(best, time.perf_counter() - t0)
        return best / len(e)

    ref_before = reference_s()
    report = evaluate_models(
        showers,
        energies,
        models,
        geometry,
        out,
        seed=args.seed,
        large_batch=args.large_batch,
        extra_batches=args.extra_batches,
        timing_repeats=args.timing_repeats,
    )
    ref_after = reference_s()
    ref_s = 0.5 * (ref_before + ref_after)
    lines = [
        report["markdown"],
        "",
        f"Reference simulation: {ref_s:.2e} s per shower (best of {args.timing_repeats} passes "
        f"over {n} showers, before the models {ref_before:.2e}, after {ref_after:.2e}; "
        f"{args.threads} thread(s)).",
    ]
    for row in report["rows"]:
        speed = [f"batch {row['large_batch']} {ref_s / row['s_per_shower_large_batch']:,.0f}x"]
        speed += [
            f"batch {b} {ref_s / row[f's_per_shower_batch{b}']:,.0f}x" for b in args.extra_batches
        ]
        lines.append(f"- {row['model']}: speed-up {', '.join(speed)}")
    write_json(
        out / "reference_timing.json",
        {"s_per_shower": ref_s, "before": ref_before, "after": ref_after, "showers": n},
    )
    text = "\n".join(lines) + "\n"
    write_atomic(out / "results.md", lambda path: path.write_text(text))
    if args.timing_energies:  # results.md is complete without it if this is interrupted
        by_energy = _speed_vs_energy(args, models, reference_s)
        write_json(out / "speed_vs_energy.json", by_energy)
        text += "\n" + "\n".join(_speed_vs_energy_table(by_energy, list(models), args)) + "\n"
        write_atomic(out / "results.md", lambda path: path.write_text(text))
    print(text)
    return 0


def _speed_vs_energy(args, models: dict[str, str], reference_s) -> list[dict]:
    """Seconds per shower of the reference and of each model at fixed incident energies
    (``--timing-energies``, GeV), side by side: the reference's cost grows with the energy,
    a model's does not. Reference: ``--timing-showers`` showers; models: ``--large-batch``."""
    import numpy as np

    from colliderlab.calosim.evaluate import load_model_spec, time_per_shower

    loaded = {name: load_model_spec(d)[0] for name, d in models.items()}
    rows = []
    for gev in args.timing_energies:
        row = {"E_GeV": gev, "reference_s": reference_s(np.full(args.timing_showers, gev * 1e3))}
        for name, model in loaded.items():
            e = np.full(args.large_batch, gev * 1e3, dtype=np.float32)
            row[name] = time_per_shower(model, e, args.large_batch, repeats=args.timing_repeats)
        rows.append(row)
    return rows


def _speed_vs_energy_table(rows: list[dict], names: list[str], args) -> list[str]:
    head = "| E (GeV) | reference (s / shower) | " + " | ".join(names) + " |"
    lines = [
        f"Speed-up vs incident energy (reference: {args.timing_showers} showers per energy; "
        f"models: batch {args.large_batch}; best of {args.timing_repeats}):",
        "",
        head,
        "|" + "---|" * (len(names) + 2),
    ]
    for row in rows:
        ref = row["reference_s"]
        cells = [f"{row[m]:.2e} s ({ref / row[m]:,.0f}x)" for m in names]
        lines.append(f"| {row['E_GeV']:g} | {ref:.2e} | " + " | ".join(cells) + " |")
    return lines


def run_loop(args) -> int:
    import torch

    from colliderlab.calosim import loop
    from colliderlab.core.files import write_json

    torch.set_num_threads(args.threads)
    configs = [None, *args.models]  # the card's parametrisation first
    result = loop.energy_resolution(
        configs,
        particle=args.particle,
        energies=args.energies,
        n_events=args.events,
        card=args.detector,
        eta_max=args.eta_max,
        seed=args.seed,
    )
    out = Path(args.output or f"runs/calosim/loop-{args.particle}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", result)
    text = loop.markdown(result) + "\n"
    (out / "results.md").write_text(text)
    loop.plot(result, out / "resolution.png")
    print(text)
    return 0


def add_parsers(dsub, tsub, esub) -> None:
    """``dataset calosim``, ``train calosim`` and ``evaluate calosim``."""
    import argparse

    def data_options(p):
        p.add_argument("--geometry", default="atlas5", help="atlas5 (368 voxels) or challenge")
        p.add_argument("--particle", default="gamma", help="e-, gamma, pi+, pi-")
        p.add_argument("--showers", type=int, default=10000, help="showers (10000)")
        p.add_argument("--data-dir", default="colliderlab-data", help="dataset cache directory")
        p.add_argument("--data-seed", type=int, default=1)
        p.add_argument(
            "--workers", type=int, default=None, help="local Dask workers for the showers (cores)"
        )
        p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    p = dsub.add_parser("calosim", help="reference calorimeter showers (CaloChallenge HDF5)")
    data_options(p)
    p.set_defaults(func="colliderlab.cli.calosim:run_dataset")

    p = tsub.add_parser("calosim", help="train a generative shower model")
    data_options(p)
    p.add_argument("--h5", default=None, help="train on a CaloChallenge HDF5 file instead")
    p.add_argument("--model", required=True, help="vae, wgan, flow, flow_matching")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument(
        "--per-layer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="normalise each layer of the geometry separately (layer_sizes; default on)",
    )
    p.add_argument(
        "--model-arg",
        action="append",
        metavar="KEY=VALUE",
        help="hyperparameter of the model (JSON value), e.g. sample_noise=1 or hidden=[512,256]",
    )
    p.add_argument("-o", "--output", default=None)
    p.set_defaults(func="colliderlab.cli.calosim:run_train")

    p = esub.add_parser("calosim", help="generative models vs the reference: AUC, speed")
    data_options(p)
    p.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="training directories; DIR@bfloat16: that model with the decoder's last layer in "
        "bfloat16 (fused CPU sampling)",
    )
    p.add_argument("--large-batch", type=int, default=1000, help="generation batch (1000)")
    p.add_argument(
        "--extra-batches",
        type=int,
        nargs="*",
        default=[],
        help="more batch sizes to time, e.g. 10000",
    )
    p.add_argument(
        "--timing-repeats", type=int, default=3, help="timing: best of this many passes (3)"
    )
    p.add_argument(
        "--timing-energies",
        type=float,
        nargs="*",
        default=[],
        metavar="GEV",
        help="also time the reference and the models at these fixed energies, e.g. 1 10 100 1000",
    )
    p.add_argument(
        "--timing-showers",
        type=int,
        default=300,
        help="reference showers per timing energy (300)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("-o", "--output", default=None)
    p.set_defaults(func="colliderlab.cli.calosim:run_evaluate")

    p = esub.add_parser(
        "calosim-loop",
        help="electron/photon energy resolution in the detector simulation: card vs shower models",
    )
    p.add_argument(
        "--models",
        nargs="*",
        default=["reference"],
        help="calorimeter responses besides the card: 'reference', 'reference:GEOMETRY', "
        "training directories (default: reference)",
    )
    p.add_argument("--particle", default="e-", choices=("e-", "gamma"))
    p.add_argument(
        "--energies", type=float, nargs="+", default=[5.0, 10.0, 20.0, 50.0, 100.0, 200.0]
    )
    p.add_argument("--events", type=int, default=1000, help="gun events per energy (1000)")
    p.add_argument("--detector", default="generic_lhc", metavar="CARD", help="detector card")
    p.add_argument("--eta-max", type=float, default=1.3, help="|eta| of the gun (1.3: barrel)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("-o", "--output", default=None, help="directory of results.{md,json}, plot")
    p.set_defaults(func="colliderlab.cli.calosim:run_loop")
