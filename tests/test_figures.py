"""Figures: the dataset overview and the side-by-side comparison of upsampled series."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from conftest import assert_user_error, run
from matplotlib.image import imread


def upsampled(small_dwi, tmp_path):
    out = tmp_path / "sr.nii.gz"
    assert run("upsample", small_dwi, "--model", "tricubic", "--scale", "2", "--out", out).exit_code == 0
    return out


def test_compare_draws_one_panel_per_series(small_dwi, tmp_path):
    sr = upsampled(small_dwi, tmp_path)
    png = tmp_path / "figs" / "cmp.png"
    assert run("compare", f"input={small_dwi}", sr, "--out", png).exit_code == 0
    one_row = imread(png)
    assert run("compare", f"input={small_dwi}", sr, "--truth", sr, "--out", png).exit_code == 0
    two_rows = imread(png)
    # 3.6 × 3.9 inches per panel at 110 dpi: 2 panels in one row, then 3 panels over two rows.
    assert abs(one_row.shape[1] - 2 * 3.6 * 110) < 3 and abs(one_row.shape[0] - 3.9 * 110) < 3
    assert abs(two_rows.shape[1] - 3 * 3.6 * 110) < 3 and abs(two_rows.shape[0] - 2 * 3.9 * 110) < 3

    # The truth's own |error| cell stays blank (white), the others are drawn (dark colour map).
    def cell(row, col):
        return two_rows[row * 429 + 60 : (row + 1) * 429 - 60, col * 396 + 60 : (col + 1) * 396 - 60, :3]

    assert cell(1, 2).min() > 0.99 and cell(1, 1).mean() < 0.5


def test_compare_refuses_what_it_cannot_show(small_dwi, tmp_path):
    sr = upsampled(small_dwi, tmp_path)
    png = tmp_path / "cmp.png"
    assert_user_error(run("compare", small_dwi, sr, "--volume", "7", "--out", png), "has 7 volumes")
    assert_user_error(run("compare", small_dwi, sr, "--out", tmp_path / "cmp.jpg"), "must be a .png")
    assert_user_error(run("compare", small_dwi, tmp_path / "nope.nii.gz", "--out", png), "not found")
    crop = tmp_path / "crop.nii.gz"
    nib.save(nib.load(sr).slicer[4:, :, :], crop)  # nibabel moves the affine with the crop
    assert_user_error(run("compare", sr, crop, "--out", png), "same field of view")
    assert not png.exists()


def test_overview_of_a_phantom_subject(small_cohort, tmp_path):
    png = tmp_path / "overview.png"
    assert run("figure", small_cohort / "phantom000", "--out", png).exit_code == 0
    image = imread(png)
    assert image.shape[1] > 3 * image.shape[0]  # T1w, mean b0, DWI, FA side by side
    assert np.ptp(image[..., :3]) > 0.5  # something was drawn
