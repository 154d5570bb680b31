"""The command line: `csrdmri info` facts, `csrdmri upsample` geometry and outputs, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_user_error, gradients, oblique_affine, real_scan, run, write_dwi
from dipy.io import read_bvals_bvecs
from scipy import ndimage

from csrdmri.core.grid import resampled_affine


def tricubic(path, *args):
    """``csrdmri upsample PATH --model tricubic ARGS``."""
    return run("upsample", path, "--model", "tricubic", *args)


@pytest.mark.parametrize("name", ["philips-ingenia-2mm", "philips-achieva-32dir"])
def test_info_on_real_scans_matches_nibabel(name):
    folder = real_scan(name)
    result = run("info", folder, "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    img = nib.load(folder / "dwi.nii.gz")
    bvals = np.loadtxt(folder / "dwi.bval")
    assert facts["shape"] == list(img.shape)
    np.testing.assert_allclose(facts["voxel_size_mm"], img.header.get_zooms()[:3], atol=1e-3)
    assert facts["orientation"] == "".join(nib.aff2axcodes(img.affine))
    assert facts["volumes"] == img.shape[3] == len(bvals)
    assert facts["b0_volumes"] == int((bvals <= 50).sum()) == 1
    assert facts["shells"] == {"1000": int((bvals > 50).sum())}
    assert 800 < facts["brain_volume_ml"] < 2500
    if (folder / "t1w.nii.gz").exists():
        t1 = nib.load(folder / "t1w.nii.gz")
        assert facts["t1w"]["shape"] == list(t1.shape)
        assert facts["t1w"]["orientation"] == "".join(nib.aff2axcodes(t1.affine))
        assert facts["t1w"]["covers_brain_mask"] > 0.95
    else:
        assert "t1w" not in facts
    text = run("info", folder)
    assert text.exit_code == 0 and " × ".join(map(str, img.shape)) in text.stdout


def test_upsample_geometry_values_and_sidecars(small_dwi, tmp_path):
    out = tmp_path / "out" / "sr.nii.gz"
    result = tricubic(small_dwi, "--scale", "2", "--out", out)
    assert result.exit_code == 0, result.output
    src, dst = nib.load(small_dwi), nib.load(out)
    assert dst.shape == (28, 24, 20, 7)
    np.testing.assert_allclose(dst.affine, resampled_affine(src.affine, src.shape, dst.shape), atol=1e-5)
    np.testing.assert_allclose(dst.get_qform(), dst.get_sform(), atol=1e-5)
    bvals, bvecs = read_bvals_bvecs(str(out.with_name("sr.bval")), str(out.with_name("sr.bvec")))
    np.testing.assert_allclose(bvals, gradients()[0])
    np.testing.assert_allclose(bvecs, gradients()[1], atol=1e-6)
    sidecar = json.loads(out.with_name("sr.json").read_text())
    assert sidecar["model"] == "tricubic" and sidecar["scale"] == [2.0, 2.0, 2.0]
    # Values: scipy's own cell-centred cubic zoom of every volume, clipped at 0, in input units.
    reference = ndimage.zoom(src.get_fdata(), (2, 2, 2, 1), order=3, grid_mode=True, mode="nearest")
    np.testing.assert_allclose(dst.get_fdata(), np.maximum(reference, 0), rtol=1e-5, atol=1e-3)


def test_a_tissue_boundary_stays_at_the_same_world_position(tmp_path):
    """A step edge between LR voxels 6 and 7 of an oblique anisotropic scan, upsampled 2.4x."""
    data = np.full((14, 12, 10, 2), 100.0, dtype=np.float32)
    data[7:] = 900.0
    affine = oblique_affine()
    dwi = write_dwi(tmp_path, data, affine, *gradients(n_dirs=1))
    out = tmp_path / "sr.nii.gz"
    assert tricubic(dwi, "--scale", "2.4", "--out", out).exit_code == 0
    hr = nib.load(out)
    profile = hr.get_fdata()[:, 14, 12, 0]
    k = int(np.flatnonzero(profile >= 500.0)[0])
    crossing = k - 1 + (500.0 - profile[k - 1]) / (profile[k] - profile[k - 1])
    world_hr = nib.affines.apply_affine(hr.affine, [crossing, 14, 12])
    lr_point = [6.5, (14 + 0.5) * 12 / 29 - 0.5, (12 + 0.5) * 10 / 24 - 0.5]
    world_lr = nib.affines.apply_affine(affine, lr_point)
    assert np.linalg.norm(world_hr - world_lr) < 0.05  # mm; the LR voxel is 1.75 mm wide


def test_voxel_size_and_per_axis_scale(small_dwi, tmp_path):
    result = run(
        "upsample", small_dwi, "--model", "tricubic", "--voxel-size", "1.25", "--out", tmp_path / "iso.nii.gz"
    )
    assert result.exit_code == 0, result.output
    iso = nib.load(tmp_path / "iso.nii.gz")
    assert iso.shape[:3] == (20, 17, 20)  # round(14 * 1.4), round(12 * 1.4), 10 * 2
    np.testing.assert_allclose(nib.affines.voxel_sizes(iso.affine), [1.225, 1.75 * 12 / 17, 1.25], rtol=1e-5)
    assert (
        run(
            "upsample", small_dwi, "--model", "tricubic", "--scale", "2,2,1", "--out", tmp_path / "a.nii.gz"
        ).exit_code
        == 0
    )
    assert nib.load(tmp_path / "a.nii.gz").shape == (28, 24, 10, 7)


def test_existing_output_needs_force(small_dwi, tmp_path):
    out = tmp_path / "sr.nii.gz"
    out.write_text("precious")
    assert_user_error(
        tricubic(small_dwi, "--scale", "2", "--out", out),
        "already exists",
        "--force",
    )
    assert out.read_text() == "precious"
    assert tricubic(small_dwi, "--scale", "2", "--out", out, "--force").exit_code == 0
    assert nib.load(out).shape == (28, 24, 20, 7)


def test_missing_bval_from_the_command_line(small_dwi, tmp_path):
    small_dwi.with_name("dwi.bval").unlink()
    out = tmp_path / "sr.nii.gz"
    assert_user_error(tricubic(small_dwi, "--scale", "2", "--out", out), "dwi.bval", "--bval")
    assert_user_error(run("info", small_dwi), "b-value file not found")
    assert not out.exists()


def test_installed_console_script_reports_errors_without_traceback(tmp_path):
    exe = shutil.which("csrdmri", path=os.path.dirname(sys.executable))
    assert exe, "the csrdmri console script is not installed beside this Python"
    proc = subprocess.run(
        [exe, "upsample", str(tmp_path / "nope.nii.gz"), "--scale", "2", "--out", str(tmp_path / "o.nii.gz")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"csrdmri: error: input not found: {tmp_path / 'nope.nii.gz'}"
    help_text = subprocess.run([exe, "upsample", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--voxel-size" in help_text and "--scale" in help_text


def test_outputs_are_written_only_where_asked(small_dwi, tmp_path):
    out_dir = tmp_path / "results"
    assert (
        run(
            "upsample", small_dwi, "--model", "tricubic", "--scale", "2", "--out", out_dir / "x.nii.gz"
        ).exit_code
        == 0
    )
    assert sorted(p.name for p in out_dir.iterdir()) == ["x.bval", "x.bvec", "x.json", "x.nii.gz"]
    assert sorted(p.name for p in Path(small_dwi).parent.iterdir()) == ["dwi.bval", "dwi.bvec", "dwi.nii.gz"]
