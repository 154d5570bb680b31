"""Spline resampling of arrays between grids that share a field of view (see :mod:`csrdmri.core.grid`).

This is the project's "tricubic": a cubic B-spline interpolant (``scipy.ndimage``, order 3)
evaluated at the destination voxel centres given by the coordinate convention, with samples
beyond the edge extended by the nearest one (``mode="nearest"``). It serves upsampling (the
tricubic baseline) and downsampling (LR training and evaluation inputs) alike. The result equals
``scipy.ndimage.zoom(..., grid_mode=True, mode="nearest")`` for the same shapes.

A tensor-product spline is separable, so the 3D resampling is done as three 1D linear maps
(one small dense matrix per axis) — much faster than evaluating 3D coordinates voxel by voxel.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from csrdmri.core.grid import source_index

#: Padding (in samples) that scipy uses before prefiltering for ``mode="nearest"``.
_PAD = 12


@functools.lru_cache(maxsize=64)
def axis_matrix(n_src: int, n_dst: int, order: int = 3) -> np.ndarray:
    """The 1D resampling from ``n_src`` to ``n_dst`` samples (same field of view) as a matrix.

    Returns
    -------
    ndarray, shape (n_dst, n_src), float64 (read-only, cached)
        Row ``k`` holds the weights of the source samples for destination voxel ``k``.
    """
    pad = _PAD if order > 1 else 0
    basis = np.pad(np.eye(n_src), ((pad, pad), (0, 0)), mode="edge")
    if order > 1:
        basis = ndimage.spline_filter1d(basis, order=order, axis=0, mode="mirror")
    coords = [source_index(n_src, n_dst) + pad]
    columns = [
        ndimage.map_coordinates(basis[:, n], coords, order=order, mode="nearest", prefilter=False)
        for n in range(n_src)
    ]
    matrix = np.stack(columns, axis=1)
    matrix.flags.writeable = False
    return matrix


def resample(
    volume: np.ndarray, shape: Sequence[int], order: int = 3, box: Sequence[slice] | None = None
) -> np.ndarray:
    """Resample an array onto a ``shape`` grid covering the same field of view.

    Parameters
    ----------
    volume : ndarray, shape (X, Y, Z, ...)
        Samples at voxel centres; axes beyond ``len(shape)`` (e.g. volumes) are carried along.
    shape : sequence of int
        Destination size of the leading axes (larger to upsample, smaller to downsample).
    order : int
        Spline order: 3 is tricubic, 1 trilinear, 0 nearest.
    box : sequence of slice, optional
        Only this block of the destination grid (one slice per axis of ``shape``, steps of 1):
        equal to ``resample(volume, shape, order)[box]``, at the cost of the block.

    Returns
    -------
    ndarray, float64 for float64 input, else float32. Not clipped: a cubic spline may
    overshoot slightly at sharp edges.
    """
    box = box or [slice(None)] * len(shape)
    matrices = [axis_matrix(n, int(m), order)[b] for n, m, b in zip(volume.shape, shape, box, strict=False)]
    return apply_axes(volume, matrices)


def apply_axes(volume: np.ndarray, matrices: Sequence[np.ndarray]) -> np.ndarray:
    """``volume`` (X, Y, Z, ...) with the linear map ``matrices[a]`` (n_dst, n_src) applied
    along each leading axis ``a``: a separable 3D resampling. float64 for float64 input, else
    float32."""
    dtype = np.float64 if volume.dtype == np.float64 else np.float32
    out = np.asarray(volume, dtype=dtype)
    for axis, matrix in enumerate(matrices):
        out = np.moveaxis(np.tensordot(matrix.astype(dtype), out, axes=(1, axis)), 0, axis)
    return np.ascontiguousarray(out)


def resample_torch(volume, shape: Sequence[int], order: int = 3):
    """:func:`resample` on a torch tensor ``(..., X, Y, Z)`` (same weights, differentiable).

    The three trailing axes are resampled to ``shape``; leading axes (batch, channels) are kept.
    """
    import torch

    out = volume
    for k, n_dst in enumerate(shape):
        axis = out.ndim - 3 + k
        weights = torch.tensor(
            axis_matrix(out.shape[axis], int(n_dst), order), dtype=out.dtype, device=out.device
        )
        out = torch.movedim(torch.tensordot(out, weights, dims=([axis], [1])), -1, axis)
    return out
