"""The paper's patch protocol: 40³ patches inside the brain, HR crop (10·s)³, LR 10³.

Training and evaluation both build their LR/HR pairs here, and the LR patch is made by the
project's tricubic resampling (:func:`csrdmri.resample.resample`, cell-centred convention), so the
LR voxels and the HR coordinates agree to the voxel.
"""

from __future__ import annotations

import numpy as np

from csrdmri.core.resample import resample

PATCH = 40  #: side of the patches drawn inside the brain (voxels)
LR_SIZE = 10  #: side of the LR patch (voxels)
MIN_BRAIN = 0.5  #: a patch counts as inside the brain when its centre is and ≥ half its voxels are


def hr_size(scale: float, lr_size: int = LR_SIZE) -> int:
    """HR crop side ``round(lr_size · scale)``; the exact scale is ``hr_size / lr_size``."""
    return int(np.floor(lr_size * scale + 0.5))


def patch_origins(
    mask: np.ndarray, n: int, rng: np.random.Generator, size: int = PATCH, min_brain: float = MIN_BRAIN
) -> np.ndarray:
    """Corners (n, 3) of ``size``³ patches inside the brain, drawn at random by ``rng``.

    Candidates are brain voxels as patch centres; a candidate is kept when at least
    ``min_brain`` of its patch lies in the mask. Raises ValueError if none qualifies.
    """
    shape = np.asarray(mask.shape)
    if np.any(shape < size):
        raise ValueError(f"volume {mask.shape} is smaller than a {size}³ patch")
    integral = np.pad(mask.astype(np.int64), ((1, 0),) * 3).cumsum(0).cumsum(1).cumsum(2)
    lo = np.argwhere(mask) - size // 2
    lo = lo[np.all((lo >= 0) & (lo + size <= shape), axis=1)]
    hi = lo + size
    counts = (
        integral[hi[:, 0], hi[:, 1], hi[:, 2]]
        - integral[lo[:, 0], hi[:, 1], hi[:, 2]]
        - integral[hi[:, 0], lo[:, 1], hi[:, 2]]
        - integral[hi[:, 0], hi[:, 1], lo[:, 2]]
        + integral[lo[:, 0], lo[:, 1], hi[:, 2]]
        + integral[lo[:, 0], hi[:, 1], lo[:, 2]]
        + integral[hi[:, 0], lo[:, 1], lo[:, 2]]
        - integral[lo[:, 0], lo[:, 1], lo[:, 2]]
    )
    valid = lo[counts >= min_brain * size**3]
    if len(valid) == 0:
        raise ValueError("no patch inside the brain: mask too small for the patch size")
    return valid[rng.integers(0, len(valid), size=n)]


def central_crop(patch: np.ndarray, size: int) -> np.ndarray:
    """The central ``size``³ block of a cubic patch (leading three axes)."""
    start = (patch.shape[0] - size) // 2
    return patch[start : start + size, start : start + size, start : start + size]


DEGRADATIONS = ("tricubic", "kspace")


def degrade(hr: np.ndarray, lr_size: int = LR_SIZE, method: str = "tricubic") -> np.ndarray:
    """LR patch ``lr_size``³ from a cubic HR crop (same field of view).

    ``"tricubic"`` (the paper): cubic B-spline downsampling. ``"kspace"`` (more MRI-like): keep
    the ``lr_size``³ lowest frequencies of the crop's DFT, i.e. what a scanner acquiring the
    coarser matrix measures (no windowing, so Gibbs ringing is part of the degradation), phase-
    shifted so that the LR samples sit at the LR voxel centres of :mod:`csrdmri.core.grid`.
    """
    if method == "tricubic":
        return resample(hr, (lr_size,) * 3)
    if method != "kspace":
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {method!r}")
    n = hr.shape[0]
    keep = np.rint(np.fft.fftfreq(lr_size) * lr_size).astype(int)  # integer frequencies kept
    # LR sample i sits at HR index (i + 0.5)·n/L − 0.5 = i·n/L + shift.
    phase = np.exp(2j * np.pi * keep * (0.5 * n / lr_size - 0.5) / n)
    spectrum = np.fft.fftn(hr.astype(np.float64))[np.ix_(keep, keep, keep)]
    spectrum *= phase[:, None, None] * phase[None, :, None] * phase[None, None, :]
    lr = np.fft.ifftn(spectrum).real * (lr_size / n) ** 3
    return lr.astype(hr.dtype, copy=False)
