"""Edge efficiency and purity of a trained GNN finder vs the edge-score threshold.

Usage::

    python benchmarks/tracking/gnn_edges.py RUN_DIR EVENTS_DIR [--thresholds 0.5 0.9 ...]

RUN_DIR: a ``colliderlab train tracking`` run (or a shipped finder checkpoint);
EVENTS_DIR: TrackML files with truth (e.g. ``colliderlab-data/tracking/ttbar-mu200-n5-seed1003``,
made by ``colliderlab dataset tracking --pileup 200 --events 5 --seed 1003``).

Prints a Markdown table: the graph's efficiency (true pT > 1 GeV edges that the module map
builds), and for each threshold the edge efficiency and purity for pT > 1 GeV over the graph's
edges (edges removed by the filter count as rejected), as :func:`colliderlab.tracking.gnn.
edge_metrics` defines them. The network runs once per event; the thresholds cost nothing.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from colliderlab.tracking.gnn import GNNFinder, edge_metrics
from colliderlab.tracking.graph import graph_metrics, label_edges
from colliderlab.tracking.io import list_events, read_event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("events")
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.8, 0.9, 0.95]
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None, help="cpu or cuda (cpu)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    finder = GNNFinder(checkpoint=args.run, device=args.device)
    labels, scores, pts, graph_found, graph_true = [], [], [], 0.0, 0
    prefixes = list_events(args.events)
    for prefix in prefixes:
        event = read_event(prefix)
        edges, score = finder.edge_scores(event)
        label, pt = label_edges(event, edges)
        graph = graph_metrics(event, edges)
        graph_found += graph["efficiency"] * graph["n_true"]
        graph_true += graph["n_true"]
        labels.append(label)
        scores.append(score)
        pts.append(pt)
    y, s, pt = (np.concatenate(a) for a in (labels, scores, pts))
    out = sys.stdout.write
    out(f"{len(prefixes)} events of {args.events}; model {args.run}\n")
    out(f"graph efficiency (true pT > 1 GeV edges built): {graph_found / graph_true:.4f}\n\n")
    out("| threshold | edge efficiency (pT > 1 GeV) | edge purity (pT > 1 GeV) |\n")
    out("|---|---|---|\n")
    for t in args.thresholds:
        m = edge_metrics(y, s, pt=pt, threshold=t)
        out(f"| {t:g} | {m['efficiency']:.4f} | {m['purity']:.4f} |\n")


if __name__ == "__main__":
    main()
