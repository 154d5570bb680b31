"""Upsample one dataset to a file: what ``csrdmri upsample`` does, cheap checks first.

Every check that needs no voxel — the output path, the scale, the model and whether it needs a
T1w, the output's size from the DWI header — runs before the series is read, so a mistake is
reported in a moment rather than after gigabytes of I/O.

When no model is named, the default runs where it can; for a series it cannot run (no T1w, no
b ≈ 1000 shell, new directions asked for) the joint q-space model runs instead — said in the log
and in the sidecar's ``model_choice`` — so that a missing T1w is never a refusal. A named model
that cannot run the series is refused (or, for the BIDS App, ``substitute``, replaced alike).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from dipy.core.gradients import GradientTable
from nibabel.affines import voxel_sizes

from csrdmri.core.errors import InputError, about
from csrdmri.core.grid import TargetGrid
from csrdmri.dmri.motion import warn_if_moved
from csrdmri.dmri.preprocess import DEFAULT_SHELL, SHELL_TOLERANCE
from csrdmri.dmri.scan import PreparedScan
from csrdmri.dmri.sh import MIN_DIRECTIONS, sphere_directions
from csrdmri.inference.output import check_output, check_size, upsample_to_file
from csrdmri.inference.plan import OutputPlan
from csrdmri.inference.upsampler import DEFAULT_OPTIONS, Options, Upsampler
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import DWISeries, Source, load_dwi, load_gradients, load_image
from csrdmri.weights import DEFAULT_MODEL, FALLBACK_MODEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpsampleResult:
    """What was written: the output image (its .bval/.bvec/.json beside it), its grid, the
    number of volumes, the method and the T1w it used."""

    out: Path
    grid: TargetGrid
    volumes: int
    model: str
    t1w: Path | None = None  # the T1w the model used (None: none, or a model without one)


def check_target(scale: Sequence[float] | None, voxel_size: Sequence[float] | None) -> None:
    """Exactly one of a scale (every axis ≥ 1, one > 1) or a target voxel size (mm)."""
    if (scale is None) == (voxel_size is None):
        raise InputError("give exactly one of a scale or a voxel size", "scale")
    if scale is not None and (min(scale) < 1 or max(scale) <= 1):
        shown = ",".join(f"{s:g}" for s in scale)
        raise InputError(f"the scale must be > 1 to upsample (per axis ≥ 1), got {shown}", "scale")


def requested_directions(out_bvecs: Path | None, out_directions: int | None) -> np.ndarray | None:
    """Output directions (K', 3) from an FSL-style b-vector file (3 rows or 3 columns) or a
    number of evenly spread ones; None for the acquired directions."""
    bvecs, count = out_bvecs, out_directions
    if bvecs is not None and count is not None:
        raise InputError("give new directions as a file or as a number, not both", "out_bvecs")
    if count is not None:
        if count < MIN_DIRECTIONS:
            raise InputError(
                f"at least {MIN_DIRECTIONS} output directions are needed, got {count}", "out_directions"
            )
        return sphere_directions(count)
    if bvecs is None:
        return None
    try:
        table = np.atleast_2d(np.loadtxt(bvecs, dtype=np.float64))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read directions from {bvecs}: {exc}", "out_bvecs") from None
    table = table.T if table.shape[0] == 3 and table.shape[1] != 3 else table
    if table.ndim != 2 or table.shape[1] != 3 or not np.isfinite(table).all():
        raise InputError(f"{bvecs} must hold 3 finite numbers per direction", "out_bvecs")
    return table


def check_model(up: Upsampler, out_directions: np.ndarray | None, has_t1: bool) -> None:
    """Refuse new directions for a per-volume model, and a model that needs a T1w without one."""
    if out_directions is not None and up.model is not None and not up.joint:
        raise InputError(
            f"new gradient directions need the joint q-space model (csr-qspace) or tricubic, not {up.name}",
            "out_directions",
        )
    if up.uses_t1 and not has_t1:
        raise InputError(
            f"model {up.name} uses a T1w, and none was given or found with the DWI (csr-qspace-cpu, "
            "arssr-cpu and tricubic need none)",
            "t1",
        )


def unfit(up: Upsampler, has_t1: bool, gtab: GradientTable, angular: bool) -> str | None:
    """Why ``up`` cannot run a series with this gradient table (None: it can)."""
    if up.uses_t1 and not has_t1:
        return "needs a T1w, and none was given or found"
    if up.model is None or up.joint:
        return None
    if not np.any(~gtab.b0s_mask & (np.abs(gtab.bvals - DEFAULT_SHELL) <= SHELL_TOLERANCE)):
        return f"models only b = {DEFAULT_SHELL:g} s/mm² volumes, and the series has none"
    return "writes no new gradient directions" if angular else None


def choose_upsampler(up: Upsampler, has_t1: bool, gtab: GradientTable, angular: bool) -> Upsampler:
    """``up`` where it can run the series, else the joint model (:data:`FALLBACK_MODEL`), with
    why in the log and in ``choice``. Not with per-scan adaptation, which the joint model lacks:
    there the refusal of ``up`` stands."""
    why = unfit(up, has_t1, gtab, angular)
    if why is None or up.adapt_steps:
        return up
    log.warning("%s %s: %s runs instead", up.name, why, FALLBACK_MODEL)
    return replace(Upsampler.load(FALLBACK_MODEL), choice=f"instead of {up.name}, which {why}")


def target_grid(
    shape: Sequence[int],
    affine: np.ndarray,
    scale: Sequence[float] | None,
    voxel_size: Sequence[float] | None,
) -> TargetGrid:
    """The output grid over a 4D image's field of view (``shape``, ``affine``); a voxel size larger
    than the input's is refused."""
    grid = TargetGrid.over(shape, affine, scale=scale, voxel_size=voxel_size)
    if any(m < n for m, n in zip(grid.shape, grid.src_shape, strict=True)):
        zooms = " × ".join(f"{z:.4g}" for z in voxel_sizes(affine))
        sizes = ",".join(f"{v:g}" for v in voxel_size or ())
        raise InputError(f"a voxel size of {sizes} mm is larger than the input's ({zooms} mm)", "voxel_size")
    return grid


def prepare_scan(series: DWISeries, up: Upsampler, t1: Source | None, mask: Source | None = None):
    """The :class:`PreparedScan` a model reads (None for tricubic): the T1w when the model reads
    one, aligned with the mean b0 for a model that reads it at the output resolution; warns
    when the series looks uncorrected for motion."""
    if up.model is None:
        return None
    scan = PreparedScan.prepare(
        series,
        mask=mask,
        t1=t1 if up.reads_t1 else None,
        shell=None if up.joint else DEFAULT_SHELL,
        align_t1=up.native_t1,
    )
    with about(series.paths.dwi):  # once per user run (evaluation re-upsamples degraded copies)
        warn_if_moved(series, scan.shell)
    return scan


def upsample_dataset(
    dataset: Path,
    out: Path,
    *,
    scale: Sequence[float] | None = None,
    voxel_size: Sequence[float] | None = None,
    model: str | None = None,
    t1: Path | None = None,
    mask: Path | None = None,
    bval: Path | None = None,
    bvec: Path | None = None,
    options: Options = DEFAULT_OPTIONS,
    adapt_steps: int = 0,
    seed: int = 0,
    max_output_gb: float = 64.0,
    force: bool = False,
    out_directions: np.ndarray | None = None,
    substitute: bool = False,
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
    model : str, optional
        ``tricubic``, a shipped model, a checkpoint or a training run folder; None: the default
        (:data:`csrdmri.weights.DEFAULT_MODEL`, or the joint model where it cannot run).
    options : Options
        How a model is run (device, precision, tiles, mask margin, output outside the mask).
    adapt_steps, seed : int
        Per-scan adaptation of the model first (:mod:`csrdmri.inference.adapt`); 0: off.
    max_output_gb : float
        The largest output allowed (GB of float32), a guard against typos.
    force : bool
        Overwrite an existing output.
    out_directions : ndarray, shape (K', 3), optional
        Write these gradient directions for every shell with enough directions instead of the
        acquired ones (angular super-resolution; tricubic or the joint q-space model).
    substitute : bool
        Replace a named model that cannot run the series as the default is replaced.
    """
    check_target(scale, voxel_size)
    out = check_output(out, force)
    up = Upsampler.load(model or DEFAULT_MODEL, adapt_steps, seed)
    paths = find_dataset(dataset, bval, bvec, t1, mask)
    img = load_image(paths.dwi, "DWI", ndim=(4,))
    if model is None or substitute:
        gtab = load_gradients(paths.bval, paths.bvec, img.shape[3])
        up = replace(up, choice="named" if model else "default")
        up = choose_upsampler(up, paths.t1 is not None, gtab, out_directions is not None)
    check_model(up, out_directions, paths.t1 is not None)
    grid = target_grid(img.shape, img.affine, scale, voxel_size)
    check_size(grid, img.shape[3], max_output_gb)
    series = load_dwi(paths, img)
    plan = OutputPlan.build(series.gtab, out_directions)
    if plan.angular:
        check_size(grid, len(plan.weights), max_output_gb)
    scan = prepare_scan(series, up, paths.t1)
    upsample_to_file(series, grid, up, out, scan, options, plan)
    used = paths.t1 if scan is not None and scan.t1 is not None else None
    return UpsampleResult(out, grid, len(plan.weights), up.name, used)
