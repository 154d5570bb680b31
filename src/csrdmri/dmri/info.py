"""What a user needs to know about a dataset before super-resolving it (``csrdmri info``)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from dipy.core.gradients import unique_bvals_tolerance

from csrdmri.core.grid import TargetGrid
from csrdmri.dmri.preprocess import SHELL_TOLERANCE, fov_fraction, series_mask
from csrdmri.io.layout import DatasetPaths
from csrdmri.io.nifti import load_dwi, load_image


def _geometry(img_shape: tuple[int, ...], affine: np.ndarray) -> dict:
    return {
        "shape": [int(n) for n in img_shape],
        "voxel_size_mm": [round(float(z), 4) for z in nib.affines.voxel_sizes(affine)],
        "orientation": "".join(nib.aff2axcodes(affine)),
        "oblique": bool(nib.affines.obliquity(affine).max() > 1e-3),
    }


def describe(paths: DatasetPaths) -> dict:
    """Facts about a dataset as a JSON-ready dict (geometry, shells, mask, T1w coverage)."""
    series = load_dwi(paths)
    header = series.header
    bvals = series.gtab.bvals
    b0 = series.gtab.b0s_mask
    shells = unique_bvals_tolerance(bvals[~b0], tol=SHELL_TOLERANCE) if (~b0).any() else []
    facts = {
        "layout": paths.layout,
        "dwi": str(paths.dwi),
        **_geometry(series.data.shape, series.affine),
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
        "qform_equals_sform": bool(np.allclose(header.get_qform(), header.get_sform(), atol=1e-3)),
        "volumes": int(series.data.shape[3]),
        "b0_volumes": int(b0.sum()),
        "shells": {f"{s:g}": int((~b0 & (np.abs(bvals - s) <= SHELL_TOLERANCE)).sum()) for s in shells},
        "bval": str(paths.bval),
        "bvec": str(paths.bvec),
    }
    if b0.any():
        mask = series_mask(series)
        facts["mask"] = str(paths.mask) if paths.mask else "median_otsu on the mean b0"
        facts["brain_volume_ml"] = round(float(mask.sum() * np.prod(series.zooms)) / 1000, 1)
    else:
        mask = None
    if paths.t1 is not None:
        t1 = load_image(paths.t1, "T1w")
        facts["t1w"] = {
            "path": str(paths.t1),
            **_geometry(t1.shape, t1.affine),
            "covers_dwi_fov": round(fov_fraction(t1, series.affine, series.shape), 4),
            "covers_brain_mask": None
            if mask is None
            else round(fov_fraction(t1, series.affine, series.shape, mask), 4),
        }
    examples = {"scale 2": TargetGrid.over(series.shape, series.affine, scale=2)}
    if min(series.zooms) > 1.25:
        examples["voxel 1.25 mm"] = TargetGrid.over(series.shape, series.affine, voxel_size=1.25)
    facts["examples"] = {
        label: {"shape": list(grid.shape), "voxel_size_mm": [round(z, 4) for z in grid.zooms]}
        for label, grid in examples.items()
    }
    return facts


def format_facts(facts: dict) -> str:
    """Human-readable rendering of :func:`describe`."""

    def mm(values: list[float]) -> str:
        return " × ".join(f"{v:g}" for v in values) + " mm"

    lines = [
        f"DWI          {facts['dwi']}  ({facts['layout']} layout)",
        f"  grid       {' × '.join(map(str, facts['shape']))}  voxel {mm(facts['voxel_size_mm'])}",
        f"  orientation {facts['orientation']}{'  (oblique)' if facts['oblique'] else ''}"
        f"  qform/sform codes {facts['qform_code']}/{facts['sform_code']}"
        f"{'' if facts['qform_equals_sform'] else '  (qform ≠ sform: the sform is used)'}",
        f"  volumes    {facts['volumes']}: {facts['b0_volumes']} b0"
        + "".join(f", {n} at b={b}" for b, n in facts["shells"].items()),
        f"  b-table    {facts['bval']}  {facts['bvec']}",
    ]
    if "mask" in facts:
        lines.append(f"  mask       {facts['mask']}: {facts['brain_volume_ml']} mL")
    if "t1w" in facts:
        t1 = facts["t1w"]
        lines += [
            f"T1w          {t1['path']}",
            f"  grid       {' × '.join(map(str, t1['shape'][:3]))}  voxel {mm(t1['voxel_size_mm'][:3])}"
            f"  orientation {t1['orientation']}{'  (oblique)' if t1['oblique'] else ''}",
            f"  overlap    covers {t1['covers_dwi_fov']:.1%} of the DWI field of view"
            + (
                ""
                if t1["covers_brain_mask"] is None
                else f", {t1['covers_brain_mask']:.1%} of the brain mask"
            ),
        ]
    else:
        lines.append("T1w          none found (models that use a T1w need --t1)")
    for label, ex in facts["examples"].items():
        lines.append(f"{label:13s}→ {' × '.join(map(str, ex['shape']))}  voxel {mm(ex['voxel_size_mm'])}")
    return "\n".join(lines)
