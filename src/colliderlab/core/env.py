"""Versions of colliderlab and of the key dependencies (for bug reports and manifests)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from colliderlab._version import __version__

#: Distribution names reported by ``colliderlab env``.
KEY_PACKAGES = (
    "numpy",
    "pythia8mc",
    "awkward",
    "uproot",
    "vector",
    "pyarrow",
    "dask",
    "distributed",
    "fastjet",
    "matplotlib",
    "mplhep",
    "particle",
    "pyhepmc",
    "torch",
    "xgboost-cpu",
    "torch-geometric",
    "onnx",
    "onnxruntime",
    "hls4ml",
    "zuko",
    "pyhf",
)


def versions(packages=KEY_PACKAGES) -> dict[str, str | None]:
    """``{"colliderlab": ..., "python": ..., package: version or None}``."""
    out: dict[str, str | None] = {
        "colliderlab": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def data_versions() -> dict[str, str | None]:
    """The versions that determine the bytes of generated data (written in manifests)."""
    return {
        k: v
        for k, v in versions(("numpy", "pythia8mc", "awkward", "pyarrow", "uproot")).items()
        if k != "platform"
    }
