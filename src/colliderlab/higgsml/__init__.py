"""Event classification: the HiggsML H -> tau tau analysis, the AMS, and the significance it buys.

>>> from colliderlab.higgsml import build_dataset, read_higgsml_csv, run_analysis
>>> path = build_dataset("colliderlab-data", events_per_sample=4000)   # doctest: +SKIP
>>> report = run_analysis(read_higgsml_csv(path), "runs/higgsml")       # doctest: +SKIP

The same :func:`run_analysis` runs on the real challenge file (Kaggle ``training.csv`` or
the CERN Open Data ``atlas-higgs-challenge-2014-v2.csv``).
"""

from colliderlab.higgsml.ams import ams, ams_curve, best_threshold
from colliderlab.higgsml.analysis import run_analysis
from colliderlab.higgsml.csvio import HiggsMLData, read_higgsml_csv, split, write_higgsml_csv
from colliderlab.higgsml.dataset import build_dataset
from colliderlab.higgsml.methods import make_method
from colliderlab.higgsml.significance import discovery_significance

__all__ = [
    "HiggsMLData",
    "ams",
    "ams_curve",
    "best_threshold",
    "build_dataset",
    "discovery_significance",
    "make_method",
    "read_higgsml_csv",
    "run_analysis",
    "split",
    "write_higgsml_csv",
]
