"""Training the joint q-space model on simulated acquisitions: exact resumption, worker
processes, the command and its options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_qspace import TINY_QSPACE


def test_interrupted_training_resumes_exactly(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from csrdmri.training import qspace

    small = {"steps": 4, "batch": 2, "queries": 64, "lr_size": 8, "subjects": 1, "voxel_size": 3.0}
    config = qspace.QSpaceConfig(**small, checkpoint_every=2, model=TINY_QSPACE)
    straight = qspace.train_qspace(tmp_path / "a", config)
    optimise, calls = qspace.optimise, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return optimise(*args)

    monkeypatch.setattr(qspace, "optimise", interrupted)
    with pytest.raises(KeyboardInterrupt):
        qspace.train_qspace(tmp_path / "b", config)
    monkeypatch.setattr(qspace, "optimise", optimise)
    resumed = qspace.train_qspace(tmp_path / "b", config, resume=True)
    assert resumed == pytest.approx(straight, rel=1e-9)
    a, b = (load_file(str(tmp_path / run / "last.safetensors")) for run in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("model."))
    assert abs(straight["val_gain_db"]) < 0.5  # a zero head starts at cubic; 4 steps move little
    assert (tmp_path / "a" / "best.safetensors").exists()


def test_a_run_whose_decoder_died_stops_with_a_sentence(tmp_path, monkeypatch):
    from csrdmri.core.errors import InputError
    from csrdmri.training import qspace

    small = {"steps": 4, "batch": 2, "queries": 64, "lr_size": 8, "subjects": 1, "voxel_size": 3.0}
    config = qspace.QSpaceConfig(**small, checkpoint_every=2, model=TINY_QSPACE)
    optimise = qspace.optimise

    def dying(model, *args):
        loss = optimise(model, *args)
        with torch.no_grad():  # all but one of the last hidden layer's 16 units inactive everywhere
            model.decoder.hidden[-1].bias.fill_(-1e6)[0] = 1e3
        return loss

    monkeypatch.setattr(qspace, "optimise", dying)
    with pytest.raises(InputError, match=r"stopped at step 2: the model.s output hardly .* \(6% of the"):
        qspace.train_qspace(tmp_path / "run", config)
    assert (tmp_path / "run" / "last.safetensors").exists()
    monkeypatch.setattr(qspace, "optimise", optimise)  # a healthy run of the same config goes on
    assert qspace.train_qspace(tmp_path / "healthy", config)


def test_batches_simulated_in_worker_processes_train_the_same_model(tmp_path):
    from safetensors.torch import load_file

    from csrdmri.core.errors import InputError
    from csrdmri.training import qspace

    small = {"steps": 3, "batch": 2, "queries": 32, "lr_size": 8, "subjects": 1, "voxel_size": 3.0}
    config = qspace.QSpaceConfig(**small, checkpoint_every=3, model=TINY_QSPACE)
    thread = qspace.train_qspace(tmp_path / "thread", config, device="cpu")
    processes = qspace.train_qspace(tmp_path / "processes", config, device="cpu", workers=2)
    # The same batches; a process's torch threads may sum in another order: float rounding only.
    assert processes == pytest.approx(thread, rel=1e-6, abs=1e-6)
    a, b = (load_file(str(tmp_path / run / "last.safetensors")) for run in ("thread", "processes"))
    for key in (k for k in a if k.startswith("model.")):
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError, match="workers must be at least 0"):
        qspace.train_qspace(tmp_path / "c", config, workers=-1)


def test_train_command_routes_the_qspace_model(tmp_path):
    from conftest import assert_user_error, run

    assert_user_error(run("train", "--out", tmp_path / "a"), "training needs data")
    result = run("train", "--model", "csr-qspace", "--data", tmp_path, "--out", tmp_path / "b")
    assert_user_error(result, "simulates its training data", "--data")
    config = tmp_path / "options.json"
    config.write_text('{"epochs": 3}')
    result = run("train", "--model", "csr-qspace", "--config", config, "--out", tmp_path / "c")
    assert_user_error(result, "unknown csr-qspace training option(s): epochs")


def test_a_resumed_run_takes_new_options_and_decays_over_its_new_length():
    from csrdmri.training.qspace_config import QSpaceConfig
    from csrdmri.workflows.train import qspace_config

    saved = {**vars(QSpaceConfig(steps=100, lr=1e-3, model=TINY_QSPACE)), "scale_range": [2.0, 2.5]}
    config = qspace_config("csr-qspace", {"fa_weight": 0.5}, 200, saved)
    assert (config.steps, config.fa_weight, config.scale_range) == (200, 0.5, (2.0, 2.5))
    assert config.model == TINY_QSPACE  # the saved model, not the name's
    # The schedule is a function of the step: at the old end it is half-way down the new cosine.
    assert QSpaceConfig(steps=100, lr=1e-3).learning_rate(100) == pytest.approx(1e-4)
    assert config.learning_rate(100) == pytest.approx(1e-4 + 9e-4 / 2)
    assert config.learning_rate(0) == pytest.approx(1e-3)
    warm = QSpaceConfig(steps=100, lr=1e-3, warmup=10)  # linear to lr over 10 steps, then the cosine
    assert [warm.learning_rate(s) for s in (0, 4, 9)] == pytest.approx([1e-4, 5e-4, 1e-3])
    assert warm.learning_rate(10) == QSpaceConfig(steps=100, lr=1e-3).learning_rate(10)


def test_kspace_share_of_the_training_samples(monkeypatch):
    from csrdmri.core.errors import InputError
    from csrdmri.phantom.params import PhantomParams
    from csrdmri.training import qspace_data
    from csrdmri.training.qspace_config import QSpaceConfig

    subject = qspace_data.SimulatedSubject.draw(0, 0, PhantomParams(voxel_size=3.0))
    used, downsample = [], qspace_data.downsample

    def recorded(hr, shape, method):
        used.append(method)
        return downsample(hr, shape, method)

    monkeypatch.setattr(qspace_data, "downsample", recorded)
    for share, expected in ((0.0, {"tricubic"}), (1.0, {"kspace"}), (0.5, {"tricubic", "kspace"})):
        used.clear()
        rng = np.random.default_rng(0)
        for _ in range(12):
            qspace_data.draw_sample(subject, rng, 8, (1.6, 2.0), 16, False, share)
        assert set(used) == expected
    with pytest.raises(InputError, match=r"kspace must be within 0\.\.1"):
        QSpaceConfig(kspace=1.5)


def test_the_expected_target_is_the_noisy_targets_mean_without_its_noise():
    from csrdmri.core.errors import InputError
    from csrdmri.phantom.signal import rician_mean
    from csrdmri.training.qspace_batches import draw_subjects
    from csrdmri.training.qspace_config import QSpaceConfig
    from csrdmri.training.qspace_data import draw_sample

    rng = np.random.default_rng(0)
    draws = rng.standard_normal((2, 400_000))
    for nu in (0.0, 0.7, 2.0, 7.9, 8.1, 9.0):  # the Rician floor at 0, the mean signal far above the noise
        sampled = np.hypot(nu + draws[0], draws[1]).mean()
        assert rician_mean(np.array([nu]), 1.0)[0] == pytest.approx(sampled, rel=4e-3)
    config = QSpaceConfig(queries=4096, lr_size=8, subjects=1, voxel_size=3.0)
    (subject,) = draw_subjects(config, range(1), bar=False)
    rngs = [np.random.default_rng([1, i]) for i in range(3)]
    samples = [draw_sample(subject, rng, 8, (2.0, 2.0), 4096, False) for rng in rngs]
    noise = np.concatenate([(s.target - s.expected).ravel() for s in samples if s is not None])
    assert abs(noise.mean()) < 4 * noise.std() / np.sqrt(noise.size)  # unbiased
    residual = [np.abs(s.expected - s.cubic).mean() / np.abs(s.target - s.cubic).mean() for s in samples if s]
    assert max(residual) < 0.9  # the noise is gone from what the loss compares with
    with pytest.raises(InputError, match="target must be one of noisy, expected, consistent"):
        QSpaceConfig(target="clean")


@pytest.mark.parametrize("kspace", [0.0, 1.0])
def test_the_consistent_target_keeps_only_the_noise_the_input_determines(kspace):
    from csrdmri.core.degrade import downsample
    from csrdmri.training.qspace_batches import draw_subjects
    from csrdmri.training.qspace_config import QSpaceConfig
    from csrdmri.training.qspace_data import consistent_expectation, draw_sample

    config = QSpaceConfig(queries=4096, lr_size=8, subjects=1, voxel_size=3.0)
    (subject,) = draw_subjects(config, range(1), bar=False)
    clean = np.random.default_rng(3).uniform(0, 5, (16, 16, 16, 2)).astype(np.float32)
    lr = np.random.default_rng(4).uniform(0, 5, (8, 8, 8, 2)).astype(np.float32)
    made = consistent_expectation(clean, lr, 1.0, np.ones((16,) * 3, bool), "kspace-slice")
    np.testing.assert_allclose(downsample(made, (8, 8, 8), "kspace-slice"), lr, atol=1e-4)
    noise, kept, shared = [], [], []
    for i in range(4):
        rng = np.random.default_rng([5, i])
        s = draw_sample(subject, rng, 8, (2.0, 2.0), 4096, False, kspace, True, consistent_target=True)
        if s is not None:
            noise.append((s.target - s.expected).ravel())
            kept.append((s.consistent - s.expected).ravel())
            shared.append((s.cubic - s.expected).ravel())
    noise, kept, shared = (np.concatenate(a) for a in (noise, kept, shared))
    assert 0.09 < kept.var() / noise.var() < 0.17  # 1/2³ of the noise's variance at 2×
    # what it leaves out of the noisy target is uncorrelated with what the input makes of the noise
    assert abs(np.corrcoef(noise - kept, shared)[0, 1]) < 0.03
    assert np.corrcoef(noise, shared)[0, 1] > 0.05  # ... where the noisy target's own noise is not


def test_the_orientation_term_sees_only_what_differs_between_directions():
    from csrdmri.core.errors import InputError
    from csrdmri.training.qspace import anisotropic_error, on_device
    from csrdmri.training.qspace_batches import draw_subjects
    from csrdmri.training.qspace_config import QSpaceConfig
    from csrdmri.training.qspace_data import draw_sample

    config = QSpaceConfig(queries=256, lr_size=8, subjects=1, voxel_size=3.0)
    (subject,) = draw_subjects(config, range(1), bar=False)
    sample = on_device(
        draw_sample(subject, np.random.default_rng(2), 8, (2.0, 2.0), 256, False), torch.device("cpu")
    )
    offset = torch.linspace(0.1, 0.5, len(sample.expected))[:, None]  # the same for every direction
    assert float(anisotropic_error(sample.expected + offset, sample)) == pytest.approx(0.0, abs=1e-5)
    coefficients = torch.zeros((len(sample.expected), 28))
    coefficients[:, 3] = 0.2  # one order-2 coefficient at every query
    anisotropic = sample.expected + coefficients @ sample.basis.T
    assert float(anisotropic_error(anisotropic, sample)) == pytest.approx(0.2, rel=1e-4)
    with pytest.raises(InputError, match="sh_weight must be at least 0"):
        QSpaceConfig(sh_weight=-1.0)
