"""Seconds per shower of each stage of ``CaloVAE.sample``, the fused CPU path (compiled
kernels of ``colliderlab.calosim.kernels``) beside the PyTorch path, one thread, best of 9
passes.

    python benchmarks/calosim/fused/profile_fused.py RUN_DIR [BATCH]

RUN_DIR: a ``colliderlab train calosim --model vae`` directory with
``energy_model=spline_iaf``, ``zero_mask`` and ``conditional_sigma=true`` (the
configurations of ``benchmarks/RESULTS.md``). BATCH: 1424, one chunk of ``sample``."""

import sys
import timeit

import numpy as np
import torch

from colliderlab.calosim import kernels
from colliderlab.calosim.train import load_model


def best(f, batch: int, k: int = 9) -> float:
    """Seconds per shower of ``f`` (one batch per call): the fastest of k calls after one."""
    return min(timeit.repeat(f, number=1, repeat=k + 1)[1:]) / batch


def main(run: str, batch: int = 1424) -> None:
    torch.set_num_threads(1)
    m = load_model(run).eval()
    gen = torch.Generator().manual_seed(0)
    e = 10.0 ** (3.0 + 3.0 * torch.rand(batch, generator=gen))  # log-uniform, 1 GeV - 1 TeV
    with torch.inference_mode():
        c = m.condition(e)
        u = m.energy.sample(c, fused=True)
        cu = torch.cat([c, u], dim=1)
        z = torch.randn(batch, m.latent_dim, generator=gen)
        out = m.decode(z, cu).contiguous()
        prep, n = m.preprocessing, m.n_voxels
        args = (
            out.numpy(),
            m.rho.float().numpy(),
            prep.std[:n].float().contiguous().numpy(),
            prep.mean[:n].float().contiguous().numpy(),
            np.cumsum((0, *m.layer_sizes), dtype=np.int64),
            m.energy.layers(u, e).float().contiguous().numpy(),
            np.uint64(5),
            m.sample_noise,
            float(m.min_sigma),
            prep.alpha,
            np.float32(prep.threshold),
        )

        def whole(fused: bool):
            def run_it():
                m.fused_sampling = fused
                m._sample(e)

            return run_it

        stages = {
            "energy flow, compiled splines": lambda: m.energy.sample(c, fused=True),
            "energy flow, PyTorch splines": lambda: m.energy.sample(c, fused=False),
            "decoder": lambda: m.decode(z, cu),
            "voxel kernel (fill, noise, fractions, layer energies)": lambda: kernels.vae_voxels(
                *args
            ),
            "one chunk, fused path": whole(True),
            "one chunk, PyTorch path": whole(False),
        }
        sys.stdout.write(f"| stage | s / shower (batch {batch}) |\n|---|---|\n")
        for name, f in stages.items():
            sys.stdout.write(f"| {name} | {best(f, batch):.2e} |\n")
        m.fused_sampling = True


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
