"""A whole DWI series degraded to a coarser grid over the same field of view."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from csrdmri.core.degrade import Degradation, downsample
from csrdmri.core.grid import TargetGrid, resampled_affine, shape_for_scale
from csrdmri.io.nifti import DWISeries


def coarse_grid(series: DWISeries, scale: float | Sequence[float]) -> tuple[tuple[int, int, int], np.ndarray]:
    """The shape and affine (4, 4) of the grid :func:`degrade_series` brings ``series`` onto:
    ``round(N / scale)`` voxels per axis over the same field of view."""
    inverse = [1.0 / s for s in np.broadcast_to(np.asarray(scale, np.float64), (3,))]
    lr_shape = shape_for_scale(series.shape, inverse)
    return lr_shape, resampled_affine(series.affine, series.shape, lr_shape)


def degrade_series(
    series: DWISeries, scale: float | Sequence[float], degradation: Degradation = "tricubic"
) -> tuple[DWISeries, TargetGrid]:
    """The LR series (every volume downsampled by ``scale``, one or per axis, to
    ``round(N / scale)`` voxels by ``degradation`` (:mod:`csrdmri.core.degrade`), same field of
    view, clipped at 0, no mask file: the mask is found from the LR data) and the grid that
    leads back to the series' own."""
    lr_shape, lr_affine = coarse_grid(series, scale)
    volumes = range(series.data.shape[3])
    data = np.stack(
        [np.maximum(downsample(series.data[..., v], lr_shape, degradation), 0) for v in volumes], axis=-1
    ).astype(np.float32)
    lr = replace(series, data=data, affine=lr_affine, paths=replace(series.paths, mask=None))
    return lr, TargetGrid(lr_shape, series.shape, resampled_affine(lr_affine, lr_shape, series.shape))
