"""Writing a super-resolved series: output checks, a bounded-memory working file, the result
with its unchanged b-table and a JSON sidecar (all atomic)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from csrdmri import __version__
from csrdmri.core.errors import InputError
from csrdmri.core.grid import TargetGrid
from csrdmri.dmri.scan import PreparedScan
from csrdmri.inference.consistency import noise_treatment
from csrdmri.inference.plan import OutputPlan
from csrdmri.inference.precision import resolve_precision
from csrdmri.inference.series import RunWeights, upsample_series
from csrdmri.inference.upsampler import DEFAULT_OPTIONS, Options, Upsampler
from csrdmri.io.layout import nifti_stem
from csrdmri.io.nifti import DWISeries, atomic_path, gradient_paths, save_gradients, save_nifti


def upsample_to_file(
    series: DWISeries,
    grid: TargetGrid,
    up: Upsampler,
    out: Path,
    scan: PreparedScan | None = None,
    options: Options = DEFAULT_OPTIONS,
    plan: OutputPlan | None = None,
) -> None:
    """:func:`upsample_series` into a memory map of an unnamed file beside ``out`` (memory stays
    bounded whatever the series' length; its folder is created), then :func:`write_result`.
    ``plan``: the output's volumes (default: the acquired ones)."""
    plan = plan or OutputPlan.build(series.gtab)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out.parent}: {exc.strerror}", "out") from None
    shape = (*grid.shape, len(plan.weights))
    with working_file(out.parent, int(np.prod(shape)) * 4) as handle:
        data = np.memmap(handle, dtype=np.float32, mode="r+", shape=shape, order="F")  # as new_output
        weights = upsample_series(series, grid, up, data, scan, options, plan)
        write_result(out, data, grid, series, up, scan, options, plan, weights)
        del data


@contextlib.contextmanager
def working_file(folder: Path, size: int) -> Iterator[BinaryIO]:
    """An unnamed file of ``size`` bytes in ``folder``, its disk space reserved up front.

    Unnamed (unlinked at once, ``O_TMPFILE`` on Linux), so nothing is left behind even when the
    process is killed; reserved, so a full disk is a clear error now rather than a crash
    (SIGBUS) when a memory map of it is written later.
    """
    try:
        handle = tempfile.TemporaryFile(dir=folder, prefix=".csrdmri-")
    except OSError as exc:
        raise InputError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    with handle:
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(handle.fileno(), 0, size)
            else:  # macOS, Windows: no reservation, the file is only extended
                handle.truncate(size)
        except OSError as exc:
            raise InputError(
                f"not enough free disk in {folder} for the output's working copy "
                f"({size / 1e9:.1f} GB): {exc.strerror or exc}"
            ) from None
        yield handle


def check_size(grid: TargetGrid, volumes: int, max_gb: float) -> None:
    """Refuse an output image larger than ``max_gb`` GB of float32 (a guard against typos)."""
    size = int(np.prod(grid.shape)) * volumes * 4
    if size > max_gb * 1e9:
        shape = " × ".join(map(str, grid.shape))
        raise InputError(
            f"the output would be {size / 1e9:.1f} GB ({shape} × {volumes} volumes of float32), "
            f"over the {max_gb:g} GB limit: raise the limit if that is intended",
            "max_output_gb",
        )


def output_paths(out: Path) -> list[Path]:
    """All files ``csrdmri upsample`` writes for ``out``: image, .bval, .bvec, .json sidecar."""
    return [out, *gradient_paths(out), out.with_name(nifti_stem(out) + ".json")]


def check_output(out: str | Path, force: bool) -> Path:
    """Validate an output path before any input is read: a NIfTI name, no earlier output
    (unless ``force``), and a folder that exists or can be created under a writable one (it is
    created only when the result is written, so a refused input leaves nothing behind)."""
    out = Path(out)
    if not out.name.endswith((".nii.gz", ".nii")):
        raise InputError(f"output {out} must end in .nii.gz or .nii", "out")
    existing = [p for p in output_paths(out) if p.exists()]
    if existing and not force:
        raise InputError(f"output {existing[0]} already exists; overwriting must be asked for", "force")
    folder = out.parent.absolute()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        problem = "not a folder" if not folder.is_dir() else "permission denied"
        where = "" if folder == out.parent.absolute() else f" (in {folder})"
        raise InputError(f"cannot write to {out.parent}: {problem}{where}", "out")
    return out


def write_result(
    out: Path,
    data: np.ndarray,
    grid: TargetGrid,
    series: DWISeries,
    up: Upsampler,
    scan: PreparedScan | None = None,
    options: Options = DEFAULT_OPTIONS,
    plan: OutputPlan | None = None,
    weights: RunWeights | None = None,
) -> None:
    """Write image, b-table (the input's, or the plan's new directions) and a JSON sidecar (all
    atomically); ``weights``: what the run weighed (the safeguard's, the input noise's)."""
    plan = plan or OutputPlan.build(series.gtab)
    save_nifti(out, data, grid.affine, template=series.header)
    save_gradients(out, plan.gtab)
    sidecar = {
        "csrdmri_version": __version__,
        "model": up.name,
        "model_choice": up.choice,
        "input": str(series.paths.dwi),
        "input_shape": list(series.shape),
        "input_voxel_size_mm": [round(z, 6) for z in series.zooms],
        "output_shape": list(grid.shape),
        "scale": [round(s, 6) for s in grid.scales],
        "voxel_size_mm": [round(z, 6) for z in grid.zooms],
        "command": " ".join(sys.argv),
        "consistency": options.consistency,
        "input_noise": noise_treatment(options.consistency, options.input_noise),
        "input_noise_weights": None
        if weights is None or weights.input_noise is None
        else [round(float(w), 3) for w in weights.input_noise],
        "directions": "new: " + ", ".join(f"{len(o)} at b = {b:g}" for b, (_, o) in plan.shells.items())
        if plan.angular
        else "acquired",
    }
    if up.model is not None:
        sidecar.update(
            checkpoint=str(up.checkpoint),
            model_config=up.meta.get("model"),
            t1w=scan.provenance["t1w"] if up.reads_t1 else None,
            t1w_transform=scan.provenance.get("t1w_transform"),
            model_volumes=sorted(int(v) for _, outputs in plan.shells.values() for v in outputs)
            if up.joint
            else scan.shell.tolist(),
            outside_mask=options.outside,
            safeguard={f"b={b:g}": round(w, 4) for b, w in weights.correction.items()}
            if weights and weights.correction
            else None,
            mask=scan.provenance["mask"],
            mask_margin_voxels=options.margin,
            adapt_steps=up.adapt_steps,
            adapt_seed=up.seed if up.adapt_steps else None,
            device=options.device,
            precision=resolve_precision(options.precision, up.model, options.device) if up.model else None,
        )
    with atomic_path(output_paths(out)[3]) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
