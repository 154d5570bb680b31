"""What a diffusion tensor does not explain: each shell's DWIs minus a DIPY tensor fit's prediction.

Per shell (``dmri.preprocess.shells``) with at least ``MIN_DIRECTIONS`` directions, DIPY's
``TensorModel`` (weighted least squares) is fitted to the shell's volumes and the b0s, inside a
mask, and the shell's volumes are predicted from it with the voxel's mean b0 as S0. At b ≈ 1000
a tensor explains a voxel's signal over directions to within a few per cent of it (partial
volumes and crossings to first order), so the residual is mostly the acquisition's noise; at
higher b and in crossings it also holds signal the tensor cannot express — which is why its
users (:mod:`csrdmri.inference.consistency`) remove it only where the acquisition does not see.
"""

from __future__ import annotations

import numpy as np
from dipy.core.gradients import gradient_table
from dipy.reconst.dti import TensorModel

from csrdmri.dmri.preprocess import b0_indices, shells
from csrdmri.dmri.sh import MIN_DIRECTIONS
from csrdmri.io.nifti import DWISeries

#: Slices (first axis) fitted at once: bounds the float64 prediction's memory on large series.
SLAB = 16


def tensor_residual(series: DWISeries, mask: np.ndarray) -> np.ndarray:
    """The residual of every volume of ``series`` against its shell's tensor fit.

    Parameters
    ----------
    series : DWISeries
        Data (X, Y, Z, V) in any intensity units, with at least one b0.
    mask : ndarray of bool, shape (X, Y, Z)
        Where the tensors are fitted.

    Returns
    -------
    ndarray, shape (X, Y, Z, V), float32
        Data minus prediction inside ``mask`` for the volumes of the shells with at least
        ``MIN_DIRECTIONS`` directions; 0 elsewhere, for the b0s and for smaller shells.
    """
    gtab = series.gtab
    b0 = b0_indices(gtab)
    residual = np.zeros(series.data.shape, np.float32)
    for idx in shells(gtab).values():
        if len(idx) < MIN_DIRECTIONS:
            continue
        used = np.concatenate([b0, idx])
        table = gradient_table(gtab.bvals[used], bvecs=gtab.bvecs[used], b0_threshold=gtab.b0_threshold)
        model = TensorModel(table, fit_method="WLS")
        for start in range(0, series.shape[0], SLAB):
            rows = slice(start, start + SLAB)
            inside = mask[rows]
            if not inside.any():
                continue
            data = np.maximum(np.asarray(series.data[rows][..., used], dtype=np.float64), 0.0)
            s0 = data[..., : len(b0)].mean(axis=-1)
            predicted = np.nan_to_num(model.fit(data, mask=inside).predict(table, S0=s0))[..., len(b0) :]
            shell = np.where(inside[..., None], data[..., len(b0) :] - predicted, 0.0)
            residual[rows][..., idx] = shell.astype(np.float32)
    return residual
