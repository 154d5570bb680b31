"""Golden outputs: the shipped weights on a small fixed input give the stored output.

A guard against numeric drift: any change to preprocessing, tiling, models or writing that moves
an output voxel by more than 1e-5 (relative to the input's intensity range) fails here.
The stored input (an oblique 12×12×8 series, 1 b0 + 3 b = 1000 volumes, a T1w at half its voxel
size) and outputs live in ``tests/data/golden.npz``; regenerate them only on purpose, after a
change that is meant to alter outputs:
``CSRDMRI_WRITE_GOLDEN=1 python -m pytest tests/test_golden.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import oblique_affine, run, write_dwi

GOLDEN = Path(__file__).parent / "data" / "golden.npz"
#: The shipped models (their b0 volumes and the voxels outside the brain are tricubic's).
MODELS = ("csr-dmri-cpu", "arssr-cpu")
TOLERANCE = 1e-5


def golden_input() -> dict[str, np.ndarray]:
    """A smooth ellipsoidal 'brain' with a brighter core, anisotropic diffusion-like contrast
    between directions, and a T1w of the same anatomy (used only when regenerating)."""
    rng = np.random.default_rng(20261202)
    shape = (12, 12, 8)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), -1)
    radius = np.sqrt(((grid / [0.8, 0.75, 0.8]) ** 2).sum(-1))
    brain = np.clip(1.5 - 1.5 * radius, 0, 1)
    texture = np.cos(3 * grid[..., 0] + 2 * grid[..., 1]) * np.sin(4 * grid[..., 2] + 1)
    b0 = 900 * brain * (1 + 0.3 * texture) + 5
    dirs = np.array([[1, 0, 0], [0, 0.6, 0.8], [0.48, 0.6, -0.64]])
    dwis = [b0 * np.exp(-0.8 - 0.6 * brain * (d @ [0.8, 0.5, 0.33]) ** 2 * (1 + texture)) for d in dirs]
    dwi = np.stack([b0, *dwis], -1) + rng.normal(0, 4, (*shape, 4))
    t1_affine = oblique_affine(zooms=(0.875, 0.875, 1.25))
    t1_affine[:3, 3] = oblique_affine()[:3, 3] - t1_affine[:3, :3] @ [0.25, 0.25, 0.25]
    up = np.stack(np.meshgrid(*[np.linspace(-1, 1, 2 * n) for n in shape], indexing="ij"), -1)
    t1_brain = np.clip(1.5 - 1.5 * np.sqrt(((up / [0.8, 0.75, 0.8]) ** 2).sum(-1)), 0, 1)
    t1 = 400 * t1_brain * (1.5 - np.cos(3 * up[..., 0] + 2 * up[..., 1])) + rng.normal(0, 3, up.shape[:3])
    return {
        "dwi": np.abs(dwi).astype(np.float32),
        "affine": oblique_affine(),
        "bvals": np.r_[0.0, 1000.0, 1000.0, 1000.0],
        "bvecs": np.vstack([np.zeros(3), dirs]),
        "t1": np.abs(t1).astype(np.float32),
        "t1_affine": t1_affine,
    }


def upsample_all(stored: dict[str, np.ndarray], folder: Path) -> dict[str, np.ndarray]:
    """Each method's ``csrdmri upsample --scale 2`` output for the stored input."""
    dwi = write_dwi(folder / "in", stored["dwi"], stored["affine"], stored["bvals"], stored["bvecs"])
    t1 = folder / "in" / "t1w.nii.gz"
    nib.save(nib.Nifti1Image(stored["t1"], stored["t1_affine"]), t1)
    outputs = {}
    for method in ("tricubic", *MODELS):
        out = folder / f"{method}.nii.gz"
        # The models' own outputs (the safeguard cannot check an input this small: see below).
        args = ["--scale", 2, "--model", method, "--t1", t1, "--safeguard", "off", "--out", out]
        result = run("upsample", dwi, *args)
        assert result.exit_code == 0, result.output
        outputs[method] = np.asarray(nib.load(out).dataobj, dtype=np.float32)
    return outputs


def test_shipped_models_reproduce_the_stored_outputs(tmp_path):
    if os.environ.get("CSRDMRI_WRITE_GOLDEN"):
        stored = golden_input()
        outputs = upsample_all(stored, tmp_path)
        GOLDEN.parent.mkdir(exist_ok=True)
        np.savez_compressed(GOLDEN, **stored, **{f"out_{m}": outputs[m] for m in MODELS})
        pytest.skip(f"wrote {GOLDEN}")
    with np.load(GOLDEN) as archive:
        stored = dict(archive)
    outputs = upsample_all(stored, tmp_path)
    scale = float(stored["dwi"].max())
    for method in MODELS:
        output, expected = outputs[method], stored[f"out_{method}"]
        assert output.shape == expected.shape == (24, 24, 16, 4)
        error = np.abs(output - expected).max() / scale
        assert error <= TOLERANCE, f"{method}: max |Δ| = {error:.2e} of the input's range"
    # The models must correct something, or the test would only check tricubic.
    for method in MODELS:
        assert np.abs(outputs[method] - outputs["tricubic"]).max() / scale > 1e-3


def test_an_input_too_small_to_check_keeps_cubic_with_a_warning(tmp_path):
    """The safeguard degrades the input once more; 12×12×8 voxels halved leave too little
    brain to normalise, so the check cannot be made and the correction is left out."""
    with np.load(GOLDEN) as archive:
        stored = dict(archive)
    dwi = write_dwi(tmp_path / "in", stored["dwi"], stored["affine"], stored["bvals"], stored["bvecs"])
    t1 = tmp_path / "in" / "t1w.nii.gz"
    nib.save(nib.Nifti1Image(stored["t1"], stored["t1_affine"]), t1)
    outputs = {}
    for method in ("tricubic", "csr-dmri-cpu"):
        out = tmp_path / f"{method}.nii.gz"
        result = run("upsample", dwi, "--scale", 2, "--model", method, "--t1", t1, "--out", out)
        assert result.exit_code == 0, result.output
        outputs[method] = np.asarray(nib.load(out).dataobj, dtype=np.float32)
    assert "safeguard: the model could not be checked on this input" in result.stderr
    np.testing.assert_array_equal(outputs["csr-dmri-cpu"], outputs["tricubic"])
