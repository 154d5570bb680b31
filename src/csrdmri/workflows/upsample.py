"""Upsample one dataset to a file: what ``csrdmri upsample`` does, cheap checks first.

Every check that needs no voxel — the output path, the scale, the model and whether it needs a
T1w, the output's size from the DWI header — runs before the series is read, so a mistake is
reported in a moment rather than after gigabytes of I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nibabel.affines import voxel_sizes

from csrdmri.core.errors import InputError, about
from csrdmri.core.grid import TargetGrid
from csrdmri.dmri.motion import warn_if_moved
from csrdmri.dmri.preprocess import DEFAULT_SHELL
from csrdmri.dmri.scan import PreparedScan
from csrdmri.inference.output import check_output, check_size, upsample_to_file
from csrdmri.inference.upsampler import DEFAULT_OPTIONS, Options, Upsampler
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import load_dwi, load_image
from csrdmri.weights import DEFAULT_MODEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpsampleResult:
    """What was written: the output image (its .bval/.bvec/.json beside it), its grid, the
    number of volumes and the method."""

    out: Path
    grid: TargetGrid
    volumes: int
    model: str


def check_target(scale: Sequence[float] | None, voxel_size: Sequence[float] | None) -> None:
    """Exactly one of a scale (every axis ≥ 1, one > 1) or a target voxel size (mm)."""
    if (scale is None) == (voxel_size is None):
        raise InputError("give exactly one of a scale or a voxel size", "scale")
    if scale is not None and (min(scale) < 1 or max(scale) <= 1):
        shown = ",".join(f"{s:g}" for s in scale)
        raise InputError(f"the scale must be > 1 to upsample (per axis ≥ 1), got {shown}", "scale")


def upsample_dataset(
    dataset: Path,
    out: Path,
    *,
    scale: Sequence[float] | None = None,
    voxel_size: Sequence[float] | None = None,
    model: str = DEFAULT_MODEL,
    t1: Path | None = None,
    mask: Path | None = None,
    bval: Path | None = None,
    bvec: Path | None = None,
    options: Options = DEFAULT_OPTIONS,
    adapt_steps: int = 0,
    seed: int = 0,
    max_output_gb: float = 64.0,
    force: bool = False,
) -> UpsampleResult:
    """Super-resolve every volume of a dataset onto a finer grid over the same field of view.

    Parameters
    ----------
    dataset : Path
        A DWI NIfTI or a dataset folder (:func:`csrdmri.io.layout.find_dataset`); ``t1``,
        ``mask``, ``bval``, ``bvec`` override what is found with it.
    out : Path
        The output NIfTI; ``.bval``, ``.bvec`` and a ``.json`` sidecar are written beside it.
    scale, voxel_size : one or three numbers
        Exactly one: the scale factor per axis, or the target voxel size in mm.
    model : str
        ``tricubic``, a shipped model, a checkpoint or a training run folder.
    options : Options
        How a model is run (device, precision, tiles, mask margin, output outside the mask).
    adapt_steps, seed : int
        Per-scan adaptation of the model first (:mod:`csrdmri.inference.adapt`); 0: off.
    max_output_gb : float
        The largest output allowed (GB of float32), a guard against typos.
    force : bool
        Overwrite an existing output.
    """
    check_target(scale, voxel_size)
    out = check_output(out, force)
    up = Upsampler.load(model, adapt_steps, seed)
    paths = find_dataset(dataset, bval, bvec, t1, mask)
    if up.uses_t1 and paths.t1 is None:
        raise InputError(
            f"model {model} uses a T1w, and none was given or found with the DWI (arssr-cpu and "
            "tricubic need none)",
            "t1",
        )
    img = load_image(paths.dwi, "DWI", ndim=(4,))
    grid = TargetGrid.over(img.shape, img.affine, scale=scale, voxel_size=voxel_size)
    if any(m < n for m, n in zip(grid.shape, grid.src_shape, strict=True)):
        zooms = " × ".join(f"{z:.4g}" for z in voxel_sizes(img.affine))
        sizes = ",".join(f"{v:g}" for v in voxel_size or ())
        raise InputError(f"a voxel size of {sizes} mm is larger than the input's ({zooms} mm)", "voxel_size")
    check_size(grid, img.shape[3], max_output_gb)
    series = load_dwi(paths, img)
    scan = None
    if up.model is not None:
        scan = PreparedScan.prepare(
            series, t1=paths.t1 if up.reads_t1 else None, shell=None if up.joint else DEFAULT_SHELL
        )
        if up.reads_t1 and not up.uses_t1:
            guide = (
                f"guided by the T1w {paths.t1}"
                if scan.t1 is not None
                else "without a T1w (none given or found)"
            )
            log.info("model %s runs %s", model, guide)
        with about(paths.dwi):  # once per user run (evaluation re-upsamples degraded copies)
            warn_if_moved(series, scan.shell)
    upsample_to_file(series, grid, up, out, scan, options)
    return UpsampleResult(out, grid, series.data.shape[3], model)
