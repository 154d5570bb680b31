"""The coordinate convention: world points, normalised coordinates, resampling, target grids."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import oblique_affine
from scipy import ndimage

from csrdmri.core.errors import InputError
from csrdmri.core.grid import (
    TargetGrid,
    dst_grid_normalized,
    grid_sample_order,
    normalized,
    resampled_affine,
    shape_for_scale,
    source_index,
    unnormalized,
)
from csrdmri.core.resample import resample

SCALES = [2, 3, 4, 2.4, (2, 2, 1)]
LR_SHAPE = (10, 12, 7)


def test_source_index_values():
    # 10 LR voxels, 20 HR voxels: HR voxel 0 is a quarter LR voxel before LR centre 0.
    np.testing.assert_allclose(source_index(10, 20)[[0, 1, 19]], [-0.25, 0.25, 9.25])
    # 2.4x: 10 -> 24 voxels.
    np.testing.assert_allclose(source_index(10, 24)[[0, 23]], [0.5 * 10 / 24 - 0.5, 23.5 * 10 / 24 - 0.5])
    # Downsampling 30 -> 10: LR voxel k covers HR voxels 3k..3k+2, centred on 3k+1.
    np.testing.assert_allclose(source_index(30, 10), np.arange(10) * 3 + 1)


@pytest.mark.parametrize("scale", SCALES)
def test_hr_centre_and_lr_sample_are_the_same_world_point(scale):
    lr_affine = oblique_affine()
    grid = TargetGrid.over(LR_SHAPE, lr_affine, scale=scale)
    hr_index = np.indices(grid.shape).reshape(3, -1).T
    lr_index = np.stack(np.meshgrid(*grid.source_indices(), indexing="ij"), -1).reshape(-1, 3)
    np.testing.assert_allclose(
        nib.affines.apply_affine(grid.affine, hr_index),
        nib.affines.apply_affine(lr_affine, lr_index),
        atol=1e-9,
    )
    # Same field of view: the outer voxel edges coincide in world space.
    for corner in ([-0.5] * 3, np.asarray(grid.shape) - 0.5):
        lr_corner = np.asarray(LR_SHAPE) - 0.5 if corner[0] > 0 else corner
        np.testing.assert_allclose(
            nib.affines.apply_affine(grid.affine, corner),
            nib.affines.apply_affine(lr_affine, lr_corner),
            atol=1e-9,
        )
    # Voxel size is the LR voxel size divided by the exact (rounded) scale.
    lr_zooms = nib.affines.voxel_sizes(lr_affine)
    np.testing.assert_allclose(grid.zooms, lr_zooms * np.asarray(LR_SHAPE) / np.asarray(grid.shape))


def test_resampled_affine_keeps_handedness_and_obliquity():
    lr_affine = oblique_affine()
    hr_affine = resampled_affine(lr_affine, LR_SHAPE, (20, 24, 14))
    assert nib.aff2axcodes(hr_affine) == nib.aff2axcodes(lr_affine)
    assert np.sign(np.linalg.det(hr_affine)) == np.sign(np.linalg.det(lr_affine)) == -1
    np.testing.assert_allclose(nib.affines.voxel_sizes(hr_affine), [0.875, 0.875, 1.25])


def test_normalized_coordinates():
    np.testing.assert_allclose(normalized(np.array([-0.5, 0.0, 9.5]), 10), [-1.0, 0.1 - 1.0, 1.0])
    idx = np.random.default_rng(0).uniform(-0.5, 9.5, size=(50, 3))
    np.testing.assert_allclose(unnormalized(normalized(idx, (10, 12, 7)), (10, 12, 7)), idx)
    # An HR voxel's normalised coordinate is the same whichever grid of the field of view it samples.
    for n_lr, n_hr in [(10, 20), (10, 24), (7, 7), (30, 10)]:
        np.testing.assert_allclose(
            normalized(source_index(n_lr, n_hr), n_lr), normalized(np.arange(n_hr), n_hr)
        )


def test_grid_sample_on_same_grid_is_identity():
    volume = torch.rand(1, 1, *LR_SHAPE, dtype=torch.float64)
    grid = torch.from_numpy(grid_sample_order(dst_grid_normalized(LR_SHAPE))).double()[None]
    out = F.grid_sample(volume, grid, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, volume, atol=1e-6, rtol=0)  # float32 coordinates


def _world_ramp(affine, shape):
    """f(world) = 0.7 x - 0.2 y + 1.3 z + 5 at every voxel centre."""
    world = nib.affines.apply_affine(affine, np.indices(shape).reshape(3, -1).T)
    return (world @ np.array([0.7, -0.2, 1.3]) + 5.0).reshape(shape)


@pytest.mark.parametrize("scale", SCALES)
def test_downsample_then_sample_reproduces_a_linear_ramp(scale):
    lr_affine = oblique_affine(zooms=(2.0, 2.0, 2.0))
    lr_shape = (16, 16, 16)
    grid = TargetGrid.over(lr_shape, lr_affine, scale=scale)
    hr = _world_ramp(grid.affine, grid.shape)
    # Tricubic downsampling HR -> LR lands on the ramp at the LR voxel centres (cubic splines
    # reproduce linear functions away from the edge, where samples are extended by the nearest).
    lr = resample(hr, lr_shape)
    inner = (slice(4, -4),) * 3
    np.testing.assert_allclose(lr[inner], _world_ramp(lr_affine, lr_shape)[inner], rtol=1e-6)
    # Trilinear grid_sample of the LR at the HR normalised coordinates gives the HR ramp back.
    coords = torch.from_numpy(grid_sample_order(dst_grid_normalized(grid.shape))).double()[None]
    up = F.grid_sample(torch.from_numpy(lr)[None, None], coords, align_corners=False)[0, 0].numpy()
    hr_inner = tuple(
        (idx >= 4) & (idx <= n - 5) for idx, n in zip(grid.source_indices(), lr_shape, strict=True)
    )
    sel = np.ix_(*hr_inner)
    np.testing.assert_allclose(up[sel], hr[sel], rtol=1e-6)


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("scale", [*SCALES, 0.5, 0.41])
def test_resample_matches_scipy_zoom_grid_mode(scale, order):
    volume = np.random.default_rng(1).random(LR_SHAPE)
    shape = shape_for_scale(LR_SHAPE, scale)
    zoomed = ndimage.zoom(volume, np.divide(shape, LR_SHAPE), order=order, grid_mode=True, mode="nearest")
    np.testing.assert_allclose(resample(volume, shape, order=order), zoomed, atol=1e-10)
    box = tuple(slice(n // 3, n // 3 + 5) for n in shape)  # a block only: the same values
    np.testing.assert_allclose(resample(volume, shape, order=order, box=box), zoomed[box], atol=1e-10)


def test_resample_carries_trailing_axes():
    volume = np.random.default_rng(2).random((*LR_SHAPE, 3)).astype(np.float32)
    out = resample(volume, (20, 24, 14))
    assert out.shape == (20, 24, 14, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 1], resample(volume[..., 1], (20, 24, 14)), rtol=1e-5)


def test_target_voxel_size_reports_the_exact_result():
    achieva = np.diag([-1.75, 1.75, 2.5, 1.0])
    grid = TargetGrid.over((128, 128, 60), achieva, voxel_size=1.25)
    assert grid.shape == (179, 179, 120)  # round(128 * 1.4) = 179, 60 * 2 = 120
    np.testing.assert_allclose(grid.zooms, [1.75 * 128 / 179, 1.75 * 128 / 179, 1.25])
    aniso = TargetGrid.over((128, 128, 60), achieva, voxel_size=(1.75, 1.75, 1.25))
    assert aniso.shape == (128, 128, 120)
    np.testing.assert_allclose(aniso.scales, (1.0, 1.0, 2.0))


@pytest.mark.parametrize(
    ("scale", "voxel_size"),
    [(0, None), (-2, None), (float("nan"), None), ((2, 2), None), (None, 0.0), (None, None), (2, 1.0)],
)
def test_target_grid_rejects_bad_requests(scale, voxel_size):
    with pytest.raises(InputError):
        TargetGrid.over(LR_SHAPE, np.eye(4), scale=scale, voxel_size=voxel_size)
