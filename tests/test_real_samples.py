"""Training the joint model on real scans, self-supervised (``"real"`` in a run's options)."""

from __future__ import annotations

from itertools import combinations

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_user_error, gradients, oblique_affine, run, write_dwi
from test_qspace import TINY_QSPACE

from csrdmri.core.errors import InputError
from csrdmri.dmri.sh import order_for, sh_matrices
from csrdmri.training.qspace_config import QSpaceConfig
from csrdmri.training.real_samples import RealScan, draw_real_sample

B0S = (1000.0, 1100.0, 900.0)


def write_scan(folder, n_dirs: int = 9):
    """A 20³ scan, all brain (its mask file says so), whose every voxel holds the b0s ``B0S``
    and, in direction ``j``, 100·(j + 1)."""
    bvals, bvecs = gradients(len(B0S), n_dirs, seed=3)
    levels = np.r_[B0S, 100.0 * np.arange(1, n_dirs + 1)].astype(np.float32)
    write_dwi(
        folder, np.broadcast_to(levels, (20, 20, 20, len(levels))).copy(), oblique_affine(), bvals, bvecs
    )
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.uint8), oblique_affine()), folder / "brain_mask.nii.gz")
    return folder


def test_a_real_sample_pairs_each_direction_with_its_own_dwi(tmp_path):
    scan = RealScan.load(write_scan(tmp_path / "scan"))
    assert (scan.n_b0, scan.bvalue, len(scan.directions)) == (3, 1000.0, 9)
    assert scan.brain.shape == (20, 20, 20) and scan.digest
    means = {float(np.mean(c)) for k in range(1, 4) for c in combinations(B0S, k)}
    sizes = set()
    for i in range(12):
        sample = draw_real_sample(scan, np.random.default_rng(i), 6, (2.0, 4.0), 64)
        # the patch fits in the scan whatever the scale drawn; no truth but the scan itself
        assert sample.target.shape[0] == 64 and sample.fa is None and sample.t1 is None
        assert sample.expected is sample.target and sample.consistent is sample.target
        np.testing.assert_allclose(sample.target, sample.target[:1].repeat(64, 0), rtol=1e-4)  # constant
        np.testing.assert_allclose(sample.cubic, sample.target, rtol=1e-3)
        # each column is the DWI 100·(j + 1) of one direction j over the mean of some b0s:
        # find which b0s, then check the columns' directions are distinct and their own
        levels = {m: sample.target[0] * m / 100 for m in means}
        found = [m for m, v in levels.items() if np.allclose(v, np.rint(v), atol=2e-3)]
        assert len(found) == 1
        js = np.rint(levels[found[0]]).astype(int) - 1
        assert len(js) >= 6 and np.all(np.diff(js) > 0) and js.max() < 9
        _, basis = sh_matrices(scan.directions[js], order_for(len(js)))
        np.testing.assert_allclose(sample.basis, basis, atol=1e-5)
        sizes.add(len(js))
    assert len(sizes) > 1  # subsets of several sizes: several SH orders


def test_a_real_scan_without_a_shell_to_fit_is_refused(tmp_path):
    with pytest.raises(InputError, match="a shell of at least 6 directions"):
        RealScan.load(write_scan(tmp_path / "scan", n_dirs=5))
    with pytest.raises(InputError, match="above 0 exactly when real scans are given"):
        QSpaceConfig(real_share=0.5)
    with pytest.raises(InputError, match="above 0 exactly when real scans are given"):
        QSpaceConfig(real=(str(tmp_path),))


def test_a_model_trained_on_a_real_scan_is_never_evaluated_on_it(tmp_path):
    from csrdmri.models.checkpoint import read_meta
    from csrdmri.training.qspace import train_qspace
    from csrdmri.training.qspace_batches import Sources, step_batch

    scan = write_scan(tmp_path / "scan")
    small = {
        "batch": 1,
        "queries": 32,
        "lr_size": 6,
        "subjects": 1,
        "voxel_size": 3.0,
        "scale_range": (2.0, 2.0),
    }
    config = QSpaceConfig(**small, steps=8, real=(str(scan),), real_share=0.5, model=TINY_QSPACE)
    sources = Sources.of(config, bar=False)
    real = [step_batch(sources, config, step)[0].fa is None for step in range(8)]
    assert any(real) and not all(real)  # both sources, each batch whole from one
    train_qspace(tmp_path / "run", config)
    meta = read_meta(tmp_path / "run" / "last.safetensors")
    assert list(meta["seen_subjects"].values()) == ["scan"]
    result = run(
        "evaluate", "--real", scan, "--models", tmp_path / "run" / "last.safetensors", "--out", tmp_path / "e"
    )
    assert_user_error(result, "'scan' that trained or selected", "evaluating on it is refused")
