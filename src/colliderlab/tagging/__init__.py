"""Jet tagging: datasets built from colliderlab's events, classical and deep taggers, metrics.

>>> from colliderlab.tagging import build_dataset, load_dataset, TrainConfig, train
>>> path = build_dataset("top", "colliderlab-data")            # doctest: +SKIP
>>> result = train(TrainConfig("particlenet"), load_dataset(path), "runs/pn")  # doctest: +SKIP
"""

from colliderlab.tagging.datasets import build_dataset, dataset_names, load_dataset
from colliderlab.tagging.jets import JetSet, read_jets, read_top_tagging_hdf5
from colliderlab.tagging.train import TrainConfig, all_taggers, train, trained_model

__all__ = [
    "JetSet",
    "TrainConfig",
    "all_taggers",
    "build_dataset",
    "dataset_names",
    "load_dataset",
    "read_jets",
    "read_top_tagging_hdf5",
    "train",
    "trained_model",
]
