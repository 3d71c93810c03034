"""Event generation with Pythia 8: the process catalogue, pile-up, chunked runs on Dask.

>>> from colliderlab.generate import GenerationConfig, generate   # doctest: +SKIP
>>> ds = generate(GenerationConfig("z_ll", n_events=2000, seed=7), "zll")
"""

from colliderlab.generate.config import GenerationConfig, VertexSpread
from colliderlab.generate.processes import get_process, list_processes
from colliderlab.generate.run import generate

__all__ = ["GenerationConfig", "VertexSpread", "generate", "get_process", "list_processes"]
