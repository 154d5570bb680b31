"""Whole-series super-resolution onto a target grid, and writing the result with its metadata.

The joint q-space model corrects every shell with enough directions at once
(:mod:`csrdmri.inference.joint`) on top of the tricubic volumes written here. Per-volume models,
per volume, in the input's intensity units:

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

With the safeguard (:mod:`csrdmri.inference.safeguard`), each shell's correction is weighted
by how much the model helped on the input degraded once more. Every output is clipped at 0
(magnitude data). Last, when asked, every output volume is made consistent with the input
(:mod:`csrdmri.inference.consistency`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from csrdmri.core.errors import InputError, about
from csrdmri.core.grid import TargetGrid
from csrdmri.core.resample import resample
from csrdmri.dmri.preprocess import DEFAULT_SHELL, shell_indices
from csrdmri.dmri.scan import PreparedScan
from csrdmri.inference.adapt import spread
from csrdmri.inference.consistency import impose_consistency
from csrdmri.inference.joint import correct_shells
from csrdmri.inference.plan import OutputPlan
from csrdmri.inference.safeguard import guards, shell_weights
from csrdmri.inference.tiling import Box, as_input, predict_tiles
from csrdmri.inference.upsampler import DEFAULT_OPTIONS, Options, Upsampler
from csrdmri.io.nifti import DWISeries

log = logging.getLogger(__name__)

#: HR planes (first axis) resampled at once when writing the tricubic part of an output volume.
SLAB = 16


def model_predictions(
    up: Upsampler,
    x: np.ndarray,
    t1: np.ndarray | None,
    shape: tuple[int, ...],
    where: np.ndarray,
    options: Options,
) -> Iterator[tuple[Box, np.ndarray, np.ndarray]]:
    """The model's S/S0 prediction on the HR grid ``shape`` at the voxels of ``where``, block by
    block, as :func:`csrdmri.inference.tiling.predict_tiles` yields it."""
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


def new_output(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 output array of ``shape`` (X, Y, Z, V) in the order
    :func:`upsample_series` fills (Fortran: each volume contiguous)."""
    return np.empty(shape, np.float32, order="F")


@dataclass
class RunWeights:
    """What a run weighed: the safeguard's weight of the model's correction per shell (b-value,
    s/mm²; empty without it) and, with ``--input-noise checked`` under a consistency, the weight
    of each input volume's noise removal (V_in,; None otherwise)."""

    correction: dict[float, float]
    input_noise: np.ndarray | None = None


def upsample_series(
    series: DWISeries,
    grid: TargetGrid,
    up: Upsampler,
    out: np.ndarray,
    scan: PreparedScan | None = None,
    options: Options = DEFAULT_OPTIONS,
    plan: OutputPlan | None = None,
) -> RunWeights:
    """Super-resolve every volume of ``series`` onto ``grid`` into ``out``.

    Parameters
    ----------
    out : ndarray, shape (*grid.shape, V), float32, Fortran-ordered (V: the plan's volumes)
        Filled volume by volume, in slabs and model blocks: no whole output volume is held in
        memory besides ``out`` (a memory map keeps that bounded too). Fortran order (NIfTI's)
        keeps each volume one contiguous run, so that filling one and writing the file do not
        sweep the whole array (:func:`new_output`).
    scan : PreparedScan
        ``series`` prepared (brain mask, mean b0, shell, and the T1w for models that use one):
        needed by models, not by tricubic.
    plan : OutputPlan, optional
        The output's volumes (:mod:`csrdmri.inference.plan`): the acquired ones by default, or
        new directions of each shell (tricubic or the joint model only).

    Returns
    -------
    RunWeights
        The safeguard's weights (:mod:`csrdmri.inference.safeguard`, ``options.safeguard``) and
        the input noise's (:mod:`csrdmri.inference.consistency`, ``options.input_noise``).
    """
    plan = plan or OutputPlan.build(series.gtab)
    if not out.flags.f_contiguous:
        raise ValueError("the output array must be Fortran-ordered (see new_output)")
    if plan.angular and up.model is not None and not up.joint:
        raise InputError(
            f"new gradient directions need the joint q-space model or tricubic, not {up.name}",
            "out_directions",
        )
    weighted: set[int] = set()  # the volumes the model corrects
    if up.model is not None:
        if scan is None or scan.series is not series:
            raise ValueError("a model needs the series prepared (PreparedScan of the same series)")
        if up.uses_t1 and scan.t1 is None:
            raise InputError(f"model {up.name} uses a T1w, and none was given (or use a model without T1w)")
        reciprocal = scan.reciprocal(options.margin)
        joint = {int(v) for _, outputs in plan.shells.values() for v in outputs}
        weighted = joint if up.joint else shell_volumes(scan)
        t1 = scan.t1 if up.uses_t1 else None
        if up.adapt_steps:
            own = np.stack([series.data[..., v] * reciprocal for v in spread(sorted(weighted))])
            up = up.adapted(own.astype(np.float16), t1, scan.mask, float(np.mean(grid.scales)))
        # HR voxels whose nearest LR voxel is normalised: where the model is decoded.
        where = resample((reciprocal > 0).astype(np.float32), grid.shape, order=0) > 0.5
    shell_weight = shell_weights(series, grid, up, scan, options) if guards(up, options) else {}
    per_volume = up.model is not None and not up.joint
    for v in tqdm(range(len(plan.weights)), desc=f"upsampling ({up.name})", unit="vol", disable=None):
        volume = plan.volume(series.data, v)
        corrected = v in weighted
        for start in range(0, grid.shape[0], SLAB):
            slab = (slice(start, start + SLAB), slice(None), slice(None))
            result = resample(volume, grid.shape, box=slab)
            outside = ~where[slab] if up.model is not None else None
            if outside is not None and options.outside == "zero":
                result[outside] = 0.0
            # Voxels the model corrects are clipped after their correction.
            np.maximum(result, 0.0, out=result, where=outside if corrected else True)
            out[(*slab, v)] = result
        if corrected and per_volume:
            x = volume * reciprocal
            for box, selected, prediction in model_predictions(up, x, t1, grid.shape, where, options):
                # The model's correction of tricubic, brought back to the input's units.
                ratio = resample(x, grid.shape, box=box)[selected]
                s0_hr = np.maximum(resample(scan.b0, grid.shape, box=box)[selected], 0.0)
                block = out[(*box, v)]  # a view: writes go to ``out``
                correction = shell_weight.get(DEFAULT_SHELL, 1.0) * s0_hr * (prediction - ratio)
                block[selected] = np.maximum(block[selected] + correction, 0.0)
    if up.joint:
        correct_shells(grid, up, out, scan, plan, where, reciprocal, options, shell_weight)
    mask = scan.mask if scan is not None else None
    noise = impose_consistency(out, series, plan, options.consistency, options.input_noise, mask)
    return RunWeights(shell_weight, noise)


def shell_volumes(scan: PreparedScan) -> set[int]:
    """The volumes a per-volume model corrects: the b ≈ 1000 shell (with a warning about the
    other diffusion-weighted volumes)."""
    with about(scan.paths.dwi):
        weighted = set(shell_indices(scan.gtab, DEFAULT_SHELL).tolist())
    others = int((~scan.gtab.b0s_mask).sum()) - len(weighted)
    if others:
        log.warning(
            "%d diffusion-weighted volumes are not at b ≈ %g s/mm² (the models' shell): "
            "they are upsampled tricubically",
            others,
            DEFAULT_SHELL,
        )
    return weighted
