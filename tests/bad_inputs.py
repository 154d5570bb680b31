"""The scan folder and case registry of test_bad_input.py and test_unusual_input.py: a small,
valid scan that each case breaks in one way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from conftest import gradients, oblique_affine, write_dwi

SHAPE = (16, 14, 12)


def write_scan(folder: Path, data: np.ndarray | None = None, bvals=None, bvecs=None) -> Path:
    """A scan folder: dwi.nii.gz (1 b0 + 6 directions, a bright box of "brain" in a dim field),
    dwi.bval, dwi.bvec and a T1w on the same grid."""
    if data is None:
        data = np.full((*SHAPE, 7), 20.0, dtype=np.float32)
        data[3:13, 3:11, 2:10, 0] = 1000.0
        data[3:13, 3:11, 2:10, 1:] = 400.0 + 40.0 * np.arange(6)
    if bvals is None:
        bvals, bvecs = gradients()
    write_dwi(folder, data, oblique_affine(), bvals, bvecs)
    t1 = np.zeros(SHAPE, dtype=np.float32)
    t1[3:13, 3:11, 2:10] = np.linspace(200.0, 800.0, 10)[:, None, None]
    nib.save(nib.Nifti1Image(t1, oblique_affine()), folder / "t1w.nii.gz")
    return folder


def upsample(*args) -> list:
    """``csrdmri upsample`` arguments; the output is always out/sr.nii.gz under the test folder."""
    return ["upsample", *args, "--out", "out/sr.nii.gz"]


def tricubic_2x(path) -> list:
    """``csrdmri upsample PATH --scale 2 --model tricubic`` (for cases where no model is needed)."""
    return upsample(path, "--scale", "2", "--model", "tricubic")


CASES: dict[str, Callable[[Path], tuple[list, tuple[str, ...]]]] = {}


def case(function: Callable[[Path], tuple[list, tuple[str, ...]]]):
    """Register a case: ``function(scan_folder)`` breaks something and returns the command's
    arguments and the fragments its error line must contain."""
    CASES[function.__name__] = function
    return function


def dwi_file(scan: Path) -> Path:
    return scan / "dwi.nii.gz"


def rewrite_dwi(scan: Path, data: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(data, oblique_affine()), dwi_file(scan))


def dwi_data(scan: Path) -> np.ndarray:
    return np.asarray(nib.load(dwi_file(scan)).dataobj, dtype=np.float32)


def set_voxels(scan: Path, index: tuple, value: float) -> None:
    data = dwi_data(scan)
    data[index] = value
    rewrite_dwi(scan, data)
