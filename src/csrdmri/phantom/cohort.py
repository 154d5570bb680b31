"""Generate a phantom cohort in the HCP layout, with ``cohort.json`` and a train/val/test split.

Each subject ``i`` draws from its own child of ``numpy.random.SeedSequence(seed)``, so a subject
depends only on (seed, i, parameters): the same seed gives bit-identical files, and subjects
differ from each other. Files are written atomically by a background thread while the next
subject is computed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from dipy.core.gradients import GradientTable

from csrdmri import __version__
from csrdmri.core.errors import InputError
from csrdmri.io.nifti import atomic_path
from csrdmri.phantom.anatomy import Anatomy, bias_field, texture_field, warp
from csrdmri.phantom.fibres import Fibres, cortical_normals, fibre_orientations, rotated, rotation_field
from csrdmri.phantom.params import PhantomParams
from csrdmri.phantom.signal import gradient_scheme, simulate_dwi, simulate_t1
from csrdmri.phantom.templates import load_templates

SPLIT = {"train": 0.7, "validation": 0.1, "test": 0.2}


@dataclass
class Subject:
    """One generated subject: images, gradient table and the ground truth behind them."""

    name: str
    dwi: np.ndarray  # (X, Y, Z, V) int16
    t1: np.ndarray  # (X, Y, Z) int16
    gtab: GradientTable
    anatomy: Anatomy
    fibres: Fibres


def subject_name(index: int) -> str:
    return f"phantom{index:03d}"


def split_subjects(names: list[str], seed: int) -> dict[str, list[str]]:
    """Shuffle (seeded) and split 70/10/20; at least one test subject when there are two or more."""
    n = len(names)
    order = [names[i] for i in np.random.default_rng(seed).permutation(n)]
    n_test = max(1, round(SPLIT["test"] * n)) if n >= 2 else 0
    n_val = round(SPLIT["validation"] * n) if n - n_test > 1 else 0
    n_train = n - n_test - n_val
    return {
        "train": sorted(order[:n_train]),
        "validation": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


@dataclass
class SubjectDraw:
    """What a subject is made of before any signal is simulated: anatomy, fibres, the DWI's
    bias field, the diffusivity heterogeneity, the T1w's bias field, the noise generator and,
    with anisotropic grey matter, its axis per brain voxel."""

    anatomy: Anatomy
    fibres: Fibres
    dwi_bias: np.ndarray
    dscale: np.ndarray
    t1_bias: np.ndarray
    generator: torch.Generator
    gm_axis: np.ndarray | None = None

    def tissue(self) -> dict[str, np.ndarray]:
        """Per brain voxel (mask C order) arrays of :func:`csrdmri.phantom.signal.brain_signal`."""
        mask = self.anatomy.mask
        return {
            "wm": self.anatomy.wm[mask],
            "gm": self.anatomy.gm[mask],
            "csf": self.anatomy.csf[mask],
            "bias": self.dwi_bias[mask],
            "dscale": self.dscale[mask],
            "frame": self.fibres.frame,
            "f2": self.fibres.f2,
            **({"gm_axis": self.gm_axis} if self.gm_axis is not None else {}),
        }


def draw_subject(index: int, seed: int, params: PhantomParams) -> SubjectDraw:
    """The random parts of subject ``index`` of the cohort seeded by ``seed``."""
    child = np.random.SeedSequence(seed).spawn(index + 1)[index]
    rng = np.random.default_rng(child)
    generator = torch.Generator().manual_seed(int(child.generate_state(1, dtype=np.uint64)[0] >> 1))
    anatomy = warp(load_templates(), params, rng)
    fibres = fibre_orientations(anatomy.wm, anatomy.mask, params.crossing)
    dwi_bias = bias_field(rng, params.shape, params.bias_sd)
    dscale = texture_field(rng, params.shape, params.texture_sd, params.texture_mm, params.voxel_size)
    t1_bias = bias_field(rng, params.shape, params.bias_sd)
    if params.orientation_sd:  # drawn last: without it, a seed gives the subjects it always gave
        length = params.orientation_mm / params.voxel_size
        turn = rotation_field(rng, anatomy.mask, params.orientation_sd, length)
        fibres = replace(fibres, frame=rotated(fibres.frame, turn))
    gm_axis = cortical_normals(anatomy.wm, anatomy.csf, anatomy.mask) if params.gm_anisotropy != 1 else None
    return SubjectDraw(anatomy, fibres, dwi_bias, dscale, t1_bias, generator, gm_axis)


def subject_t1(draw: SubjectDraw, params: PhantomParams) -> np.ndarray:
    """The subject's T1w (int16). Microstructure that slows diffusion (myelin) brightens it: the
    T1w sees the same heterogeneity as the DWI, as real anatomy does."""
    bias = draw.t1_bias * draw.dscale ** (-params.t1_coupling)
    return simulate_t1(draw.anatomy, bias, params, draw.generator)


def generate_subject(index: int, seed: int, params: PhantomParams) -> Subject:
    """Simulate subject ``index`` of the cohort seeded by ``seed``."""
    draw = draw_subject(index, seed, params)
    dwi = simulate_dwi(draw.tissue(), draw.anatomy.mask, params, draw.generator)
    gtab = gradient_scheme(params.n_dirs, params.n_b0, params.bvalue)
    return Subject(subject_name(index), dwi, subject_t1(draw, params), gtab, draw.anatomy, draw.fibres)


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def _save_text(path: Path, rows: np.ndarray, fmt: str) -> None:
    with atomic_path(path) as tmp:
        np.savetxt(tmp, rows, fmt=fmt)


def write_subject(folder: Path, subject: Subject) -> None:
    """Write a subject in the HCP layout under ``folder/<name>``."""
    base = folder / subject.name / "T1w"
    diffusion = base / "Diffusion"
    diffusion.mkdir(parents=True, exist_ok=True)
    affine = subject.anatomy.affine
    _save_text(diffusion / "bvals", subject.gtab.bvals[None], "%g")
    _save_text(diffusion / "bvecs", subject.gtab.bvecs.T, "%.6f")
    _save(diffusion / "nodif_brain_mask.nii.gz", subject.anatomy.mask.astype(np.uint8), affine)
    _save(base / "T1w_acpc_dc_restore_1.25.nii.gz", subject.t1, affine)
    _save(diffusion / "data.nii.gz", subject.dwi, affine)


SUBJECT_FILES = (
    "T1w/Diffusion/data.nii.gz",
    "T1w/Diffusion/bvals",
    "T1w/Diffusion/bvecs",
    "T1w/Diffusion/nodif_brain_mask.nii.gz",
    "T1w/T1w_acpc_dc_restore_1.25.nii.gz",
)


def _write_json(path: Path, content: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2) + "\n")


def generate_cohort(
    out: Path,
    n_subjects: int,
    seed: int,
    params: PhantomParams,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Generate ``n_subjects`` into ``out`` and write ``out/cohort.json``; returns its content.

    ``cohort.json`` is written first with ``"complete": false``; running the same command again
    after an interruption keeps the subjects already written and generates the rest, and on a
    complete cohort does nothing. A different cohort in ``out`` is refused.
    """
    if n_subjects < 1:
        raise InputError(f"a cohort needs at least 1 subject, got {n_subjects}")
    out = Path(out)
    names = [subject_name(i) for i in range(n_subjects)]
    cohort = {
        "csrdmri_version": __version__,
        "seed": seed,
        "parameters": params.to_dict(),
        "subjects": names,
        "split": split_subjects(names, seed),
        "complete": False,
    }
    manifest = out / "cohort.json"
    if manifest.exists():
        previous = json.loads(manifest.read_text())
        wanted = json.loads(json.dumps(cohort))  # tuples as JSON lists, as in the file
        # A parameter added since the cohort was started is at its default there.
        defaults = json.loads(json.dumps(PhantomParams().to_dict()))
        previous["parameters"] = {**defaults, **previous.get("parameters", {})}
        if any(previous.get(k) != wanted[k] for k in ("seed", "parameters", "subjects")):
            raise InputError(
                f"{out} already holds another cohort (different seed, size or parameters); "
                "choose another folder"
            )
        if previous.get("complete"):
            return previous
    out.mkdir(parents=True, exist_ok=True)
    _write_json(manifest, cohort)
    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=1) as writer:
        for i, name in enumerate(names):
            if not all((out / name / f).exists() for f in SUBJECT_FILES):
                subject = generate_subject(i, seed, params)
                pending.append(writer.submit(write_subject, out, subject))
                del subject
                if len(pending) > 1:  # at most one subject waiting to be written
                    pending.pop(0).result()
            if progress:
                progress(name)
        for job in pending:
            job.result()
    cohort["complete"] = True
    _write_json(manifest, cohort)
    return cohort
