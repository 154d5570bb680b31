"""A differentiable FA of a shell's signal, for the tensor-domain term of the q-space loss.

The tensor is the log-linear least-squares fit of DIPY's design matrix (Basser 1994) with the
b0 known: ``-log(S_k / S0) = B_k · d`` for d = (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz), so d is a fixed
linear map (the pseudo-inverse of B) of the log-signal. FA is computed without an
eigendecomposition, ``sqrt(3/2) · |D - tr(D)/3 · I| / |D|`` (Frobenius norms), which equals the
eigenvalue formula and has a gradient everywhere but at D = 0.
"""

from __future__ import annotations

import numpy as np
import torch
from dipy.core.gradients import gradient_table
from dipy.reconst.dti import design_matrix

#: Smallest S/S0 taken into the log (noise can put a DWI at or below zero).
RATIO_FLOOR = 1e-3


def tensor_pinv(bvalue: float, directions: np.ndarray) -> np.ndarray:
    """The (6, K) map from -log(S/S0) at the K ``directions`` (unit, (K, 3)) of a shell of
    ``bvalue`` [s/mm²] to the tensor elements (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz) [mm²/s]."""
    gtab = gradient_table(np.full(len(directions), bvalue), bvecs=directions)
    return np.linalg.pinv(-design_matrix(gtab)[:, :6]).astype(np.float32)


def fractional_anisotropy(signal: torch.Tensor, s0: torch.Tensor, pinv: torch.Tensor) -> torch.Tensor:
    """FA (Q,) of the tensors fitted to ``signal`` (Q, K) with b0 ``s0`` (Q,) by ``pinv`` (6, K)."""
    ratio = torch.clamp(signal / torch.clamp(s0, min=RATIO_FLOOR)[:, None], min=RATIO_FLOOR)
    xx, xy, yy, xz, yz, zz = (-torch.log(ratio) @ pinv.T).unbind(-1)
    off_diagonal = 2.0 * (xy**2 + xz**2 + yz**2)
    mean = (xx + yy + zz) / 3.0
    deviatoric = (xx - mean) ** 2 + (yy - mean) ** 2 + (zz - mean) ** 2 + off_diagonal
    norm = xx**2 + yy**2 + zz**2 + off_diagonal
    return torch.sqrt(1.5 * deviatoric / (norm + 1e-12) + 1e-12)
