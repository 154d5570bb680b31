"""BIDS derivatives: the names, the dataset description and the sidecars a BIDS App writes.

An output is ``sub-X[/ses-Y]/dwi/<entities>_space-<space>_res-<label>_desc-csrdmri_dwi.nii.gz``
with its ``.bval``, ``.bvec`` and ``.json``: the input's entities (``sub``, ``ses``, ``acq``,
``dir``, ``run``), its space (``dwi`` for raw data, the input's own for a derivative such as
QSIPrep's ``T1w``), the output's voxel size as the ``res`` label (``1p25mm``, or ``1x1x2mm``
when anisotropic) described in the sidecar's ``Resolution``, and ``desc-csrdmri``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from dipy.core.gradients import GradientTable

from csrdmri import __version__
from csrdmri.cohort.discover import Job, entity_prefix
from csrdmri.io.nifti import atomic_path

BIDS_VERSION = "1.9.0"


def resolution_label(zooms: Sequence[float]) -> str:
    """The ``res`` label of a voxel size (mm): ``1p25mm``, ``1x1x2mm`` (alphanumeric, as BIDS
    requires)."""
    text = [f"{round(float(z), 3):g}".replace(".", "p") for z in zooms]
    return (text[0] if len(set(text)) == 1 else "x".join(text)) + "mm"


def output_path(out_dir: Path, job: Job, zooms: Sequence[float]) -> Path:
    """Where ``job``'s super-resolved series goes in the derivative dataset ``out_dir``."""
    prefix = entity_prefix({k: v for k, v in job.entities.items() if k != "space"})
    space = job.entities.get("space", "dwi")
    folder = out_dir / f"sub-{job.subject}"
    if "session" in job.entities:
        folder = folder / f"ses-{job.entities['session']}"
    name = f"{prefix}_space-{space}_res-{resolution_label(zooms)}_desc-csrdmri_dwi.nii.gz"
    return folder / "dwi" / name


#: What the BIDS validator should not read as data: logs, reports, MRtrix gradient files.
BIDSIGNORE = "logs/\n*.html\nfigures/\n*.b\n"


def write_description(out_dir: Path, bids_dir: Path, command: str) -> Path:
    """``dataset_description.json`` of the derivative dataset, and its ``.bidsignore`` (both
    kept if they exist)."""
    path = out_dir / "dataset_description.json"
    ignore = out_dir / ".bidsignore"
    out_dir.mkdir(parents=True, exist_ok=True)
    if not ignore.exists():
        with atomic_path(ignore) as tmp:
            tmp.write_text(BIDSIGNORE)
    if path.exists():
        return path
    description = {
        "Name": "csrdmri: super-resolved diffusion MRI",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "csrdmri",
                "Version": __version__,
                "Description": f"continuous super-resolution of diffusion MRI; command: {command}",
            }
        ],
        "SourceDatasets": [{"URL": Path(bids_dir).absolute().as_uri()}],
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(description, indent=2) + "\n")
    return path


def complete_sidecar(sidecar: Path, job: Job, bids_dir: Path, zooms: Sequence[float], scale) -> None:
    """Add the BIDS fields to the sidecar ``csrdmri upsample`` wrote: ``Resolution`` (the ``res``
    label's meaning), ``Sources`` (the input, as a BIDS URI) and the T1w used."""
    fields = json.loads(sidecar.read_text())
    shown = " × ".join(f"{float(z):.4g}" for z in zooms)
    factors = " × ".join(f"{float(s):.4g}" for s in scale)
    fields["Resolution"] = {
        resolution_label(zooms): f"voxel size {shown} mm: the input super-resolved by {factors} (csrdmri)"
    }
    fields["Sources"] = [f"bids::{Path(os.path.relpath(job.dwi, bids_dir)).as_posix()}"]
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(fields, indent=2) + "\n")


def mrtrix_table(gtab: GradientTable, affine: np.ndarray) -> np.ndarray:
    """MRtrix3's gradient table (V, 4): unit directions in scanner coordinates and b (s/mm²).

    FSL b-vectors are given along the image axes, with the first flipped when the image's
    voxel-to-world matrix has a positive determinant (FSL's radiological voxel order); MRtrix
    wants them in world (scanner) coordinates. b0 rows keep a zero direction.
    """
    linear = np.asarray(affine, float)[:3, :3]
    rotation = linear / np.linalg.norm(linear, axis=0)
    vectors = np.asarray(gtab.bvecs, float).copy()
    if np.linalg.det(linear) > 0:
        vectors[:, 0] *= -1
    world = vectors @ rotation.T
    norms = np.linalg.norm(world, axis=1, keepdims=True)
    world = np.divide(world, norms, out=np.zeros_like(world), where=norms > 0)
    return np.column_stack([world, gtab.bvals])


def write_mrtrix(nifti: Path, gtab: GradientTable, affine: np.ndarray) -> Path:
    """MRtrix3's ``.b`` gradient file beside ``nifti`` (``mrconvert -grad``), atomically."""
    path = nifti.with_name(nifti.name.removesuffix(".gz").removesuffix(".nii") + ".b")
    with atomic_path(path) as tmp:
        np.savetxt(tmp, mrtrix_table(gtab, affine), fmt="%.6f %.6f %.6f %g")
    return path
