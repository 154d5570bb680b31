"""Whole-series super-resolution onto a target grid, and writing the result with its metadata.

Per volume, in the input's intensity units:

* **b0 volumes** are upsampled tricubically: the models are trained on b ≈ 1000 volumes divided
  by the mean b0 (S/S0), and a b0 divided by the mean b0 carries no structure to learn from.
* **diffusion-weighted volumes of other shells** (b not within 1000 ± 100 s/mm²) are upsampled
  tricubically too, with a warning: the models never saw them. A series without any
  b ≈ 1000 volume is refused when a model is asked for.
* **b ≈ 1000 volumes** are divided by the mean b0 inside the (dilated) brain mask, as
  in training; the model predicts S/S0 on the HR grid, and its correction of the tricubic
  S/S0 (prediction − tricubic S/S0), multiplied by the mean b0 upsampled tricubically, is added
  to the tricubic upsampling of the volume. Multiplying the prediction itself by the upsampled
  b0 instead would carry the b0's interpolation error (largest at CSF borders, where b0 and
  S/S0 change in opposite directions) into every DWI. The model is decoded only inside the
  mask; outside it the output is the tricubic upsampling (``outside="tricubic"``, so there is
  no seam at the mask's edge) or 0 (``outside="zero"``).

Every output is clipped at 0 (magnitude data).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn as nn
from scipy import ndimage
from tqdm import tqdm

from csrdmri import __version__
from csrdmri.adapt import adapt, spread
from csrdmri.checkpoint import find_checkpoint, load_model
from csrdmri.errors import InputError, about
from csrdmri.grid import TargetGrid
from csrdmri.io import DWISeries, atomic_path, gradient_paths, save_gradients, save_nifti
from csrdmri.layout import nifti_stem
from csrdmri.preprocess import DEFAULT_SHELL, b0_floor, b0_reciprocal, mean_b0, shell_indices
from csrdmri.resample import resample
from csrdmri.tiling import CHUNK, TILE, Box, as_input, predict_tiles

log = logging.getLogger(__name__)

OUTSIDE = ("tricubic", "zero")
#: HR planes (first axis) resampled at once when writing the tricubic part of an output volume.
SLAB = 16
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class Upsampler:
    """``tricubic`` (``model`` None) or a trained model with its checkpoint metadata."""

    name: str
    model: nn.Module | None = None
    meta: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    adapt_steps: int = 0  # fine-tune a copy on each series first (csrdmri.adapt); 0: off
    seed: int = 0  # of that adaptation

    @property
    def uses_t1(self) -> bool:
        return bool(getattr(self.model, "uses_t1", False))

    @classmethod
    def load(cls, name: str, adapt_steps: int = 0, seed: int = 0) -> Upsampler:
        """``tricubic``, a shipped model's name, a checkpoint or a run folder; ``adapt_steps``
        of per-scan adaptation (models only)."""
        if adapt_steps < 0:
            raise InputError(f"--adapt-steps must not be negative, got {adapt_steps}")
        if name == "tricubic":
            if adapt_steps:
                raise InputError("--adapt-steps needs a model; tricubic has nothing to adapt")
            return cls(name)
        path = find_checkpoint(name)
        model, meta = load_model(path)
        if adapt_steps and not hasattr(model, "decode"):
            raise InputError(f"--adapt-steps works with INR models (csr-dmri, arssr), not {name}")
        return cls(name, model.eval(), meta, path, adapt_steps, seed)

    def adapted(
        self, volumes: np.ndarray, t1: np.ndarray | None, mask: np.ndarray, scale: float
    ) -> Upsampler:
        """This upsampler with its model fine-tuned on a scan (:func:`csrdmri.adapt.adapt`)."""
        training = self.meta.get("training", {})
        options = {k: training[k] for k in ("lr_size", "degradation") if k in training}
        model = adapt(self.model, volumes, t1, mask, scale, self.adapt_steps, self.seed, **options)
        return replace(self, model=model, adapt_steps=0)


@dataclass(frozen=True)
class Options:
    """How a model is run over a volume (see :func:`csrdmri.tiling.predict_tiles`)."""

    device: str = "cpu"
    precision: str = "fp32"
    tile: int = TILE  # largest encoder tile side, LR voxels with the halo (local-coordinate INR models)
    chunk: int = CHUNK  # queries decoded at once
    margin: int = 2  # LR voxels by which the brain mask is dilated
    outside: str = "tricubic"  # what the output holds outside the dilated mask

    def __post_init__(self) -> None:
        if self.outside not in OUTSIDE:
            raise InputError(f"--outside must be one of {', '.join(OUTSIDE)}, got {self.outside!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.tile < 1 or self.chunk < 1 or self.margin < 0:
            raise InputError("--tile and --chunk must be positive and --margin not negative")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise InputError(f"unknown device {self.device!r} (use cpu, cuda or cuda:N)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for, but no CUDA GPU is available")
        if self.precision == "fp16" and device.type != "cuda":
            raise InputError("--precision fp16 needs --device cuda (use bf16 or fp32 on the CPU)")


def model_predictions(
    up: Upsampler,
    x: np.ndarray,
    t1: np.ndarray | None,
    shape: tuple[int, ...],
    where: np.ndarray,
    options: Options,
) -> Iterator[tuple[Box, np.ndarray, np.ndarray]]:
    """The model's S/S0 prediction on the HR grid ``shape`` at the voxels of ``where``, block by
    block, as :func:`csrdmri.tiling.predict_tiles` yields it."""
    model = up.model
    if hasattr(model, "decode"):
        if getattr(model, "coord", "local") == "global":
            # Coordinates relative to the input patch: run it on patches of its training size.
            size = int(up.meta.get("training", {}).get("lr_size", 10))
            tile, halo, side = size, 0, size
        else:
            tile, halo, side = options.tile, None, None
        yield from predict_tiles(
            model,
            x,
            t1,
            shape,
            where,
            tile=tile,
            halo=halo,
            chunk=options.chunk,
            device=options.device,
            precision=options.precision,
            side=side,
        )
        return
    # Fixed-scale baselines run on the whole volume at once.
    with torch.no_grad():
        pred = model.to(options.device)(as_input(x, options.device), as_input(t1, options.device), shape)
    yield tuple(slice(0, n) for n in shape), where, pred[0, 0].float().cpu().numpy()[where]


def upsample_series(
    series: DWISeries,
    grid: TargetGrid,
    up: Upsampler,
    out: np.ndarray,
    mask: np.ndarray | None = None,
    t1: np.ndarray | None = None,
    options: Options = Options(),
) -> None:
    """Super-resolve every volume of ``series`` onto ``grid`` into ``out``.

    Parameters
    ----------
    out : ndarray, shape (*grid.shape, V), float32
        Filled volume by volume, in slabs and model blocks: no whole output volume is held in
        memory besides ``out`` (a memory map keeps that bounded too).
    mask : ndarray, shape (X, Y, Z), bool
        Brain mask on the DWI grid (needed by models, not by tricubic).
    t1 : ndarray, shape (X, Y, Z), float32
        Normalised T1w on the DWI grid, for models that use one.
    """
    if up.uses_t1 and t1 is None:
        raise InputError(f"model {up.name} uses a T1w: give one with --t1 (or use a model without T1w)")
    weighted: set[int] = set()  # the volumes the model corrects
    if up.model is not None:
        if mask is None:
            raise ValueError("a brain mask is needed to run a model")
        with about(series.paths.dwi):
            weighted = set(shell_indices(series.gtab).tolist())
            s0 = mean_b0(series)
            floor = b0_floor(s0, mask)
        others = int((~series.gtab.b0s_mask).sum()) - len(weighted)
        if others:
            log.warning(
                "%d diffusion-weighted volumes are not at b ≈ %g s/mm² (the models' shell): "
                "they are upsampled tricubically",
                others,
                DEFAULT_SHELL,
            )
        region = ndimage.binary_dilation(mask, iterations=options.margin) if options.margin else mask
        reciprocal = b0_reciprocal(s0, region, floor=floor)
        if up.adapt_steps:
            own = np.stack([series.data[..., v] * reciprocal for v in spread(sorted(weighted))])
            up = up.adapted(own.astype(np.float16), t1, mask, float(np.mean(grid.scales)))
        # HR voxels whose nearest LR voxel is normalised: where the model is decoded.
        where = resample((reciprocal > 0).astype(np.float32), grid.shape, order=0) > 0.5
    for v in tqdm(range(series.data.shape[3]), desc=f"upsampling ({up.name})", unit="vol", disable=None):
        volume = series.data[..., v]
        corrected = v in weighted
        for start in range(0, grid.shape[0], SLAB):
            slab = (slice(start, start + SLAB), slice(None), slice(None))
            result = resample(volume, grid.shape, box=slab)
            if up.model is not None and options.outside == "zero":
                result[~where[slab]] = 0.0
            clipped = np.maximum(result, 0.0)
            # Voxels the model corrects are clipped after their correction.
            out[(*slab, v)] = np.where(where[slab], result, clipped) if corrected else clipped
        if corrected:
            x = volume * reciprocal
            for box, selected, prediction in model_predictions(up, x, t1, grid.shape, where, options):
                # The model's correction of tricubic, brought back to the input's units.
                ratio = resample(x, grid.shape, box=box)[selected]
                s0_hr = np.maximum(resample(s0, grid.shape, box=box)[selected], 0.0)
                block = out[(*box, v)]  # a view: writes go to ``out``
                block[selected] = np.maximum(block[selected] + s0_hr * (prediction - ratio), 0.0)


def upsample_to_file(
    series: DWISeries,
    grid: TargetGrid,
    up: Upsampler,
    out: Path,
    mask: np.ndarray | None = None,
    t1: np.ndarray | None = None,
    options: Options = Options(),
) -> None:
    """:func:`upsample_series` into a memory map of an unnamed file beside ``out`` (memory stays
    bounded whatever the series' length), then :func:`write_result`."""
    shape = (*grid.shape, series.data.shape[3])
    with working_file(out.parent, int(np.prod(shape)) * 4) as handle:
        data = np.memmap(handle, dtype=np.float32, mode="r+", shape=shape)
        upsample_series(series, grid, up, data, mask, t1, options)
        write_result(out, data, grid, series, up, options)
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
    """Refuse an output image larger than ``max_gb`` GB of float32 (``--max-output-gb``)."""
    size = int(np.prod(grid.shape)) * volumes * 4
    if size > max_gb * 1e9:
        shape = " × ".join(map(str, grid.shape))
        raise InputError(
            f"the output would be {size / 1e9:.1f} GB ({shape} × {volumes} volumes of float32), "
            f"over the {max_gb:g} GB limit: raise it with --max-output-gb if that is intended"
        )


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


def write_result(
    out: Path,
    data: np.ndarray,
    grid: TargetGrid,
    series: DWISeries,
    up: Upsampler,
    options: Options | None = None,
) -> None:
    """Write image, unchanged b-table and a JSON sidecar (all atomically)."""
    save_nifti(out, data, grid.affine, template=series.header)
    save_gradients(out, series.gtab)
    sidecar = {
        "csrdmri_version": __version__,
        "model": up.name,
        "input": str(series.paths.dwi),
        "input_shape": list(series.shape),
        "input_voxel_size_mm": [round(z, 6) for z in series.zooms],
        "output_shape": list(grid.shape),
        "scale": [round(s, 6) for s in grid.scales],
        "voxel_size_mm": [round(z, 6) for z in grid.zooms],
        "command": " ".join(sys.argv),
    }
    if up.model is not None:
        sidecar.update(
            checkpoint=str(up.checkpoint),
            model_config=up.meta.get("model"),
            t1w=str(series.paths.t1) if up.uses_t1 else None,
            model_volumes=shell_indices(series.gtab).tolist(),
            outside_mask=options.outside if options else "tricubic",
            mask=str(series.paths.mask) if series.paths.mask else "median_otsu on the mean b0",
            mask_margin_voxels=options.margin if options else None,
            adapt_steps=up.adapt_steps,
            adapt_seed=up.seed if up.adapt_steps else None,
            device=options.device if options else "cpu",
            precision=options.precision if options else "fp32",
        )
    with atomic_path(output_paths(out)[3]) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
