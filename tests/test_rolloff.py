"""The input's measured roll-off near Nyquist: its measurement, training samples that carry it,
and a joint model that reads it (grown from one that does not)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from test_b0_channel import samples_with_and_without
from test_qspace import TINY_QSPACE, multishell, run_series

from csrdmri.core.degrade import NAMED, downsample
from csrdmri.core.spectrum import LOG_RANGE, measured_rolloff
from csrdmri.inference import joint
from csrdmri.inference.upsampler import Upsampler
from csrdmri.models import build_model
from csrdmri.models.checkpoint import grow_from, save_checkpoint
from csrdmri.training import qspace_data

WITH_ROLLOFF = {**TINY_QSPACE, "rolloff": True}


def textured(shape=(64, 64, 64), seed=0) -> np.ndarray:
    """Smooth blobs with fine texture and noise: a spectrum spread over every frequency."""
    rng = np.random.default_rng(seed)
    coarse = ndimage.gaussian_filter(rng.random(shape), 4) * 40
    fine = ndimage.gaussian_filter(rng.random(shape), 1) * 5
    return (100 + coarse + fine + rng.random(shape)).astype(np.float32)


def test_the_rolloff_orders_the_operators_and_ignores_the_scale():
    hr = textured()
    everywhere = np.ones((32, 32, 32), bool)
    sharp, truncated, windowed = (
        measured_rolloff(downsample(hr, (32, 32, 32), method), everywhere)
        for method in ("tricubic", NAMED["kspace"], NAMED["kspace-apodised"])
    )
    assert np.all(sharp > truncated + 0.1) and np.all(truncated > windowed + 0.3)
    sliced = measured_rolloff(downsample(hr, (32, 32, 32), NAMED["kspace-slice"]), everywhere)
    np.testing.assert_allclose(sliced[:2], truncated[:2], atol=0.05)  # in plane the same operator
    lr = downsample(hr, (32, 32, 32), "tricubic")
    np.testing.assert_allclose(measured_rolloff(3 * lr + 50, everywhere), sharp, atol=1e-4)


def test_the_rolloff_of_a_thin_void_or_flat_volume_is_finite_and_bounded():
    thin = textured((40, 36, 10))
    for mask in (thin > 0, np.zeros(thin.shape, bool)):  # no block centre in the mask: the central one
        value = measured_rolloff(thin, mask)
        assert value.shape == (3,) and value.dtype == np.float32
        assert np.all((value >= LOG_RANGE[0]) & (value <= LOG_RANGE[1]))
    flat = np.ones((30, 30, 30))
    np.testing.assert_array_equal(measured_rolloff(flat, flat > 0), LOG_RANGE[0])


def test_a_training_sample_with_the_rolloff_draws_what_one_without_it_draws():
    subject, pairs = samples_with_and_without(rolloff=True)
    for _, rolled in pairs:
        assert rolled.inputs.shape == (33, 8, 8, 8)
        for channel in rolled.inputs[30:]:  # one constant map per axis
            assert channel.min() == channel.max() and LOG_RANGE[0] <= channel.min() <= LOG_RANGE[1]
    box = qspace_data.patch_box(subject, 16, np.random.default_rng(0))
    sharp, windowed = (
        qspace_data.input_rolloff(subject, box, 8, method, 2, 30.0, np.random.default_rng(1))
        for method in ("tricubic", NAMED["kspace-apodised"])
    )
    assert np.all(sharp > windowed)


def rolloff_upsampler(tmp_path, columns: float) -> tuple[Upsampler, Upsampler]:
    """A tiny joint model and the same grown by the roll-off maps, whose weights are ``columns``."""
    torch.manual_seed(0)
    plain = build_model(TINY_QSPACE)
    torch.nn.init.normal_(plain.decoder.head.weight, std=0.02)
    path = tmp_path / "plain.safetensors"
    save_checkpoint(path, plain, {"model": TINY_QSPACE})
    grown = build_model(WITH_ROLLOFF)
    assert grow_from(grown, WITH_ROLLOFF, path) == ["encoder.sfe1.weight"]
    assert grown.encoder.sfe1.in_channels == 35  # 28 SH, b-value, order, T1w, presence, 3 roll-offs
    with torch.no_grad():
        grown.encoder.sfe1.weight[:, -3:] = columns
    grown_path = tmp_path / f"grown-{columns}.safetensors"
    save_checkpoint(grown_path, grown, {"model": WITH_ROLLOFF})
    return Upsampler.load(str(path)), Upsampler.load(str(grown_path))


def test_a_grown_model_starts_as_its_origin_and_reads_the_rolloff_at_inference(tmp_path, monkeypatch):
    series = multishell(tmp_path, shells=((1000.0, 10),))
    plain, grown = rolloff_upsampler(tmp_path, columns=0.0)
    np.testing.assert_allclose(run_series(series, grown), run_series(series, plain), atol=1e-6)
    _, reading = rolloff_upsampler(tmp_path, columns=0.3)
    read = run_series(series, reading)
    assert np.abs(read - run_series(series, plain)).max() > 1e-3
    monkeypatch.setattr(joint, "measured_rolloff", lambda b0, mask: np.full(3, -2.0, np.float32))
    assert np.abs(run_series(series, reading) - read).max() > 1e-4
