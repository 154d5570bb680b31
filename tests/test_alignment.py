"""Registering the T1w to the mean b0 rigidly (issue 22)."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
from conftest import gradients, oblique_affine, write_dwi
from scipy import ndimage
from scipy.spatial.transform import Rotation

from csrdmri.core.errors import InputError
from csrdmri.core.grid import resampled_affine
from csrdmri.dmri import alignment
from csrdmri.dmri.alignment import displacement, register_t1
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


def rigid(degrees, translation, centre) -> np.ndarray:
    """A world transform (4, 4): rotation by ``degrees`` (x, y, z) about ``centre``, then
    ``translation`` (mm)."""
    transform = np.eye(4)
    transform[:3, :3] = Rotation.from_euler("xyz", degrees, degrees=True).as_matrix()
    transform[:3, 3] = centre - transform[:3, :3] @ centre + translation
    return transform


def scan_with_moved_t1(tmp_path, motion: np.ndarray | None):
    """A 2 mm oblique series of :func:`anatomy` and its T1w (the contrast inverted, at 1 mm),
    the T1w's affine moved by the world transform ``motion``."""
    b0 = anatomy()
    affine = oblique_affine(zooms=(2.0, 2.0, 2.0))
    bvals, bvecs = gradients(2, 6)
    path = write_dwi(tmp_path / "scan", np.stack([b0, b0] + [b0 * 0.5] * 6, axis=-1), affine, bvals, bvecs)
    t1 = ndimage.zoom(np.where(b0 > 0, 1200 - b0, 0), 2, order=1, grid_mode=True, mode="grid-constant")
    fine = resampled_affine(affine, b0.shape, t1.shape)  # the 1 mm grid covering the same cells
    t1_affine = fine if motion is None else motion @ fine
    t1_path = tmp_path / "scan" / "t1w.nii.gz"
    nib.save(nib.Nifti1Image(t1.astype(np.float32), t1_affine), t1_path)
    return load_dwi(find_dataset(path)), t1_path, b0


def test_a_known_rigid_transform_is_recovered(tmp_path):
    series, _, b0 = scan_with_moved_t1(tmp_path, None)
    mask = b0 > 0
    centre = series.affine[:3, :3] @ (np.array(b0.shape) / 2) + series.affine[:3, 3]
    motion = rigid([4.0, -3.0, 2.0], [2.0, -1.5, 1.0], centre)
    _, t1_path, _ = scan_with_moved_t1(tmp_path / "moved", motion)
    assert displacement(motion, series.affine, mask) > 3.0
    found = register_t1(nib.load(t1_path), b0, series.affine)
    assert displacement(found @ motion, series.affine, mask) < 0.5  # undone to a quarter voxel


def test_a_moved_t1w_is_moved_back_and_said_so(tmp_path, caplog):
    series, t1_path, b0 = scan_with_moved_t1(tmp_path, rigid([0, 0, 3.0], [3.0, -2.0, 0], np.zeros(3)))
    mask = b0 > 0
    as_given = PreparedScan.prepare(series, mask=None, t1=t1_path, shell=None)
    assert "t1w_transform" not in as_given.provenance  # nothing checked unless asked
    with caplog.at_level(logging.WARNING):
        aligned = PreparedScan.prepare(series, t1=t1_path, shell=None, align_t1=True)
    assert aligned.t1_transform.shape == (4, 4)
    assert any("off the mean b0" in r.getMessage() for r in caplog.records)

    def correlation(scan):
        return np.corrcoef(scan.t1[mask], b0[mask])[0, 1]

    assert correlation(aligned) < correlation(as_given) - 0.2
    again = PreparedScan.prepare(series, t1=t1_path, shell=None, t1_transform=aligned.t1_transform)
    np.testing.assert_array_equal(again.t1, aligned.t1)


def test_an_aligned_t1w_is_left_as_given(tmp_path):
    series, t1_path, _ = scan_with_moved_t1(tmp_path, None)
    aligned = PreparedScan.prepare(series, t1=t1_path, shell=None, align_t1=True)
    assert aligned.provenance["t1w_transform"] is None and aligned.t1_transform is None


def test_a_t1w_registration_cannot_explain_is_refused(tmp_path, monkeypatch):
    series, t1_path, _ = scan_with_moved_t1(tmp_path, None)
    monkeypatch.setattr(alignment, "register_t1", lambda *a: rigid([0, 0, 0], [30.0, 0, 0], np.zeros(3)))
    with pytest.raises(
        InputError, match=r"cannot be aligned with the mean b0: registration moves it by 30\.0 mm"
    ):
        PreparedScan.prepare(series, t1=t1_path, shell=None, align_t1=True)
