"""The safeguard (beyond the paper): how much of a model's correction to trust, checked on the
input itself (with the joint q-space model by default, ``--safeguard auto``).

Before super-resolving, the input is degraded once more by the same scale and brought back to
its own grid twice: by cubic interpolation and by the model. Per shell, the weight ``α ∈ [0, 1]``
of the model's correction that brings that result closest to the input (least squares over the
brain mask and the shell's volumes, raw intensities)::

    α = clip(⟨d, r⟩ / ⟨d, d⟩, 0, 1),   d = model − cubic,   r = input − cubic

The scanner's operator is not known, so the check is made with each operator of
``CHECK_OPERATORS`` (:func:`csrdmri.dmri.degraded.degrade_series`: the tricubic sampling the
models are trained on, and the k-space truncation an acquisition is closer to) and the shell's
weight is the smallest of them: the correction is trusted as far as it helps under both. That
weight is what the correction gets at the target resolution: 1 trusts the model, 0 returns
cubic interpolation. The check reads the input only — never a truth — so it runs on any scan
and is evaluated honestly. What it assumes: that how much the model helps from ``s²``-fold to
``s``-fold coarser data predicts how much it helps from the input to the output
(self-similarity across scales, as zero-shot super-resolution assumes). Cost: per operator, the
model and cubic once more at the input's size (about ``1/s³`` of the output's voxels).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from csrdmri.core.degrade import Degradation
from csrdmri.core.grid import TargetGrid
from csrdmri.dmri.degraded import degrade_series
from csrdmri.dmri.scan import PreparedScan
from csrdmri.inference.plan import OutputPlan
from csrdmri.inference.upsampler import Options, Upsampler
from csrdmri.io.nifti import DWISeries

log = logging.getLogger(__name__)

#: The acquisition operators the check is made with (the weight is the smallest over them).
CHECK_OPERATORS: tuple[Degradation, ...] = ("tricubic", "kspace")


def guards(up: Upsampler, options: Options) -> bool:
    """Whether the safeguard runs for ``up`` under ``options.safeguard`` (``auto``: with the
    joint q-space model)."""
    if up.model is None or options.safeguard == "off":
        return False
    return options.safeguard == "on" or up.joint


def shell_weights(
    series: DWISeries, grid: TargetGrid, up: Upsampler, scan: PreparedScan, options: Options
) -> dict[float, float]:
    """Per shell with enough directions for an SH fit (b-value, s/mm²), the weight of the
    model's correction when ``series`` is super-resolved onto ``grid``: the smallest
    :func:`check_weights` over ``CHECK_OPERATORS`` (module docstring)."""
    checks = [check_weights(series, grid, up, scan, options, operator) for operator in CHECK_OPERATORS]
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


def check_weights(
    series: DWISeries,
    grid: TargetGrid,
    up: Upsampler,
    scan: PreparedScan,
    options: Options,
    degradation: Degradation,
) -> dict[float, float]:
    """Per shell, the least-squares weight ``α`` of the model's correction on ``series``
    degraded once more by ``grid``'s scales with ``degradation`` (module docstring)."""
    from csrdmri.inference.series import new_output, upsample_series  # the check runs the same pipeline

    coarse, back = degrade_series(series, grid.scales, degradation)
    t1 = scan.t1_source if up.reads_t1 else None
    coarse_scan = PreparedScan.prepare(coarse, t1=t1, shell=None, t1_transform=scan.t1_transform)
    shells = OutputPlan.build(series.gtab).shells
    volumes = sorted(int(v) for inputs, _ in shells.values() for v in inputs)
    runs = {}
    quiet = replace(options, consistency="off", safeguard="off")
    for name, method, prepared in (("cubic", Upsampler.load("tricubic"), None), ("model", up, coarse_scan)):
        out = new_output((*series.shape, series.data.shape[3]))
        upsample_series(coarse, back, method, out, prepared, quiet)
        runs[name] = out[scan.mask][:, volumes]
    acquired = series.data[scan.mask][:, volumes]
    weights = {}
    for bvalue, (inputs, _) in shells.items():
        columns = np.searchsorted(volumes, inputs)
        cubic = runs["cubic"][:, columns].astype(np.float64)
        d = runs["model"][:, columns] - cubic
        r = acquired[:, columns] - cubic
        weights[bvalue] = float(np.clip((d * r).sum() / max((d * d).sum(), 1e-30), 0.0, 1.0))
    return weights
