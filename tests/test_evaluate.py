"""Metrics, the patch protocol and `csrdmri evaluate` on a small phantom cohort."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_RUN, assert_user_error, run
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from csrdmri.core.errors import InputError
from csrdmri.core.metrics import psnr, ssim
from csrdmri.core.patches import central_crop, degrade, hr_size, patch_origins
from csrdmri.core.resample import resample
from csrdmri.evaluation import patch_protocol as evaluate
from csrdmri.inference.tiling import as_input
from csrdmri.io.layout import find_dataset
from csrdmri.models import build_model
from csrdmri.models.checkpoint import save_checkpoint
from csrdmri.training import train


def test_psnr_uses_the_fixed_unit_range():
    ref = np.zeros((10, 10, 10))
    assert psnr(ref, ref + 0.1) == pytest.approx(20.0)  # MSE 0.01, range 1
    assert psnr(ref + 0.5, ref + 0.6) == pytest.approx(20.0)  # independent of the level
    est = ref + 0.1
    est[:5] += 10.0  # wrong outside the mask only
    mask = np.zeros(ref.shape, bool)
    mask[5:] = True
    assert psnr(ref, est, mask) == pytest.approx(20.0)
    assert psnr(ref, est, mask) == pytest.approx(peak_signal_noise_ratio(ref[mask], est[mask], data_range=1))


def test_ssim_settings():
    rng = np.random.default_rng(0)
    ref = rng.random((12, 12, 12))
    assert ssim(ref, ref) == pytest.approx(1.0)
    noisy = ref + rng.normal(0, 0.05, ref.shape)
    expected = structural_similarity(ref, noisy, data_range=1.0, win_size=7)
    assert ssim(ref, noisy) == pytest.approx(expected) and ssim(ref, noisy) < 0.99
    assert ssim(ref, noisy, np.ones(ref.shape, bool)) == pytest.approx(expected, abs=1e-12)


def test_masked_ssim_ignores_what_lies_outside_the_mask():
    rng = np.random.default_rng(1)
    ref = rng.random((20, 20, 20))
    est = ref.copy()
    est[:8] = rng.random((8, 20, 20))  # corrupted where x < 8
    mask = np.zeros(ref.shape, bool)
    mask[14:] = True  # every window centred here lies 3+ voxels away from the corruption
    assert ssim(ref, est, mask) == pytest.approx(1.0)
    assert ssim(ref, est) < 0.9
    with pytest.raises(ValueError, match="no voxel"):
        ssim(ref, est, np.pad(np.ones((20, 20, 2), bool), ((0, 0), (0, 0), (0, 18))))


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


def test_protocol_is_deterministic_and_ranks_methods(small_cohort):
    tricubic = evaluate.resolve_method("tricubic")

    class Nearest(evaluate.Method):
        def patch(self, lr, t1, shape):
            return resample(lr, shape, order=0)

    nearest = Nearest()
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


def scan_copy(subject: Path, folder: Path, with_t1: bool) -> Path:
    """A plain FSL-style copy of a cohort subject (dwi.nii.gz, .bval, .bvec, brain_mask.nii.gz
    [+ t1w.nii.gz])."""
    paths = find_dataset(subject)
    folder.mkdir(parents=True)
    shutil.copy(paths.dwi, folder / "dwi.nii.gz")
    shutil.copy(paths.bval, folder / "dwi.bval")
    shutil.copy(paths.bvec, folder / "dwi.bvec")
    shutil.copy(paths.mask, folder / "brain_mask.nii.gz")
    if with_t1:
        shutil.copy(paths.t1, folder / "t1w.nii.gz")
    return folder


def test_evaluate_command_writes_the_whole_report(small_cohort, tmp_path):
    """Paper protocol, whole test volume and two 'real' scans (copies of the held-out subject,
    one without T1w) with tricubic and a tiny trained CSR-dMRI: tables, figures and JSON."""
    train(replace(TINY_RUN, epochs=1), small_cohort, tmp_path / "run", cache=tmp_path / "cache")
    test_subject = small_cohort / json.loads((small_cohort / "cohort.json").read_text())["split"]["test"][0]
    scan_copy(test_subject, tmp_path / "scans" / "with-t1", True)
    scan_copy(test_subject, tmp_path / "scans" / "no-t1", False)
    out = tmp_path / "report"
    args = ["--data", small_cohort, "--models", f"tricubic,tiny={tmp_path / 'run'}", "--scales", "2,2.4"]
    args += ["--patches", "2", "--directions", "6", "--real", tmp_path / "scans", "--real-scales", "2"]
    result = run("evaluate", *args, "--out", out)
    assert result.exit_code == 0, result.output
    assert "| tricubic | phantom (test, 1 subject × 2 patches)" in result.stdout
    assert "| Bicubic (paper) | HCP (published) | 25.89 / 0.9075 | 24.63 / 0.8778 |" in result.stdout
    assert "| with-t1 | 2× | 36×44×36 → 72×87×72 | tiny |" in result.stdout  # real-scan table
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["paper_protocol"]["tricubic"]) == {"2", "2.4"}
    assert saved["paper_protocol"]["tiny"]["2"]["patches"] == 2
    (whole,) = saved["whole_volume"]
    assert whole["scale"] == 2 and whole["methods"]["tiny"]["volumes"] == 6
    real = {case["data"]: case for case in saved["real_scans"]}
    assert set(real) == {"with-t1", "no-t1"}
    assert set(real["with-t1"]["methods"]) == {"tricubic", "tiny"}
    assert set(real["no-t1"]["methods"]) == {"tricubic"} and "tiny" in real["no-t1"]["skipped"]
    # A copy of the subject in another layout, degraded the same way, scores the same.
    assert real["no-t1"]["methods"]["tricubic"]["psnr"] == whole["methods"]["tricubic"]["psnr"]
    report = (out / "report.md").read_text()
    for heading in ("## Table 1", "## Table 2", "## Whole volumes", "## Real scans (degradation-based)"):
        assert heading in report
    assert "| no-t1 | 2× | 36×44×36 → 72×87×72 | tiny | not run: needs a T1w" in report
    names = ["patch-2x", "patch-2.4x", f"volume-{test_subject.name}-2x", "real-no-t1-2x-fa"]
    for name in names:
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
        assert f"figures/{name}.png" in report


def evaluate_real_scan(small_cohort, tmp_path, *options):
    """``csrdmri evaluate`` of a copy of a phantom subject as a real scan at 2× with ``options``:
    the command's result, its report and its results.json protocol."""
    scan = scan_copy(small_cohort / "phantom001", tmp_path / "scan", False)
    out = tmp_path / "report"
    result = run(
        "evaluate", "--real", scan, "--directions", "6", "--real-scales", "2", *options, "--out", out
    )
    assert result.exit_code == 0, result.output
    return result, (out / "report.md").read_text(), json.loads((out / "results.json").read_text())


def test_evaluate_real_scans_only(small_cohort, tmp_path):
    options = ("--degradation", "kspace", "--consistency", "kspace", "--precision", "fp32")
    result, report, record = evaluate_real_scan(small_cohort, tmp_path, *options)
    protocol = record["protocol"]
    assert "## Real scans (degradation-based)" in report and "Table 1" not in report
    assert "(`--degradation kspace`): the central block of k-space" in report
    assert "consistency of the outputs with them (`--consistency`): kspace" in report
    recorded = (protocol["degradation"], protocol["consistency"], protocol["precision"])
    assert recorded == ("kspace", "kspace", "fp32")
    assert "precision (`--precision`): fp32" in report
    assert "| scan | 2× | 36×44×36 → 72×87×72 | tricubic |" in result.stdout
    # the input noise's weights under the consistency (rule 11's checked removal), one per volume
    scores = record["real_scans"][0]["methods"]["tricubic"]
    b0s = int((np.loadtxt(tmp_path / "scan" / "dwi.bval") < 50).sum())
    assert len(scores["input_noise_weights"]) == scores["volumes"] + b0s  # b0s: 1, nothing removed
    assert all(0 <= w <= 1 for w in scores["input_noise_weights"])


def test_evaluate_a_thin_slab_of_a_real_scan(small_cohort, tmp_path):
    options = ("--slab", "8", "--degradation", "kspace-slice")
    result, report, record = evaluate_real_scan(small_cohort, tmp_path, *options)
    protocol = record["protocol"]
    assert "| scan slab 8 | 2× | 36×44×8 → 72×87×16 | tricubic |" in result.stdout  # central 16 of 72
    assert "central slab of 8 low-resolution slices" in report and "a 2D multi-slice acquisition" in report
    assert protocol["slab"] == 8
    assert protocol["precision"].startswith("auto (") and "fp32 for the others" in protocol["precision"]


def test_evaluate_command_refusals(small_cohort, tmp_path):
    bad = run("evaluate", "--data", tmp_path, "--scales", "2")
    assert_user_error(bad, "no cohort.json")
    assert_user_error(run("evaluate"), "nothing to evaluate", "--data")
    assert_user_error(run("evaluate", "--real", tmp_path / "nowhere"), "real scan folder not found")
    assert_user_error(run("evaluate", "--real", tmp_path), "neither a dMRI dataset nor a folder of")
    assert_user_error(run("evaluate", "--data", small_cohort, "--volume-scales", "1"), "must all be > 1")
    assert_user_error(run("evaluate", "--data", small_cohort, "--models", "a=tricubic,a=tricubic"), "twice")
    assert_user_error(run("evaluate", "--data", small_cohort, "--directions", "3"), "at least 6 directions")
    bad = run("evaluate", "--real", small_cohort, "--degradation", "box")
    assert_user_error(bad, "degradation must be one of")
    assert_user_error(run("evaluate", "--real", small_cohort, "--slab", "1"), "at least 2 slices")
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


def test_fixed_scale_models_serve_other_scales_as_the_paper(tmp_path):
    """DCSRN trained at 2× and at 3×, joined: 2× from the 2× model, 3×, 2.4× and 4× from the 3×
    model (its 30³ output resampled); joining other models is refused."""
    paths = {}
    for scale in (2.0, 3.0):
        torch.manual_seed(int(scale))
        config = {"architecture": "dcsrn", "scale": scale}
        paths[scale] = tmp_path / f"dcsrn-x{scale:g}.safetensors"
        meta = {"model": config, "training": {"scale_range": [scale, scale]}}
        save_checkpoint(paths[scale], build_model(config).eval(), meta)
    method = evaluate.resolve_method(f"{paths[2.0]}+{paths[3.0]}")
    assert [method.at(s).checkpoint for s in (2.0, 3.0, 2.4, 4.0)] == [paths[2.0]] + [paths[3.0]] * 3
    lr = np.random.default_rng(0).random((10, 10, 10))
    three = method.at(3.0).model
    with torch.no_grad():
        at3 = three(as_input(lr), None, (30, 30, 30))[0, 0].double().numpy()
    np.testing.assert_allclose(method.patch(lr, None, (30, 30, 30)), at3)
    np.testing.assert_allclose(method.patch(lr, None, (24, 24, 24)), resample(at3, (24, 24, 24)), atol=1e-5)
    with pytest.raises(InputError, match="can be joined"):
        evaluate.resolve_method(f"{paths[2.0]}+csr-dmri-cpu")
    with pytest.raises(InputError, match="can be joined"):
        evaluate.resolve_method(f"{paths[2.0]}+{paths[2.0]}")


def test_angular_protocol_scores_the_held_out_directions(small_cohort, tmp_path):
    """6 of the 12 directions kept; the other 6 made by tricubic (SH fit) and a joint model
    that predicts nothing (so: tricubic exactly) or something."""
    scan = scan_copy(small_cohort / "phantom001", tmp_path / "scan", False)
    tiny = {"architecture": "qspace", "latent": 4, "g0": 4, "growth": 4, "blocks": 1, "layers": 1}
    tiny |= {"width": 8, "depth": 2, "skip_at": 1}
    torch.manual_seed(0)
    model = build_model(tiny)
    save_checkpoint(tmp_path / "zero.safetensors", model, {"model": tiny})
    torch.nn.init.normal_(model.decoder.head.weight, std=0.05)
    save_checkpoint(tmp_path / "some.safetensors", model, {"model": tiny})
    models = f"tricubic,zero={tmp_path / 'zero.safetensors'},some={tmp_path / 'some.safetensors'}"
    args = ["--real", scan, "--directions", "0", "--real-scales", "2", "--angular", "6", "--models", models]
    result = run("evaluate", *args, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "report" / "results.json").read_text())
    (case,) = saved["angular"]
    assert case["data"] == "scan (6 → 12 directions)" and case["scale"] == 2
    scores = case["methods"]
    assert scores["tricubic"]["volumes"] == 6
    assert scores["zero"]["raw_psnr_mean"] == pytest.approx(scores["tricubic"]["raw_psnr_mean"], abs=1e-4)
    assert abs(scores["some"]["raw_psnr_mean"] - scores["tricubic"]["raw_psnr_mean"]) > 1e-3
    # Directions made from half of the shell are further from the truth than acquired ones.
    (acquired,) = saved["real_scans"]
    assert scores["tricubic"]["raw_psnr_mean"] < acquired["methods"]["tricubic"]["raw_psnr_mean"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Angular super-resolution (held-out directions)" in report
    refused = run("evaluate", "--real", scan, "--angular", "5")
    assert_user_error(refused, "at least 6 kept directions", "--angular")


def test_angular_output_volumes_follow_the_held_out_ones_across_shells():
    from dipy.core.gradients import gradient_table

    from csrdmri.evaluation.angular import output_volumes, split_directions
    from csrdmri.evaluation.volume_protocol import volumes_of
    from csrdmri.inference.plan import OutputPlan
    from csrdmri.io.nifti import DWISeries

    rng = np.random.default_rng(3)
    bvecs = rng.normal(size=(30, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    bvals = np.r_[0.0, np.full(14, 1000.0), 0.0, np.full(14, 2005.0)]
    order = np.r_[0, rng.permutation(np.arange(1, 30))]
    gtab = gradient_table(bvals[order], bvecs=bvecs[order])
    series = DWISeries(np.zeros((2, 2, 2, 30), np.float32), np.eye(4), gtab, None, None)
    kept, left = split_directions(series, 7)
    assert len(kept) == 2 + 14 and len(left) == 14
    plan = OutputPlan.build(volumes_of(series, kept).gtab, out_directions=gtab.bvecs[left])
    picked = output_volumes(plan, series, left)
    np.testing.assert_allclose(plan.gtab.bvals[picked[2:]], gtab.bvals[left], atol=10)
    np.testing.assert_allclose(plan.gtab.bvecs[picked[2:]], gtab.bvecs[left], atol=1e-12)
    assert plan.gtab.b0s_mask[picked[:2]].all()
