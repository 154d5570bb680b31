"""``--precision auto``: bf16 for the joint model where the hardware computes it, fp32 otherwise;
what it changes in the output, and what the sidecar says."""

from __future__ import annotations

import json

import numpy as np
from conftest import run
from test_qspace import joint_upsampler, multishell

from csrdmri.core.grid import TargetGrid
from csrdmri.dmri.scan import PreparedScan
from csrdmri.inference import precision
from csrdmri.inference.series import new_output, upsample_series
from csrdmri.inference.upsampler import Options
from csrdmri.models import build_model, model_config


def test_auto_is_bf16_only_for_the_joint_model_on_bf16_hardware(tmp_path, monkeypatch):
    joint = joint_upsampler(tmp_path, zero=False).model
    per_volume = build_model(model_config("csr-dmri"))
    for hardware in (True, False):
        monkeypatch.setattr(precision, "bf16_faster", lambda device_type, answer=hardware: answer)
        assert precision.resolve_precision("auto", joint, "cpu") == ("bf16" if hardware else "fp32")
        assert precision.resolve_precision("auto", per_volume, "cpu") == "fp32"
        assert precision.resolve_precision("auto", None, "cpu") == "fp32"  # tricubic
        for asked in ("fp32", "bf16"):
            assert precision.resolve_precision(asked, joint, "cpu") == asked


def test_bf16_is_chosen_on_amx_and_on_amd_cpus_with_avx512_bf16():
    amd, intel = "vendor_id\t: AuthenticAMD\n", "vendor_id\t: GenuineIntel\n"
    assert precision.cpu_bf16(amd + "flags\t: fpu avx2 avx512f avx512_bf16\n")
    assert not precision.cpu_bf16(intel + "flags\t: fpu avx2 avx512f avx512_bf16\n")  # measured slower
    assert precision.cpu_bf16(intel + "flags\t: fpu avx512_bf16 amx_bf16 amx_tile\n")
    assert not precision.cpu_bf16(amd + "flags\t: fpu avx2\n")


def test_bf16_moves_the_joint_output_by_less_than_a_thousandth_of_the_range(tmp_path):
    series = multishell(tmp_path)
    up = joint_upsampler(tmp_path, zero=False)
    grid = TargetGrid.over((*series.shape, series.data.shape[3]), series.affine, scale=(2.0,) * 3)
    scan = PreparedScan.prepare(series, shell=None)
    outputs = {}
    for mode in ("fp32", "bf16"):
        outputs[mode] = new_output((*grid.shape, series.data.shape[3]))
        upsample_series(series, grid, up, outputs[mode], scan, Options(precision=mode, safeguard="off"))
    difference = np.abs(outputs["bf16"] - outputs["fp32"]).max()
    assert 0 < difference < 1e-3 * np.percentile(outputs["fp32"], 99.9)


def test_the_sidecar_records_the_precision_that_ran(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "bf16_faster", lambda device_type: True)
    series = multishell(tmp_path)
    up = joint_upsampler(tmp_path, zero=False)
    for model, expected in ((up.checkpoint, "bf16"), ("tricubic", None)):
        out = tmp_path / "out" / f"{expected}.nii.gz"
        result = run("upsample", series.paths.dwi, "--out", out, "--scale", "2", "--model", model)
        assert result.exit_code == 0, result.output
        assert json.loads(out.with_name(f"{expected}.json").read_text()).get("precision") == expected
