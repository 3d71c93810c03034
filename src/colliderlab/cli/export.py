"""``colliderlab export DIR -o FILE.hepmc3``."""

from __future__ import annotations

import json


def run(args) -> int:
    from colliderlab.io import Dataset
    from colliderlab.io.hepmc import write_hepmc

    n = write_hepmc(Dataset(args.dataset), args.output, args.max_events)
    print(json.dumps({"output": args.output, "events": n}))
    return 0
