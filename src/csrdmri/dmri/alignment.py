"""The rigid transform that lands the T1w on the DWIs (issue 22).

DWI (EPI) and T1w of one session share scanner coordinates, but subject motion between the
two and susceptibility distortion of the EPI move one against the other by millimetres. A model
that reads the T1w at the output resolution would then draw tissue boundaries where they are
not. So the T1w, at its own resolution, is registered rigidly to the mean b0 on the DWI grid by
DIPY's affine registration (mutual information: the two contrasts differ; translation first,
then rotation and translation), and the result is a world-to-world matrix that corrects the
T1w's affine. The EPI's non-linear distortion is not modelled; the T1w branch is trained to
tolerate what remains (shifts of up to 2.5 mm).

Measured on the development phantom degraded 2× (the mean b0 at 2.5 mm, the T1w at 1.25 mm):
aligned by construction, and with the T1w rotated by (3, −2, 2)° and moved by 2.7 mm, the
brain's largest residual displacement is 0.21 mm (0.02° of rotation), in 9–11 s on 2 cores. The
shared Philips Ingenia MPRAGE is found 2.7 mm off its b0 (rotation 0.4°, translation
(0.3, −1.6, 1.3) mm), in 16 s.
"""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np

from csrdmri.core.errors import InputError

log = logging.getLogger(__name__)

#: A correction moving no brain point by this much (mm) is not applied: below what the models
#: can see at any output resolution they are used at, and over twice the registration's error.
MIN_DISPLACEMENT = 0.5
#: Voxels of the DWI grid the metric samples at most (DIPY's sparse sampling, on a regular grid:
#: the same result on every run); smaller grids are sampled whole. On the Ingenia (1.3 M voxels)
#: 5× faster than every voxel; on the phantom (0.46 M) a residual of 0.21 mm instead of 0.13.
MAX_SAMPLES = 300_000
#: A registration that moves a brain point by more (mm) is not subject motion between two series
#: of one session: the T1w is refused rather than used.
MAX_DISPLACEMENT = 20.0


def register_t1(t1: nib.Nifti1Image, b0: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The rigid world transform (4, 4) that moves the T1w onto the mean ``b0``.

    Parameters
    ----------
    t1 : nibabel image
        The T1w at its own resolution, in its own world coordinates (mm, RAS).
    b0 : ndarray, shape (X, Y, Z)
        The mean b0 on the DWI grid.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine of the DWI grid.

    Returns
    -------
    ndarray, shape (4, 4)
        ``M`` with ``M @ t1.affine`` the T1w's corrected affine: a point the T1w shows at world
        ``y`` lies at ``M @ y`` in the DWIs' world.
    """
    from dipy.align import affine_registration

    dipy_log = logging.getLogger("dipy")  # DIPY prints each step to stdout at INFO
    level = dipy_log.level
    dipy_log.setLevel(logging.WARNING)
    try:
        _, found = affine_registration(
            np.asarray(t1.dataobj, np.float64),
            np.asarray(b0, np.float64),
            moving_affine=t1.affine,
            static_affine=affine,
            pipeline=["translation", "rigid"],
            level_iters=[50, 20],
            sigmas=[1.0, 0.0],
            factors=[2, 1],
            sampling_proportion=MAX_SAMPLES / b0.size if b0.size > MAX_SAMPLES else None,
        )
    finally:
        dipy_log.setLevel(level)
    return np.linalg.inv(found)  # DIPY's maps the b0's world to the T1w's


def displacement(transform: np.ndarray, affine: np.ndarray, mask: np.ndarray) -> float:
    """The largest distance (mm) ``transform`` (4, 4) moves a voxel centre of ``mask`` (on the
    grid of ``affine``) by."""
    points = np.asarray(affine, float) @ np.c_[np.argwhere(mask), np.ones(int(mask.sum()))].T
    moved = np.asarray(transform, float) @ points
    return float(np.max(np.linalg.norm((moved - points)[:3], axis=0)))


def rotation_degrees(transform: np.ndarray) -> float:
    """The angle (degrees) of the rotation part of a rigid ``transform`` (4, 4)."""
    cosine = (np.trace(np.asarray(transform, float)[:3, :3]) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def summary(transform: np.ndarray, affine: np.ndarray, mask: np.ndarray) -> str:
    """What ``transform`` (4, 4) does to the brain ``mask`` (on the grid of ``affine``), in words."""
    return (
        f"{displacement(transform, affine, mask):.1f} mm at most in the brain (rotation "
        f"{rotation_degrees(transform):.1f}°, translation {np.round(transform[:3, 3], 1).tolist()} mm)"
    )


def alignment(
    t1: nib.Nifti1Image, b0: np.ndarray, affine: np.ndarray, mask: np.ndarray, name: str
) -> np.ndarray | None:
    """The transform of :func:`register_t1` when worth applying (``MIN_DISPLACEMENT``), else None;
    logged, and refused with a sentence naming the T1w ``name`` above ``MAX_DISPLACEMENT``."""
    transform = register_t1(t1, b0, affine)
    moved = displacement(transform, affine, mask)
    said = summary(transform, affine, mask)
    if moved > MAX_DISPLACEMENT:
        raise InputError(
            f"T1w {name} cannot be aligned with the mean b0: registration moves it by {said}, more "
            "than motion within a session; is it the same subject and session? (run without the T1w)"
        )
    if moved < MIN_DISPLACEMENT:
        log.info("the T1w and the mean b0 agree to %.1f mm (%s)", MIN_DISPLACEMENT, said)
        return None
    log.warning("the T1w lies off the mean b0 by %s: it is moved there (rigid registration)", said)
    return transform
