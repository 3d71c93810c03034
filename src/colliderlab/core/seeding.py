"""Random streams: one independent stream per chunk, whatever the number of workers.

Every random function in colliderlab takes ``seed`` (an int, a ``SeedSequence`` or a
``numpy.random.Generator``); parallel work gets its streams from ``SeedSequence.spawn``.
There is no global seeding anywhere in the library.
"""

from __future__ import annotations

import numpy as np

#: Pythia 8 accepts seeds in [1, 900_000_000].
PYTHIA_SEED_MAX = 900_000_000


def chunk_seeds(seed: int, n_chunks: int) -> list[np.random.SeedSequence]:
    """The independent seed sequences of ``n_chunks`` chunks of a dataset seeded by ``seed``."""
    return np.random.SeedSequence(seed).spawn(n_chunks)


def pythia_seed(seq: np.random.SeedSequence) -> int:
    """An integer seed in Pythia's valid range drawn from ``seq``."""
    return int(seq.generate_state(1, dtype=np.uint64)[0] % PYTHIA_SEED_MAX) + 1


def as_generator(seed: int | np.random.SeedSequence | np.random.Generator) -> np.random.Generator:
    """A ``numpy.random.Generator`` from any accepted seed form."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def chunk_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed sequence of chunk ``index``: identical to ``chunk_seeds(seed, n)[index]``."""
    return np.random.SeedSequence(seed, spawn_key=(index,))
