"""Decoder efficiency: queries/s of the INR decoder against a bare chain of matrix multiplies.

For the shipped ``csr-dmri-cpu`` sizes and the paper's sizes (random weights: speed does not
depend on them), one latent map of an LR tile (72×97×82, the brain of the shared Ingenia scan)
is decoded at every voxel of its 2× grid:

* **csrdmri**: :func:`csrdmri.inference.tiling.decode_tile` (separable trilinear interpolation on the
  regular grid, then the MLP, in chunks of 16 384 queries) — what ``csrdmri upsample`` runs;
* **grid_sample**: ``INR.decode`` at the same queries' coordinates (``grid_sample`` then the MLP,
  what training and ArSSR-style code run), chunks of 16 384;
* **bare matmuls**: the MLP's matrix multiplies alone (same shapes, ``torch.mm``, no bias,
  activation, concatenation or interpolation), chunks of 16 384 — the reference.

Printed: queries/s of each, the decoder's share of the bare chain, and FLOPs per query.

Usage: python benchmarks/bench_decoder.py [--threads N] [--queries N]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from machine import describe

from csrdmri.core.grid import normalized, source_index
from csrdmri.inference.tiling import CHUNK, decode_tile
from csrdmri.inference.upsampler import Upsampler
from csrdmri.models import build_model

TILE = (72, 97, 82)


def _best(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(label: str, model: torch.nn.Module, planes: int) -> None:
    """Time the three decoders on the first ``planes`` HR x-planes of the tile's 2× grid."""
    model = model.eval().to(memory_format=torch.channels_last_3d)
    torch.manual_seed(0)
    latent = model.encoder.out.out_channels
    features = torch.randn(1, latent, *TILE).to(memory_format=torch.channels_last_3d)
    positions = [source_index(n, 2 * n) for n in TILE]
    positions[0] = positions[0][:planes]
    selected = np.ones([len(p) for p in positions], bool)
    queries = int(selected.sum())
    index = np.stack(np.meshgrid(*positions, indexing="ij"), axis=-1).reshape(-1, 3)
    coords = torch.from_numpy(normalized(index, TILE).astype(np.float32))[None]
    mlp = model.decoder
    weights = [layer.weight.t().contiguous() for layer in mlp.hidden] + [mlp.head.weight.t().contiguous()]
    inputs = torch.randn(CHUNK, latent + 3)
    skip = mlp.skip_at
    skip_inputs = torch.randn(CHUNK, mlp.hidden[skip].in_features)

    def ours() -> None:
        decode_tile(model, features, positions, selected)

    def sampled() -> None:
        for start in range(0, queries, CHUNK):
            model.decode(features, coords[:, start : start + CHUNK])

    def bare() -> None:
        for start in range(0, queries, CHUNK):
            n = min(CHUNK, queries - start)
            h = inputs[:n]
            for i, w in enumerate(weights):
                h = torch.mm(skip_inputs[:n] if i == skip else h, w)

    with torch.no_grad():
        for f in (ours, sampled, bare):
            f()  # warm-up
        t_ours, t_sampled, t_bare = _best(ours), _best(sampled), _best(bare)
    macs = sum(layer.in_features * layer.out_features for layer in mlp.hidden) + mlp.head.in_features
    interpolation = 3 * 3 * latent  # three lerps (one multiply-add and one subtraction each) per channel
    print(
        f"\n{label}: latent {latent}, MLP {len(mlp.hidden)} × {mlp.hidden[1].out_features}, {queries} queries"
    )
    print("| decoder | queries/s | share of bare matmuls |")
    print("|---|---|---|")
    for name, t in (
        ("csrdmri (decode_tile)", t_ours),
        ("grid_sample + MLP", t_sampled),
        ("bare matmuls", t_bare),
    ):
        print(f"| {name} | {queries / t / 1e6:.2f} M | {t_bare / t:.0%} |")
    print(f"FLOPs per query: {2 * macs / 1e3:.1f} k in matmuls + {interpolation / 1e3:.2f} k interpolating")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--planes", type=int, default=16, help="HR x-planes decoded (each 194×164 queries)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe(args.threads))
    measure("csr-dmri-cpu (shipped)", Upsampler.load("csr-dmri-cpu").model, args.planes)
    measure(
        "paper sizes", build_model({"architecture": "inr", "coord": "local", "residual": True}), args.planes
    )


if __name__ == "__main__":
    main()
