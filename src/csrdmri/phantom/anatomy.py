"""One subject's anatomy: the MNI templates under a random smooth deformation and scaling.

Subject world coordinates are millimetres in an MNI-like space; the subject grid is LAS (as
HCP's ``T1w/Diffusion`` data) and centred on the template brain. A subject point ``x`` takes the
template at ``c + (x - c) / scale + d(x)``, with ``c`` the brain centre, ``scale`` a small
per-axis global scaling and ``d`` a smooth random displacement field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from csrdmri.core.resample import resample
from csrdmri.dmri.preprocess import antialias_sigma
from csrdmri.phantom.params import PhantomParams
from csrdmri.phantom.templates import Templates

#: Control-point grid of the random displacement (about 35 mm apart over an HCP field of view).
DEFORM_CONTROL = (5, 6, 5)
#: Control-point grid of bias fields (very low frequency).
BIAS_CONTROL = (3, 3, 3)


@dataclass
class Anatomy:
    """Tissue maps of one subject on its grid (all float32 of the grid's shape).

    ``gm``, ``wm``, ``csf`` are volume fractions (sum ≤ 1, 0 outside the brain); ``t1`` the
    noise-free, bias-free T1w intensity; ``mask`` the brain mask.
    """

    affine: np.ndarray
    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray


def subject_affine(params: PhantomParams, centre: np.ndarray) -> np.ndarray:
    """LAS voxel-to-world affine whose grid centre is ``centre`` (mm)."""
    v = params.voxel_size
    affine = np.diag([-v, v, v, 1.0])
    middle = (np.asarray(params.shape) - 1) / 2.0
    affine[:3, 3] = centre - affine[:3, :3] @ middle
    return affine


def smooth_field(rng: np.random.Generator, shape, control, sd: float) -> np.ndarray:
    """Random smooth field: N(0, sd) control points, cubic-interpolated over the field of view."""
    return resample(rng.normal(0.0, sd, size=control), shape).astype(np.float32)


def warp(templates: Templates, params: PhantomParams, rng: np.random.Generator) -> Anatomy:
    """Deform the templates into a new subject on the grid of ``params``."""
    shape = params.shape
    centre = templates.brain_centre()
    affine = subject_affine(params, centre)
    scale = np.exp(rng.normal(0.0, params.scale_sd) + rng.normal(0.0, params.scale_sd / 3, size=3))
    to_template = np.linalg.inv(templates.affine)
    # Template voxel index of every subject voxel; affines are diagonal-free in general, so
    # build the world coordinates axis by axis and keep float32 to bound memory.
    index = np.indices(shape, dtype=np.float32)
    world = (
        np.einsum("ij,j...->i...", affine[:3, :3].astype(np.float32), index) + affine[:3, 3, None, None, None]
    )
    del index
    for axis in range(3):
        world[axis] = centre[axis] + (world[axis] - centre[axis]) / scale[axis]
        world[axis] += smooth_field(rng, shape, DEFORM_CONTROL, params.deform_mm)
    coords = np.einsum("ij,j...->i...", to_template[:3, :3].astype(np.float32), world)
    coords += to_template[:3, 3, None, None, None].astype(np.float32)
    del world
    sigma = antialias_sigma(templates.affine, affine)

    def sample(volume: np.ndarray) -> np.ndarray:
        smoothed = ndimage.gaussian_filter(volume, sigma) if np.any(sigma > 0) else volume
        return ndimage.map_coordinates(smoothed, coords, order=1, mode="constant", cval=0.0)

    mask = sample(templates.mask) > 0.5
    gm = np.where(mask, sharpen(sample(templates.gm), params.sharpness), 0.0)
    wm = np.where(mask, sharpen(sample(templates.wm), params.sharpness), 0.0)
    total = gm + wm
    over = total > 1.0
    gm[over] /= total[over]
    wm[over] /= total[over]
    csf = np.where(mask, 1.0 - gm - wm, 0.0)
    t1 = sample(templates.t1)
    f32 = np.float32
    return Anatomy(affine, t1.astype(f32), gm.astype(f32), wm.astype(f32), csf.astype(f32), mask)


def sharpen(p: np.ndarray, k: float) -> np.ndarray:
    """Logistic sharpening of a probability map, ``p^k / (p^k + (1-p)^k)`` (k = 1: unchanged).

    The MNI152 maps average 152 brains, so their tissue boundaries are wider than any one
    subject's; k > 1 narrows them without moving them (p = 0.5 stays 0.5).
    """
    if k == 1.0:
        return p
    pk = np.power(np.clip(p, 0.0, 1.0), k)
    return pk / np.maximum(pk + np.power(np.clip(1.0 - p, 0.0, 1.0), k), 1e-12)


def bias_field(rng: np.random.Generator, shape, sd: float) -> np.ndarray:
    """Smooth multiplicative bias field, ``exp`` of a low-frequency random field (mean ≈ 1)."""
    return np.exp(smooth_field(rng, shape, BIAS_CONTROL, sd))


def texture_field(
    rng: np.random.Generator, shape, sd: float, length_mm: float, voxel_size: float
) -> np.ndarray:
    """Fine multiplicative heterogeneity ``exp(t)``: white noise smoothed to a correlation length
    of ``length_mm`` and scaled to s.d. ``sd`` (1 everywhere when ``sd`` is 0)."""
    if sd == 0:
        return np.ones(shape, np.float32)
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), length_mm / voxel_size)
    return np.exp(field * (sd / max(float(field.std()), 1e-12))).astype(np.float32)
