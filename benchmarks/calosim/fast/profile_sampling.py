"""Seconds per shower of each stage of ``CaloVAE.sample`` (energy flow, decoder, mask, noise,
voxel energies), one thread, best of 7 passes.

    python benchmarks/calosim/fast/profile_sampling.py RUN_DIR [BATCH]

RUN_DIR: a ``colliderlab train calosim --model vae`` directory with an energy model and
``zero_mask`` (the configurations of this directory's table)."""

import math
import sys
import time

import torch

from colliderlab.calosim.train import load_model


def best(f, batch: int, k: int = 7) -> float:
    t = math.inf
    for _ in range(k):
        start = time.perf_counter()
        f()
        t = min(t, time.perf_counter() - start)
    return t / batch


def main(run: str, batch: int = 1000) -> None:
    torch.set_num_threads(1)
    m = load_model(run).eval()
    e = torch.exp(torch.empty(batch).uniform_(math.log(1e3), math.log(1e6)))
    with torch.inference_mode():
        c = m.condition(e)
        u = m.energy.sample(c)
        cu = torch.cat([c, u], 1)
        z = torch.randn(batch, m.latent_dim)
        out = m.decode(z, cu)
        d, n = m.rho.shape[0], m.n_voxels
        logits, y = out[:, d : d + n], out[:, :d].contiguous()
        stages = {
            "energy flow (layer energies)": lambda: m.energy.sample(c),
            "decoder": lambda: m.decode(z, cu),
            "mask (uniform, sigmoid, compare)": lambda: (
                torch.rand_like(logits) >= torch.sigmoid(logits)
            ).float(),
            "noise (widths, Gaussian, add)": lambda: y.addcmul(torch.randn_like(y), m._sigma(out)),
            "voxel energies (compose)": lambda: m.preprocessing.compose(
                y.clone(), m.energy.layers(u, e), inplace=True
            ),
            "sample() in all": lambda: m.sample(e),
        }
        sys.stdout.write(f"| stage | s / shower (batch {batch}) |\n|---|---|\n")
        for name, f in stages.items():
            sys.stdout.write(f"| {name} | {best(f, batch):.2e} |\n")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
