"""The whole-volume protocol: direction subsets, whole-series degradation, scores by hand."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import oblique_affine

from csrdmri.core.degrade import downsample
from csrdmri.core.errors import InputError
from csrdmri.core.metrics import psnr, ssim
from csrdmri.core.resample import resample
from csrdmri.dmri.degraded import degrade_series
from csrdmri.dmri.dti import dti_errors, tensor_maps
from csrdmri.dmri.preprocess import b0_indices, series_mask, shell_indices
from csrdmri.evaluation.patch_protocol import parse_methods
from csrdmri.evaluation.tables import dti_table
from csrdmri.evaluation.volume_protocol import (
    central_slab,
    own_ratio,
    spread_directions,
    subset_series,
    volume_protocol,
)
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import load_dwi


def min_angle(vectors: np.ndarray) -> float:
    """Smallest angle (degrees) between two of the axes ±v."""
    cosine = np.abs(vectors @ vectors.T)
    np.fill_diagonal(cosine, 0)
    return float(np.degrees(np.arccos(cosine.max())))


def test_spread_directions_are_spread_and_deterministic():
    rng = np.random.default_rng(0)
    bvecs = rng.normal(size=(90, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    chosen = spread_directions(bvecs, 12)
    assert len(set(chosen)) == 12 and np.all(np.diff(chosen) > 0)
    np.testing.assert_array_equal(chosen, spread_directions(bvecs, 12))
    # Far better spread than the first 12 of a random scheme (12 axes can be ~30° apart at best).
    assert min_angle(bvecs[chosen]) > 25 > min_angle(bvecs[:12]) + 10
    np.testing.assert_array_equal(spread_directions(bvecs[:5], 12), np.arange(5))


def test_subset_keeps_b0s_and_spread_directions(small_cohort):
    series = load_dwi(find_dataset(small_cohort / "phantom001"))  # 2 b0s + 12 directions
    subset = subset_series(series, 6)
    assert subset.data.shape[3] == 2 + 6 and len(b0_indices(subset.gtab)) == 2
    kept = [
        int(np.flatnonzero(np.all(series.data == subset.data[..., [v]], axis=(0, 1, 2)))[0]) for v in range(8)
    ]
    np.testing.assert_allclose(subset.gtab.bvecs, series.gtab.bvecs[kept])
    np.testing.assert_allclose(subset.gtab.bvals, series.gtab.bvals[kept])
    assert subset_series(series, None).data.shape == series.data.shape
    with pytest.raises(InputError, match="at least 6 directions"):
        subset_series(series, 5)


def test_degraded_series_covers_the_same_field_of_view(small_cohort):
    series = load_dwi(find_dataset(small_cohort / "phantom001"))
    series.affine = oblique_affine((2.5, 2.5, 2.5))
    lr, grid = degrade_series(series, 2.4)
    assert lr.shape == (30, 36, 30) and lr.paths.mask is None  # round(72 / 2.4), round(87 / 2.4)
    np.testing.assert_allclose(grid.affine, series.affine, atol=1e-9)
    assert grid.src_shape == lr.shape and grid.shape == series.shape
    # LR voxel i sits at HR continuous index (i + 0.5)·N/M − 0.5 (the grid convention).
    for i in ((0, 0, 0), (29, 35, 29), (7, 20, 3)):
        hr_index = (np.array(i) + 0.5) * np.array(series.shape) / np.array(lr.shape) - 0.5
        np.testing.assert_allclose(
            nib.affines.apply_affine(lr.affine, i), nib.affines.apply_affine(series.affine, hr_index)
        )
    np.testing.assert_allclose(lr.data[..., 3], np.maximum(resample(series.data[..., 3], lr.shape), 0))
    kspace, _ = degrade_series(series, 2.4, "kspace")
    np.testing.assert_allclose(
        kspace.data[..., 3], np.maximum(downsample(series.data[..., 3], lr.shape, "kspace"), 0)
    )


def test_a_central_slab_keeps_every_voxel_where_it_was(small_cohort):
    series = load_dwi(find_dataset(small_cohort / "phantom001"))
    series.affine = oblique_affine((2.5, 2.5, 2.5))
    slab = central_slab(series, 16)  # of 72 slices: 28 … 43
    assert slab.shape == (72, 87, 16) and slab.paths.mask is None
    np.testing.assert_array_equal(slab.data, series.data[:, :, 28:44])
    for i in ((0, 0, 0), (5, 80, 15)):
        np.testing.assert_allclose(
            nib.affines.apply_affine(slab.affine, i),
            nib.affines.apply_affine(series.affine, np.add(i, (0, 0, 28))),
        )
    assert central_slab(series, 100).shape == series.shape


def test_tricubic_scores_equal_a_computation_by_hand(small_cohort):
    series = subset_series(load_dwi(find_dataset(small_cohort / "phantom001")), 6)
    (case,) = volume_protocol("s", series, parse_methods("tricubic"), [2.0])
    mask = series_mask(series)
    b0s, shell = b0_indices(series.gtab), shell_indices(series.gtab)
    lr_shape = (36, 44, 36)  # round(72 / 2), round(87 / 2) half up, round(72 / 2)
    est = np.stack(
        [
            np.maximum(resample(np.maximum(resample(series.data[..., v], lr_shape), 0), series.shape), 0)
            for v in range(series.data.shape[3])
        ],
        axis=-1,
    )
    truth, ours = own_ratio(series.data, b0s, shell, mask), own_ratio(est, b0s, shell, mask)
    scores = case.methods["tricubic"]
    # float32 arrays laid out and summed in another order than the protocol's: rounding only
    pairs = [(truth[..., i], ours[..., i]) for i in range(6)]
    by_hand = [(psnr(t, o, mask), ssim(t, o, mask)) for t, o in pairs]
    np.testing.assert_allclose(np.stack([scores.psnr, scores.ssim], axis=1), by_hand, rtol=1e-6)
    expected = dti_errors(tensor_maps(series.data, series.gtab, mask), tensor_maps(est, series.gtab, mask))
    assert scores.dti == pytest.approx(expected)
    assert 0 < scores.dti["fa_mae_wm"] < 0.3 and scores.dti["wm_voxels"] > 100
    assert case.lr_shape == lr_shape and 15 < np.mean(scores.psnr) < 40
    # Raw scores: the DWIs as written, data range the 99.9th percentile of the truth's mean b0.
    assert case.raw_range == pytest.approx(np.percentile(series.data[..., b0s].mean(-1)[mask], 99.9))
    mse = [np.mean((series.data[..., v][mask] - est[..., v][mask]) ** 2) for v in shell]
    np.testing.assert_allclose(scores.raw_psnr, 10 * np.log10(case.raw_range**2 / np.array(mse)), rtol=1e-5)
    assert scores.raw_ssim == pytest.approx(
        [ssim(series.data[..., v], est[..., v], mask, case.raw_range) for v in shell]
    )
    assert scores.summary()["raw_psnr_mean"] == pytest.approx(np.mean(scores.raw_psnr))
    # Deterministic: a second run gives the same numbers; a noise-free reference equal to the
    # truth scores as the truth.
    with np.errstate(divide="ignore"):  # the noise ceiling, the truth against itself, is infinite
        (again,) = volume_protocol("s", series, parse_methods("tricubic"), [2.0], reference=series.data)
    assert again.ceiling == np.inf and again.ceiling_dti["fa_mae_brain"] == 0 and case.ceiling_dti is None
    assert "| s | 2× | noise-free signal | 0.0000 |" in dti_table([again])
    # made consistent with the input it is the truth again (but for the clip at 0 of the input)
    assert again.oracle_dti["fa_mae_brain"] < 1e-3 and case.oracle_dti is None
    assert "| s | 2× | noise-free signal, consistent with the input | 0.000" in dti_table([again])
    rescored = again.methods["tricubic"]
    assert rescored.psnr == scores.psnr and rescored.clean_psnr == pytest.approx(scores.raw_psnr)
    assert rescored.clean_dti == pytest.approx(scores.dti) and not scores.clean_dti
    assert rescored.summary()["clean_fa_mae_wm"] == pytest.approx(scores.dti["fa_mae_wm"])
