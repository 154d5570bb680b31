"""Detect subject motion left in a series (beyond the paper): a warning, not a correction.

The models see each diffusion-weighted volume divided by the mean b0 (S/S0). When the head
moved between volumes and the series was not corrected, that ratio has edges where the brain
of one image meets the other's, which no training pair has: on the shared Philips Achieva scan
(5 of the 12 volumes evaluated displaced by 1.3–2.2 voxels) the shipped ArSSR gained 0.3 dB over
tricubic on the still volumes and lost 0.5 dB on the moved ones, and a model trained with
simulated motion did no better (docs/results.md). Motion correction belongs to dedicated tools (FSL ``eddy``,
DIPY's ``dipy_correct_motion``); this module only tells the user that it is missing.
"""

from __future__ import annotations

import logging

import numpy as np
from skimage.registration import phase_cross_correlation

from csrdmri.io.nifti import DWISeries

log = logging.getLogger(__name__)

#: Warn when a volume sits further than this from the others [voxels of the series' finest axis].
MOTION_WARN = 1.0
#: The check runs on every STRIDE-th voxel per axis (8× less work at 2; shifts stay sub-voxel).
STRIDE = 2


def displacements(series: DWISeries, volumes: np.ndarray) -> np.ndarray:
    """Translation [mm] of each of ``volumes`` from their mean image, shape (len(volumes),).

    Phase correlation (scikit-image, sub-voxel to 1/10 of the strided grid) of each volume with
    the mean of ``volumes``: translations only, which is what moves a whole brain by voxels.
    """
    zooms = np.asarray(series.header.get_zooms()[:3], dtype=float)
    strided = series.data[::STRIDE, ::STRIDE, ::STRIDE]  # a view; volumes are copied one at a time
    reference = sum(strided[..., v].astype(np.float64) for v in volumes) / len(volumes)
    shifts = [
        phase_cross_correlation(
            reference, strided[..., v].astype(np.float64), upsample_factor=10, normalization=None
        )[0]
        for v in volumes
    ]
    return np.linalg.norm(np.asarray(shifts) * STRIDE * zooms, axis=1)


def warn_if_moved(series: DWISeries, volumes: np.ndarray) -> np.ndarray:
    """Log a warning naming the ``volumes`` displaced by more than :data:`MOTION_WARN` voxels;
    returns their displacements [mm]."""
    moved = displacements(series, volumes)
    limit = MOTION_WARN * min(series.header.get_zooms()[:3])
    far = np.flatnonzero(moved > limit)
    if far.size:
        log.warning(
            "diffusion-weighted volumes displaced by up to %.1f mm from the others: %s (%d of %d); "
            "the series looks uncorrected for subject motion, which the models were not trained "
            "for: correct it first (FSL eddy, dipy_correct_motion)",
            moved.max(),
            ", ".join(str(int(volumes[i])) for i in far[:8]) + (", ..." if far.size > 8 else ""),
            far.size,
            len(volumes),
        )
    return moved
