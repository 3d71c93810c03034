"""Calorimeter shower simulation: the reference ("full") simulation and its datasets.

A stochastic, spot-based shower simulation in a sampling calorimeter
(:mod:`~colliderlab.calosim.shower`: GFlash-style electromagnetic showers, a parametric
hadron-shower model), voxelised in the CaloChallenge 2022 layout
(:mod:`~colliderlab.calosim.geometry`) and stored in the CaloChallenge HDF5 format
(:mod:`~colliderlab.calosim.io`). Its output, ``(n, n_voxels)`` float32 arrays in MeV with
the incident energies in MeV, is what the generative fast-simulation models learn.

The fast simulation: :mod:`~colliderlab.calosim.models` (conditional VAE with an optional
layer-energy flow, WGAN-GP, masked autoregressive flow with zuko, flow matching; registry kind
"calo model"),
:mod:`~colliderlab.calosim.train` (checkpointed, resumable training),
:mod:`~colliderlab.calosim.features` (CaloChallenge high-level features, separation power)
and :mod:`~colliderlab.calosim.evaluate` (classifier AUC, time per shower, tables). They
import torch, so they are not imported here.
"""

from colliderlab.calosim.geometry import (
    CaloGeometry,
    VoxelCentres,
    geometry_names,
    get_geometry,
)
from colliderlab.calosim.io import read_calochallenge_h5, write_calochallenge_h5
from colliderlab.calosim.material import (
    Medium,
    SamplingCalorimeter,
    get_material,
    material_names,
)
from colliderlab.calosim.shower import (
    PARTICLES,
    make_dataset,
    sample_incident_energies,
    simulate_showers,
)

__all__ = [
    "PARTICLES",
    "CaloGeometry",
    "Medium",
    "SamplingCalorimeter",
    "VoxelCentres",
    "geometry_names",
    "get_geometry",
    "get_material",
    "make_dataset",
    "material_names",
    "read_calochallenge_h5",
    "sample_incident_energies",
    "simulate_showers",
    "write_calochallenge_h5",
]
