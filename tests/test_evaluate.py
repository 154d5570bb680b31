"""Metrics, the patch protocol and `csrdmri evaluate` on a small phantom cohort."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import TINY_RUN, assert_user_error, run
from skimage.metrics import structural_similarity
from typer.testing import CliRunner

from csrdmri import evaluate
from csrdmri.cli import app
from csrdmri.errors import InputError
from csrdmri.metrics import psnr, ssim
from csrdmri.patches import central_crop, degrade, hr_size, patch_origins
from csrdmri.resample import resample
from csrdmri.train import train


def test_psnr_uses_the_fixed_unit_range():
    ref = np.zeros((10, 10, 10))
    assert psnr(ref, ref + 0.1) == pytest.approx(20.0)  # MSE 0.01, range 1
    assert psnr(ref + 0.5, ref + 0.6) == pytest.approx(20.0)  # independent of the level


def test_ssim_settings():
    rng = np.random.default_rng(0)
    ref = rng.random((12, 12, 12))
    assert ssim(ref, ref) == pytest.approx(1.0)
    noisy = ref + rng.normal(0, 0.05, ref.shape)
    expected = structural_similarity(ref, noisy, data_range=1.0, win_size=7)
    assert ssim(ref, noisy) == pytest.approx(expected) and ssim(ref, noisy) < 0.99


def test_patch_protocol_geometry():
    assert [hr_size(s) for s in (2, 3, 4, 2.4)] == [20, 30, 40, 24]
    mask = np.zeros((60, 70, 64), bool)
    mask[10:50, 15:60, 12:55] = True
    origins = patch_origins(mask, 50, np.random.default_rng(1))
    for o in origins:
        box = mask[o[0] : o[0] + 40, o[1] : o[1] + 40, o[2] : o[2] + 40]
        assert box.shape == (40, 40, 40) and box.mean() >= 0.5 and box[20, 20, 20]
    np.testing.assert_array_equal(origins, patch_origins(mask, 50, np.random.default_rng(1)))
    with pytest.raises(ValueError, match="no patch inside the brain"):
        patch_origins(np.pad(np.ones((3, 3, 3), bool), 30), 1, np.random.default_rng(0))
    patch = np.random.default_rng(2).random((40, 40, 40))
    hr = central_crop(patch, 24)
    np.testing.assert_array_equal(hr, patch[8:32, 8:32, 8:32])
    assert degrade(hr).shape == (10, 10, 10)


@pytest.mark.parametrize("n", [20, 24, 30])
def test_kspace_degradation_samples_band_limited_signals_at_lr_voxel_centres(n):
    def field(x, y, z):  # frequencies below the LR Nyquist limit, over the patch's field of view
        return 1 + 0.3 * np.cos(2 * np.pi * 2 * (x + 0.5) / n) * np.sin(2 * np.pi * 3 * (z + 0.5) / n + 1)

    hr = field(*np.meshgrid(*[np.arange(n)] * 3, indexing="ij")).astype(np.float32)
    centres = (np.arange(10) + 0.5) * n / 10 - 0.5  # LR voxel centres in HR voxel units
    expected = field(*np.meshgrid(centres, centres, centres, indexing="ij"))
    lr = degrade(hr, 10, "kspace")
    assert lr.dtype == np.float32
    np.testing.assert_allclose(lr, expected, atol=1e-5)
    # A sharp edge rings (Gibbs) after truncation, unlike the smooth tricubic degradation.
    edge = np.zeros((n, n, n), np.float32)
    edge[: n // 2 + 1] = 1.0
    assert degrade(edge, 10, "kspace").min() < -0.05 < degrade(edge, 10).min()
    with pytest.raises(ValueError, match="degradation must be one of"):
        degrade(hr, 10, "gaussian")


def test_protocol_is_deterministic_and_ranks_methods(small_cohort):
    tricubic = evaluate.resolve_method("tricubic")
    nearest = evaluate.Method(lambda lr, t1, shape: resample(lr, shape, order=0))
    scales = (2.0, 3.0, 4.0, 2.4)
    methods = {"tricubic": tricubic, "nearest": nearest}
    first = evaluate.paper_protocol(small_cohort, methods, scales, patches_per_subject=4)
    again = evaluate.paper_protocol(small_cohort, {"tricubic": tricubic}, scales, patches_per_subject=4)
    for s in scales:
        assert first["tricubic"][s].psnr == again["tricubic"][s].psnr
        tri, near = first["tricubic"][s].summary(), first["nearest"][s].summary()
        assert tri["patches"] == 4  # one test subject x 4 patches
        assert tri["psnr_mean"] > near["psnr_mean"] and tri["ssim_mean"] > near["ssim_mean"]
        assert 15 < tri["psnr_mean"] < 40
    # Larger scales are harder.
    assert first["tricubic"][2.0].summary()["psnr_mean"] > first["tricubic"][4.0].summary()["psnr_mean"]


def test_evaluate_command(small_cohort, tmp_path):
    runner = CliRunner()
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        ["evaluate", "--data", str(small_cohort), "--scales", "2,2.4", "--patches", "2", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "| tricubic | phantom (test, 1 subject × 2 patches)" in result.stdout
    assert "| bicubic (paper) | HCP (published) | 25.89 / 0.9075 | 24.63 / 0.8778 |" in result.stdout
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["results"]["tricubic"]) == {"2", "2.4"}
    bad = runner.invoke(app, ["evaluate", "--data", str(tmp_path), "--scales", "2"])
    assert bad.exit_code == 2 and "no cohort.json" in bad.stderr
    with pytest.raises(InputError, match="unknown model"):
        evaluate.resolve_method("magic")


def test_evaluating_on_a_subject_that_trained_the_model_is_refused(small_cohort, tmp_path):
    """The run records the DWI digests of its training and validation subjects; evaluation
    refuses them by content, wherever the files lie (here: the train split, then a copy of the
    training subject filed as the test split of another cohort)."""
    train(replace(TINY_RUN, epochs=1), small_cohort, tmp_path / "run", cache=tmp_path / "cache")
    manifest = json.loads((small_cohort / "cohort.json").read_text())
    trained = manifest["split"]["train"][0]
    models = f"tricubic,{tmp_path / 'run'}"
    args = ["--data", small_cohort, "--models", models, "--scales", "2", "--patches", "1"]
    refused = run("evaluate", *args, "--split", "train")
    assert_user_error(refused, f"subject '{trained}' that trained or selected")
    assert run("evaluate", *args).exit_code == 0  # the held-out test subject is fine
    other = tmp_path / "other"
    shutil.copytree(small_cohort / trained, other / "copy")
    (other / "cohort.json").write_text(json.dumps({"split": {"test": ["copy"]}}))
    args[1] = other
    assert_user_error(run("evaluate", *args), "evaluating on it is refused")
