"""Side-by-side timing of two versions of the ``ckf`` track finder on the same events.

    git show REV:src/colliderlab/tracking/ckf.py > /tmp/ckf_old.py
    python benchmarks/tracking/ab_ckf.py EVENT_DIR /tmp/ckf_old.py [REPEATS]

EVENT_DIR: a directory of TrackML-format events (e.g. the cache that ``colliderlab evaluate
tracking --pileup 200 --events 5 --seed 3`` writes under ``colliderlab-data/tracking/``).
The two finders (A: the installed package, B: the file given) run alternately on each event,
so that the drifts of a shared machine hit both alike; prints the median time per event of
each, the median of the per-event ratios B / A, the mean TrackML score of each, and whether
the two give the same tracks (the same partition of the hits) on every event.
"""

import sys
import time
import types
from pathlib import Path

import numpy as np

from colliderlab.tracking import ckf as version_a
from colliderlab.tracking import io
from colliderlab.tracking.evaluate import warm_up
from colliderlab.tracking.score import trackml_score


def load_version(path: str) -> types.ModuleType:
    """The ckf module of ``path`` as a module of its own (its finder not registered)."""
    module = types.ModuleType("colliderlab.tracking.ckf_b")
    sys.modules[module.__name__] = module
    source = Path(path).read_text().replace('@register(KIND, "ckf")', "")
    exec(compile(source, path, "exec"), module.__dict__)
    return module


def same_tracks(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two track labellings of the same hits are the same partition."""
    pairs = np.unique(np.stack([a, b]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def main(event_dir: str, other: str, repeats: int = 2) -> None:
    events = [io.read_event(p) for p in io.list_events(event_dir)]
    finders = {"A": version_a.CKFFinder(), "B": load_version(other).CKFFinder()}
    for finder in finders.values():
        warm_up(finder, events[0])
    seconds = {k: [] for k in finders}
    scores = {k: [] for k in finders}
    identical = True
    for rep in range(repeats):
        for event in events:
            labels = {}
            for key, finder in finders.items():
                start = time.perf_counter()
                submission = finder.find(event)
                seconds[key].append(time.perf_counter() - start)
                labels[key] = submission["track_id"].to_numpy()
                if rep == 0:
                    scores[key].append(trackml_score(event.truth, submission))
            identical &= same_tracks(labels["A"], labels["B"])
    ta, tb = np.array(seconds["A"]), np.array(seconds["B"])
    out = sys.stdout.write
    out(f"{len(events)} events x {repeats}, {np.mean([e.n_hits for e in events]):,.0f} hits\n")
    out(f"A (installed): {np.median(ta):.3f} s/event, score {np.mean(scores['A']):.4f}\n")
    out(f"B ({other}): {np.median(tb):.3f} s/event, score {np.mean(scores['B']):.4f}\n")
    out(f"B / A (median of per-event ratios): {np.median(tb / ta):.3f}\n")
    out(f"same tracks on every event: {identical}\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
