"""Aligning the T1w with the mean b0 by translation (issue 22)."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
from conftest import gradients, oblique_affine, write_dwi
from scipy import ndimage

from csrdmri.dmri.alignment import estimate_shift, world_translation
from csrdmri.dmri.scan import PreparedScan
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import load_dwi


def anatomy(shape=(28, 26, 24), seed=0) -> np.ndarray:
    """A smooth positive 'b0' with structure at a few voxels' scale inside a ball."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 1.5)
    field = (field - field.min()) / np.ptp(field)
    grid = np.indices(shape).astype(float)
    ball = sum((g - (n - 1) / 2) ** 2 / (n / 2.3) ** 2 for g, n in zip(grid, shape, strict=True)) < 1
    return np.where(ball, 200 + 800 * field, 0.0).astype(np.float32)


def test_a_known_sub_voxel_shift_is_recovered():
    b0 = anatomy()
    mask = b0 > 0
    applied = np.array([1.3, -0.7, 0.0])
    t1 = ndimage.shift(np.where(mask, 1200 - b0, 0), applied, order=3)  # anti-correlated, moved
    found = estimate_shift(t1, b0, mask)
    np.testing.assert_allclose(found, -applied, atol=0.25)
    affine = oblique_affine()
    np.testing.assert_allclose(world_translation(affine, [1, 0, 0]), affine[:3, 0])


def test_a_translated_t1w_is_moved_back_and_said_so(tmp_path, caplog):
    b0 = anatomy()
    affine = oblique_affine(zooms=(2.0, 2.0, 2.0))
    bvals, bvecs = gradients(2, 6)
    data = np.stack([b0, b0] + [b0 * 0.5] * 6, axis=-1)
    path = write_dwi(tmp_path / "scan", data, affine, bvals, bvecs)
    t1 = np.where(b0 > 0, 1200 - b0, 0).astype(np.float32)
    moved = affine.copy()
    moved[:3, 3] += world_translation(affine, [2, -1, 0])  # the T1w lies 2 and -1 voxels off
    t1_path = tmp_path / "scan" / "t1w.nii.gz"
    nib.save(nib.Nifti1Image(t1, moved), t1_path)
    series = load_dwi(find_dataset(path))
    mask = np.asarray(b0 > 0)
    as_given = PreparedScan.prepare(series, mask=None, t1=t1_path, shell=None)
    assert "t1w_translation_mm" not in as_given.provenance  # nothing checked unless asked
    with caplog.at_level(logging.WARNING):
        aligned = PreparedScan.prepare(series, t1=t1_path, shell=None, align_t1=True)
    np.testing.assert_allclose(aligned.t1_translation, world_translation(affine, [-2, 1, 0]), atol=0.5)
    assert any("off the mean b0" in r.getMessage() for r in caplog.records)

    def correlation(scan):
        return np.corrcoef(scan.t1[mask], b0[mask])[0, 1]

    assert correlation(aligned) < correlation(as_given) - 0.2
    again = PreparedScan.prepare(series, t1=t1_path, shell=None, t1_translation=aligned.t1_translation)
    np.testing.assert_array_equal(again.t1, aligned.t1)
