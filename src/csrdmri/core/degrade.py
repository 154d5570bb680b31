"""Degradation operators: how a low-resolution acquisition is made from a finer volume.

Both keep the field of view and the cell-centred convention of :mod:`csrdmri.core.grid` (LR
voxel ``i`` of ``L`` along an axis of ``N`` HR voxels sits at HR index ``(i + 0.5)·N/L − 0.5``),
and both keep the intensity scale (a constant volume stays that constant):

``"tricubic"`` (the paper's)
    cubic B-spline interpolation of the HR volume at the LR voxel centres
    (:func:`csrdmri.core.resample.resample`); no low-pass before sampling.
``"kspace"`` (what a scanner acquiring the coarser matrix measures, to first order)
    the ``L`` lowest integer frequencies of each axis' DFT (for even ``L``: ``−L/2 … L/2 − 1``)
    phase-shifted onto the LR voxel centres, i.e. the HR volume convolved with a periodic
    sinc and sampled there: no windowing, so Gibbs ringing is part of it. A signal whose
    frequencies along every axis are below ``L/2`` cycles per field of view is sampled exactly
    (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from csrdmri.core.resample import resample

DEGRADATIONS = ("tricubic", "kspace")


def kept_frequencies(n_lr: int) -> np.ndarray:
    """The integer frequencies (cycles per field of view) an ``n_lr``-sample axis keeps, in
    :func:`numpy.fft.fftfreq` order."""
    return np.rint(np.fft.fftfreq(n_lr) * n_lr).astype(int)


def kspace_axis(volume: np.ndarray, n_lr: int, axis: int) -> np.ndarray:
    """``volume`` (float64) resampled along ``axis`` to ``n_lr`` samples by k-space truncation
    (module docstring), same field of view, intensity kept."""
    n = volume.shape[axis]
    keep = kept_frequencies(n_lr)
    shift = 0.5 * n / n_lr - 0.5  # LR sample i sits at HR index i·n/n_lr + shift
    phase = np.exp(2j * np.pi * keep * shift / n)
    spectrum = np.take(np.fft.fft(volume, axis=axis), keep, axis=axis)
    spectrum *= phase.reshape([-1 if a == axis else 1 for a in range(volume.ndim)])
    return np.fft.ifft(spectrum, axis=axis).real * (n_lr / n)


def downsample(volume: np.ndarray, shape: Sequence[int], method: str = "tricubic") -> np.ndarray:
    """``volume`` (X, Y, Z) resampled to the coarser ``shape`` over the same field of view by
    the degradation ``method`` (module docstring); same dtype.

    Raises
    ------
    ValueError
        For an unknown ``method``.
    """
    if method == "tricubic":
        return resample(volume, tuple(shape))
    if method != "kspace":
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {method!r}")
    out = np.asarray(volume, dtype=np.float64)
    for axis, n_lr in enumerate(shape):
        out = kspace_axis(out, int(n_lr), axis)
    return out.astype(volume.dtype, copy=False)
