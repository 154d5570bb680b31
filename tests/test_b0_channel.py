"""The joint model's b0 channel: the relative mean b0 in training samples and at inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_qspace import TINY_QSPACE, multishell, run_series

from csrdmri.core.errors import InputError
from csrdmri.dmri.preprocess import relative_b0
from csrdmri.inference import joint
from csrdmri.inference.upsampler import Upsampler
from csrdmri.models import build_model
from csrdmri.models.checkpoint import save_checkpoint
from csrdmri.phantom.params import PhantomParams
from csrdmri.training import qspace_data

WITH_B0 = {**TINY_QSPACE, "b0_channel": True}


def b0_upsampler(tmp_path, zero: bool) -> Upsampler:
    torch.manual_seed(0)
    model = build_model(WITH_B0)
    assert model.encoder.sfe1.in_channels == 33  # 28 SH, b-value, order, b0, T1w, presence
    if not zero:
        torch.nn.init.normal_(model.decoder.head.weight, std=0.02)
    path = tmp_path / f"b0-{zero}.safetensors"
    save_checkpoint(path, model, {"model": WITH_B0})
    return Upsampler.load(str(path))


def test_relative_b0_is_the_contrast_without_the_scale():
    rng = np.random.default_rng(0)
    b0 = 100 + 900 * rng.random((9, 8, 7))
    mask = rng.random(b0.shape) > 0.3
    relative = relative_b0(b0, mask)
    assert np.median(relative[mask]) == pytest.approx(1.0)
    np.testing.assert_allclose(relative_b0(3.7 * b0, mask), relative, rtol=1e-6)
    with pytest.raises(InputError, match="mean b0 is not positive inside the brain mask"):
        relative_b0(np.zeros_like(b0), mask)


def samples_with_and_without(**option) -> tuple[qspace_data.SimulatedSubject, list]:
    """A small phantom subject and pairs of its training samples (8³ LR, seeds 0–3) drawn without
    and with the input ``option`` of :func:`~csrdmri.training.qspace_data.draw_sample`, checked
    to be the same sample but for the added maps (the option's draws come last)."""
    subject = qspace_data.SimulatedSubject.draw(0, 0, PhantomParams(voxel_size=3.0))
    pairs = []
    for seed in range(4):
        plain = qspace_data.draw_sample(subject, np.random.default_rng(seed), 8, (2.0, 2.0), 64, True)
        extended = qspace_data.draw_sample(
            subject, np.random.default_rng(seed), 8, (2.0, 2.0), 64, True, **option
        )
        if plain is None:
            continue
        np.testing.assert_array_equal(extended.inputs[:30], plain.inputs)
        np.testing.assert_array_equal(extended.target, plain.target)
        pairs.append((plain, extended))
    assert pairs
    return subject, pairs


def test_a_training_sample_with_the_b0_draws_what_one_without_it_draws():
    for plain, with_b0 in samples_with_and_without(with_b0=True)[1]:
        assert with_b0.inputs.shape == (31, 8, 8, 8)
        brain = plain.inputs[0] > 0  # the S/S0's mean (order-0 SH) is zero outside the brain
        assert 0.6 < np.median(with_b0.inputs[30][brain]) < 1.6  # around the subject's median


def test_the_b0_channel_is_read_at_inference(tmp_path, monkeypatch):
    series = multishell(tmp_path, shells=((1000.0, 10),))
    cubic = run_series(series, Upsampler.load("tricubic"))
    np.testing.assert_allclose(run_series(series, b0_upsampler(tmp_path, zero=True)), cubic, atol=1e-4)
    up = b0_upsampler(tmp_path, zero=False)
    read = run_series(series, up)
    assert np.abs(read - cubic).max() > 1e-3
    monkeypatch.setattr(joint, "relative_b0", lambda b0, mask: np.ones_like(b0))  # a flat b0
    assert np.abs(run_series(series, up) - read).max() > 1e-4
