"""Copies of a dataset folder whose T1w is misregistered by a known translation, or absent.

Usage: python scripts/shifted_t1.py DATASET OUT_DIR --shifts 1,2,4 [--axis 0]

Writes OUT_DIR/<name>-t1shift<MM>mm/ for each shift (the DWI, .bval/.bvec linked, the T1w with
its affine translated by MM along world axis ``--axis``) and OUT_DIR/<name>-no-t1w/ (no T1w), to
measure how a T1w-guided model degrades when the T1w is off (``csrdmri evaluate --real OUT_DIR``).
The T1w's voxels are not touched: only where the image says they lie.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib


def link_all_but_t1(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        if not path.name.lower().startswith("t1w") and not (dst / path.name).exists():
            (dst / path.name).symlink_to(path.resolve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--shifts", default="1,2,4", help="translations in mm, comma-separated")
    parser.add_argument("--axis", type=int, default=0, help="world axis (0: x, 1: y, 2: z)")
    args = parser.parse_args()
    t1 = nib.load(args.dataset / "t1w.nii.gz")
    name = args.dataset.name
    for mm in (float(s) for s in args.shifts.split(",")):
        folder = args.out / f"{name}-t1shift{mm:g}mm"
        link_all_but_t1(args.dataset, folder)
        affine = t1.affine.copy()
        affine[args.axis, 3] += mm
        nib.save(nib.Nifti1Image(t1.get_fdata(dtype="float32"), affine, t1.header), folder / "t1w.nii.gz")
    link_all_but_t1(args.dataset, args.out / f"{name}-no-t1w")


if __name__ == "__main__":
    main()
