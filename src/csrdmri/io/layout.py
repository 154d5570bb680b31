"""Find the files of a dMRI dataset: FSL-style files, BIDS, or the HCP layout.

Accepted inputs
---------------
* a DWI NIfTI file: b-values/b-vectors are ``<stem>.bval``/``<stem>.bvec`` beside it (FSL and
  BIDS), else ``bvals``/``bvecs`` in the same folder (FSL ``dtifit`` and HCP naming);
* an HCP subject folder: ``T1w/Diffusion/{data.nii.gz,bvals,bvecs,nodif_brain_mask.nii.gz}``
  and ``T1w/T1w_acpc_dc_restore_1.25.nii.gz``;
* a BIDS subject (or session) folder: one ``dwi/*_dwi.nii[.gz]`` and, if present, one
  ``anat/*_T1w.nii[.gz]``;
* a plain folder holding one DWI (``dwi.nii[.gz]``, ``data.nii[.gz]`` or one ``*_dwi.nii[.gz]``)
  and optionally ``t1w``/``T1w`` and ``*mask`` images (the layout of ``shared/data/real``).

Explicit paths given by the user always win over what is found.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from csrdmri.core.errors import InputError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class DatasetPaths:
    """Files of one dMRI dataset; ``t1`` and ``mask`` are optional."""

    dwi: Path
    bval: Path
    bvec: Path
    t1: Path | None = None
    mask: Path | None = None
    layout: str = "fsl"


def nifti_stem(path: Path) -> str:
    """File name without its ``.nii``/``.nii.gz`` suffix."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _one(folder: Path, patterns: list[str], what: str) -> Path | None:
    """The single file in ``folder`` matching the first pattern that matches anything."""
    for pattern in patterns:
        hits = sorted(p for p in folder.glob(pattern) if p.is_file())
        if len(hits) > 1:
            names = ", ".join(p.name for p in hits)
            raise InputError(f"{folder} holds several {what} images ({names}); name one explicitly")
        if hits:
            return hits[0]
    return None


def _nifti_patterns(*stems: str) -> list[str]:
    return [stem + suffix for stem in stems for suffix in NIFTI_SUFFIXES]


def _gradient_files(dwi: Path) -> tuple[Path, Path]:
    stem = nifti_stem(dwi)
    for bval, bvec in ((f"{stem}.bval", f"{stem}.bvec"), ("bvals", "bvecs")):
        if (dwi.parent / bval).exists() or (dwi.parent / bvec).exists():
            return dwi.parent / bval, dwi.parent / bvec
    return dwi.parent / f"{stem}.bval", dwi.parent / f"{stem}.bvec"


def _from_folder(folder: Path) -> DatasetPaths:
    hcp = folder / "T1w" / "Diffusion"
    if (hcp / "data.nii.gz").exists():
        t1 = folder / "T1w" / "T1w_acpc_dc_restore_1.25.nii.gz"
        mask = hcp / "nodif_brain_mask.nii.gz"
        return DatasetPaths(
            hcp / "data.nii.gz", hcp / "bvals", hcp / "bvecs",
            t1 if t1.exists() else None, mask if mask.exists() else None, "hcp",
        )  # fmt: skip
    if (folder / "dwi").is_dir():
        dwi = _one(folder / "dwi", _nifti_patterns("*_dwi"), "DWI")
        if dwi is not None:
            t1 = (
                _one(folder / "anat", _nifti_patterns("*_T1w"), "T1w") if (folder / "anat").is_dir() else None
            )
            bval, bvec = _gradient_files(dwi)
            return DatasetPaths(dwi, bval, bvec, t1, None, "bids")
    dwi = _one(folder, _nifti_patterns("dwi", "data", "*_dwi"), "DWI")
    if dwi is None:
        raise InputError(
            f"no DWI image found in {folder}: expected an HCP subject (T1w/Diffusion/data.nii.gz), "
            "a BIDS subject (dwi/*_dwi.nii.gz), or dwi.nii.gz / data.nii.gz"
        )
    t1 = _one(folder, _nifti_patterns("t1w", "T1w", "*_T1w"), "T1w")
    mask = _one(folder, _nifti_patterns("*mask"), "mask")
    bval, bvec = _gradient_files(dwi)
    return DatasetPaths(
        dwi, bval, bvec, t1, mask, "bids" if dwi.name.endswith(("_dwi.nii.gz", "_dwi.nii")) else "fsl"
    )


def find_dataset(
    path: str | Path,
    bval: str | Path | None = None,
    bvec: str | Path | None = None,
    t1: str | Path | None = None,
    mask: str | Path | None = None,
) -> DatasetPaths:
    """Resolve a DWI file or a dataset folder to its files; explicit paths override.

    Only existence of the DWI itself is checked here; loading checks the rest.
    """
    path = Path(path)
    if path.is_dir():
        found = _from_folder(path)
    elif path.exists():
        gb, gv = _gradient_files(path)
        layout = "bids" if path.name.endswith(("_dwi.nii.gz", "_dwi.nii")) else "fsl"
        found = DatasetPaths(path, gb, gv, None, None, layout)
    else:
        raise InputError(f"input not found: {path}")
    overrides = {"bval": bval, "bvec": bvec, "t1": t1, "mask": mask}
    return replace(found, **{k: Path(v) for k, v in overrides.items() if v is not None})
