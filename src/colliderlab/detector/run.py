"""``simulate``: a generated dataset in, a reconstructed dataset out (chunked, on Dask).

Chunk ``i`` of the output is the fast simulation of chunk ``i`` of the input, with random
numbers from ``SeedSequence(seed, spawn_key=(i,))``: the same input, card and seed give the
same bytes, and a killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from colliderlab.core.env import data_versions
from colliderlab.core.errors import DatasetError
from colliderlab.detector.card import DetectorCard, load_card
from colliderlab.generate.config import SCHEMA_VERSION
from colliderlab.io.chunked import check_output, finish_chunk, run_chunks
from colliderlab.io.events import without_vector_names
from colliderlab.io.store import (
    STORE_VERSION,
    Dataset,
    read_chunk,
)

#: Version of the reconstructed-event layout.
RECO_SCHEMA_VERSION = 2


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """What determines a simulated dataset: the input, the card, the seed, the format."""

    input: str
    input_digest: str
    input_chunks: tuple[tuple[str, str, int], ...]  # (file, sha256, n_events) per chunk
    card: DetectorCard
    seed: int = 1
    format: str = "parquet"
    hits: bool = False
    towers: bool = False
    calo_model: str | None = None  # "reference[:GEOMETRY]" or a training directory
    calo_model_digest: str | None = None  # CaloResponse.digest() of it

    def digest(self) -> str:
        fields = {
            "hits": self.hits,
            "towers": self.towers,
            "input": self.input_digest,
            "card": self.card.digest(),
            "seed": self.seed,
            "format": self.format,
            "schema": RECO_SCHEMA_VERSION,
        }
        if self.calo_model is not None:  # (absent otherwise: older datasets keep their digest)
            fields["calo_model"] = self.calo_model_digest
        blob = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def n_chunks(self) -> int:
        return len(self.input_chunks)


def run_chunk(config: SimulationConfig, index: int, directory: str) -> dict[str, Any]:
    """Simulate chunk ``index`` of the input and write it (runs on a Dask worker)."""
    from colliderlab.core.files import sha256_file
    from colliderlab.detector.reco import FastSimulation

    file, sha, n_events = config.input_chunks[index]
    source = Path(config.input) / file
    if sha256_file(source) != sha:
        raise DatasetError(
            f"input chunk {source} does not match its recorded sha256: it changed since it was "
            "generated. Repair the input dataset (`colliderlab generate ... --repair`) first."
        )
    events = read_chunk(source)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(index,)))
    response = None
    if config.calo_model is not None:
        response = _calo_response(config.calo_model, config.calo_model_digest)
    sim = FastSimulation(config.card, hits=config.hits, towers=config.towers, calo_model=response)
    reco = without_vector_names(sim(events, rng))
    return finish_chunk(reco, directory, index, config.format, config.digest(), n_events=n_events)


@functools.lru_cache(maxsize=2)
def _calo_response(spec: str, digest: str | None):
    """The calorimeter response of ``spec``, loaded once per worker process; refused if it
    changed since the simulation was configured (``digest``)."""
    from colliderlab.calosim.response import get_response

    response = get_response(spec)
    if digest is not None and response.digest() != digest:
        raise DatasetError(
            f"calo model {spec} changed since this simulation started (its digest differs); "
            "simulate into a new output directory."
        )
    return response


def resolve_calo_model(calo_model) -> tuple[str | None, str | None]:
    """(spec, digest) of a ``calo_model`` argument: None, ``"reference[:GEOMETRY]"`` or a
    training directory (made absolute). Fails early, naming the path, if it is unusable."""
    if calo_model is None:
        return None, None
    from colliderlab.calosim.response import get_response

    text = str(calo_model)
    spec = text if text.startswith("reference") else str(Path(text).resolve())
    return spec, get_response(spec).digest()


def simulate(
    input_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    card: str | Path | DetectorCard = "generic_lhc",
    seed: int = 1,
    format: str = "parquet",
    hits: bool = False,
    towers: bool = False,
    calo_model: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    overwrite: bool = False,
    repair: bool = False,
    progress: bool | None = None,
) -> Dataset:
    """Run the fast detector simulation over a generated dataset; return the new dataset.

    ``hits=True`` also writes the tracker hits (``Hit``: x, y, z, layer, gen_index,
    track_index) and the number of hits of each track. ``towers=True`` also writes the
    calorimeter towers (``EcalTower``, ``HcalTower``: energy, eta, phi and the energy of each
    depth segment, ``depth_1`` ...). ``calo_model`` (``"reference"``, ``"reference:GEOMETRY"``
    or a calosim training directory) takes the ECAL response of photons and electrons from a
    shower simulation (see :class:`~colliderlab.detector.reco.FastSimulation`); it is part of
    the dataset's identity (config digest).
    """
    source = Dataset(input_dir)
    if source.kind != "generation":
        raise DatasetError(
            f"{input_dir} is a {source.kind!r} dataset; simulate needs the output of "
            "`colliderlab generate`."
        )
    schema = source.manifest.get("schema_version")
    if schema != SCHEMA_VERSION:
        raise DatasetError(
            f"{input_dir} was generated with event schema {schema!r}; this colliderlab simulates "
            f"schema {SCHEMA_VERSION}. Regenerate it with this version."
        )
    card = load_card(card)
    calo_spec, calo_digest = resolve_calo_model(calo_model)
    config = SimulationConfig(
        input=str(Path(input_dir).resolve()),
        input_digest=source.manifest["config_digest"],
        input_chunks=tuple((c["file"], c["sha256"], c["n_events"]) for c in source.chunks),
        card=card,
        seed=seed,
        format=format,
        hits=hits,
        towers=towers,
        calo_model=calo_spec,
        calo_model_digest=calo_digest,
    )
    directory = Path(output)
    check_output(config.digest(), directory, overwrite)

    def manifest(chunks):
        m = {
            "store_version": STORE_VERSION,
            "schema_version": RECO_SCHEMA_VERSION,
            "kind": "simulation",
            "complete": chunks is not None,
            "config": {
                "process": source.config.get("process"),
                "seed": seed,
                "format": format,
                "hits": hits,
                "towers": towers,
                "input": config.input,
                "pileup": source.config.get("pileup"),
                **({"calo_model": calo_spec} if calo_spec is not None else {}),
            },
            "config_digest": config.digest(),
            "description": f"{source.config.get('process')} through the {card.name} detector",
            "card": card.to_dict(),
            "generation": {
                k: source.manifest[k] for k in ("config", "config_digest", "cross_section")
            },
            "cross_section": source.manifest["cross_section"],
            "n_chunks": config.n_chunks,
            "versions": data_versions(),
            "units": {"energy": "GeV", "length": "mm", "time": "ns", "cross_section": "pb"},
        }
        if chunks is not None:
            m["n_events"] = sum(c["n_events"] for c in chunks)
            m["chunks"] = chunks
            m["completed"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        return m

    return run_chunks(
        config,
        directory,
        run_chunk,
        n_chunks=config.n_chunks,
        n_events=source.n_events,
        manifest=manifest,
        desc=f"simulate {card.name}",
        workers=workers,
        scheduler=scheduler,
        client=client,
        repair=repair,
        progress=progress,
    )
