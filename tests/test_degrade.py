"""Degradation operators (csrdmri.core.degrade): what each samples, and where."""

import numpy as np
import pytest

from csrdmri.core.degrade import DEGRADATIONS, DESCRIPTIONS, consistent, downsample, random_kspace
from csrdmri.core.patches import degrade


def band_limited(shape, lr_shape, rng):
    """A real signal on the HR grid of ``shape`` with integer frequencies below half the LR
    sampling (``< L/2`` cycles per field of view on each axis), and the function itself."""
    terms = []
    for _ in range(6):
        k = [rng.integers(0, (n - 1) // 2 + 1) for n in lr_shape]  # |k| < L/2
        terms.append((np.array(k), rng.uniform(0, 2 * np.pi), rng.normal()))

    def f(x, y, z):  # positions in HR voxel indices
        out = np.full(np.broadcast(x, y, z).shape, 1.5)
        for k, phase, amp in terms:
            arg = 2 * np.pi * (k[0] * x / shape[0] + k[1] * y / shape[1] + k[2] * z / shape[2])
            out += amp * np.cos(arg + phase)
        return out

    return f(*np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")), f


@pytest.mark.parametrize(("shape", "lr_shape"), [((24, 24, 24), (12, 12, 12)), ((29, 30, 17), (12, 13, 7))])
def test_kspace_samples_a_band_limited_signal_exactly_at_the_lr_voxel_centres(shape, lr_shape):
    hr, f = band_limited(shape, lr_shape, np.random.default_rng(len(shape) + shape[0]))
    lr = downsample(hr, lr_shape, "kspace")
    # LR voxel i of L over N HR voxels sits at HR index (i + 0.5)·N/L − 0.5 (csrdmri.core.grid)
    centres = [(np.arange(m) + 0.5) * n / m - 0.5 for n, m in zip(shape, lr_shape, strict=True)]
    np.testing.assert_allclose(lr, f(*np.meshgrid(*centres, indexing="ij")), atol=1e-10)


@pytest.mark.parametrize("method", DEGRADATIONS)
def test_every_degradation_keeps_the_intensity_scale_and_dtype(method):
    hr = np.full((20, 22, 18), 3.25, np.float32)
    lr = downsample(hr, (8, 9, 7), method)
    assert lr.shape == (8, 9, 7) and lr.dtype == np.float32
    np.testing.assert_allclose(lr, 3.25, rtol=1e-6)


def test_every_named_degradation_has_the_reports_description():
    assert tuple(DESCRIPTIONS) == DEGRADATIONS


def test_the_kspace_degradation_low_passes_and_rings_where_tricubic_aliases():
    n = np.arange(40)
    stripes = np.broadcast_to(np.cos(np.pi * n * 19 / 20)[:, None, None], (40, 8, 8)).copy()  # 19 cycles
    assert np.abs(downsample(stripes, (20, 8, 8), "kspace")).max() < 1e-10  # above the LR band: gone
    assert np.abs(downsample(stripes, (20, 8, 8), "tricubic")).max() > 0.2  # aliased into the LR (≈ 0.25)
    edge = np.zeros((30, 30, 30), np.float32)
    edge[:16] = 1.0
    lr = {method: downsample(edge, (10, 10, 10), method) for method in ("kspace", "tricubic")}
    assert lr["kspace"].min() < -0.05 < lr["tricubic"].min()  # Gibbs ringing


def test_training_patches_use_the_same_operators():
    hr = np.random.default_rng(0).normal(size=(24, 24, 24)).astype(np.float32)
    for method in ("tricubic", "kspace"):
        np.testing.assert_array_equal(degrade(hr, 10, method), downsample(hr, (10, 10, 10), method))
    with pytest.raises(ValueError, match="degradation must be one of"):
        downsample(hr, (10, 10, 10), "box")


def cosine_along(axis, k, shape):
    """cos(2πk·x/N) along ``axis`` of ``shape``, constant along the others, and its LR centres."""
    x = np.arange(shape[axis])
    profile = np.cos(2 * np.pi * k * x / shape[axis])
    return np.broadcast_to(np.expand_dims(profile, [a for a in range(3) if a != axis]), shape).copy()


def lr_centres(n, m):
    return (np.arange(m) + 0.5) * n / m - 0.5


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize(
    ("method", "w", "axis"),
    [("kspace-apodised", 0.46, 0), ("kspace-acquired", 0.2, 0), ("kspace-acquired", 0.2, 1)],
)
def test_apodisation_weights_each_frequency_by_its_cosine_window(k, method, w, axis):
    shape = tuple(24 if a == axis else 6 for a in range(3))
    lr_shape = tuple(12 if a == axis else 6 for a in range(3))
    lr = downsample(cosine_along(axis, k, shape), lr_shape, method)
    window = 1 - w + w * np.cos(2 * np.pi * k / 12)
    expected = window * np.cos(2 * np.pi * k * lr_centres(24, 12) / 24)
    np.testing.assert_allclose(np.moveaxis(lr, axis, 0)[:, 2, 3], expected, atol=1e-10)


@pytest.mark.parametrize(("k", "amplitude"), [(2, 1.0), (3, 1.0), (4, 0.5), (5, 0.5)])
def test_partial_fourier_keeps_the_frequencies_acquired_on_both_sides_and_halves_the_others(k, amplitude):
    # 6/8 of 12 frequencies (-6 … 5) along axis 1: -6, -5, -4 are not acquired
    shape, lr_shape = (6, 24, 6), (6, 12, 6)
    lr = downsample(cosine_along(1, k, shape), lr_shape, "kspace-partial")
    expected = amplitude * np.cos(2 * np.pi * k * lr_centres(24, 12) / 24)
    np.testing.assert_allclose(lr[3, :, 2], expected, atol=1e-10)


@pytest.mark.parametrize("method", ["kspace-slice", "kspace-acquired"])
def test_a_2d_slice_is_the_mean_of_the_hr_voxels_it_covers(method):
    rng = np.random.default_rng(3)
    through = rng.normal(size=20)  # any profile through plane, constant in plane
    hr = np.broadcast_to(through, (8, 8, 20)).copy()
    lr = downsample(hr, (4, 4, 10), method)
    np.testing.assert_allclose(lr[1, 2], (through[0::2] + through[1::2]) / 2, atol=1e-10)


def test_random_acquisitions_are_reproducible_keep_the_scale_and_vary():
    hr = np.full((24, 24, 24), 2.0)
    draws = [random_kspace(np.random.default_rng(seed)) for seed in range(12)]
    assert draws[0] == random_kspace(np.random.default_rng(0))
    assert len(set(draws)) == 12
    assert {a.kind for draw in draws for a in draw} == {"kspace", "profile"}
    for draw in draws:
        np.testing.assert_allclose(downsample(hr, (10, 10, 10), draw), 2.0, rtol=1e-10)


@pytest.mark.parametrize("method", DEGRADATIONS)
def test_consistency_holds_for_every_named_operator(method):
    # partial Fourier zeroes the LR Nyquist frequency: an input is one the operator can make
    rng = np.random.default_rng(5)
    hr, lr = rng.normal(size=(20, 18, 16)), downsample(rng.normal(size=(20, 18, 16)), (10, 8, 8), method)
    np.testing.assert_allclose(downsample(consistent(hr, lr, method), lr.shape, method), lr, atol=1e-8)
    stacked = consistent(np.stack([hr, 2 * hr], -1), np.stack([lr, -lr], -1), method)  # trailing axes
    for v, (h, low) in enumerate(((hr, lr), (2 * hr, -lr))):
        np.testing.assert_allclose(stacked[..., v], consistent(h, low, method), atol=1e-12)
