"""Data consistency (csrdmri.core.degrade.consistent, csrdmri.inference.consistency): the output,
degraded by the assumed operator, equals the input; a projection that never moves away from a
truth the operator maps onto the input."""

from __future__ import annotations

import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_user_error, gradients, run, write_dwi
from test_qspace import joint_upsampler, multishell

from csrdmri.core.degrade import consistent, downsample
from csrdmri.core.errors import InputError
from csrdmri.core.grid import TargetGrid
from csrdmri.dmri.scan import PreparedScan
from csrdmri.inference.consistency import CONSISTENCY
from csrdmri.inference.plan import OutputPlan
from csrdmri.inference.series import new_output, upsample_series
from csrdmri.inference.upsampler import Options, Upsampler


@pytest.mark.parametrize("method", ["tricubic", "kspace"])
@pytest.mark.parametrize(("hr_shape", "lr_shape"), [((24, 20, 16), (12, 10, 8)), ((29, 31, 17), (12, 13, 7))])
def test_the_consistent_volume_degrades_to_the_input_and_is_nearer_the_truth(method, hr_shape, lr_shape):
    rng = np.random.default_rng(sum(hr_shape))
    truth = rng.normal(size=hr_shape)
    lr = downsample(truth, lr_shape, method)
    estimate = truth + rng.normal(scale=0.5, size=hr_shape)  # any estimate of the truth
    fixed = consistent(estimate, lr, method)
    np.testing.assert_allclose(downsample(fixed, lr_shape, method), lr, atol=1e-10)
    assert np.linalg.norm(fixed - truth) < np.linalg.norm(estimate - truth)
    np.testing.assert_allclose(consistent(fixed, lr, method), fixed, atol=1e-10)  # a projection
    # Least change: what it adds is orthogonal to the operator's null space (a projection of z onto
    # that null space is ``consistent(z, 0)``).
    null = consistent(rng.normal(size=hr_shape), np.zeros(lr_shape), method)
    assert abs(np.vdot(fixed - estimate, null)) < 1e-8 * np.linalg.norm(fixed - estimate) * np.linalg.norm(
        null
    )


@pytest.mark.parametrize(
    ("consistency", "input_noise"),
    [("kspace", "auto"), ("image", "kept"), ("image", "tensor"), ("image", "checked")],
)
def test_upsampled_series_are_consistent_with_the_input(tmp_path, consistency, input_noise):
    series = multishell(tmp_path, shells=((1000.0, 8), (2000.0, 15)))
    series = replace(series, data=series.data + 1000)  # the clip at 0 never acts
    grid = TargetGrid.over((*series.shape, 1), series.affine, scale=(2.0, 2.0, 1.5))
    operator = CONSISTENCY[consistency]
    for up in (Upsampler.load("tricubic"), joint_upsampler(tmp_path, zero=False)):
        for plan in (OutputPlan.build(series.gtab), OutputPlan.build(series.gtab, np.eye(3))):
            out = new_output((*grid.shape, len(plan.weights)))
            scan = PreparedScan.prepare(series, shell=None) if up.model is not None else None
            upsample_series(
                series, grid, up, out, scan, Options(consistency=consistency, input_noise=input_noise), plan
            )
            for j in range(out.shape[3]):
                expected = plan.volume(series.data, j)  # a new direction: the shell's SH fit there
                degraded = downsample(out[..., j], series.shape, operator)
                np.testing.assert_allclose(degraded, expected, rtol=1e-4, atol=1e-4 * expected.max())


def test_consistency_is_a_choice_of_the_command_line(small_dwi, tmp_path):
    image = nib.load(small_dwi)
    given = image.get_fdata() + 1000  # the clip at 0 never acts
    dwi = write_dwi(tmp_path / "positive", given.astype(np.float32), image.affine, *gradients())
    out = tmp_path / "sr.nii.gz"
    result = run(
        "upsample", dwi, "--scale", "2", "--model", "tricubic", "--consistency", "kspace", "--out", out
    )
    assert result.exit_code == 0, result.output
    sidecar = json.loads(out.with_name("sr.json").read_text())
    assert (sidecar["consistency"], sidecar["input_noise"]) == ("kspace", "checked")  # rule 11's default
    weights = sidecar["input_noise_weights"]  # one per input volume, 1 for the b0
    assert len(weights) == 7 and all(0 <= w <= 1 for w in weights) and weights[0] == 1
    data = nib.load(out).get_fdata()
    degraded = np.stack([downsample(data[..., v], given.shape[:3], "kspace") for v in range(7)], -1)
    np.testing.assert_allclose(degraded, given, rtol=1e-5)
    bad = run("upsample", small_dwi, "--scale", "2", "--consistency", "magic", "--out", tmp_path / "x.nii.gz")
    assert_user_error(bad, "consistency must be one of off, kspace, image")
    with pytest.raises(InputError, match="needs the output outside the mask"):
        Options(consistency="image", outside="zero")
