"""The paper's patch protocol: 40³ patches inside the brain, HR crop (10·s)³, LR 10³.

Training and evaluation both build their LR/HR pairs here, and the LR patch is made by the
project's tricubic resampling (:func:`csrdmri.resample.resample`, cell-centred convention), so the
LR voxels and the HR coordinates agree to the voxel.
"""

from __future__ import annotations

import numpy as np

from csrdmri.core.degrade import downsample

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


def padded_crop(volume: np.ndarray, start, size) -> np.ndarray:
    """The block of ``volume`` (X, Y, Z) of shape ``size`` (3 ints) from voxel ``start`` (3
    ints, which may lie outside the volume), zero where the block leaves the volume."""
    out = np.zeros(tuple(size), volume.dtype)
    lo = [min(max(int(a), 0), n) for a, n in zip(start, volume.shape, strict=True)]
    hi = [max(min(int(a) + m, n), b) for a, m, n, b in zip(start, size, volume.shape, lo, strict=True)]
    out[tuple(slice(b - a, c - a) for a, b, c in zip(start, lo, hi, strict=True))] = volume[
        tuple(slice(b, c) for b, c in zip(lo, hi, strict=True))
    ]
    return out


def central_crop(patch: np.ndarray, size: int) -> np.ndarray:
    """The central ``size``³ block of a cubic patch (leading three axes)."""
    start = (patch.shape[0] - size) // 2
    return patch[start : start + size, start : start + size, start : start + size]


def degrade(hr: np.ndarray, lr_size: int = LR_SIZE, method: str = "tricubic") -> np.ndarray:
    """LR patch ``lr_size``³ from a cubic HR crop (same field of view) by the degradation
    ``method``: ``"tricubic"`` (the paper's) or ``"kspace"`` (:mod:`csrdmri.core.degrade`)."""
    return downsample(hr, (lr_size,) * 3, method)
