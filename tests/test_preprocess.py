"""Shell selection, b0 normalisation, masks and T1w resampling by affines."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import gradients, oblique_affine, real_scan, write_dwi
from dipy.core.gradients import gradient_table
from scipy import ndimage

from csrdmri.core.errors import InputError
from csrdmri.dmri.preprocess import (
    b0_floor,
    b0_indices,
    b0_reciprocal,
    brain_mask,
    fov_fraction,
    load_mask,
    mean_b0,
    normalise_by_b0,
    normalise_t1,
    resample_image,
    series_mask,
    shell_indices,
    shells,
    t1_on_dwi_grid,
    t1_resampled,
)
from csrdmri.dmri.scan import FOUND_MASK, PreparedScan
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import load_dwi, load_image

DWI_SHAPE = (20, 18, 14)


def test_shells_and_b0s():
    gtab = gradient_table([0, 5, 990, 1010, 2000, 0, 1000], bvecs=gradients(n_b0=0, n_dirs=7)[1])
    np.testing.assert_array_equal(b0_indices(gtab), [0, 1, 5])
    np.testing.assert_array_equal(shell_indices(gtab), [2, 3, 6])
    np.testing.assert_array_equal(shell_indices(gtab, 2000), [4])
    with pytest.raises(InputError, match=r"no volume with b = 3000"):
        shell_indices(gtab, 3000)
    no_b0 = gradient_table([1000, 1000], bvecs=gradients(n_b0=0, n_dirs=2)[1])
    with pytest.raises(InputError, match="no b0 volume"):
        b0_indices(no_b0)


def _sphere(shape=DWI_SHAPE, radius=5.0):
    idx = np.indices(shape) - (np.asarray(shape)[:, None, None, None] - 1) / 2
    return np.sqrt((idx**2).sum(0)) <= radius


def test_normalise_by_b0_is_signal_over_mean_b0():
    brain = _sphere()
    b0 = np.where(brain, 800.0, 50.0).astype(np.float32)
    b0[brain.nonzero()[0][0], brain.nonzero()[1][0], brain.nonzero()[2][0]] = 1.0  # a signal void
    dwi = np.stack([b0 * 0.5, b0 * 0.25], axis=-1)
    out = normalise_by_b0(dwi, b0, brain)
    valid = brain & (b0 > 1.0)
    np.testing.assert_allclose(out[valid], [[0.5, 0.25]] * int(valid.sum()), rtol=1e-6)
    assert np.all(out[~valid] == 0)  # outside the brain and in voids: 0, not noise/noise
    with pytest.raises(InputError, match="mean b0 is zero"):
        normalise_by_b0(dwi, np.zeros_like(b0), brain)


def test_brain_mask_finds_the_bright_object():
    rng = np.random.default_rng(0)
    b0 = np.where(_sphere(radius=6), 1000.0, 0.0) + rng.normal(0, 20, DWI_SHAPE) ** 2 / 20
    mask = brain_mask(b0.astype(np.float32))
    inner, outer = _sphere(radius=4.5), _sphere(radius=7.5)
    assert mask[inner].all() and not mask[~outer].any()
    with pytest.raises(InputError, match="all zero"):
        brain_mask(np.zeros(DWI_SHAPE, np.float32))


def test_given_mask_must_match_the_dwi_grid(tmp_path):
    bvals, bvecs = gradients()
    write_dwi(tmp_path, np.ones((*DWI_SHAPE, 7), np.float32), np.eye(4), bvals, bvecs)
    series = load_dwi(find_dataset(tmp_path))
    nib.save(nib.Nifti1Image(_sphere().astype(np.uint8), np.eye(4)), tmp_path / "ok_mask.nii.gz")
    assert load_mask(tmp_path / "ok_mask.nii.gz", series).sum() == _sphere().sum()
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.uint8), np.eye(4)), tmp_path / "small.nii.gz")
    with pytest.raises(InputError, match=r"small\.nii\.gz is not on the DWI grid"):
        load_mask(tmp_path / "small.nii.gz", series)
    nib.save(nib.Nifti1Image(np.zeros(DWI_SHAPE, np.uint8), np.eye(4)), tmp_path / "empty.nii.gz")
    with pytest.raises(InputError, match=r"empty\.nii\.gz is empty"):
        load_mask(tmp_path / "empty.nii.gz", series)


def _field(world: np.ndarray) -> np.ndarray:
    """A smooth analytic 'anatomy' defined in world millimetres."""
    x, y, z = world[..., 0], world[..., 1], world[..., 2]
    return 100 + 30 * np.sin(x / 9.0) + 20 * np.cos(y / 11.0) + 0.5 * z


def _image_of_field(affine, shape):
    world = nib.affines.apply_affine(affine, np.indices(shape).reshape(3, -1).T)
    return nib.Nifti1Image(_field(world).reshape(shape).astype(np.float32), affine)


def test_t1_is_resampled_by_affines_not_by_shape():
    dwi_affine = oblique_affine(zooms=(2.0, 2.0, 2.5))
    # The T1w: 1 mm, RAS with another obliquity, a different shape and a larger field of view.
    t1_affine = oblique_affine(zooms=(1.0, 1.0, 1.0), angles=(-0.1, 0.25, 0.0), flip_x=False)
    t1_shape = (100, 96, 104)
    centre = nib.affines.apply_affine(dwi_affine, (np.asarray(DWI_SHAPE) - 1) / 2)
    t1_affine[:3, 3] = centre - t1_affine[:3, :3] @ ((np.asarray(t1_shape) - 1) / 2)
    t1 = _image_of_field(t1_affine, t1_shape)
    assert fov_fraction(t1, dwi_affine, DWI_SHAPE) == 1.0
    out = resample_image(t1, dwi_affine, DWI_SHAPE)
    expected = _image_of_field(dwi_affine, DWI_SHAPE).get_fdata()
    # Away from the T1w edge the resampled T1w is the field at the DWI voxel centres
    # (within the small blur of the anti-aliasing filter).
    inner = (slice(3, -3),) * 3
    np.testing.assert_allclose(out[inner], expected[inner], rtol=0.02)
    assert np.corrcoef(out[inner].ravel(), expected[inner].ravel())[0, 1] > 0.999


def test_t1_outside_the_dwi_field_of_view_is_refused(tmp_path):
    bvals, bvecs = gradients()
    data = np.ones((*DWI_SHAPE, 7), np.float32)
    write_dwi(tmp_path, data, np.eye(4), bvals, bvecs)
    far = np.eye(4)
    far[:3, 3] = 500.0
    nib.save(nib.Nifti1Image(np.ones((30, 30, 30), np.float32), far), tmp_path / "t1w.nii.gz")
    series = load_dwi(find_dataset(tmp_path))
    with pytest.raises(InputError, match=r"t1w\.nii\.gz does not overlap the DWI field of view"):
        t1_on_dwi_grid(tmp_path / "t1w.nii.gz", series, _sphere())


def test_normalise_t1_robust_range():
    mask = _sphere()
    t1 = np.where(mask, np.linspace(0, 1000, mask.size).reshape(mask.shape), 5000.0)
    out = normalise_t1(t1, mask)
    lo, hi = np.percentile(out[mask], [1, 99])
    assert abs(lo) < 1e-3 and abs(hi - 1) < 1e-3 and out.min() >= 0


def test_real_t1_lands_on_the_real_dwi():
    """Philips pair: 1 mm sagittal MPRAGE onto the oblique 2 mm DWI grid, through scanner space.

    T1w and b0 contrasts are anti-correlated in the brain (CSF dark vs bright); shifting the T1w
    by 8 mm (4 DWI voxels) along any axis must weaken that clearly, so the affines, not the array
    shapes, aligned them.
    """
    paths = find_dataset(real_scan("philips-ingenia-2mm"))
    series = load_dwi(paths)
    b0 = mean_b0(series)
    mask = brain_mask(b0)
    t1 = t1_on_dwi_grid(paths.t1, series, mask)
    aligned = np.corrcoef(t1[mask], b0[mask])[0, 1]
    assert aligned < -0.25
    img = load_image(paths.t1, "T1w")
    voxels = np.asarray(img.dataobj, dtype=np.float32)
    for axis in range(3):
        for shift in (-8.0, 8.0):
            moved = img.affine.copy()
            moved[axis, 3] += shift
            r = resample_image(nib.Nifti1Image(voxels, moved), series.affine, series.shape)
            assert np.corrcoef(r[mask], b0[mask])[0, 1] > aligned + 0.15


def test_a_prepared_scan_holds_the_series_normalisation(small_dwi, tmp_path):
    series = load_dwi(find_dataset(small_dwi))
    scan = PreparedScan.prepare(series)
    mask, b0 = series_mask(series), mean_b0(series)
    np.testing.assert_array_equal(scan.mask, mask)
    np.testing.assert_array_equal(scan.shell, shell_indices(series.gtab))
    assert list(scan.shells) == [1000] and np.array_equal(scan.shells[1000], scan.shell)
    np.testing.assert_array_equal(scan.reciprocal(), b0_reciprocal(b0, mask))
    # A dilated region keeps the brain's signal-void floor (the margin is not brain).
    region = ndimage.binary_dilation(mask, iterations=2)
    np.testing.assert_array_equal(scan.reciprocal(2), b0_reciprocal(b0, region, floor=b0_floor(b0, mask)))
    ratio = scan.ratio(scan.shell)
    assert ratio.shape == (*series.shape, len(scan.shell)) and ratio.dtype == np.float32
    np.testing.assert_allclose(ratio[mask], (series.data[..., scan.shell] / b0[..., None])[mask], rtol=1e-6)
    assert scan.t1 is None and scan.provenance == {"mask": FOUND_MASK, "t1w": None}
    # A T1w is read onto the DWI grid and recorded.
    t1 = tmp_path / "t1w.nii.gz"
    texture = np.random.default_rng(0).random(series.shape, dtype=np.float32)
    nib.save(nib.Nifti1Image(series.data[..., 0] * (1 + texture), series.affine), t1)
    with_t1 = PreparedScan.prepare(series, t1=t1)
    np.testing.assert_array_equal(with_t1.t1, t1_on_dwi_grid(t1, series, mask))
    assert with_t1.provenance["t1w"] == str(t1)
    # ... or, resampled once for several preparations of one grid, only normalised.
    shared = PreparedScan.prepare(series, t1=t1, t1_resampled=t1_resampled(t1, series.affine, series.shape))
    np.testing.assert_array_equal(shared.t1, with_t1.t1)


def test_shells_group_b_values_within_the_tolerance():
    bvals = np.array([0, 995, 2000, 1005, 5, 3000, 2010, 1000.0])
    bvecs = np.vstack([np.zeros(3), *np.eye(3), np.zeros(3), *np.eye(3)])
    groups = shells(gradient_table(bvals, bvecs=bvecs))
    assert list(groups) == [1000, 2005, 3000]
    for b, indices in zip(groups, ([1, 3, 7], [2, 6], [5]), strict=True):
        np.testing.assert_array_equal(groups[b], indices)
    single = gradient_table(np.array([0.0, 0.0]), bvecs=np.zeros((2, 3)))
    assert shells(single) == {}
