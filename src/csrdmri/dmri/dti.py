"""Downstream DTI accuracy: a tensor fit (DIPY) of an estimate compared with that of a reference.

What a diffusion user reads off a super-resolved series is its tensor maps, not its PSNR: FA,
MD (mm²/s) and the principal direction. :func:`tensor_maps` fits DIPY's ``TensorModel``
(weighted least squares) inside a mask; :func:`dti_errors` compares two fits: mean absolute
FA and MD errors inside the brain and in white matter, and the angle between principal
directions in white matter (degrees, sign-invariant). White matter is where the *reference*
FA exceeds ``WM_FA`` (the estimate must not choose its own evaluation region).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dipy.core.gradients import GradientTable
from dipy.reconst.dti import TensorModel

#: Reference FA above which a brain voxel counts as white matter.
WM_FA = 0.3
#: Largest MD kept (mm²/s): above free water's diffusivity at body temperature (3.0e-3), an MD is
#: a diverging fit (a DWI sample at or near 0 in a real scan), not tissue. MD is clipped to it so
#: that a handful of such voxels (MD up to 1e3 mm²/s seen) cannot dominate a mean error.
MD_MAX = 4e-3


@dataclass
class TensorMaps:
    """FA, MD (mm²/s) and principal eigenvector (X, Y, Z, 3) inside ``mask``; 0 outside."""

    fa: np.ndarray
    md: np.ndarray
    v1: np.ndarray
    mask: np.ndarray


def tensor_maps(data: np.ndarray, gtab: GradientTable, mask: np.ndarray) -> TensorMaps:
    """Fit DTI to ``data`` (X, Y, Z, V), in any intensity units, inside ``mask`` (X, Y, Z); MD
    clipped to [0, ``MD_MAX``]."""
    fit = TensorModel(gtab).fit(np.maximum(data, 0), mask=mask)
    md = np.clip(np.nan_to_num(fit.md), 0.0, MD_MAX)
    return TensorMaps(np.nan_to_num(fit.fa), md, np.nan_to_num(fit.evecs[..., 0]), mask)


def dti_errors(reference: TensorMaps, estimate: TensorMaps) -> dict[str, float]:
    """Errors of ``estimate`` against ``reference`` (same grid): FA and MD mean absolute errors
    in the brain and in white matter, principal-direction angle (degrees) in white matter."""
    brain = reference.mask
    wm = brain & (reference.fa > WM_FA)
    if not wm.any():
        raise ValueError(f"no white matter (reference FA > {WM_FA}) inside the mask")
    fa, md = np.abs(estimate.fa - reference.fa), np.abs(estimate.md - reference.md)
    cosine = np.abs(np.sum(estimate.v1[wm] * reference.v1[wm], axis=-1))
    angle = np.degrees(np.arccos(np.clip(cosine, 0.0, 1.0)))
    return {
        "fa_mae_brain": float(fa[brain].mean()),
        "fa_mae_wm": float(fa[wm].mean()),
        "md_mae_brain": float(md[brain].mean()),
        "md_mae_wm": float(md[wm].mean()),
        "angle_median_wm": float(np.median(angle)),
        "angle_mean_wm": float(angle.mean()),
        "wm_voxels": int(wm.sum()),
    }
