"""Peak memory and time of one GNN training step, with and without ``recompute``.

Each configuration runs in its own process (one torch thread) on a random graph of E edges
and E / 3 hits; the peak is the process's RSS high-water mark above its state before the
first step (the graph, weights and optimiser state excluded), the time the faster of two
steps. It calibrates :func:`colliderlab.tracking.gnn.training_memory_estimate`.

    python benchmarks/tracking/gnn_memory.py > benchmarks/tracking/gnn_memory.md
"""

from __future__ import annotations

import subprocess
import sys

CONFIGS = [  # (edges, hidden, iterations)
    (100_000, 32, 4),
    (150_000, 64, 8),
    (300_000, 64, 8),
]

STEP = r"""
import resource, sys, time, torch
from colliderlab.tracking.gnn import InteractionNetwork
torch.set_num_threads(1)
E, H, IT, rc = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
N = E // 3
torch.manual_seed(0)
x, ea = torch.randn(N, 5), torch.randn(E, 6)
ei, y = torch.randint(0, N, (2, E)), (torch.rand(E) < 0.3).float()
m = InteractionNetwork(node_features=5, hidden=H, iterations=IT)
m.recompute = rc
opt = torch.optim.Adam(m.parameters(), 1e-3)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ts = []
for _ in range(2):
    t = time.perf_counter()
    opt.zero_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(m(x, ei, ea), y).backward()
    opt.step()
    ts.append(time.perf_counter() - t)
print(min(ts), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


def main() -> None:
    from colliderlab.tracking.gnn import TrainConfig, training_memory_estimate

    out = sys.stdout.write
    out("| edges | hidden | iterations | recompute | s / step | peak GiB | estimate GiB |\n")
    out("|---:|---:|---:|---|---:|---:|---:|\n")
    for edges, hidden, iterations in CONFIGS:
        config = TrainConfig(hidden=hidden, iterations=iterations)
        for recompute in (False, True):
            args = map(str, (edges, hidden, iterations, int(recompute)))
            run = subprocess.run(
                [sys.executable, "-c", STEP, *args], capture_output=True, text=True, check=True
            )
            seconds, peak = float(run.stdout.split()[0]), int(run.stdout.split()[1])
            estimate = training_memory_estimate(edges, config, recompute=recompute)
            out(
                f"| {edges:,} | {hidden} | {iterations} | {'yes' if recompute else 'no'} | "
                f"{seconds:.1f} | {peak / 2**30:.2f} | {estimate / 2**30:.2f} |\n"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
