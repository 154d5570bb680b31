"""The warning for a series left uncorrected for subject motion."""

from __future__ import annotations

import logging

import numpy as np
from conftest import gradients, oblique_affine, write_dwi
from scipy import ndimage
from typer.testing import CliRunner

from csrdmri.cli import app
from csrdmri.dmri.motion import warn_if_moved
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import load_dwi


def series_with_moved_volumes(folder, moved: dict[int, tuple[int, int, int]]):
    """1 b0 + 8 b=1000 volumes of one smooth head-like texture, ``moved`` volumes rolled by whole voxels."""
    rng = np.random.default_rng(0)
    head = ndimage.gaussian_filter(rng.normal(size=(40, 36, 28)), 2) * 400 + 1000
    head *= ndimage.gaussian_filter(np.abs(np.indices(head.shape) - 14).max(0) < 11, 1.5)
    bvals, bvecs = gradients(1, 8)
    volumes = [
        np.roll(head * (1.0 if b == 0 else 0.4), moved.get(v, (0, 0, 0)), axis=(0, 1, 2))
        for v, b in enumerate(bvals)
    ]
    write_dwi(folder, np.stack(volumes, -1).astype(np.float32), oblique_affine(), bvals, bvecs)
    return load_dwi(find_dataset(folder))


def test_moved_volumes_are_named_and_still_ones_pass(tmp_path, caplog):
    weighted = np.arange(1, 9)
    with caplog.at_level(logging.WARNING, logger="csrdmri.dmri.motion"):
        still = warn_if_moved(series_with_moved_volumes(tmp_path / "still", {}), weighted)
    assert still.max() < 0.1 and not caplog.records
    series = series_with_moved_volumes(tmp_path / "moved", {3: (2, 0, 0), 7: (0, 0, -2)})
    with caplog.at_level(logging.WARNING, logger="csrdmri.dmri.motion"):
        moved = warn_if_moved(series, weighted)
    # 2 voxels along x (1.75 mm) and along z (2.5 mm), measured from the mean of all 8 volumes.
    assert moved[2] > 1.75 * 1.5 and moved[6] > 2.5 * 1.5
    assert np.delete(moved, [2, 6]).max() < 1.75
    (record,) = caplog.records
    assert "from the others: 3, 7 (2 of 8)" in record.getMessage()
    assert "uncorrected for subject motion" in record.getMessage()


def test_upsample_warns_the_user_and_still_writes_the_output(tmp_path, caplog):
    series_with_moved_volumes(tmp_path / "scan", {3: (2, 0, 0)})
    out = tmp_path / "sr.nii.gz"
    with caplog.at_level(logging.WARNING, logger="csrdmri.dmri.motion"):
        result = CliRunner().invoke(
            app,
            ["upsample", str(tmp_path / "scan"), "--scale", "1.5", "--model", "arssr-cpu", "--out", str(out)],
        )
    assert result.exit_code == 0 and out.exists()
    (record,) = [r for r in caplog.records if r.name == "csrdmri.dmri.motion"]  # (the safeguard's too)
    assert ": 3 (1 of 8)" in record.getMessage() and "correct it first" in record.getMessage()
