"""The joint q-space model on a series: one encoder/decoder pass per shell, all its directions.

For each diffusion-weighted shell with at least ``MIN_DIRECTIONS`` directions
(:mod:`csrdmri.dmri.sh`; :class:`~csrdmri.inference.plan.OutputPlan`), in the input's units:

1. S/S0 of its K volumes (1/S0 of the :class:`~csrdmri.dmri.scan.PreparedScan`) is fitted by
   real symmetric SH (order from K, Laplace–Beltrami regularised) on the LR grid;
2. the model (:mod:`csrdmri.models.qspace`) turns those maps (+ b-value, order, the relative
   mean b0 and the measured roll-off of the mean b0 for a model that reads them, and the T1w
   when there is one, on the LR grid and — for a model that reads it there — on the HR grid,
   :func:`native_t1`) into SH corrections Δc at every HR voxel of the dilated mask, tile by
   tile (:func:`csrdmri.inference.tiling.predict_tiles`);
3. each output volume ``g`` of the shell, already holding cubic(DWI_g) (for a new direction,
   the cubic upsampling of the shell's SH fit evaluated at ``g``), gets ``cubic(b0) · Y(g)·Δc``
   added, and is clipped at 0.

Shells with fewer directions, and the b0s, stay cubic (with a warning for the shells).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from csrdmri.core.grid import TargetGrid
from csrdmri.core.resample import resample
from csrdmri.core.spectrum import measured_rolloff
from csrdmri.dmri.preprocess import relative_b0, t1_on_grid
from csrdmri.dmri.scan import PreparedScan
from csrdmri.dmri.sh import MAX_ORDER, MIN_DIRECTIONS, n_coefficients, order_for, sh_matrices, unit_directions
from csrdmri.inference.plan import OutputPlan
from csrdmri.inference.tiling import predict_tiles
from csrdmri.inference.upsampler import Options, Upsampler
from csrdmri.models.qspace import shell_input

log = logging.getLogger(__name__)


def shell_coefficients(scan: PreparedScan, volumes: np.ndarray, fit: np.ndarray, reciprocal: np.ndarray):
    """SH coefficients (28, X, Y, Z), float32, of the S/S0 of ``volumes`` (K,) by ``fit`` (K, 28);
    accumulated volume by volume (a rank-1 update in place), so no (X, Y, Z, K) array is held."""
    out = np.zeros((n_coefficients(MAX_ORDER), *scan.series.shape), np.float32)
    flat = torch.from_numpy(out).view(len(out), -1)
    for row, v in zip(torch.from_numpy(fit.astype(np.float32)), volumes, strict=True):
        ratio = np.asarray(scan.series.data[..., v], dtype=np.float32) * reciprocal
        # C order, as ``out``: a NIfTI file's volumes are Fortran-ordered, and so is their product.
        flat.addr_(row, torch.from_numpy(np.ascontiguousarray(ratio)).view(-1))
    return out


def native_t1(model: torch.nn.Module, scan: PreparedScan, grid: TargetGrid) -> np.ndarray | None:
    """The scan's T1w on the output grid, normalised inside the brain there, for a model that
    reads the T1w at the output resolution (None otherwise, or without a T1w)."""
    path = scan.t1_source
    if path is None or not getattr(model, "native_t1", False):
        return None
    brain = resample(scan.mask.astype(np.float32), grid.shape, order=0) > 0.5
    log.info("the T1w is read at the output resolution too")
    return t1_on_grid(path, grid.affine, grid.shape, brain, scan.t1_transform)


def correct_shells(
    grid: TargetGrid,
    up: Upsampler,
    out: np.ndarray,
    scan: PreparedScan,
    plan: OutputPlan,
    where: np.ndarray,
    reciprocal: np.ndarray,
    options: Options,
    weights: dict[float, float] | None = None,
) -> None:
    """Add the model's correction to the tricubic volumes of every shell of ``plan`` in ``out``
    (shape (*grid.shape, V_out), Fortran-ordered) at the HR voxels of ``where`` (HR mask), and clip them at 0:
    fitted from the shell's acquired volumes, synthesised at the plan's output directions, and
    multiplied by the shell's weight in ``weights`` (b-value -> weight; 1 when absent)."""
    for bvalue, count in plan.skipped.items():
        log.warning(
            "the shell b = %g s/mm² has %d direction(s), fewer than the %d an SH fit needs: "
            "it is upsampled with cubic interpolation",
            bvalue,
            count,
            MIN_DIRECTIONS,
        )
    native = native_t1(up.model, scan, grid) if plan.shells else None
    b0 = relative_b0(scan.b0, scan.mask) if getattr(up.model, "reads_b0", False) else None
    rolloff = measured_rolloff(scan.b0, scan.mask) if getattr(up.model, "reads_rolloff", False) else None
    if rolloff is not None:
        log.info("the input's roll-off (log10, x/y/z): %s", "/".join(f"{v:.2f}" for v in rolloff))
    for bvalue, (inputs, outputs) in plan.shells.items():
        order = order_for(len(inputs))
        fit, _ = sh_matrices(unit_directions(scan.gtab.bvecs[inputs]), order)
        _, basis = sh_matrices(unit_directions(plan.gtab.bvecs[outputs]), order)
        log.info("shell b = %g s/mm²: %d directions, SH order %d", bvalue, len(inputs), order)
        maps = shell_input(shell_coefficients(scan, inputs, fit, reciprocal), bvalue, order, b0, rolloff)
        blocks = predict_tiles(
            up.model,
            maps,
            scan.t1,
            grid.shape,
            where,
            tile=options.tile,
            chunk=options.chunk,
            device=options.device,
            precision=options.precision,
            native=native,
        )
        basis = basis.astype(np.float32) * np.float32((weights or {}).get(bvalue, 1.0))
        for box, selected, values in blocks:
            s0_hr = np.maximum(resample(scan.b0, grid.shape, box=box)[selected], 0.0)
            corrections = (basis @ values.T) * s0_hr  # (K_out, n), input units
            # ``out`` is Fortran-ordered: each volume is one contiguous run, indexed flat.
            at = np.ravel_multi_index(
                tuple(i + s.start for i, s in zip(np.nonzero(selected), box, strict=True)),
                grid.shape,
                order="F",
            )
            for v, correction in zip(outputs, corrections, strict=True):
                volume = out[..., v].reshape(-1, order="F")  # a view: writes go to ``out``
                volume[at] = np.maximum(volume[at] + correction, 0.0)
