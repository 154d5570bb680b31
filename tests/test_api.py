"""The Python API (``csrdmri.upsample``, ``csrdmri.load_model``): what the CLI writes, in memory."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from dipy.io import read_bvals_bvecs
from test_qspace import joint_upsampler, multishell

import csrdmri
from csrdmri.core.errors import InputError
from csrdmri.inference.upsampler import Options
from csrdmri.workflows.upsample import upsample_dataset


def read_back(path):
    img = nib.load(path)
    bvals, bvecs = read_bvals_bvecs(
        str(path).replace(".nii.gz", ".bval"), str(path).replace(".nii.gz", ".bvec")
    )
    return img, bvals, bvecs


@pytest.mark.parametrize("model", ["tricubic", "joint"])
def test_the_api_returns_what_the_cli_writes(tmp_path, model):
    series = multishell(tmp_path, shells=((1000.0, 10),))
    options = Options(safeguard="off")
    name = "tricubic" if model == "tricubic" else str(joint_upsampler(tmp_path, zero=False).checkpoint)
    written = upsample_dataset(
        series.paths.dwi, tmp_path / "cli.nii.gz", scale=(2.0,) * 3, model=name, options=options
    )
    cli, cli_bvals, cli_bvecs = read_back(written.out)
    dwi = nib.load(series.paths.dwi)
    bvals, bvecs = read_bvals_bvecs(str(series.paths.bval), str(series.paths.bvec))
    out, out_bvals, out_bvecs = csrdmri.upsample(dwi, bvals, bvecs, scale=2, model=name, options=options)
    np.testing.assert_allclose(out.get_fdata(dtype=np.float32), cli.get_fdata(dtype=np.float32), atol=1e-5)
    np.testing.assert_allclose(out.affine, cli.affine, atol=1e-6)
    assert out.header.get_zooms() == pytest.approx(cli.header.get_zooms())
    np.testing.assert_allclose(out_bvals, cli_bvals)
    np.testing.assert_allclose(out_bvecs, cli_bvecs, atol=1e-6)
    again, _, _ = csrdmri.upsample(
        dwi, bvals, bvecs.T, scale=2, model=csrdmri.load_model(name), options=options
    )
    np.testing.assert_array_equal(again.get_fdata(), out.get_fdata())  # FSL's 3 rows; a loaded model


def test_an_in_memory_t1w_is_the_t1w_file(tmp_path):
    series = multishell(tmp_path, shells=((1000.0, 10),))
    t1 = nib.Nifti1Image(
        np.random.default_rng(0).random((24, 22, 18)).astype(np.float32) + 0.5, series.affine
    )
    path = tmp_path / "t1w.nii.gz"
    t1.to_filename(path)
    dwi = nib.load(series.paths.dwi)
    bvals, bvecs = series.gtab.bvals, series.gtab.bvecs
    model = csrdmri.load_model(str(joint_upsampler(tmp_path, zero=False).checkpoint))
    options = Options(safeguard="on")
    outputs = [
        csrdmri.upsample(dwi, bvals, bvecs, t1=source, voxel_size=1.0, model=model, options=options)[0]
        for source in (nib.Nifti1Image(t1.get_fdata(dtype=np.float32), t1.affine), path)
    ]
    np.testing.assert_array_equal(outputs[0].get_fdata(), outputs[1].get_fdata())


def test_the_default_without_a_t1w_is_the_joint_model(tmp_path, caplog):
    series = multishell(tmp_path, shells=((1000.0, 10),))
    dwi, bvals, bvecs = nib.load(series.paths.dwi), series.gtab.bvals, series.gtab.bvecs
    default = csrdmri.upsample(dwi, bvals, bvecs, scale=2)[0]
    assert "csr-dmri-cpu needs a T1w" in caplog.text and "csr-qspace-cpu runs instead" in caplog.text
    joint = csrdmri.upsample(dwi, bvals, bvecs, scale=2, model="csr-qspace-cpu")[0]
    np.testing.assert_array_equal(default.get_fdata(), joint.get_fdata())


def test_bad_api_input_is_one_sentence(tmp_path):
    series = multishell(tmp_path, shells=((1000.0, 10),))
    dwi = nib.load(series.paths.dwi)
    bvals, bvecs = series.gtab.bvals, series.gtab.bvecs
    with pytest.raises(InputError, match="bvals lists 11 b-values but the DWI has 12 volumes"):
        csrdmri.upsample(dwi, bvals[:-1], bvecs[:-1], scale=2, model="tricubic")
    with pytest.raises(InputError, match="exactly one of a scale or a voxel size"):
        csrdmri.upsample(dwi, bvals, bvecs, model="tricubic")
    with pytest.raises(InputError, match="3 numbers for each"):
        csrdmri.upsample(dwi, bvals, bvecs[:, :2], scale=2, model="tricubic")
    with pytest.raises(AttributeError):
        csrdmri.no_such_function  # noqa: B018
