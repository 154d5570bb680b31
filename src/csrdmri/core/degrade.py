"""Degradation operators: how a low-resolution acquisition is made from a finer volume.

Every one keeps the field of view and the cell-centred convention of :mod:`csrdmri.core.grid`
(LR voxel ``i`` of ``L`` along an axis of ``N`` HR voxels sits at HR index ``(i + 0.5)·N/L − 0.5``),
and the intensity scale (a constant volume stays that constant):

``"tricubic"`` (the paper's)
    cubic B-spline interpolation of the HR volume at the LR voxel centres
    (:func:`csrdmri.core.resample.resample`); no low-pass before sampling.
``"kspace"`` (what a scanner acquiring the coarser matrix measures, to first order)
    the ``L`` lowest integer frequencies of each axis' DFT (for even ``L``: ``−L/2 … L/2 − 1``)
    phase-shifted onto the LR voxel centres, i.e. the HR volume convolved with a periodic
    sinc and sampled there: no windowing, so Gibbs ringing is part of it. A signal whose
    frequencies along every axis are below ``L/2`` cycles per field of view is sampled exactly
    (tested).

Variants of ``"kspace"`` (real acquisitions seldom keep a bare sinc):

``"kspace-apodised"``
    the kept frequencies ``k`` weighted by a Hamming window ``0.54 + 0.46·cos(2πk/L)`` (1 at the
    centre of k-space, 0.08 at its edge): less ringing, a wider point-spread function.
``"kspace-partial"``
    partial Fourier 6/8 along axis 1 (the phase-encoding axis of an axial EPI), zero-filled:
    the real part keeps the frequencies acquired on both sides whole and halves the others.
``"kspace-slice"``
    k-space truncation in plane (axes 0 and 1) and, through plane (axis 2), the average over a
    slice one LR voxel thick (a rectangular slice profile, no k-space truncation): a 2D
    multi-slice acquisition.
``"kspace-acquired"``
    k-space truncation in plane weighted by the cosine window ``0.8 + 0.2·cos(2πk/L)``, and the
    slice profile of ``"kspace-slice"`` through plane: the in-plane roll-off measured on four
    Philips acquisitions as acquired (``scripts/input_spectrum.py``: readout filtering, the
    echo train's decay; partial Fourier, which the scanner's reconstruction restores, left
    out), sharper than Hamming's, softer than a bare sinc.

An operator is three :class:`AxisSampling` (:data:`NAMED`); training can draw random ones
(:func:`random_kspace`). Each is separable, a small matrix per axis (:func:`axis_operator`), so
that :func:`consistent` can project a high-resolution volume exactly onto those whose
degradation is a given low-resolution volume.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from csrdmri.core.resample import apply_axes, axis_matrix


@dataclass(frozen=True)
class AxisSampling:
    """How one axis of a volume is sampled onto a coarser grid.

    Attributes
    ----------
    kind : {"tricubic", "kspace", "profile"}
        Cubic B-spline sampling, the lowest frequencies of the DFT, or the average over a slice
        profile (a box ``width`` LR voxels wide around each LR voxel centre).
    window : float
        ``"kspace"``: apodisation, frequency ``k`` of ``L`` weighted ``1 − window + window·cos(2πk/L)``
        (0: none; 0.46: Hamming).
    partial : float
        ``"kspace"``: share of the frequencies acquired, from 0.5 to 1; the missing ones are the
        most negative, zero-filled, and the real part taken.
    width : float
        ``"profile"``: slice thickness in LR voxels.
    """

    kind: str
    window: float = 0.0
    partial: float = 1.0
    width: float = 1.0


TRICUBIC, KSPACE = AxisSampling("tricubic"), AxisSampling("kspace")
#: The named degradations (``--degradation``; module docstring): one sampling per axis.
NAMED = {
    "tricubic": (TRICUBIC,) * 3,
    "kspace": (KSPACE,) * 3,
    "kspace-apodised": (AxisSampling("kspace", window=0.46),) * 3,
    "kspace-partial": (KSPACE, AxisSampling("kspace", partial=0.75), KSPACE),
    "kspace-slice": (KSPACE, KSPACE, AxisSampling("profile")),
    "kspace-acquired": (AxisSampling("kspace", window=0.2),) * 2 + (AxisSampling("profile"),),
}
#: One line on each named operator, for the evaluation report.
DESCRIPTIONS = {
    "tricubic": "cubic B-spline sampling at the LR voxel centres (the paper's protocol)",
    "kspace": "the central block of k-space (a sinc point-spread function, Gibbs ringing included: what a "
    "scanner acquiring the coarser matrix measures, to first order)",
    "kspace-apodised": "the central block of k-space weighted by a Hamming window (less ringing, a wider "
    "point-spread function)",
    "kspace-partial": "the central block of k-space with 6/8 partial Fourier along the second axis, "
    "zero-filled (real part)",
    "kspace-slice": "the central block of k-space in plane, and through plane (third axis) the mean over a "
    "slice one LR voxel thick (a 2D multi-slice acquisition)",
    "kspace-acquired": "the central block of k-space in plane under a cosine window of 0.2 (the roll-off "
    "measured on real acquisitions), and through plane the mean over a slice one LR voxel thick",
}
DEGRADATIONS = tuple(NAMED)
Degradation = str | Sequence[AxisSampling]


def kept_frequencies(n_lr: int) -> np.ndarray:
    """The integer frequencies (cycles per field of view) an ``n_lr``-sample axis keeps, in
    :func:`numpy.fft.fftfreq` order."""
    return np.rint(np.fft.fftfreq(n_lr) * n_lr).astype(int)


def samplings(method: Degradation) -> tuple[AxisSampling, ...]:
    """The three per-axis samplings of a named degradation, or ``method`` itself.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if not isinstance(method, str):
        return tuple(method)
    if method not in NAMED:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {method!r}")
    return NAMED[method]


def _kspace_matrix(n_hr: int, n_lr: int, sampling: AxisSampling) -> np.ndarray:
    keep = kept_frequencies(n_lr)
    weight = 1 - sampling.window + sampling.window * np.cos(2 * np.pi * keep / n_lr)
    weight[keep < keep.min() + round((1 - sampling.partial) * n_lr)] = 0.0  # partial Fourier
    shift = 0.5 * n_hr / n_lr - 0.5  # LR sample i sits at HR index i·n_hr/n_lr + shift
    phase = np.exp(2j * np.pi * keep * shift / n_hr) * weight
    spectrum = np.fft.fft(np.eye(n_hr), axis=0)[keep] * phase[:, None]
    return np.fft.ifft(spectrum, axis=0).real * (n_lr / n_hr)


def _profile_matrix(n_hr: int, n_lr: int, width: float) -> np.ndarray:
    """Each LR voxel the mean of the HR samples (each one HR voxel wide) over a box ``width``
    LR voxels wide around its centre, clipped to the field of view."""
    step = n_hr / n_lr
    centres = (np.arange(n_lr) + 0.5) * step - 0.5
    lo, hi = centres - width * step / 2, centres + width * step / 2
    edges = np.arange(n_hr) - 0.5
    overlap = np.clip(np.minimum(hi[:, None], edges + 1) - np.maximum(lo[:, None], edges), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


@functools.lru_cache(maxsize=64)
def axis_operator(n_hr: int, n_lr: int, sampling: AxisSampling | str) -> np.ndarray:
    """One axis of ``n_hr`` samples sampled to ``n_lr`` (same field of view) by ``sampling``
    (an :class:`AxisSampling`, or the name of a degradation that samples every axis alike) as a
    matrix (n_lr, n_hr), float64, read-only (cached).

    Raises
    ------
    ValueError
        For an unknown degradation or sampling.
    """
    if isinstance(sampling, str):
        sampling = samplings(sampling)[0]
    if sampling.kind == "tricubic":
        matrix = axis_matrix(n_hr, n_lr).copy()
    elif sampling.kind == "kspace":
        matrix = _kspace_matrix(n_hr, n_lr, sampling)
    elif sampling.kind == "profile":
        matrix = _profile_matrix(n_hr, n_lr, sampling.width)
    else:
        raise ValueError(f"an axis is sampled by tricubic, kspace or profile, got {sampling.kind!r}")
    matrix.flags.writeable = False
    return matrix


def random_kspace(rng: np.random.Generator) -> tuple[AxisSampling, ...]:
    """A random k-space-like acquisition for training: every axis k-space truncated with a
    random apodisation (none to Hamming); half the time partial Fourier (5/8 to 1) along one
    random axis; half the time a rectangular slice profile 1 to 1.5 LR voxels thick along
    another (a 2D multi-slice acquisition)."""
    window = rng.uniform(0.0, 0.46)
    axes = [AxisSampling("kspace", window=window)] * 3
    encode, through = rng.permutation(3)[:2]
    if rng.random() < 0.5:
        axes[encode] = AxisSampling("kspace", window=window, partial=rng.uniform(0.625, 1.0))
    if rng.random() < 0.5:
        axes[through] = AxisSampling("profile", width=rng.uniform(1.0, 1.5))
    return tuple(axes)


@functools.lru_cache(maxsize=64)
def axis_right_inverse(n_hr: int, n_lr: int, method: AxisSampling | str) -> np.ndarray:
    """The least-norm right inverse (n_hr, n_lr) of :func:`axis_operator` (its pseudo-inverse:
    degrading its output returns its input), float64, read-only (cached)."""
    inverse = np.linalg.pinv(axis_operator(n_hr, n_lr, method))
    inverse.flags.writeable = False
    return inverse


def downsample(volume: np.ndarray, shape: Sequence[int], method: Degradation = "tricubic") -> np.ndarray:
    """``volume`` (X, Y, Z, ...) resampled to the coarser ``shape`` (3 sizes) over the same
    field of view by the degradation ``method`` (a name of :data:`NAMED` or three
    :class:`AxisSampling`), trailing axes carried along; float64 for float64 input, else float32.

    Raises
    ------
    ValueError
        For an unknown ``method``.
    """
    axes = samplings(method)
    return apply_axes(volume, [axis_operator(volume.shape[a], int(m), axes[a]) for a, m in enumerate(shape)])


def consistent(hr: np.ndarray, lr: np.ndarray, method: Degradation) -> np.ndarray:
    """The volume nearest to ``hr`` (X, Y, Z, ...; least squares) whose degradation by ``method``
    to the grid of ``lr`` (x, y, z, ..., same field of view and trailing axes) is ``lr``: ``hr``
    plus the residual ``lr − downsample(hr)`` brought back by the right inverse of the operator,
    each trailing index on its own. float64 for float64 input, else float32.

    With a truth that the operator maps onto ``lr`` exactly, the result is never farther from
    that truth than ``hr`` (an orthogonal projection onto a set that holds the truth).
    """
    residual = lr - downsample(hr, lr.shape[:3], method)
    axes = samplings(method)
    back = [axis_right_inverse(n, m, a) for n, m, a in zip(hr.shape[:3], lr.shape[:3], axes, strict=True)]
    return hr + apply_axes(residual, back)
