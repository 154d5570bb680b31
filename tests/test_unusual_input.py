"""Legal but unusual input: accepted, with a warning where the user should know (the refused
cases are in test_bad_input.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bad_inputs import dwi_data, dwi_file, rewrite_dwi, write_scan
from conftest import gradients, oblique_affine, run


def upsampled(scan: Path, name: str, *args) -> tuple[np.ndarray, Path]:
    """``scan`` upsampled 2× by the default model (or ``args``' one), without the safeguard:
    its weight depends on the whole series, and these tests compare the model's output."""
    out = scan.parent / name / "sr.nii.gz"
    result = run("upsample", scan, "--scale", "2", "--safeguard", "off", "--out", out, *args)
    assert result.exit_code == 0, result.output
    return nib.load(out).get_fdata(dtype=np.float32), out


@pytest.fixture
def reference(tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A clean scan, and its upsampling by the default model and by tricubic."""
    scan = write_scan(tmp_path / "clean")
    return scan, upsampled(scan, "model")[0], upsampled(scan, "tricubic", "--model", "tricubic")[0]


def test_qform_unlike_sform_uses_the_sform_with_a_warning(reference, tmp_path, caplog):
    scan, expected, _ = reference
    img = nib.load(dwi_file(scan))
    img = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    img.set_qform(oblique_affine(angles=(0.0, 0.0, 0.0)), code=1)
    nib.save(img, dwi_file(scan))
    got, out = upsampled(scan, "qform")
    assert "qform and sform differ" in caplog.text
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(nib.load(out).get_qform(), nib.load(out).get_sform(), atol=1e-5)


def test_int16_data_with_scaling_reads_as_its_scaled_values(reference, tmp_path):
    scan, expected, _ = reference
    data = dwi_data(scan)  # multiples of 2 plus 10: exact as int16 × 2 + 10
    img = nib.Nifti1Image(((data - 10.0) / 2.0).astype(np.int16), oblique_affine())
    img.header.set_slope_inter(2.0, 10.0)
    nib.save(img, dwi_file(scan))
    np.testing.assert_allclose(upsampled(scan, "int16")[0], expected, rtol=1e-6, atol=1e-3)


def test_b_vectors_off_unit_length_are_normalised_with_a_warning(reference, tmp_path, caplog):
    scan, expected, _ = reference
    bvals, bvecs = gradients()
    np.savetxt(scan / "dwi.bvec", 1.5 * bvecs.T, fmt="%.6f")
    got, out = upsampled(scan, "bvec")
    assert "6 b-vectors" in caplog.text and "normalised" in caplog.text
    np.testing.assert_allclose(np.loadtxt(out.with_name("sr.bvec")).T, bvecs, atol=1e-6)
    np.testing.assert_allclose(np.loadtxt(out.with_name("sr.bval")), bvals)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-3)


def test_volumes_of_another_shell_are_upsampled_tricubically_with_a_warning(reference, tmp_path, caplog):
    scan, expected, tricubic = reference
    bvals = gradients()[0]
    bvals[6] = 2000.0
    np.savetxt(scan / "dwi.bval", bvals[None], fmt="%g")
    got, out = upsampled(scan, "shells")
    assert "1 diffusion-weighted volumes are not at b ≈ 1000" in caplog.text
    np.testing.assert_allclose(got[..., 6], tricubic[..., 6], rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(got[..., :6], expected[..., :6], rtol=1e-6, atol=1e-3)
    assert not np.allclose(expected[..., 6], tricubic[..., 6], atol=1e-2)  # the model acts on b = 1000
    assert json.loads(out.with_name("sr.json").read_text())["model_volumes"] == [1, 2, 3, 4, 5]


def test_trailing_singleton_dimensions_are_squeezed(reference, tmp_path):
    scan, expected, _ = reference
    rewrite_dwi(scan, dwi_data(scan)[..., None])  # (X, Y, Z, V, 1)
    t1 = nib.load(scan / "t1w.nii.gz")
    nib.save(
        nib.Nifti1Image(np.asarray(t1.dataobj)[..., None], t1.affine), scan / "t1w.nii.gz"
    )  # (X, Y, Z, 1)
    np.testing.assert_allclose(upsampled(scan, "squeezed")[0], expected, rtol=1e-6, atol=1e-3)
