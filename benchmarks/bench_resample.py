"""Tricubic resampling speed: csrdmri's separable spline vs scipy's 3D evaluation, same output.

Upsamples the mean b0 of the shared Philips scan (128×128×82, 2 mm) by 2× and 2.4× with
``csrdmri.resample.resample`` and with the reference ``scipy.ndimage.zoom(grid_mode=True,
mode="nearest")`` in the same process, and prints the speed ratio and the largest difference.

Usage: python benchmarks/bench_resample.py [DATASET]
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy
from scipy import ndimage

from csrdmri.core.resample import axis_matrix, resample
from csrdmri.dmri.preprocess import mean_b0
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import load_dwi

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "philips-ingenia-2mm"


def best_of(fn, repeats: int = 3) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    volume = mean_b0(load_dwi(find_dataset(sys.argv[1] if len(sys.argv) > 1 else DEFAULT)))
    cpuinfo = Path("/proc/cpuinfo")
    models = (
        [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        if cpuinfo.exists()
        else []
    )
    cpu = models[0] if models else platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores; numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"volume {volume.shape}, float32; best of 3")
    for scale in (2.0, 2.4):
        shape = tuple(int(np.floor(n * scale + 0.5)) for n in volume.shape)

        def ours_uncached(shape=shape):
            axis_matrix.cache_clear()  # time the weight matrices too, not only their use
            return resample(volume, shape)

        ours, out = best_of(ours_uncached)
        ref, expected = best_of(
            lambda shape=shape: ndimage.zoom(
                volume, np.divide(shape, volume.shape), order=3, grid_mode=True, mode="nearest"
            )
        )
        diff = float(np.abs(out - expected).max() / np.abs(expected).max())
        print(
            f"{scale}x -> {shape}: csrdmri {ours:.3f} s, scipy.ndimage.zoom {ref:.3f} s, "
            f"speed-up {ref / ours:.1f}x, max |diff| / max = {diff:.1e}"
        )


if __name__ == "__main__":
    main()
