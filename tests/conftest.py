"""Shared fixtures: small synthetic dMRI datasets written to disk, and the shared real scans."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from csrdmri.training import TrainConfig

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def _small_phantom():
    from csrdmri.phantom import PhantomParams

    return PhantomParams(voxel_size=2.5, n_dirs=12, n_b0=2)


#: Parameters of the small test cohort.
SMALL_PHANTOM = _small_phantom()
#: A tiny INR configuration for fast tests.
TINY_INR = {"latent": 16, "g0": 8, "growth": 8, "blocks": 2, "layers": 2, "width": 16}
#: A tiny residual CSR-dMRI training run (2 epochs on a small cohort: seconds).
TINY_RUN = TrainConfig(
    model_overrides={**TINY_INR, "coord": "local", "residual": True},
    lr=1e-3,
    epochs=2,
    lr_size=8,
    val_every=1,
    val_patches=2,
    patches_per_subject=9,
)


def oblique_affine(zooms=(1.75, 1.75, 2.5), angles=(0.3, -0.2, 0.5), flip_x=True) -> np.ndarray:
    """An oblique, anisotropic, optionally left-handed voxel-to-world affine."""
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    linear = rx @ ry @ rz @ np.diag(zooms)
    if flip_x:
        linear[:, 0] *= -1
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = [12.5, -30.0, 7.25]
    return affine


def gradients(n_b0: int = 1, n_dirs: int = 6, bvalue: float = 1000.0, seed: int = 0):
    """b-values and unit b-vectors (b0 vectors are zero)."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(n_dirs, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    bvals = np.r_[np.zeros(n_b0), np.full(n_dirs, bvalue)]
    bvecs = np.vstack([np.zeros((n_b0, 3)), dirs])
    return bvals, bvecs


def write_dwi(
    folder: Path, data: np.ndarray, affine: np.ndarray, bvals=None, bvecs=None, stem: str = "dwi"
) -> Path:
    """Write ``<stem>.nii.gz`` (+ ``.bval``/``.bvec`` in FSL format when given); returns the image."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    if bvals is not None:
        np.savetxt(folder / f"{stem}.bval", np.asarray(bvals)[None], fmt="%g")
    if bvecs is not None:
        np.savetxt(folder / f"{stem}.bvec", np.asarray(bvecs).T, fmt="%.6f")
    return path


@pytest.fixture
def small_dwi(tmp_path: Path) -> Path:
    """A 14×12×10×7 DWI (1 b0 + 6 directions) with an oblique anisotropic affine and a bright box."""
    bvals, bvecs = gradients()
    data = np.full((14, 12, 10, 7), 10.0, dtype=np.float32)
    data[3:11, 3:9, 2:8, 0] = 1000.0
    data[3:11, 3:9, 2:8, 1:] = 400.0
    return write_dwi(tmp_path / "in", data, oblique_affine(), bvals, bvecs)


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory) -> Path:
    """Two phantom subjects at 2.5 mm (72×87×72), 12 directions + 2 b0s, seed 7 (~10 s)."""
    from csrdmri.phantom import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, 2, seed=7, params=SMALL_PHANTOM)
    return out


def real_scan(name: str) -> Path:
    """A shared real scan folder, or skip the test when ../shared is not beside the clone."""
    folder = REAL / name
    if not (folder / "dwi.nii.gz").exists():
        pytest.skip(f"shared real scan {name} not available")
    return folder


def run(*args):
    """Invoke the ``csrdmri`` command line in-process (arguments converted to strings)."""
    from typer.testing import CliRunner

    from csrdmri.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments: str) -> None:
    """Exit status 2, one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("csrdmri: error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
