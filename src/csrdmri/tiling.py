"""Whole-volume INR inference in bounded memory.

The encoder runs on LR tiles: a core of at most ``tile``³ voxels plus a halo of ``halo`` voxels on
every side (clipped at the volume's edges, where the untiled encoder's zero padding applies
anyway). The cores split the bounding box of the LR voxels the selected HR voxels need, so
nothing outside the (dilated) brain is encoded except the halo.
Each HR voxel belongs to the tile whose core holds its nearest LR voxel, and is decoded from
that tile's features, in chunks of ``chunk`` queries. With a halo of the encoder's receptive
radius + 1 (the trilinear sample reaches one voxel past the core), every feature a query uses
is exactly the untiled one, so tiled and untiled results agree to float tolerance. Peak memory
depends on ``tile`` and ``chunk``, not on the volume's size.

Coordinates follow :mod:`csrdmri.grid`: HR voxel ``j`` of ``M`` over ``N`` LR voxels sits at
continuous LR index ``(j + 0.5)·N/M − 0.5``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import numpy as np
import torch

from csrdmri.grid import normalized, source_index

#: Default largest tile core side (LR voxels): with the shipped models' halo of 17, a tile holds
#: at most 130³ voxels, ~2.5 GB of encoder activations (see docs/benchmarks.md).
TILE = 96
#: Default number of queries decoded at once (smaller chunks stay in cache: faster than 65 536).
CHUNK = 16384


def as_input(volume: np.ndarray | None, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """A 3D array (X, Y, Z) as a model input (1, 1, X, Y, Z), float32 on ``device``; None stays None."""
    if volume is None:
        return None
    return torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None].to(device)


def encoder_halo(model: torch.nn.Module) -> int:
    """LR voxels of context a tile needs so that its core's queries see untiled features."""
    return model.encoder.receptive_radius + 1


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``"bf16"``/``"fp16"`` (fp16 on CUDA only); nothing for ``"fp32"``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast needs a CUDA device (use bf16 or fp32 on the CPU)")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


def _channels_last(volume: torch.Tensor) -> torch.Tensor:
    return volume.to(memory_format=torch.channels_last_3d)


def _cores(owners: list[np.ndarray], where: np.ndarray | None, tile: int) -> Iterator[tuple[slice, ...]]:
    """Tile cores (LR slices) covering the LR voxels that own a selected HR voxel: the bounding
    box of those owners, split per axis into equal parts of at most ``tile`` voxels (no thin
    last tile, whose halo would cost as much as a full one)."""
    axes = []
    for axis, owner in enumerate(owners):
        if where is None:
            lo, hi = 0, int(owner[-1]) + 1
        else:
            used = np.flatnonzero(where.any(axis=tuple(a for a in range(3) if a != axis)))
            if used.size == 0:
                return
            lo, hi = int(owner[used[0]]), int(owner[used[-1]]) + 1
        bounds = np.linspace(lo, hi, -(-(hi - lo) // tile) + 1).round().astype(int)
        axes.append([slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)])
    yield from itertools.product(*axes)


@torch.no_grad()
def decode_volume(
    model: torch.nn.Module,
    lr: np.ndarray,
    t1: np.ndarray | None,
    out: np.ndarray,
    where: np.ndarray | None = None,
    tile: int = TILE,
    halo: int | None = None,
    chunk: int = CHUNK,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> None:
    """Decode an INR model over a whole volume, in place.

    Parameters
    ----------
    model : INR
        A model with ``encode``, ``decode``, ``residual`` (see :mod:`csrdmri.models.inr`).
    lr : ndarray, shape (X, Y, Z), float32
        The LR volume (S/S0), and ``t1`` the normalised T1w on the same grid (or None).
    out : ndarray, shape (X', Y', Z'), float32
        The HR grid over the same field of view, holding the tricubic upsampling of ``lr``:
        overwritten with the model's prediction where ``where`` is true (everywhere if None).
        A residual model's correction is added to it.
    tile, halo, chunk : int
        Largest tile core side and halo (LR voxels; default halo: :func:`encoder_halo`), and the number
        of queries decoded at once.
    device, precision :
        Torch device, and ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA) autocast.
    """
    device = torch.device(device)
    halo = encoder_halo(model) if halo is None else halo
    src, dst = lr.shape, out.shape
    positions = [source_index(n, m) for n, m in zip(src, dst, strict=True)]
    owners = [np.floor(p + 0.5).astype(np.int64) for p in positions]
    # Channels-last 3D convolutions: ~1.3x faster encoding on the CPU (oneDNN).
    model.eval().to(device, memory_format=torch.channels_last_3d)
    for core in _cores(owners, where, tile):
        # HR voxels whose nearest LR voxel lies in this core (a contiguous block per axis).
        hr = tuple(
            slice(int(np.searchsorted(o, c.start)), int(np.searchsorted(o, c.stop)))
            for o, c in zip(owners, core, strict=True)
        )
        selected = np.ones([s.stop - s.start for s in hr], bool) if where is None else where[hr]
        if not selected.any():
            continue
        lo = [max(c.start - halo, 0) for c in core]
        hi = [min(c.stop + halo, n) for c, n in zip(core, src, strict=True)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        with autocast(device, precision):
            inputs = [None if v is None else _channels_last(as_input(v[box], device)) for v in (lr, t1)]
            features = model.encode(*inputs)
        local = np.nonzero(selected)
        index = np.stack(
            [positions[a][hr[a].start + local[a]] - lo[a] for a in range(3)], axis=-1
        )  # continuous LR index within the tile
        coords = torch.from_numpy(normalized(index, [b - a for a, b in zip(lo, hi, strict=True)]))
        coords = coords.to(device=device, dtype=torch.float32)
        values = np.empty(len(index), np.float32)
        for start in range(0, len(index), chunk):
            with autocast(device, precision):
                part = model.decode(features, coords[None, start : start + chunk])
            values[start : start + chunk] = part[0].float().cpu().numpy()
        block = out[hr]  # a view: writes go to ``out``
        block[selected] = block[selected] + values if model.residual else values
