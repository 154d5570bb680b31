"""The Python API: super-resolve an in-memory series, for notebooks and pipelines (Nipype, Pydra).

The CLI and the BIDS App run the same steps (:mod:`csrdmri.workflows.upsample`); this module
only takes images and arrays instead of files and returns the result in memory::

    import nibabel as nib
    from dipy.io import read_bvals_bvecs
    import csrdmri

    dwi = nib.load("dwi.nii.gz")
    bvals, bvecs = read_bvals_bvecs("dwi.bval", "dwi.bvec")
    out, out_bvals, out_bvecs = csrdmri.upsample(dwi, bvals, bvecs, voxel_size=1.25)
    out.to_filename("dwi_1p25mm.nii.gz")

The output is held in memory (float32, ``X'·Y'·Z'·V`` values): for series larger than memory
use ``csrdmri upsample``, which writes through a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np

from csrdmri.core.grid import per_axis
from csrdmri.inference.plan import OutputPlan
from csrdmri.inference.series import new_output, upsample_series
from csrdmri.inference.upsampler import DEFAULT_OPTIONS, Options, Upsampler
from csrdmri.io.layout import DatasetPaths
from csrdmri.io.nifti import (
    DWISeries,
    Source,
    checked_gradients,
    describe,
    dwi_voxels,
    load_image,
    output_image,
)
from csrdmri.weights import DEFAULT_MODEL
from csrdmri.workflows.upsample import check_model, check_target, choose_upsampler, prepare_scan, target_grid


def load_model(name: str = DEFAULT_MODEL, adapt_steps: int = 0, seed: int = 0) -> Upsampler:
    """A method to give :func:`upsample` (loaded once, reused for many series): ``"tricubic"``,
    a shipped model's name (``csrdmri upsample --help`` lists them), a checkpoint or a run folder."""
    return Upsampler.load(name, adapt_steps, seed)


def upsample(
    dwi: Source,
    bvals: np.ndarray | Sequence[float],
    bvecs: np.ndarray | Sequence[Sequence[float]],
    *,
    t1: Source | None = None,
    mask: Source | None = None,
    scale: float | Sequence[float] | None = None,
    voxel_size: float | Sequence[float] | None = None,
    model: str | Upsampler | None = None,
    options: Options = DEFAULT_OPTIONS,
    directions: np.ndarray | None = None,
) -> tuple[nib.Nifti1Image, np.ndarray, np.ndarray]:
    """Super-resolve a DWI series onto a finer grid over the same field of view.

    Parameters
    ----------
    dwi : nibabel image or path
        The 4D series (X, Y, Z, V), any intensity units.
    bvals, bvecs : array, shapes (V,) and (V, 3) (or FSL's (3, V))
        b-values (s/mm²) and b-vectors of the volumes, as DIPY's ``read_bvals_bvecs`` gives them.
    t1, mask : nibabel image or path, optional
        The subject's T1w (any grid and resolution in the same world coordinates; used by the
        models that read one) and a brain mask on the DWI grid (default: found from the b0).
    scale, voxel_size : number or 3 numbers
        Exactly one: the scale factor per axis, or the target voxel size in mm.
    model : str or Upsampler, optional
        A name as :func:`load_model` takes, or what it returned; None: the default model, or the
        joint q-space model for a series the default cannot run (no T1w, no b = 1000 volume,
        new directions; a warning says so).
    options : Options
        How a model runs (device, precision, tiles, safeguard, consistency, ...).
    directions : ndarray, shape (K', 3), optional
        Write these gradient directions for every shell instead of the acquired ones.

    Returns
    -------
    image : nibabel.Nifti1Image
        The series on the new grid, float32, (X', Y', Z', V'); its affine places it over the
        input's field of view.
    bvals, bvecs : ndarray, shapes (V',) and (V', 3)
        Its gradient table (the input's, or the new directions').
    """
    scale = None if scale is None else per_axis(scale, "scale")
    voxel_size = None if voxel_size is None else per_axis(voxel_size, "voxel size")
    check_target(scale, voxel_size)
    up = model if isinstance(model, Upsampler) else load_model(model or DEFAULT_MODEL)
    img = load_image(dwi, "DWI", ndim=(4,))
    name = describe(dwi, "DWI")
    gtab = checked_gradients(bvals, bvecs, img.shape[3])
    if model is None:
        up = choose_upsampler(replace(up, choice="default"), t1 is not None, gtab, directions is not None)
    check_model(up, directions, t1 is not None)
    data = dwi_voxels(img, name)
    paths = DatasetPaths(Path(name), Path("(bvals)"), Path("(bvecs)"), layout="memory")
    series = DWISeries(data, img.affine.copy(), gtab, img.header, paths)
    grid = target_grid(img.shape, img.affine, scale, voxel_size)
    plan = OutputPlan.build(series.gtab, directions)
    scan = prepare_scan(series, up, t1, mask)
    out = new_output((*grid.shape, len(plan.weights)))
    upsample_series(series, grid, up, out, scan, options, plan)
    return output_image(out, grid.affine, img.header), plan.gtab.bvals.copy(), plan.gtab.bvecs.copy()
