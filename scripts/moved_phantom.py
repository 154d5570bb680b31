"""A phantom subject with simulated uncorrected motion, written as a scan folder.

Usage: python scripts/moved_phantom.py COHORT OUT_DIR [--seed 1] [--share 0.4]

Takes the first subject of a ``csrdmri phantom`` cohort (its 1.25 mm DWIs and T1w) and moves a
``--share`` of its DWIs rigidly — each by 1–2° about a random axis through the centre of the
field of view and 1.5–3 mm along a random direction (cubic interpolation) — as on the shared,
uncorrected Achieva scan (5 of 12 DWIs displaced by 1.3–2.2 voxels). The b0s stay. OUT_DIR gets
``dwi.nii.gz``/``.bval``/``.bvec`` and ``t1w.nii.gz``: the moved series is the truth that
``csrdmri evaluate --real`` degrades (the noise-free signal is not written: it would not move).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import affine_transform
from scipy.spatial.transform import Rotation


def move(volume: np.ndarray, zooms: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """``volume`` (X, Y, Z) moved rigidly at random, clipped at 0; the angle [°] and shift [mm]."""
    axis = rng.normal(size=3)
    angle = rng.uniform(1.0, 2.0)
    rotation = Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.deg2rad(angle)).as_matrix()
    direction = rng.normal(size=3)
    shift_mm = direction / np.linalg.norm(direction) * rng.uniform(1.5, 3.0)
    centre = (np.asarray(volume.shape) - 1) / 2
    offset = centre - rotation @ centre - shift_mm / zooms
    moved = affine_transform(volume, rotation, offset=offset, order=3, mode="constant")
    return np.maximum(moved, 0.0), angle, float(np.linalg.norm(shift_mm))


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("cohort", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--share", type=float, default=0.4, help="share of the DWIs moved")
    args = parser.parse_args()
    subject = sorted(p for p in args.cohort.iterdir() if p.is_dir())[0] / "T1w"
    img = nib.load(subject / "Diffusion/data.nii.gz")
    data = np.asarray(img.dataobj, dtype=np.float32)
    bvals = np.loadtxt(subject / "Diffusion/bvals")
    rng = np.random.default_rng(args.seed)
    dwis = np.flatnonzero(bvals > 50)
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
    for v in np.sort(rng.choice(dwis, size=round(args.share * len(dwis)), replace=False)):
        data[..., v], angle, shift = move(data[..., v], zooms, rng)
        print(f"volume {v}: {angle:.2f}°, {shift:.2f} mm")
    args.out.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, img.affine, img.header), args.out / "dwi.nii.gz")
    shutil.copyfile(subject / "Diffusion/bvals", args.out / "dwi.bval")
    shutil.copyfile(subject / "Diffusion/bvecs", args.out / "dwi.bvec")
    for t1 in subject.glob("T1w*.nii.gz"):
        shutil.copyfile(t1, args.out / "t1w.nii.gz")


if __name__ == "__main__":
    main()
