"""Whole-volume evaluation (beyond the paper): degrade a whole series, super-resolve it back.

For a dataset taken as the high-resolution truth (a phantom test subject, or a real scan —
then this is a *degradation-based* evaluation: the acquired data play the truth):

1. every volume is downsampled by the scale ``s`` to ``round(N / s)`` voxels per axis over the
   same field of view (:mod:`csrdmri.core.grid`) by the chosen degradation
   (:mod:`csrdmri.core.degrade`: tricubic, the paper's, as training pairs are made; or k-space
   truncation, what a scanner acquiring the coarser matrix measures);
2. each method super-resolves the LR series back onto the truth's grid through the
   ``csrdmri upsample`` machinery (:func:`csrdmri.inference.series.upsample_series`): brain mask and T1w
   found from the LR data as a user's run would (median_otsu on the LR mean b0; the T1w file
   resampled onto the LR grid by the affines), b0 volumes tricubic;
3. scores inside the truth's brain mask, per diffusion-weighted volume (every shell): PSNR and
   SSIM of the intensities as written (the headline; data range the 99.9th percentile of the
   truth's mean b0 in the brain), and of S/S0, each series divided by its *own* mean b0 (what a
   tensor fit of the output sees; the truth by its own too);
4. DTI (DIPY) of the truth and of each output over the same volumes: FA and MD errors, and
   the principal-direction angle in white matter (:mod:`csrdmri.dmri.dti`).

``directions`` keeps only that many volumes of each shell, chosen spread over the sphere
(:func:`spread_directions`), so that whole-volume runs on 2 CPU cores stay affordable while the
tensor fit stays well conditioned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from dipy.core.gradients import gradient_table

from csrdmri.core.degrade import consistent
from csrdmri.core.errors import InputError
from csrdmri.core.metrics import psnr, ssim
from csrdmri.dmri.degraded import degrade_series
from csrdmri.dmri.dti import TensorMaps, dti_errors, tensor_maps
from csrdmri.dmri.preprocess import b0_indices, b0_reciprocal, shells
from csrdmri.dmri.scan import PreparedScan
from csrdmri.evaluation.patch_protocol import Method, refuse_seen
from csrdmri.inference.series import new_output, upsample_series
from csrdmri.inference.upsampler import Options
from csrdmri.io.nifti import DWISeries

#: Fewest directions per shell a tensor fit gets (6 unknowns of the tensor).
MIN_DIRECTIONS = 6
#: Percentile of the truth's mean b0 inside the brain that is the data range of the raw scores
#: (PSNR/SSIM of the intensities as written; the same range for every method of a case).
RAW_RANGE = 99.9


def spread_directions(bvecs: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` of the unit vectors ``bvecs`` (n, 3), spread over the sphere.

    Greedy farthest-point selection with antipodal symmetry (±g is the same diffusion
    direction), starting from the first vector; deterministic. All indices when ``k ≥ n``.
    """
    n = len(bvecs)
    if k >= n:
        return np.arange(n)
    chosen = [0]
    closeness = np.abs(bvecs @ bvecs[0])  # |cos| to the nearest chosen direction
    for _ in range(k - 1):
        chosen.append(int(np.argmin(closeness)))
        closeness = np.maximum(closeness, np.abs(bvecs @ bvecs[chosen[-1]]))
    return np.sort(np.asarray(chosen))


def kept_volumes(gtab, directions: int | None) -> np.ndarray:
    """Sorted indices of the b0 volumes and of ``directions`` spread volumes of each shell of
    ``gtab`` (all when None)."""
    kept = [b0_indices(gtab)]
    if directions is not None and directions < MIN_DIRECTIONS:
        raise InputError(f"a tensor fit needs at least {MIN_DIRECTIONS} directions, got {directions}")
    for shell in shells(gtab).values():
        kept.append(shell if directions is None else shell[spread_directions(gtab.bvecs[shell], directions)])
    return np.sort(np.concatenate(kept))


def volumes_of(series: DWISeries, indices: np.ndarray) -> DWISeries:
    """The volumes ``indices`` of ``series``, with their b-table."""
    gtab = series.gtab
    subset = gradient_table(gtab.bvals[indices], bvecs=gtab.bvecs[indices], b0_threshold=gtab.b0_threshold)
    return replace(series, data=series.data[..., indices], gtab=subset)


def subset_series(series: DWISeries, directions: int | None) -> DWISeries:
    """The b0 volumes and ``directions`` spread volumes of each shell (all when None), in order."""
    return volumes_of(series, kept_volumes(series.gtab, directions))


def central_slab(series: DWISeries, slices: int) -> DWISeries:
    """The central ``slices`` slices of ``series`` through its third axis (a thin-slab
    acquisition; the whole series when it has no more), the affine moved to match, and no mask
    file: the slab's brain mask is found from its data."""
    start = max(series.shape[2] - slices, 0) // 2
    shift = np.eye(4)
    shift[2, 3] = start
    return replace(
        series,
        data=np.ascontiguousarray(series.data[:, :, start : start + slices]),
        affine=series.affine @ shift,
        paths=replace(series.paths, mask=None),
    )


def own_ratio(data: np.ndarray, b0s: np.ndarray, volumes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """S/S0 (X, Y, Z, K) of ``volumes`` of ``data`` divided by its own mean b0 inside ``mask``."""
    reciprocal = b0_reciprocal(data[..., b0s].mean(axis=-1), mask)
    return data[..., volumes] * reciprocal[..., None]


@dataclass(frozen=True)
class NoiseFree:
    """A phantom's noise-free signal (X, Y, Z, V) and its tensor maps: what the outputs are also
    scored against, so that resolution and denoising are told apart."""

    data: np.ndarray
    maps: TensorMaps

    @classmethod
    def of(cls, data: np.ndarray | None, gtab, mask: np.ndarray) -> NoiseFree | None:
        """The noise-free signal ``data`` with the b-table ``gtab``, its tensors fitted inside
        ``mask``; None without data (a real scan)."""
        return None if data is None else cls(data, tensor_maps(data, gtab, mask))


@dataclass
class VolumeScores:
    """One method on one dataset at one scale."""

    psnr: list[float]  # S/S0, per diffusion-weighted volume, dB
    ssim: list[float]
    dti: dict[str, float]  # csrdmri.dmri.dti.dti_errors
    fa: np.ndarray  # FA map (X, Y, Z), for figures
    example: np.ndarray  # S/S0 of the first diffusion-weighted volume (X, Y, Z), for figures
    raw_psnr: list[float] = field(default_factory=list)  # per volume, intensities as written, dB
    raw_ssim: list[float] = field(default_factory=list)
    clean_psnr: list[float] = field(default_factory=list)  # raw, against the noise-free signal
    clean_dti: dict[str, float] = field(default_factory=dict)  # DTI errors against the noise-free fit
    safeguard: dict[float, float] = field(default_factory=dict)  # weight of the correction per shell
    input_noise: list[float] = field(default_factory=list)  # weight of each input volume's noise removal

    def summary(self) -> dict:
        raw = {}
        if self.raw_psnr:
            raw = {
                "raw_psnr_mean": float(np.mean(self.raw_psnr)),
                "raw_psnr_std": float(np.std(self.raw_psnr)),
                "raw_ssim_mean": float(np.mean(self.raw_ssim)),
                "raw_ssim_std": float(np.std(self.raw_ssim)),
            }
        if self.clean_psnr:
            raw["clean_psnr_mean"] = float(np.mean(self.clean_psnr))
        raw.update({f"clean_{name}": value for name, value in self.clean_dti.items()})
        if self.safeguard:
            raw["safeguard"] = {f"b={b:g}": w for b, w in self.safeguard.items()}
        if self.input_noise:
            raw["input_noise_weights"] = self.input_noise
        return {
            "psnr_mean": float(np.mean(self.psnr)),
            "psnr_std": float(np.std(self.psnr)),
            "ssim_mean": float(np.mean(self.ssim)),
            "ssim_std": float(np.std(self.ssim)),
            **raw,
            "volumes": len(self.psnr),
            **self.dti,
        }


@dataclass
class VolumeCase:
    """A dataset at one scale: the truth, its LR version, and every method's scores."""

    dataset: str
    scale: float
    lr_shape: tuple[int, int, int]
    hr_shape: tuple[int, int, int]
    truth: np.ndarray  # S/S0 of the first diffusion-weighted volume (X, Y, Z)
    truth_fa: np.ndarray
    lr: np.ndarray  # the LR S/S0 of that volume (its own grid)
    mask: np.ndarray
    methods: dict[str, VolumeScores] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why it could not run
    raw_range: float = 1.0  # data range of the raw scores (RAW_RANGE percentile of the truth's b0)
    ceiling: float | None = None  # raw PSNR of the noise-free signal against the noisy truth (phantoms)
    ceiling_dti: dict[str, float] | None = None  # its DTI errors against the noisy truth's (phantoms)
    oracle: float | None = None  # raw PSNR of that signal made consistent with the input (phantoms)
    oracle_dti: dict[str, float] | None = None  # its DTI errors against the noisy truth's (phantoms)


def volume_protocol(
    dataset: str,
    series: DWISeries,
    methods: dict[str, Method],
    scales: list[float],
    options: Options | None = None,
    progress: Callable[[str], None] | None = None,
    reference: np.ndarray | None = None,
    degradation: str = "tricubic",
) -> list[VolumeCase]:
    """Score each method (by label) on ``series`` as the truth, degraded by ``degradation``
    at each scale; methods needing a T1w are skipped (and said so) when the dataset has none.
    A dataset that trained or selected one of the methods is refused. ``reference``: the
    noise-free signal of ``series`` (a phantom's, same shape), against which the raw
    intensities are scored too (resolution apart from denoising)."""
    refuse_seen(series.paths, methods)
    options = options or Options()
    truth_scan = PreparedScan.prepare(series, shell=None)
    volumes = truth_scan.shell
    truth = truth_scan.ratio(volumes)
    truth_maps = tensor_maps(series.data, series.gtab, truth_scan.mask)
    raw_range = float(np.percentile(truth_scan.b0[truth_scan.mask], RAW_RANGE))
    clean = NoiseFree.of(reference, series.gtab, truth_scan.mask)
    # What the noise-free signal itself scores against the noisy truth: the same at every scale.
    ceiling = noise_ceiling(series, reference, truth_scan.mask, raw_range)
    ceiling_dti = None if clean is None else dti_errors(truth_maps, clean.maps)
    cases = []
    for scale in scales:
        lr, grid = degrade_series(series, scale, degradation)
        reads_t1 = series.paths.t1 is not None and any(m.at(scale).reads_t1 for m in methods.values())
        native = any(m.at(scale).native_t1 for m in methods.values())  # every method sees it aligned
        scan = PreparedScan.prepare(lr, t1=series.paths.t1 if reads_t1 else None, shell=None, align_t1=native)
        oracle, oracle_dti = consistent_ceiling(series, reference, lr, degradation, truth_maps, raw_range)
        case = VolumeCase(
            dataset,
            scale,
            lr.shape,
            series.shape,
            truth[..., 0],
            truth_maps.fa,
            scan.ratio(volumes[:1])[..., 0],
            truth_scan.mask,
            raw_range=raw_range,
            ceiling=ceiling,
            ceiling_dti=ceiling_dti,
            oracle=oracle,
            oracle_dti=oracle_dti,
        )
        for label, method in methods.items():
            up = method.at(scale)
            if up.uses_t1 and scan.t1 is None:
                case.skipped[label] = "needs a T1w; the dataset has none"
                if progress:
                    progress(f"{dataset} {scale:g}× {label} (skipped)")
                continue
            out = new_output((*series.shape, series.data.shape[3]))
            weights = upsample_series(lr, grid, up, out, scan, options)
            case.methods[label] = score_volume(
                out, series, truth, truth_maps, truth_scan.mask, raw_range, clean
            )
            case.methods[label].safeguard = weights.correction
            if weights.input_noise is not None:
                case.methods[label].input_noise = weights.input_noise.tolist()
            if progress:
                progress(f"{dataset} {scale:g}× {label}")
        cases.append(case)
    return cases


def noise_ceiling(
    series: DWISeries, reference: np.ndarray | None, mask: np.ndarray, raw_range: float
) -> float | None:
    """Mean raw PSNR of the noise-free signal ``reference`` against the noisy ``series`` over the
    diffusion-weighted volumes: what a method that recovered the signal exactly would score
    against the noisy truth (None without a reference). A ceiling where the noise has zero mean;
    at low SNR (high b) the Rician floor biases the noisy truth — and every method's input —
    upwards, and this can fall below cubic interpolation."""
    if reference is None:
        return None
    volumes = np.flatnonzero(~series.gtab.b0s_mask)
    return float(np.mean([psnr(series.data[..., v], reference[..., v], mask, raw_range) for v in volumes]))


def consistent_ceiling(
    series: DWISeries,
    reference: np.ndarray | None,
    lr: DWISeries,
    degradation: str,
    truth_maps: TensorMaps,
    raw_range: float,
) -> tuple[float | None, dict[str, float] | None]:
    """Mean raw PSNR (:func:`noise_ceiling`) and DTI errors against the noisy ``series`` (its
    tensor maps ``truth_maps``, whose mask bounds both) of the noise-free signal ``reference``
    (X, Y, Z, V) made consistent with the LR input ``lr`` volume by volume
    (:func:`csrdmri.core.degrade.consistent` by the operator that made it): the signal with the
    part of the truth's noise that the input determines put back — the best a method can score
    against the noisy truth where the noise is Gaussian (its HR detail is the signal's, the rest
    is the input's). (None, None) without a reference."""
    if reference is None:
        return None, None
    volumes = range(reference.shape[3])
    signal = np.stack(
        [consistent(reference[..., v].astype(np.float32), lr.data[..., v], degradation) for v in volumes], -1
    )
    mask = truth_maps.mask
    maps = tensor_maps(signal, series.gtab, mask)
    return noise_ceiling(series, signal, mask, raw_range), dti_errors(truth_maps, maps)


def score_volume(
    out: np.ndarray,
    series: DWISeries,
    truth: np.ndarray,
    truth_maps: TensorMaps,
    mask: np.ndarray,
    raw_range: float,
    reference: NoiseFree | None = None,
) -> VolumeScores:
    """One method's output (X, Y, Z, V) against the truth ``series`` inside ``mask``: each
    diffusion-weighted volume as written (data range ``raw_range``), its S/S0 with the output
    divided by its own mean b0 against the truth's (``truth``, (X, Y, Z, K)), and the tensor
    maps; against the noise-free signal too (raw PSNR and DTI) when there is a ``reference``."""
    b0s, volumes = b0_indices(series.gtab), np.flatnonzero(~series.gtab.b0s_mask)
    estimate = own_ratio(out, b0s, volumes, mask)
    maps = tensor_maps(out, series.gtab, mask)
    raw = [(series.data[..., v], out[..., v]) for v in volumes]
    clean, clean_dti = [], {}
    if reference is not None:
        clean = [psnr(reference.data[..., v], out[..., v], mask, raw_range) for v in volumes]
        clean_dti = dti_errors(reference.maps, maps)
    return VolumeScores(
        [psnr(truth[..., i], estimate[..., i], mask) for i in range(len(volumes))],
        [ssim(truth[..., i], estimate[..., i], mask) for i in range(len(volumes))],
        dti_errors(truth_maps, maps),
        maps.fa,
        estimate[..., 0],
        [psnr(a, b, mask, raw_range) for a, b in raw],
        [ssim(a, b, mask, raw_range) for a, b in raw],
        clean,
        clean_dti,
    )
