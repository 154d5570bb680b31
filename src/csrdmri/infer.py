"""Whole-series upsampling onto a target grid, and writing the result with its metadata.

Only the ``tricubic`` model exists so far; learned models plug in here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from csrdmri import __version__
from csrdmri.errors import InputError
from csrdmri.grid import TargetGrid
from csrdmri.io import DWISeries, atomic_path, gradient_paths, save_gradients, save_nifti
from csrdmri.layout import nifti_stem
from csrdmri.resample import resample

MODELS = ("tricubic",)


def upsample_series(series: DWISeries, grid: TargetGrid, model: str = "tricubic") -> np.ndarray:
    """Every volume of ``series`` (b0s included) on ``grid``, in the input's intensity units.

    Returns
    -------
    ndarray, shape (*grid.shape, V), float32, clipped at 0 (magnitude data).
    """
    if model not in MODELS:
        raise InputError(f"unknown model {model!r}; available: {', '.join(MODELS)}")
    out = np.empty((*grid.shape, series.data.shape[3]), dtype=np.float32)
    for v in tqdm(range(series.data.shape[3]), desc="upsampling", unit="vol", disable=None):
        out[..., v] = np.maximum(resample(series.data[..., v], grid.shape, order=3), 0.0)
    return out


def output_paths(out: Path) -> list[Path]:
    """All files ``csrdmri upsample`` writes for ``out``: image, .bval, .bvec, .json sidecar."""
    return [out, *gradient_paths(out), out.with_name(nifti_stem(out) + ".json")]


def check_output(out: str | Path, force: bool) -> Path:
    """Validate an output path before any work is done; create its folder."""
    out = Path(out)
    if not out.name.endswith((".nii.gz", ".nii")):
        raise InputError(f"output {out} must end in .nii.gz or .nii")
    existing = [p for p in output_paths(out) if p.exists()]
    if existing and not force:
        raise InputError(f"output {existing[0]} already exists (use --force to overwrite)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out.parent}: {exc.strerror}") from None
    return out


def write_result(out: Path, data: np.ndarray, grid: TargetGrid, series: DWISeries, model: str) -> None:
    """Write image, unchanged b-table and a JSON sidecar (all atomically)."""
    save_nifti(out, data, grid.affine, template=series.header)
    save_gradients(out, series.gtab)
    sidecar = {
        "csrdmri_version": __version__,
        "model": model,
        "input": str(series.paths.dwi),
        "input_shape": list(series.shape),
        "input_voxel_size_mm": [round(z, 6) for z in series.zooms],
        "output_shape": list(grid.shape),
        "scale": [round(s, 6) for s in grid.scales],
        "voxel_size_mm": [round(z, 6) for z in grid.zooms],
        "command": " ".join(sys.argv),
    }
    with atomic_path(output_paths(out)[3]) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
