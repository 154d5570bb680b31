"""Prepare a dMRI dataset for the model: shells, b0 normalisation, brain mask, T1w on the DWI grid.

Units: b-values in s/mm², distances in mm, intensities in the scanner's units until
normalised (then a fraction of the mean b0 for DWIs, and ~[0, 1] for the T1w).
"""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
from dipy.core.gradients import GradientTable
from dipy.segment.mask import median_otsu
from nibabel.processing import resample_from_to
from scipy import ndimage

from csrdmri.core.errors import InputError, about
from csrdmri.io.nifti import DWISeries, Source, describe, load_image, read_voxels

log = logging.getLogger(__name__)

#: The paper's shell (s/mm²) and the tolerance used to select it.
DEFAULT_SHELL = 1000.0
SHELL_TOLERANCE = 100.0
#: Below this fraction of brain voxels inside the T1w field of view the T1w is refused;
#: below ``T1_OVERLAP_WARN`` a warning is logged.
T1_OVERLAP_MIN = 0.5
T1_OVERLAP_WARN = 0.95
#: Mean-b0 values below this fraction of the brain's 99th percentile are treated as signal void
#: (normalised signal set to 0 there rather than dividing by noise).
B0_FLOOR = 0.01


def b0_indices(gtab: GradientTable) -> np.ndarray:
    """Indices of the b0 volumes (b ≤ the table's b0 threshold, 50 s/mm² by default)."""
    idx = np.flatnonzero(gtab.b0s_mask)
    if idx.size == 0:
        raise InputError(
            f"no b0 volume (b ≤ {gtab.b0_threshold:g} s/mm²) in the series; "
            "b0 normalisation needs at least one"
        )
    return idx


def shell_indices(
    gtab: GradientTable, bvalue: float = DEFAULT_SHELL, tolerance: float = SHELL_TOLERANCE
) -> np.ndarray:
    """Indices of the diffusion-weighted volumes with ``|b - bvalue| ≤ tolerance``."""
    idx = np.flatnonzero(~gtab.b0s_mask & (np.abs(gtab.bvals - bvalue) <= tolerance))
    if idx.size == 0:
        shells = sorted({round(float(b)) for b in gtab.bvals[~gtab.b0s_mask]})
        raise InputError(f"no volume with b = {bvalue:g} ± {tolerance:g} s/mm² (b-values: {shells})")
    return idx


def shells(gtab: GradientTable, tolerance: float = SHELL_TOLERANCE) -> dict[float, np.ndarray]:
    """Every diffusion-weighted shell: its mean b-value (s/mm², rounded to 1) → the indices of
    its volumes, in series order. b-values sorted and split where consecutive ones differ by
    more than ``tolerance``, so 995/1000/1005 form one shell and 1000/2000 two."""
    weighted = np.flatnonzero(~gtab.b0s_mask)
    order = weighted[np.argsort(gtab.bvals[weighted], kind="stable")]
    groups = np.split(order, np.flatnonzero(np.diff(gtab.bvals[order]) > tolerance) + 1) if order.size else []
    return {round(float(gtab.bvals[g].mean())): np.sort(g) for g in groups}


def mean_b0(series: DWISeries) -> np.ndarray:
    """Mean of the b0 volumes, shape (X, Y, Z), float32."""
    return series.data[..., b0_indices(series.gtab)].mean(axis=-1)


def b0_reciprocal(b0: np.ndarray, mask: np.ndarray, floor: float | None = None) -> np.ndarray:
    """``1 / S0`` inside the brain, 0 elsewhere: the factor that turns a DWI into S/S0.

    Parameters
    ----------
    b0 : ndarray, shape (X, Y, Z), the mean b0
    mask : bool ndarray, shape (X, Y, Z), the brain mask (or a region around it)
    floor : float, optional
        Signal void below it; default :func:`b0_floor` of ``mask`` (give the brain's when
        ``mask`` is a dilated region).

    Returns
    -------
    ndarray, shape (X, Y, Z), float32. 0 outside the mask, where S/S0 is the ratio of two noise
    samples and means nothing, and where the mean b0 is below ``floor``. Compute it once per
    subject and multiply each volume by it.
    """
    valid = mask & (b0 > (b0_floor(b0, mask) if floor is None else floor))
    return np.where(valid, 1.0 / np.where(valid, b0, 1.0), 0.0).astype(np.float32)


def b0_floor(b0: np.ndarray, mask: np.ndarray) -> float:
    """``B0_FLOOR`` × the 99th percentile of the mean b0 in ``mask``: below it, signal void.

    Refused when the mean b0 is at or below it in most of the mask (a b0 volume that is empty,
    or a mask that misses the brain): there is nothing to normalise by.
    """
    inside = b0[mask]
    floor = B0_FLOOR * np.percentile(inside, 99) if inside.size else 0.0
    if floor <= 0 or np.mean(inside > floor) < 0.5:
        raise InputError(
            "the mean b0 is zero (or signal void) in most of the brain mask; cannot normalise by it"
        )
    return float(floor)


def normalise_by_b0(data: np.ndarray, b0: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Divide DWIs (X, Y, Z) or (X, Y, Z, V) by the mean b0 inside the brain, as the paper does
    (S / S0); 0 where :func:`b0_reciprocal` is 0. Returns float32 of ``data``'s shape."""
    reciprocal = b0_reciprocal(b0, mask)
    return (data * (reciprocal[..., None] if data.ndim == 4 else reciprocal)).astype(np.float32)


def brain_mask(b0: np.ndarray) -> np.ndarray:
    """Brain mask from the mean b0 by DIPY's ``median_otsu``.

    Radius 2 and one pass, as in DIPY's DTI examples: the defaults (radius 4, four passes) take
    ~20 s on a 128×128×82 volume for a nearly identical mask.
    """
    if not np.any(b0 > 0):
        raise InputError("the mean b0 is all zero; cannot find the brain")
    _, mask = median_otsu(b0, median_radius=2, numpass=1)
    if not mask.any():
        raise InputError("no brain found in the mean b0 (median_otsu returned an empty mask)")
    return mask


def load_mask(source: Source, series: DWISeries) -> np.ndarray:
    """Load a brain mask (a file or an image) that must be on the DWI grid (same shape and affine)."""
    img, path = load_image(source, "mask"), describe(source, "mask")
    if img.shape != series.shape or not np.allclose(img.affine, series.affine, atol=1e-3):
        raise InputError(
            f"mask {path} is not on the DWI grid (mask {img.shape}, DWI {series.shape}, or different affines)"
        )
    mask = read_voxels(img, path, "mask") > 0
    if not mask.any():
        raise InputError(f"mask {path} is empty")
    return mask


def series_mask(series: DWISeries, mask_path: Source | None = None) -> np.ndarray:
    """The given mask (``mask_path``, else the dataset's own), or ``median_otsu`` on the mean b0."""
    path = mask_path if mask_path is not None else series.paths.mask
    if path is not None:
        return load_mask(path, series)
    with about(series.paths.dwi):
        return brain_mask(mean_b0(series))


def fov_fraction(
    img: nib.Nifti1Image, affine: np.ndarray, shape: tuple[int, ...], mask: np.ndarray | None = None
) -> float:
    """Fraction of a grid's voxel centres (inside ``mask`` if given) within ``img``'s field of view.

    A centre is inside when its continuous index in ``img`` lies within the outer voxel edges.
    """
    index = np.argwhere(mask) if mask is not None else np.indices(shape[:3]).reshape(3, -1).T
    if len(index) == 0:
        return 0.0
    to_img = np.linalg.inv(img.affine) @ affine
    ijk = nib.affines.apply_affine(to_img, index)
    inside = np.all((ijk >= -0.5) & (ijk <= np.asarray(img.shape[:3]) - 0.5), axis=1)
    return float(inside.mean())


def antialias_sigma(src_affine: np.ndarray, dst_affine: np.ndarray) -> np.ndarray:
    """Gaussian sigma (source voxels, per source axis) before resampling to a coarser grid.

    The destination voxel's extent along each source axis, in source voxels (``r``), gives
    ``sigma = max(0, (r - 1) / 2)``, scikit-image's ``resize`` anti-aliasing rule.
    """
    src_axes = src_affine[:3, :3] / nib.affines.voxel_sizes(src_affine)
    extent = np.abs(src_axes.T @ dst_affine[:3, :3]).sum(axis=1)
    return np.maximum(0.0, (extent / nib.affines.voxel_sizes(src_affine) - 1.0) / 2.0)


def resample_image(
    img: nib.Nifti1Image, affine: np.ndarray, shape: tuple[int, ...], order: int = 3
) -> np.ndarray:
    """Resample a 3D image onto another grid by the two affines (never by array shape).

    Anti-aliased (:func:`antialias_sigma`) when the target is coarser; zero outside the
    image's field of view; cubic spline by default. Returns float32 of shape ``shape``.
    """
    data = read_voxels(img, img.get_filename() or "image", "image")
    sigma = antialias_sigma(img.affine, affine)
    if np.any(sigma > 0):
        data = ndimage.gaussian_filter(data, sigma, mode="nearest")
    src = nib.Nifti1Image(data, img.affine)
    out = resample_from_to(src, (tuple(shape[:3]), affine), order=order, mode="constant", cval=0.0)
    return np.asarray(out.dataobj, dtype=np.float32)


def relative_b0(b0: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mean b0 (X, Y, Z) as a fraction of its median inside the brain ``mask``, floor 0,
    float32: its contrast without the scanner's arbitrary scale."""
    level = float(np.median(b0[mask])) if mask.any() else 0.0
    if level <= 0:
        raise InputError("the mean b0 is not positive inside the brain mask; cannot normalise it")
    return np.maximum(b0 / level, 0.0).astype(np.float32)


def normalise_t1(t1: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Robust T1w intensity normalisation inside the brain: 1st→0, 99th percentile→1, floor 0."""
    lo, hi = np.percentile(t1[mask], [1, 99])
    if hi <= lo:
        raise InputError("the T1w is constant inside the brain mask; cannot normalise it")
    return np.maximum((t1 - lo) / (hi - lo), 0.0).astype(np.float32)


def load_t1(path: Source, transform: np.ndarray | None = None) -> nib.Nifti1Image:
    """The T1w image, moved by the rigid world ``transform`` (4, 4) when given: its affine becomes
    ``transform @ affine`` (:mod:`csrdmri.dmri.alignment`)."""
    img = load_image(path, "T1w")
    if transform is None:
        return img
    return nib.Nifti1Image(read_voxels(img, describe(path, "T1w"), "T1w"), np.asarray(transform) @ img.affine)


def t1_on_dwi_grid(
    path: Source, series: DWISeries, mask: np.ndarray, transform: np.ndarray | None = None
) -> np.ndarray:
    """The T1w (moved by ``transform``, see :func:`load_t1`) resampled onto the DWI grid by
    the affines, and normalised inside ``mask``.

    Refused when less than ``T1_OVERLAP_MIN`` of the brain lies inside the T1w field of view.
    """
    img = load_t1(path, transform)
    covered = fov_fraction(img, series.affine, series.shape, mask)
    if covered < T1_OVERLAP_MIN:
        raise InputError(
            f"T1w {describe(path, 'T1w')} does not overlap the DWI field of view: it covers {covered:.0%} of "
            "the brain mask (are both in the same world coordinates?)"
        )
    if covered < T1_OVERLAP_WARN:
        log.warning("T1w %s covers only %.0f%% of the DWI brain mask", describe(path, "T1w"), 100 * covered)
    return normalise_t1(resample_image(img, series.affine, series.shape), mask)


def t1_resampled(
    path: Source, affine: np.ndarray, shape: tuple[int, ...], transform: np.ndarray | None = None
) -> np.ndarray:
    """The T1w (moved by ``transform``) on a grid as :func:`t1_on_dwi_grid` resamples it, not
    normalised: float32, shape ``shape``."""
    return resample_image(load_t1(path, transform), affine, shape)


def t1_on_grid(
    path: Source,
    affine: np.ndarray,
    shape: tuple[int, ...],
    mask: np.ndarray,
    transform: np.ndarray | None = None,
) -> np.ndarray:
    """The T1w (moved by ``transform``, see :func:`load_t1`) resampled onto any grid (``affine``,
    ``shape``) by the affines — anti-aliased when the grid is coarser, so at an output grid finer than the
    DWIs it keeps the T1w's own detail — and normalised inside ``mask`` (bool, ``shape``).
    float32, shape ``shape``."""
    return normalise_t1(t1_resampled(path, affine, shape, transform), mask)
