"""Image-quality metrics, defined once for the whole project (scikit-image is the reference).

Both metrics compare b0-normalised DWIs (S/S0), whose full scale is 1: PSNR uses the fixed
data range ``DATA_RANGE = 1`` (so it is a monotone function of the MSE, comparable across
patches, subjects and methods, and independent of the estimate), and SSIM uses the same range
with scikit-image's defaults: a 7×7×7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

#: Full scale of S/S0 data.
DATA_RANGE = 1.0
#: SSIM window side (voxels).
SSIM_WINDOW = 7


def psnr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """PSNR in dB: ``10 log10(DATA_RANGE² / MSE)``."""
    return float(peak_signal_noise_ratio(reference, estimate, data_range=DATA_RANGE))


def ssim(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean SSIM over the volume (3D windows of ``SSIM_WINDOW``³ voxels)."""
    return float(structural_similarity(reference, estimate, data_range=DATA_RANGE, win_size=SSIM_WINDOW))
