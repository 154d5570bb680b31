"""The input's noise under the data consistency (csrdmri.dmri.residual, ``--input-noise``): a
tensor series has no residual, and taking the upsampled residual out before the image-domain
consistency brings a cubic upsampling nearer the noise-free signal and the noisy truth alike;
``checked`` weights it by a check on the input degraded once more."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import assert_user_error, run
from scipy.ndimage import shift
from test_qspace import multishell

from csrdmri.core.degrade import downsample
from csrdmri.core.errors import InputError
from csrdmri.core.resample import resample
from csrdmri.dmri.residual import tensor_residual
from csrdmri.inference.consistency import checked_weights, impose_consistency, noise_treatment
from csrdmri.inference.plan import OutputPlan
from csrdmri.inference.series import new_output
from csrdmri.inference.upsampler import Options


def tensor_signal(bvals: np.ndarray, bvecs: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """(X, Y, Z, V) noise-free signal of cylindrical tensors whose axis and S0 vary smoothly."""
    axes = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    rng = np.random.default_rng(seed)
    fibre = np.stack([np.cos(3 * axes[0] + rng.random()), np.sin(2 * axes[1]), 0.5 + axes[2]], -1)
    fibre /= np.linalg.norm(fibre, axis=-1, keepdims=True)
    s0 = 800 + 300 * np.sin(2 * axes[0] + axes[1]) * np.cos(axes[2])
    cos2 = np.einsum("xyzc,vc->xyzv", fibre, bvecs) ** 2
    return s0[..., None] * np.exp(-bvals * 1e-3 * (0.3 + 1.2 * cos2))


def test_a_tensor_series_has_no_residual(tmp_path):
    series = multishell(tmp_path, shells=((1000.0, 12), (2000.0, 8), (3000.0, 5)))
    clean = tensor_signal(series.gtab.bvals, series.gtab.bvecs, series.shape, seed=1)
    mask = np.zeros(series.shape, bool)
    mask[2:-2, 2:-2, 1:-1] = True
    residual = tensor_residual(replace(series, data=clean.astype(np.float32)), mask)
    assert residual.shape == clean.shape and residual.dtype == np.float32
    assert np.abs(residual).max() < 1e-3 * clean.max()  # every shell of ≥ 6 directions fitted exactly
    small = np.flatnonzero(series.gtab.bvals == 3000.0)
    assert not residual[..., small].any() and not residual[..., series.gtab.b0s_mask].any()
    assert not residual[~mask].any()
    noisy = clean + np.random.default_rng(0).normal(0, 10, clean.shape)
    residual = tensor_residual(replace(series, data=noisy.astype(np.float32)), mask)
    weighted = np.flatnonzero((series.gtab.bvals > 0) & (series.gtab.bvals < 2500))
    # The fit takes 7 of the 12 + 2 (or 8 + 2) dimensions: most of the noise is left as residual.
    assert 0.4 < residual[mask][:, weighted].std() / 10 < 1.0


def test_taking_the_input_noise_out_brings_the_output_nearer_both_truths(tmp_path):
    series = multishell(tmp_path, shells=((1000.0, 16),))
    hr_shape = tuple(2 * n for n in series.shape)
    clean = tensor_signal(series.gtab.bvals, series.gtab.bvecs, hr_shape, seed=2)
    noisy = clean + np.random.default_rng(3).normal(0, 25, clean.shape)
    lr = np.stack([downsample(noisy[..., v], series.shape) for v in range(noisy.shape[3])], -1)
    series = replace(series, data=lr.astype(np.float32))
    plan = OutputPlan.build(series.gtab)
    mask = np.ones(series.shape, bool)
    errors = {}
    for noise in ("kept", "tensor"):
        out = new_output((*hr_shape, lr.shape[3]))
        out[...] = resample(lr, hr_shape)
        impose_consistency(out, series, plan, "image", noise, mask)
        np.testing.assert_allclose(  # the guarantee is the same either way
            np.stack([downsample(out[..., v], series.shape) for v in range(lr.shape[3])], -1),
            lr,
            atol=1e-3 * lr.max(),
        )
        dw = ~series.gtab.b0s_mask
        errors[noise] = [np.sqrt(((out[..., dw] - t[..., dw]) ** 2).mean()) for t in (clean, noisy)]
    assert errors["tensor"][0] < 0.9 * errors["kept"][0]  # nearer the noise-free signal
    assert errors["tensor"][1] < errors["kept"][1]  # and the noisy truth the input was made from


def test_the_check_keeps_the_removal_of_noise_and_weighs_down_that_of_displaced_volumes(tmp_path, caplog):
    series = multishell(tmp_path, shells=((1000.0, 16),))
    lr_shape, hr_shape = (24, 24, 24), (48, 48, 48)
    clean = tensor_signal(series.gtab.bvals, series.gtab.bvecs, hr_shape, seed=2)
    centred = np.meshgrid(*[np.linspace(-1, 1, n) for n in hr_shape], indexing="ij")
    radius = np.sqrt(sum(c**2 for c in centred))
    clean *= np.clip((0.85 - radius) / 0.15, 0, 1)[..., None]  # a head in an empty field of view
    noisy = clean + np.random.default_rng(3).normal(0, 25, clean.shape)
    mask = downsample(radius, lr_shape) < 0.6
    dw = ~series.gtab.b0s_mask
    means, warned = [], []
    for moved in (False, True):
        caplog.clear()
        truth = noisy.copy()
        if moved:  # a third of the DWIs displaced by (3, -2, 1) voxels: uncorrected motion
            for v in np.flatnonzero(dw)[::3]:
                truth[..., v] = shift(truth[..., v], (3, -2, 1), order=3)
        lr = np.stack([downsample(truth[..., v], lr_shape) for v in range(truth.shape[3])], -1)
        lr_series = replace(series, data=lr.astype(np.float32))
        weights = checked_weights(lr_series, tensor_residual(lr_series, mask), hr_shape, mask, "tricubic")
        assert weights.shape == (lr.shape[3],) and np.all((weights >= 0) & (weights <= 1))
        assert np.all(weights[~dw] == 1)  # the b0s have no residual to weigh
        means.append(weights[dw].mean())
        warned.append("taking it out did not help" in caplog.text)
    assert means[0] > 0.9  # noise: taken out
    assert means[1] < 0.75 * means[0]  # the displaced volumes' edges: mostly kept
    assert warned == [False, True]  # and the user is told


def test_a_residual_that_cannot_be_checked_is_kept(tmp_path, caplog):
    series = multishell(tmp_path, shells=((1000.0, 8),))
    mask = np.zeros(series.shape, bool)
    mask[5:7, 5:7, 4:6] = True  # degraded once more by 2, no voxel of it is left to fit
    residual = tensor_residual(series, mask)
    weights = checked_weights(series, residual, tuple(2 * n for n in series.shape), mask, "tricubic")
    dw = ~series.gtab.b0s_mask
    assert residual[..., dw].any() and not weights[dw].any() and np.all(weights[~dw] == 1)
    assert "8 volumes could not be checked" in caplog.text


def test_the_input_noise_is_taken_out_only_through_a_consistency(small_dwi, tmp_path):
    with pytest.raises(InputError, match="through the data consistency"):
        Options(input_noise="tensor")
    assert noise_treatment(Options().consistency, Options().input_noise) == "kept"  # the default: off
    assert noise_treatment("kspace", "auto") == noise_treatment("image", "auto") == "checked"  # rule 11
    with pytest.raises(InputError, match="with --input-noise checked"):
        Options(input_noise="checked")
    with pytest.raises(InputError, match="input noise must be one of auto, kept, tensor, checked"):
        Options(consistency="image", input_noise="pca")
    bad = run(
        "upsample", small_dwi, "--scale", "2", "--input-noise", "tensor", "--out", tmp_path / "x.nii.gz"
    )
    assert_user_error(bad, "choose --consistency image or kspace with --input-noise tensor")
