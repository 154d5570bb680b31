"""Angular super-resolution scored by leaving directions out (beyond the paper).

For a dataset taken as the truth (as in :mod:`csrdmri.evaluation.volume_protocol`):

1. ``keep`` directions of each shell, spread over the sphere
   (:func:`~csrdmri.evaluation.volume_protocol.spread_directions`), and the b0s form the input;
   it is degraded by the scale like a whole volume;
2. each method that can make new directions (tricubic — the cubic upsampling of the shell's SH
   fit — and the joint q-space model) writes the series at the held-out directions
   (:class:`~csrdmri.inference.plan.OutputPlan` with those directions);
3. the held-out volumes are scored against the truth's as whole volumes are (raw and S/S0
   PSNR/SSIM, DTI over the b0s and the held-out directions).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from csrdmri.dmri.degraded import degrade_series
from csrdmri.dmri.dti import tensor_maps
from csrdmri.dmri.preprocess import b0_indices, shells
from csrdmri.dmri.scan import PreparedScan
from csrdmri.dmri.sh import MIN_DIRECTIONS
from csrdmri.evaluation.patch_protocol import Method
from csrdmri.evaluation.volume_protocol import (
    RAW_RANGE,
    NoiseFree,
    VolumeCase,
    kept_volumes,
    noise_ceiling,
    score_volume,
    volumes_of,
)
from csrdmri.inference.plan import OutputPlan
from csrdmri.inference.series import new_output, upsample_series
from csrdmri.inference.upsampler import Options
from csrdmri.io.nifti import DWISeries

log = logging.getLogger(__name__)


def split_directions(series: DWISeries, keep: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The b0s and ``keep`` spread directions of each shell (sorted indices), and the other
    diffusion-weighted volumes; None (with a warning) when a shell cannot keep ``keep`` and
    still leave out the directions a tensor fit needs."""
    for b, idx in shells(series.gtab).items():
        if len(idx) < keep + MIN_DIRECTIONS:
            log.warning(
                "%s: keeping %d directions of the shell b = %g s/mm² leaves %d, fewer than the %d "
                "a tensor fit needs: no angular score",
                series.paths.dwi if series.paths else "series",
                keep,
                b,
                len(idx) - keep,
                MIN_DIRECTIONS,
            )
            return None
    kept = kept_volumes(series.gtab, keep)
    return kept, np.setdiff1d(np.flatnonzero(~series.gtab.b0s_mask), kept)


def output_volumes(plan: OutputPlan, series: DWISeries, left: np.ndarray) -> np.ndarray:
    """Indices of the output volumes of ``plan`` (made for the directions of ``left``, in
    order) matching the input's b0s, then each held-out volume ``left`` of ``series``."""
    # The shells of the input and of the series, matched by rank (their mean b can round apart).
    made = [plan.shells[b][1] for b in sorted(plan.shells)]
    groups = shells(series.gtab)
    shell_of = {int(v): made[rank] for rank, b in enumerate(sorted(groups)) for v in groups[b]}
    rows = [shell_of[int(v)][i] for i, v in enumerate(left)]
    return np.concatenate([np.flatnonzero(plan.gtab.b0s_mask), rows]).astype(int)


def angular_protocol(
    dataset: str,
    series: DWISeries,
    methods: dict[str, Method],
    scale: float,
    keep: int,
    options: Options | None = None,
    progress: Callable[[str], None] | None = None,
    reference: np.ndarray | None = None,
    degradation: str = "tricubic",
) -> VolumeCase | None:
    """Score each method's held-out directions of ``series`` (the truth) from ``keep``
    directions per shell, degraded by ``scale`` by ``degradation``; ``reference``: the
    noise-free signal (phantoms).
    None when the series has too few directions (:func:`split_directions`)."""
    split = split_directions(series, keep)
    if split is None:
        return None
    kept, left = split
    b0s = b0_indices(series.gtab)
    truth = volumes_of(series, np.concatenate([b0s, left]))
    truth_scan = PreparedScan.prepare(truth, shell=None)
    truth_maps = tensor_maps(truth.data, truth.gtab, truth_scan.mask)
    raw_range = float(np.percentile(truth_scan.b0[truth_scan.mask], RAW_RANGE))
    clean = None if reference is None else reference[..., np.concatenate([b0s, left])]
    noise_free = NoiseFree.of(clean, truth.gtab, truth_scan.mask)
    lr, grid = degrade_series(volumes_of(series, kept), scale, degradation)
    reads_t1 = series.paths.t1 is not None and any(m.at(scale).reads_t1 for m in methods.values())
    native = any(m.at(scale).native_t1 for m in methods.values())  # every method sees it aligned
    scan = PreparedScan.prepare(lr, t1=series.paths.t1 if reads_t1 else None, shell=None, align_t1=native)
    directions = series.gtab.bvecs[left]
    plan = OutputPlan.build(lr.gtab, out_directions=directions)
    case = VolumeCase(
        f"{dataset} ({keep} → {len(kept) - len(b0s) + len(left)} directions)",
        scale,
        lr.shape,
        series.shape,
        truth_scan.ratio(truth_scan.shell[:1])[..., 0],
        truth_maps.fa,
        scan.ratio(scan.shell[:1])[..., 0],
        truth_scan.mask,
        raw_range=raw_range,
        ceiling=noise_ceiling(truth, clean, truth_scan.mask, raw_range),
    )
    picked = output_volumes(plan, series, left)
    for label, method in methods.items():
        up = method.at(scale)
        if up.model is not None and not up.joint:
            case.skipped[label] = "makes no new directions (a per-volume model)"
        elif up.uses_t1 and scan.t1 is None:
            case.skipped[label] = "needs a T1w; the dataset has none"
        else:
            out = new_output((*series.shape, len(plan.weights)))
            upsample_series(lr, grid, up, out, scan, options or Options(), plan)
            truth_ratio = truth_scan.ratio(truth_scan.shell)
            case.methods[label] = score_volume(
                out[..., picked], truth, truth_ratio, truth_maps, truth_scan.mask, raw_range, noise_free
            )
        if progress:
            progress(f"{case.dataset} {scale:g}× {label}")
    return case
