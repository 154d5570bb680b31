"""The safeguard (beyond the paper): how much of a model's correction to trust, checked on the
input itself (on by default with every model, ``--safeguard on``).

Before super-resolving, the input is degraded once more by the same scale (at most
``CHECK_MAX_SCALE`` per axis) and brought back to its own grid twice: by cubic interpolation and
by the model. Per shell, the weight ``α ∈ [0, 1]`` of the model's correction that brings that
result closest to the input (least squares over the brain mask and the shell's volumes, raw
intensities)::

    α = clip(⟨d, r⟩ / ⟨d, d⟩, 0, 1),   d = model − cubic,   r = input − cubic

The scanner's operator is not known, so the check is made with each operator of
``CHECK_OPERATORS`` (:func:`csrdmri.dmri.degraded.degrade_series`: the tricubic sampling the
models are trained on, and the k-space truncation an acquisition is closer to) and the shell's
weight is the smallest of them: the correction is trusted as far as it helps under both. That
weight is what the correction gets at the target resolution: 1 trusts the model, 0 returns
cubic interpolation. The check reads the input only — never a truth — so it runs on any scan
and is evaluated honestly. What it assumes: that how much the model helps from ``s·c``-fold to
``s``-fold coarser data (``c`` the check's scale, ``min(s, 2)``) predicts how much it helps from
the input to the output (self-similarity across scales, as zero-shot super-resolution assumes).
Cost: per operator, the model and cubic once more at the input's size (about ``1/s³`` of the
output's voxels).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

from csrdmri.core.degrade import Degradation
from csrdmri.core.errors import InputError
from csrdmri.core.grid import TargetGrid
from csrdmri.dmri.degraded import coarse_grid, degrade_series
from csrdmri.dmri.preprocess import DEFAULT_SHELL, shell_indices, t1_resampled
from csrdmri.dmri.scan import PreparedScan
from csrdmri.inference.plan import OutputPlan
from csrdmri.inference.upsampler import Options, Upsampler
from csrdmri.io.nifti import DWISeries

log = logging.getLogger(__name__)

#: The acquisition operators the check is made with (the weight is the smallest over them).
CHECK_OPERATORS: tuple[Degradation, ...] = ("tricubic", "kspace")
#: The largest scale the check degrades by (per axis): beyond 2×, degrading the input once more
#: by the full scale leaves a brain of a few thousand voxels (docs/results.md, rule 38).
CHECK_MAX_SCALE = 2.0


def check_scales(grid: TargetGrid) -> tuple[float, float, float]:
    """The scales per axis by which the check degrades the input: ``grid``'s, at most
    :data:`CHECK_MAX_SCALE`."""
    return tuple(min(float(s), CHECK_MAX_SCALE) for s in grid.scales)


def guards(up: Upsampler, options: Options) -> bool:
    """Whether the safeguard runs for ``up`` under ``options.safeguard`` (tricubic has no
    correction to weigh); warns when it is off for a model whose checkpoint says it needs it
    (metadata ``needs_safeguard``: why)."""
    if up.model is None:
        return False
    if options.safeguard == "off" and up.meta.get("needs_safeguard"):
        log.warning(
            "%s needs the safeguard (%s); --safeguard off applies its correction unchecked",
            up.name,
            up.meta["needs_safeguard"],
        )
    return options.safeguard == "on"


def shell_weights(
    series: DWISeries, grid: TargetGrid, up: Upsampler, scan: PreparedScan, options: Options
) -> dict[float, float]:
    """Per shell the model corrects (:func:`corrected_shells`), the weight of its correction
    when ``series`` is super-resolved onto ``grid``: the smallest :func:`check_weights` over
    ``CHECK_OPERATORS`` (module docstring)."""
    try:
        t1 = coarse_t1(series, grid, up, scan)  # one grid for every check: resampled once
        checks = [check_weights(series, grid, up, scan, options, op, t1) for op in CHECK_OPERATORS]
    except InputError as error:  # e.g. too small an input: once more degraded, no brain is left
        log.warning(
            "safeguard: the model could not be checked on this input degraded once more (%s): "
            "its correction is left out (cubic interpolation); --safeguard off applies it unchecked",
            error,
        )
        return dict.fromkeys(corrected_shells(series, up), 0.0)
    weights = {b: min(check[b] for check in checks) for b in checks[0]}
    for bvalue, weight in weights.items():
        if weight < 1.0:
            log.warning(
                "safeguard: the model's correction of the shell b = %g s/mm² is weighted %.2f "
                "(on the input degraded once more, that weight reproduced the input best)",
                bvalue,
                weight,
            )
    return weights


def coarse_t1(series: DWISeries, grid: TargetGrid, up: Upsampler, scan: PreparedScan) -> np.ndarray | None:
    """The scan's T1w on the grid of the checks' degraded series (not normalised), for a model
    that reads it; None otherwise."""
    if not up.reads_t1 or scan.t1_source is None:
        return None
    shape, affine = coarse_grid(series, check_scales(grid))
    return t1_resampled(scan.t1_source, affine, shape, scan.t1_transform)


def corrected_shells(series: DWISeries, up: Upsampler) -> dict[float, np.ndarray]:
    """Per shell the model corrects (b-value, s/mm²), its acquired volumes: each shell of the
    joint model's plan (enough directions for an SH fit), or a per-volume model's b ≈ 1000
    volumes, however few."""
    if up.joint:
        return {b: inputs for b, (inputs, _) in OutputPlan.build(series.gtab).shells.items()}
    return {DEFAULT_SHELL: shell_indices(series.gtab, DEFAULT_SHELL)}


@contextmanager
def said_once() -> Iterator[None]:
    """Within, the inference modules log errors only: the checks would repeat what the output's
    own run says (shells left to cubic, SH orders)."""
    logger = logging.getLogger("csrdmri.inference")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_weights(
    series: DWISeries,
    grid: TargetGrid,
    up: Upsampler,
    scan: PreparedScan,
    options: Options,
    degradation: Degradation,
    t1: np.ndarray | None = None,
) -> dict[float, float]:
    """Per shell the model corrects, the least-squares weight ``α`` of its correction on
    ``series`` degraded once more by ``grid``'s scales with ``degradation`` (module docstring);
    ``t1``: :func:`coarse_t1`, when already computed."""
    from csrdmri.inference.series import new_output, upsample_series  # the check runs the same pipeline

    coarse, back = degrade_series(series, check_scales(grid), degradation)
    t1 = coarse_t1(series, grid, up, scan) if t1 is None else t1
    source = scan.t1_source if t1 is not None else None
    coarse_scan = PreparedScan.prepare(
        coarse, t1=source, shell=None, t1_transform=scan.t1_transform, t1_resampled=t1
    )
    shells = corrected_shells(series, up)
    volumes = sorted(int(v) for inputs in shells.values() for v in inputs)
    runs = {}
    quiet = replace(options, consistency="off", safeguard="off", input_noise="auto")
    for name, method, prepared in (("cubic", Upsampler.load("tricubic"), None), ("model", up, coarse_scan)):
        out = new_output((*series.shape, series.data.shape[3]))
        with said_once():
            upsample_series(coarse, back, method, out, prepared, quiet)
        runs[name] = out[scan.mask][:, volumes]
    acquired = series.data[scan.mask][:, volumes]
    weights = {}
    for bvalue, inputs in shells.items():
        columns = np.searchsorted(volumes, inputs)
        cubic = runs["cubic"][:, columns].astype(np.float64)
        d = runs["model"][:, columns] - cubic
        r = acquired[:, columns] - cubic
        weights[bvalue] = float(np.clip((d * r).sum() / max((d * d).sum(), 1e-30), 0.0, 1.0))
    return weights
