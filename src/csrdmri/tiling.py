"""Whole-volume INR inference in bounded memory.

The encoder runs on LR tiles: a core of ``tile``³ voxels plus a halo of ``halo`` voxels on every
side (clipped at the volume's edges, where the untiled encoder's zero padding applies anyway).
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

import numpy as np
import torch

from csrdmri.grid import normalized, source_index


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


@torch.no_grad()
def decode_volume(
    model: torch.nn.Module,
    lr: np.ndarray,
    t1: np.ndarray | None,
    out: np.ndarray,
    where: np.ndarray | None = None,
    tile: int = 32,
    halo: int | None = None,
    chunk: int = 65536,
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
        Tile core size and halo (LR voxels; default halo: :func:`encoder_halo`), and the number
        of queries decoded at once.
    device, precision :
        Torch device, and ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA) autocast.
    """
    device = torch.device(device)
    halo = encoder_halo(model) if halo is None else halo
    src, dst = lr.shape, out.shape
    positions = [source_index(n, m) for n, m in zip(src, dst, strict=True)]
    owners = [np.floor(p + 0.5).astype(np.int64) for p in positions]
    model.eval().to(device)
    for corner in itertools.product(*(range(0, n, tile) for n in src)):
        # HR voxels whose nearest LR voxel lies in this core (a contiguous block per axis).
        hr = tuple(
            slice(int(np.searchsorted(o, c)), int(np.searchsorted(o, c + tile)))
            for o, c in zip(owners, corner, strict=True)
        )
        selected = np.ones([s.stop - s.start for s in hr], bool) if where is None else where[hr]
        if not selected.any():
            continue
        lo = [max(c - halo, 0) for c in corner]
        hi = [min(c + tile + halo, n) for c, n in zip(corner, src, strict=True)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        with autocast(device, precision):
            features = model.encode(
                as_input(lr[box], device), None if t1 is None else as_input(t1[box], device)
            )
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
