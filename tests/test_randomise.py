"""Domain randomisation of training pairs: the documented ranges are honoured, draws are
reproducible, and training runs with it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import TINY_RUN

from csrdmri.core.errors import InputError
from csrdmri.dmri.pairs import PreparedSubject, sample_batch
from csrdmri.dmri.randomise import MOTION_MARGIN, Acquisition, Randomisation
from csrdmri.models.checkpoint import read_meta
from csrdmri.training import TrainConfig, train

RANGES = Randomisation()


def test_draws_stay_within_the_documented_ranges():
    rng = np.random.default_rng(0)
    draws = [Acquisition.draw(rng, RANGES) for _ in range(2000)]
    for name in ("bvalue", "snr", "slice_sigma", "t1_gamma"):
        values = np.array([getattr(d, name) for d in draws if getattr(d, name) is not None])
        lo, hi = getattr(RANGES, name)
        assert lo <= values.min() and values.max() <= hi, name
        assert values.min() < lo + 0.05 * (hi - lo) and values.max() > hi - 0.05 * (hi - lo), name  # spans it
    assert 0.45 < np.mean([d.kspace for d in draws]) < 0.55
    assert 0.45 < np.mean([d.snr is not None for d in draws]) < 0.55
    shifts = np.array([d.shift for d in draws if d.shift is not None])
    assert 0.45 < len(shifts) / len(draws) < 0.55
    assert np.abs(shifts).max() <= RANGES.shift and np.abs(shifts).max() > 0.95 * RANGES.shift
    assert {d.slice_axis for d in draws} == {0, 1, 2}
    t1 = np.ones((20, 20, 20), np.float32)
    fields = np.stack([d.t1(t1) for d in draws[:200]])  # gamma leaves 1 alone: the bias field
    assert np.abs(fields - 1.0).max() <= RANGES.t1_bias / 2 + 1e-6
    assert np.abs(fields - 1.0).max() > 0.8 * RANGES.t1_bias / 2


def test_the_b_value_noise_and_contrast_are_what_was_drawn():
    draw = Acquisition(
        bvalue=2000.0,
        snr=None,
        kspace=False,
        slice_axis=2,
        slice_sigma=0.0,
        t1_gamma=2.0,
        t1_bias=(0, 0, 0),
        noise_seed=2,
    )
    ratio = np.random.default_rng(1).uniform(0.1, 0.9, (24, 24, 24)).astype(np.float32)
    np.testing.assert_allclose(draw.signal(ratio), ratio**2, rtol=1e-6)  # S/S0 at b = 2000: (S/S0 at 1000)²
    noisy = replace(draw, bvalue=1000.0, snr=10.0)
    hr = noisy.signal(np.full((48, 48, 48), 0.8, np.float32))  # the target carries the added noise
    assert hr.std() == pytest.approx(1 / noisy.snr, rel=0.05)  # Rician at 8 sigma: nearly Gaussian
    assert hr.mean() == pytest.approx(0.8, abs=0.01)
    lr = noisy.acquire(hr, 24)  # the input is the target degraded: its noise averaged, none added
    assert lr.shape == (24, 24, 24)
    assert lr.mean() == pytest.approx(hr.mean(), abs=0.005)
    assert lr.std() < 0.8 * hr.std()
    np.testing.assert_allclose(draw.t1(ratio), ratio**2, rtol=1e-5)


def test_randomised_batches_are_reproducible_and_split_consistently_over_processes():
    rng = np.random.default_rng(3)
    subject = PreparedSubject(
        "s",
        rng.uniform(0.2, 0.8, (2, 40, 40, 40)).astype(np.float16),
        rng.uniform(0, 1, (40, 40, 40)),
        np.zeros((1, 3), int),
        "",
        rng.uniform(500, 1000, (40, 40, 40)).astype(np.float32),
    )
    batch = lambda part=slice(None): sample_batch(  # noqa: E731
        [subject], 4, np.random.default_rng(7), (2.0, 3.0), 8, True, part=part, randomise=RANGES
    )
    whole, again, plain = (
        batch(),
        batch(),
        sample_batch([subject], 4, np.random.default_rng(7), (2.0, 3.0), 8, True),
    )
    np.testing.assert_array_equal(whole.lr.numpy(), again.lr.numpy())
    assert not np.allclose(whole.lr.numpy(), plain.lr.numpy())
    halves = [batch(slice(0, 2)), batch(slice(2, 4))]
    np.testing.assert_array_equal(np.concatenate([h.lr.numpy() for h in halves]), whole.lr.numpy())
    np.testing.assert_array_equal(np.concatenate([h.t1.numpy() for h in halves]), whole.t1.numpy())


def test_training_with_randomisation_runs_and_records_it(small_cohort, tmp_path):
    train(
        replace(TINY_RUN, epochs=1, randomise=True), small_cohort, tmp_path / "run", cache=tmp_path / "cache"
    )
    assert read_meta(tmp_path / "run" / "last.safetensors")["training"]["randomise"] is True


def test_motion_moves_the_volume_against_its_b0():
    rng = np.random.default_rng(4)
    margin = MOTION_MARGIN
    size = 12 + 2 * margin
    ratio = rng.uniform(0.2, 0.8, (size,) * 3).astype(np.float32)
    s0 = rng.uniform(500, 1500, (size,) * 3).astype(np.float32)
    draw = replace(Acquisition.draw(rng, RANGES), shift=(1.0, 0.0, -2.0))
    moved = draw.move(ratio, s0)
    inner = (slice(margin, -margin),) * 3
    signal = np.roll(ratio * s0, (1, 0, -2), axis=(0, 1, 2))  # the volume's signal moved by whole voxels
    np.testing.assert_allclose(moved, signal[inner] / s0[inner], rtol=1e-5)
    assert not np.allclose(moved, ratio[inner], atol=0.05)  # the b0 did not move with it
    # Where the b0 does not normalise (0), S/S0 stays 0.
    s0[inner][0] = 0
    assert np.all(draw.move(ratio, s0)[0] == 0)


def test_motion_needs_the_mean_b0_and_ranges_are_checked():
    rng = np.random.default_rng(5)
    dwi = rng.uniform(0.2, 0.8, (1, 40, 40, 40)).astype(np.float16)
    subject = PreparedSubject(
        "s", dwi, None, np.zeros((1, 3), int), "", np.full((40, 40, 40), 800, np.float32)
    )
    always = Randomisation.from_dict({"motion": 1.0, "noise": 0.0})
    batch = sample_batch([subject], 3, rng, (2.0, 3.0), 8, False, randomise=always)
    assert all(np.isfinite(h.numpy()).all() for h in batch.hr)  # the patch at the corner reads zeros outside
    with pytest.raises(InputError, match="no mean b0"):
        sample_batch([replace(subject, s0=None)], 3, rng, (2.0, 3.0), 8, False, randomise=always)
    for values, message in (
        ({"motoin": 0.5}, "unknown randomisation range"),
        ({"snr": [40, 8]}, "snr must be"),
        ({"motion": 2}, "probabilities"),
        ({"shift": 9.0}, "shift must lie in"),
        ({"shift": -1}, "shift must lie in"),
        ({"snr": 5}, r"snr must be \[low, high\], got 5"),
        ({"motion": "often"}, "motion must be a number"),
    ):
        with pytest.raises(InputError, match=message):
            Randomisation.from_dict(values)
    with pytest.raises(InputError, match="unknown randomisation range"):
        TrainConfig.from_dict({"randomisation": {"motoin": 0.5}})
