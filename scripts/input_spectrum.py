"""How much of a DWI series' spatial spectrum lies near its own Nyquist frequency, as acquired and
after the degradations the evaluation protocols make.

Usage: python scripts/input_spectrum.py DWI.nii.gz [DWI.nii.gz ...] [--scale 2]

For the mean of the first eight volumes, per axis: the mean power in the top fifth of the
non-negative DFT frequencies over that in 30–50 % of Nyquist (the volume's mean along the axis
removed first). A sharp sampling (cubic sampling without a low-pass, which aliases) keeps a high
ratio; k-space truncation a lower one; apodisation (a cosine window ``w``, 0.46 = Hamming), the
point-spread of a real readout, partial Fourier or a reconstruction on a finer matrix than
acquired lower it further. Printed: the series as given, then degraded by ``--scale`` with
tricubic sampling and with k-space truncation under windows 0 to 0.46 (``core.degrade``), so the
window whose ratio matches the series' own says which operator its acquisition is closest to.
The ratio also depends on the object's spectrum (a power law gives the same ratio at every
scale): compare within a series, not across series.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from csrdmri.core.degrade import AxisSampling, downsample
from csrdmri.core.spectrum import nyquist_ratio

WINDOWS = (0.0, 0.1, 0.2, 0.3, 0.46)


def ratios(volume: np.ndarray) -> str:
    """The three axes' :func:`nyquist_ratio`, as ``x/y/z``."""
    return "/".join(f"{nyquist_ratio(volume, axis):.3f}" for axis in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dwi", nargs="+", help="4D DWI NIfTI files")
    parser.add_argument("--scale", type=float, default=2.0, help="degradation factor (default 2)")
    args = parser.parse_args()
    missing = [path for path in args.dwi if not Path(path).is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    windows = ", ".join(f"{w:g}" for w in WINDOWS)
    print(f"series: as given | tricubic | k-space, window {windows} (x/y/z)")
    for path in args.dwi:
        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        if data.ndim != 4:
            parser.error(f"{path}: a 4D DWI series is needed, this image is {data.ndim}D")
        volume = data[..., : min(data.shape[3], 8)].mean(axis=3)
        shape = tuple(max(round(n / args.scale), 4) for n in volume.shape)
        kspace = [downsample(volume, shape, (AxisSampling("kspace", window=w),) * 3) for w in WINDOWS]
        tricubic = downsample(volume, shape, "tricubic")
        print(f"{path}: {ratios(volume)} | {ratios(tricubic)} | " + ", ".join(map(ratios, kspace)))


if __name__ == "__main__":
    main()
