"""How sharp a volume is near its own Nyquist frequency: what an input's acquisition did to it.

Cubic sampling without a low-pass keeps much of a volume's spectrum near Nyquist (it aliases);
k-space truncation less; an apodised readout, a slice profile or a reconstruction on a finer
matrix than acquired less still. :func:`nyquist_ratio` measures that along one axis;
:func:`measured_rolloff` summarises it per axis over blocks of a volume's brain, so that a model
can be told how its input was made instead of assuming one operator (the ratio depends on the
object's spectrum and the noise too: the model learns it against the phantoms' range).
"""

from __future__ import annotations

import numpy as np

#: Side (voxels) of the blocks :func:`measured_rolloff` measures, and their stride.
BLOCK, STRIDE = 24, 12
#: The log10 ratio is clipped to this range (a void block gives no ratio).
LOG_RANGE = (-3.0, 1.0)


def nyquist_ratio(volume: np.ndarray, axis: int, taper: bool = False) -> float:
    """Mean power in 80–100 % of Nyquist over that in 30–50 % along ``axis`` of ``volume``
    (X, Y, Z), the mean along the axis removed first; with ``taper``, a Hann window along the
    axis too (for a block cut out of a larger volume, whose edges would otherwise leak)."""
    centred = volume - volume.mean(axis=axis, keepdims=True)
    if taper:
        shape = [1] * volume.ndim
        shape[axis] = volume.shape[axis]
        centred = centred * np.hanning(volume.shape[axis]).reshape(shape)
    power = np.abs(np.fft.rfft(centred, axis=axis)) ** 2
    profile = power.mean(axis=tuple(i for i in range(power.ndim) if i != axis))
    n = len(profile)
    high, middle = profile[int(0.8 * n) :].mean(), profile[int(0.3 * n) : int(0.5 * n)].mean()
    return float(high / middle) if middle > 0 else 0.0


def measured_rolloff(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per axis, the median over blocks of ``volume`` (X, Y, Z) of their tapered
    :func:`nyquist_ratio`, as log10 clipped to ``LOG_RANGE`` -> (3,) float32.

    Blocks are ``BLOCK`` voxels a side (the whole axis where it is shorter), every ``STRIDE``
    voxels, those whose centre voxel lies in ``mask`` (X, Y, Z) bool; the block nearest the
    volume's centre when none does.
    """
    sides = [min(BLOCK, n) for n in volume.shape]
    starts = [range(0, max(n - side, 0) + 1, STRIDE) for n, side in zip(volume.shape, sides, strict=True)]
    grid = np.stack(np.meshgrid(*starts, indexing="ij"), axis=-1).reshape(-1, 3)
    centres = grid + np.array(sides) // 2
    inside = mask[tuple(centres.T)]
    if not inside.any():
        inside = np.arange(len(grid)) == np.argmin(np.abs(centres - np.array(volume.shape) / 2).sum(axis=1))
    blocks = [volume[tuple(map(slice, start, start + sides))] for start in grid[inside]]
    ratios = np.array([[nyquist_ratio(block, axis, taper=True) for axis in range(3)] for block in blocks])
    logs = np.log10(np.maximum(np.median(ratios, axis=0), 10.0 ** LOG_RANGE[0]))
    return np.clip(logs, *LOG_RANGE).astype(np.float32)
