"""Downstream DTI errors: zero for the same signal, the right angle for a rotated fibre."""

from __future__ import annotations

import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.sims.voxel import single_tensor

from csrdmri.dmri.dti import MD_MAX, dti_errors, tensor_maps

EVALS = np.array([1.7e-3, 0.3e-3, 0.3e-3])  # mm²/s: FA ≈ 0.80, MD ≈ 7.7e-4


def rotation_z(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def series(gtab, evals=EVALS, degrees: float = 0.0, s0: float = 100.0) -> np.ndarray:
    """A 4×4×3 block of one tensor whose principal axis is x rotated by ``degrees`` about z."""
    signal = single_tensor(gtab, S0=s0, evals=evals, evecs=rotation_z(degrees))
    return np.broadcast_to(signal, (4, 4, 3, len(signal))).copy()


@pytest.fixture(scope="module")
def gtab():
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(30, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return gradient_table(np.r_[0, 0, np.full(30, 1000.0)], bvecs=np.vstack([np.zeros((2, 3)), dirs]))


def test_same_signal_in_other_units_has_no_error(gtab):
    mask = np.ones((4, 4, 3), bool)
    reference = tensor_maps(series(gtab), gtab, mask)
    assert reference.fa[mask] == pytest.approx(0.8, abs=0.01)
    errors = dti_errors(reference, tensor_maps(series(gtab, s0=7000.0), gtab, mask))
    assert errors["wm_voxels"] == 48
    assert errors["fa_mae_wm"] < 1e-6 and errors["md_mae_brain"] < 1e-9 and errors["angle_mean_wm"] < 1e-3


def test_rotated_and_swollen_tensors(gtab):
    mask = np.ones((4, 4, 3), bool)
    reference = tensor_maps(series(gtab), gtab, mask)
    rotated = dti_errors(reference, tensor_maps(series(gtab, degrees=10.0), gtab, mask))
    assert rotated["angle_median_wm"] == pytest.approx(10.0, abs=0.01)
    assert rotated["fa_mae_wm"] < 1e-6  # a rotation keeps the eigenvalues
    swollen = dti_errors(reference, tensor_maps(series(gtab, evals=1.1 * EVALS), gtab, mask))
    assert swollen["md_mae_brain"] == pytest.approx(0.1 * EVALS.mean(), rel=1e-3)
    assert swollen["fa_mae_brain"] < 1e-6  # FA is scale-free
    assert swollen["angle_median_wm"] < 1e-3


def test_white_matter_comes_from_the_reference(gtab):
    mask = np.ones((4, 4, 3), bool)
    isotropic = tensor_maps(series(gtab, evals=np.full(3, 0.8e-3)), gtab, mask)
    with pytest.raises(ValueError, match="no white matter"):
        dti_errors(isotropic, tensor_maps(series(gtab), gtab, mask))


def test_a_diverging_fit_counts_as_free_water_at_most(gtab):
    """A voxel whose DWIs are all 0 (a real scan's dropout) fits to an absurd MD; it is clipped
    to MD_MAX so that it cannot dominate the mean error."""
    mask = np.ones((4, 4, 3), bool)
    data = series(gtab)
    data[0, 0, 0, 2:] = 0.0
    maps = tensor_maps(data, gtab, mask)
    assert maps.md[0, 0, 0] == MD_MAX
    assert maps.md[1, 1, 1] == pytest.approx(EVALS.mean(), rel=1e-3)
