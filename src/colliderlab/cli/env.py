"""``colliderlab env``: versions for bug reports."""

from __future__ import annotations

import json


def run(args) -> int:
    from colliderlab.core.env import versions

    v = versions()
    if args.json:
        print(json.dumps(v, indent=2))
    else:
        width = max(map(len, v))
        for k, val in v.items():
            print(f"{k:<{width}}  {val if val is not None else '(not installed)'}")
    return 0
