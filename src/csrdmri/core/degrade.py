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

Each operator is separable, a small matrix per axis (:func:`axis_operator`), so that
:func:`consistent` can project a high-resolution volume exactly onto those whose degradation is
a given low-resolution volume.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from csrdmri.core.resample import apply_axes, axis_matrix

DEGRADATIONS = ("tricubic", "kspace")


def kept_frequencies(n_lr: int) -> np.ndarray:
    """The integer frequencies (cycles per field of view) an ``n_lr``-sample axis keeps, in
    :func:`numpy.fft.fftfreq` order."""
    return np.rint(np.fft.fftfreq(n_lr) * n_lr).astype(int)


@functools.lru_cache(maxsize=64)
def axis_operator(n_hr: int, n_lr: int, method: str) -> np.ndarray:
    """The degradation ``method`` of one axis of ``n_hr`` samples to ``n_lr`` (same field of
    view) as a matrix (n_lr, n_hr), float64, read-only (cached).

    Raises
    ------
    ValueError
        For an unknown ``method``.
    """
    if method == "tricubic":
        return axis_matrix(n_hr, n_lr)
    if method != "kspace":
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {method!r}")
    keep = kept_frequencies(n_lr)
    shift = 0.5 * n_hr / n_lr - 0.5  # LR sample i sits at HR index i·n_hr/n_lr + shift
    spectrum = np.fft.fft(np.eye(n_hr), axis=0)[keep] * np.exp(2j * np.pi * keep * shift / n_hr)[:, None]
    matrix = np.fft.ifft(spectrum, axis=0).real * (n_lr / n_hr)
    matrix.flags.writeable = False
    return matrix


@functools.lru_cache(maxsize=64)
def axis_right_inverse(n_hr: int, n_lr: int, method: str) -> np.ndarray:
    """The least-norm right inverse (n_hr, n_lr) of :func:`axis_operator` (its pseudo-inverse:
    degrading its output returns its input), float64, read-only (cached)."""
    inverse = np.linalg.pinv(axis_operator(n_hr, n_lr, method))
    inverse.flags.writeable = False
    return inverse


def downsample(volume: np.ndarray, shape: Sequence[int], method: str = "tricubic") -> np.ndarray:
    """``volume`` (X, Y, Z, ...) resampled to the coarser ``shape`` (3 sizes) over the same
    field of view by the degradation ``method`` (module docstring), trailing axes carried
    along; float64 for float64 input, else float32.

    Raises
    ------
    ValueError
        For an unknown ``method``.
    """
    return apply_axes(volume, [axis_operator(volume.shape[a], int(m), method) for a, m in enumerate(shape)])


def consistent(hr: np.ndarray, lr: np.ndarray, method: str) -> np.ndarray:
    """The volume nearest to ``hr`` (X, Y, Z; least squares) whose degradation by ``method``
    to the grid of ``lr`` (x, y, z, same field of view) is ``lr``: ``hr`` plus the residual
    ``lr − downsample(hr)`` brought back by the right inverse of the operator. float64 for
    float64 input, else float32.

    With a truth that the operator maps onto ``lr`` exactly, the result is never farther from
    that truth than ``hr`` (an orthogonal projection onto a set that holds the truth).
    """
    residual = lr - downsample(hr, lr.shape, method)
    back = [axis_right_inverse(n, m, method) for n, m in zip(hr.shape, lr.shape, strict=True)]
    return hr + apply_axes(residual, back)
