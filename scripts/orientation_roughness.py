"""How much fibre orientations vary between neighbouring voxels of a DWI series.

Usage: python scripts/orientation_roughness.py DATASET [--voxel MM]

DTI (DIPY, via :func:`csrdmri.dmri.dti.tensor_maps`) of the series as given — or after cubic
downsampling every volume to ``--voxel`` mm, to compare a 1.25 mm phantom with a 2 mm scan —
inside its brain mask; for the pairs of face-neighbouring voxels whose FA both exceed 0.3, then
0.5, the median, 75th and 90th percentiles of the angle between their principal directions, and
the mean FA. Noise widens the angles too: compare series of like noise, or read it as a bound.
"""

from __future__ import annotations

import argparse

import numpy as np
from nibabel.affines import voxel_sizes

from csrdmri.core.resample import resample
from csrdmri.dmri.dti import tensor_maps
from csrdmri.dmri.preprocess import series_mask
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import load_dwi


def neighbour_angles(v1: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Angles (degrees) between the unit vectors ``v1`` (X, Y, Z, 3) of face neighbours both in
    ``keep``, sign-invariant."""
    angles = []
    for axis in range(3):
        lower = tuple(slice(0, -1) if a == axis else slice(None) for a in range(3))
        upper = tuple(slice(1, None) if a == axis else slice(None) for a in range(3))
        both = keep[lower] & keep[upper]
        cosine = np.abs((v1[lower][both] * v1[upper][both]).sum(-1)).clip(0, 1)
        angles.append(np.degrees(np.arccos(cosine)))
    return np.concatenate(angles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--voxel", type=float, default=None, help="Downsample to this voxel (mm) first.")
    args = parser.parse_args()
    series = load_dwi(find_dataset(args.dataset))
    data, mask, voxel = np.asarray(series.data, np.float32), series_mask(series), voxel_sizes(series.affine)
    if args.voxel:
        shape = tuple(round(n * v / args.voxel) for n, v in zip(series.shape, voxel, strict=True))
        data = np.stack([resample(data[..., i], shape) for i in range(data.shape[3])], axis=-1)
        mask = resample(mask.astype(np.float32), shape, order=1) > 0.5
        voxel = np.full(3, args.voxel)
    maps = tensor_maps(data, series.gtab, mask)
    for threshold in (0.3, 0.5):
        keep = (maps.fa > threshold) & mask
        angles = neighbour_angles(maps.v1, keep)
        p50, p75, p90 = np.percentile(angles, [50, 75, 90])
        print(
            f"{args.dataset} ({'×'.join(f'{v:g}' for v in voxel)} mm), FA > {threshold}: "
            f"{int(keep.sum())} voxels, angle median {p50:.1f}°, 75th {p75:.1f}°, 90th {p90:.1f}°; "
            f"mean FA {maps.fa[keep].mean():.3f}"
        )


if __name__ == "__main__":
    main()
