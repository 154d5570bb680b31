"""Domain randomisation of training pairs: the documented ranges are honoured, draws are
reproducible, and training runs with it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import TINY_RUN

from csrdmri.checkpoint import read_meta
from csrdmri.data import PreparedSubject, sample_batch
from csrdmri.randomise import Acquisition, Randomisation
from csrdmri.train import train

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
