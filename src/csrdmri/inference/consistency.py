"""Data consistency (beyond the paper): make the output agree with the acquired data.

After the volumes are upsampled (and corrected by a model), each output volume ``j`` is replaced
by the volume nearest to it, in least squares, whose degradation by an assumed acquisition
operator (:mod:`csrdmri.core.degrade`) onto the input grid is the input's volume ``j`` (for a
new gradient direction, the shell's SH fit at that direction on the input grid,
:class:`~csrdmri.inference.plan.OutputPlan`):

``kspace``
    the output's central k-space block is the input's (what a scanner acquiring the input's
    matrix measures, to first order), the rest of its spectrum kept;
``image``
    the output, degraded by the tricubic operator (cubic B-spline sampling at the input's voxel
    centres, as the evaluation protocols' default degradation), equals the input.

What it guarantees: the output, degraded by the chosen operator, equals the input to float32
rounding — except where the final clip at 0 (magnitude data) acts. When the assumed operator is
the one that made the input from a truth, the result is never farther from that truth than the
output before (an orthogonal projection onto a set holding the truth); with another operator
there is no such guarantee, which is why it is a choice and measured (docs/results.md).

The input's noise (``--input-noise``, with a consistency operator): upsampling spreads the
input's noise onto the finer grid like signal, including into the part of the output the
operator does not see (its null space), where a finer acquisition's own noise is independent of
it. ``kept`` leaves it there; ``tensor`` first subtracts from each output volume the
tricubically upsampled residual of the input volume against its shell's tensor fit
(:mod:`csrdmri.dmri.residual`), so that after the consistency step only the part of that
residual the operator sees is back — the guarantee above is unchanged (rule 10 in
docs/results.md: +0.01 to +0.64 dB over ``kept`` on every development column, FA level).

Where the tensor does not fit — volumes displaced by uncorrected motion, whose residual holds
the brain's edges — that residual is signal, and taking it out costs (docs/results.md).
``checked`` lets the input decide, like the safeguard (:mod:`csrdmri.inference.safeguard`):
the input is degraded once more by the output's scales with the consistency's operator, each
volume of that coarser copy is brought back by consistent cubic interpolation, and its tensor
residual's weight ``w ∈ [0, 1]`` is the one whose removal brings it closest to the input
(least squares inside the mask; :func:`checked_weights`). Noise in the residual is independent
of what the operator does not see of the input, so its removal helps and ``w`` comes out near 1;
a residual that predicts the input's unseen detail gets a smaller one. ``auto`` (the default)
is ``checked`` with a consistency operator: rule 11 in docs/results.md, where it kept all of
``tensor``'s gain on the still development phantoms and, with simulated motion, gained +0.03
to +0.31 dB over ``kept`` where ``tensor`` lost 0.9 to 1.6 dB.
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from csrdmri.core.degrade import Degradation, consistent
from csrdmri.core.errors import InputError
from csrdmri.core.resample import resample
from csrdmri.dmri.degraded import degrade_series
from csrdmri.dmri.preprocess import series_mask
from csrdmri.dmri.residual import tensor_residual
from csrdmri.inference.plan import OutputPlan
from csrdmri.io.nifti import DWISeries

log = logging.getLogger(__name__)

#: ``--consistency`` choices -> the degradation operator assumed (None: off).
CONSISTENCY = {"off": None, "kspace": "kspace", "image": "tricubic"}
#: ``--input-noise`` choices (module docstring).
INPUT_NOISE = ("auto", "kept", "tensor", "checked")


def noise_treatment(consistency: str, input_noise: str) -> str:
    """What ``input_noise`` does under ``consistency``: ``"tensor"``, ``"checked"`` or ``"kept"``
    (``"auto"`` is ``"checked"`` with a consistency operator, ``"kept"`` without one)."""
    if input_noise == "auto":
        return "kept" if CONSISTENCY[consistency] is None else "checked"
    return input_noise


def impose_consistency(
    out: np.ndarray,
    series: DWISeries,
    plan: OutputPlan,
    consistency: str,
    input_noise: str = "auto",
    mask: np.ndarray | None = None,
) -> np.ndarray | None:
    """Make every output volume of ``out`` (X, Y, Z, V_out) consistent with its input volume on
    the grid of ``series`` (module docstring), in place, then clip it at 0; nothing for ``"off"``.
    With ``input_noise`` ``"tensor"``, the upsampled tensor residual of the input volume is
    subtracted first, the tensors fitted inside ``mask`` (X, Y, Z; default: the series' own brain
    mask, ``dmri.preprocess.series_mask``); with ``"checked"`` (or ``"auto"``), weighted by
    :func:`checked_weights`, which are returned (V_in,); None otherwise."""
    operator = CONSISTENCY[consistency]
    if operator is None:
        return None
    treatment = noise_treatment(consistency, input_noise)
    residual = weights = None
    if treatment != "kept":
        mask = series_mask(series) if mask is None else mask
        residual = tensor_residual(series, mask)
    if treatment == "checked":
        weights = checked_weights(series, residual, out.shape[:3], mask, operator)
        residual *= weights.astype(np.float32)
    for j in tqdm(range(out.shape[3]), desc=f"data consistency ({consistency})", unit="vol", disable=None):
        lr = plan.volume(series.data, j)
        hr = np.asarray(out[..., j])
        if residual is not None:
            hr = hr - resample(plan.volume(residual, j), hr.shape)
        out[..., j] = np.maximum(consistent(hr, lr, operator), 0.0)
    return weights


def checked_weights(
    series: DWISeries, residual: np.ndarray, shape: tuple[int, ...], mask: np.ndarray, operator: Degradation
) -> np.ndarray:
    """Per volume of ``series`` (V,), the weight of its tensor ``residual`` (X, Y, Z, V) taken out
    when it is upsampled onto ``shape`` (X', Y', Z') under ``operator`` (module docstring); ``mask``
    (X, Y, Z) bounds the least squares. Volumes without a residual (b0s, small shells) get 1;
    volumes whose copy degraded once more has none to check (too little of the input left) get
    0, with a warning: unchecked, their noise is kept."""
    has = np.abs(residual).max(axis=(0, 1, 2)) > 0
    weights = np.where(has, 0.0, 1.0)
    scales = np.asarray(shape, np.float64) / np.asarray(series.shape, np.float64)
    try:
        coarse, _ = degrade_series(series, scales, operator)
        coarse_residual = tensor_residual(
            coarse, resample(mask.astype(np.float32), coarse.shape, order=1) > 0.5
        )
        checked = np.flatnonzero(has & (np.abs(coarse_residual).max(axis=(0, 1, 2)) > 0))
    except InputError as error:
        checked, why = np.zeros(0, int), str(error)
    else:
        why, zero = "too little of it left", np.zeros(coarse.shape)
    for v in checked:
        unseen = consistent(resample(coarse_residual[..., v], series.shape), zero, operator)[mask]
        back = consistent(resample(coarse.data[..., v], series.shape), coarse.data[..., v], operator)
        error = back[mask].astype(np.float64) - series.data[..., v][mask]
        weights[v] = np.clip((error * unseen).sum() / max(float((unseen * unseen).sum()), 1e-30), 0.0, 1.0)
    if len(checked) < has.sum():
        log.warning(
            "input noise: %d volumes could not be checked on the input degraded once more (%s): "
            "their noise is kept",
            has.sum() - len(checked),
            why,
        )
    low = int((weights[checked] < 0.5).sum())
    if low:
        log.warning(
            "input noise: %d of %d volumes' tensor residual weighted below 0.5 (median %.2f): on "
            "the input degraded once more, taking it out did not help — displaced volumes or a "
            "signal the tensor does not fit; that much of it is kept",
            low,
            len(checked),
            np.median(weights[checked]),
        )
    return weights
