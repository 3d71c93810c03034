"""``colliderlab info DIR``: what a dataset holds, and whether its chunks are intact."""

from __future__ import annotations

import json

from colliderlab.core.errors import ChecksumError


def summary(ds, verify: bool = True) -> dict:
    """A JSON-able summary of a dataset (config, size, cross section, integrity)."""
    sigma, err = ds.cross_section
    out = {
        "dataset": str(ds.directory),
        "kind": ds.kind,
        "process": ds.config.get("process"),
        "params": ds.config.get("params"),
        "settings": ds.config.get("settings"),
        "seed": ds.config.get("seed"),
        "pileup": ds.config.get("pileup"),
        "n_events": ds.n_events,
        "n_chunks": len(ds.chunks),
        "format": ds.config.get("format"),
        "bytes": sum(c["bytes"] for c in ds.chunks),
        "cross_section_pb": sigma,
        "cross_section_err_pb": err,
        "versions": ds.manifest.get("versions"),
    }
    if verify:
        bad = ds.verify()
        out["verified"] = not bad
        out["bad_chunks"] = [str(p) for p in bad]
    return out


def run(args) -> int:
    from colliderlab.io import Dataset

    ds = Dataset(args.dataset)
    s = summary(ds, verify=not args.no_verify)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        for k, v in s.items():
            if k != "versions":
                print(f"{k:<20} {v}")
    if s.get("bad_chunks"):
        raise ChecksumError(
            f"{len(s['bad_chunks'])} chunk(s) are missing or corrupted, first: "
            f"{s['bad_chunks'][0]}. Regenerate them with the original command plus --repair."
        )
    return 0
