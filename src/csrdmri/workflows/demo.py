"""The end-to-end demonstration behind ``make demo``.

A phantom subject (1.25 mm, a central brain block) is the ground truth; its 2× tricubic
downsampling (2.5 mm) is the input; tricubic and a trained model super-resolve it back to
1.25 mm through the same code path as ``csrdmri upsample`` (the T1w comes from its own 1.25 mm
grid); PSNR/SSIM of S/S0 against the truth are reported, and a figure compares the methods.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np

from csrdmri.core.grid import TargetGrid, resampled_affine
from csrdmri.core.metrics import psnr, ssim
from csrdmri.core.resample import resample
from csrdmri.dmri.preprocess import (
    DEFAULT_SHELL,
    b0_indices,
    b0_reciprocal,
    mean_b0,
    shell_indices,
)
from csrdmri.dmri.scan import PreparedScan
from csrdmri.evaluation.figures import comparison
from csrdmri.inference.output import upsample_to_file
from csrdmri.inference.upsampler import Upsampler
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import atomic_path, load_dwi, save_gradients, save_nifti
from csrdmri.phantom import PhantomParams
from csrdmri.phantom.cohort import generate_subject

#: The HR block cut around the phantom's brain centre (1.25 mm voxels; even, so 2× divides it).
BLOCK = (96, 112, 80)


def make_pair(out: Path, seed: int = 0, directions: int = 6) -> tuple[Path, Path]:
    """Write the truth (``out/truth/dwi.nii.gz``) and its 2× downsampling with the 1.25 mm T1w
    (``out/input/``); returns the two DWI paths."""
    params = replace(PhantomParams(), n_dirs=directions)  # all 18 b0s: S0 as clean as in training
    subject = generate_subject(0, seed, params)
    mask = subject.anatomy.mask
    centre = [
        int(np.mean(np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != i))))) for i in range(3)
    ]
    start = [min(max(c - b // 2, 0), n - b) for c, b, n in zip(centre, BLOCK, mask.shape, strict=True)]
    box = tuple(slice(s, s + b) for s, b in zip(start, BLOCK, strict=True))
    affine = subject.anatomy.affine.copy()
    affine[:3, 3] = nib.affines.apply_affine(affine, start)
    hr = subject.dwi[box].astype(np.float32)
    lr_shape = tuple(b // 2 for b in BLOCK)
    lr = np.stack([resample(hr[..., v], lr_shape) for v in range(hr.shape[3])], axis=-1)
    paths = {}
    for name, data, aff in (
        ("truth", hr, affine),
        ("input", np.maximum(lr, 0), resampled_affine(affine, BLOCK, lr_shape)),
    ):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        paths[name] = folder / "dwi.nii.gz"
        save_nifti(paths[name], data, aff)
        save_gradients(paths[name], subject.gtab)
    save_nifti(out / "input" / "t1w.nii.gz", subject.t1[box], affine)
    save_nifti(out / "truth" / "mask.nii.gz", mask[box].astype(np.float32), affine)
    return paths["input"], paths["truth"]


#: The two S/S0 references the demo scores against (see :func:`score`).
REFERENCES = ("own b0", "true b0")


def score(truth: Path, estimate: Path, mask: np.ndarray) -> dict[str, tuple[float, float]]:
    """Mean PSNR / SSIM over the b≈1000 volumes of S/S0 against the truth's S/S0, PSNR over
    brain voxels, SSIM over the brain's bounding box.

    The estimate's DWIs are divided by its own mean b0 (``"own b0"``: the attenuation a tensor
    fit of the output sees) and by the truth's (``"true b0"``: the error in the input's units,
    b0 interpolation error included).
    """
    ref = load_dwi(find_dataset(truth))
    est = nib.load(estimate).get_fdata(dtype=np.float32)
    true_reciprocal = b0_reciprocal(mean_b0(ref), mask)
    own_reciprocal = b0_reciprocal(est[..., b0_indices(ref.gtab)].mean(axis=-1), mask)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(mask))
    scores = {}
    for name, reciprocal in zip(REFERENCES, (own_reciprocal, true_reciprocal), strict=True):
        per_volume = []
        for v in shell_indices(ref.gtab):
            a, b = ref.data[..., v] * true_reciprocal, est[..., v] * reciprocal
            per_volume.append((psnr(a[mask], b[mask]), ssim(a[box], b[box])))
        scores[name] = tuple(np.mean(per_volume, axis=0))
    return scores


def run_demo(out: Path, model: str, seed: int = 0) -> str:
    """The whole demonstration; returns the markdown table it also writes to ``out/metrics.md``."""
    out.mkdir(parents=True, exist_ok=True)
    source, truth = make_pair(out, seed)
    paths = find_dataset(source, t1=source.with_name("t1w.nii.gz"))
    series = load_dwi(paths)
    grid = TargetGrid.over(series.shape, series.affine, scale=2.0)
    methods = [Upsampler.load(name) for name in ("tricubic", model)]
    joint = any(up.joint for up in methods)
    t1 = paths.t1 if any(up.reads_t1 for up in methods) else None
    scan = PreparedScan.prepare(series, t1=t1, shell=None if joint else DEFAULT_SHELL)
    outputs = {"input (2.5 mm)": source}
    for up in methods:
        path = out / f"sr_{Path(up.name).stem}.nii.gz"
        upsample_to_file(series, grid, up, path, scan)
        outputs[up.name] = path
    mask = nib.load(out / "truth" / "mask.nii.gz").get_fdata() > 0.5
    rows = [
        "| method | PSNR, own b0 (dB) | SSIM, own b0 | PSNR, true b0 (dB) | SSIM, true b0 |",
        "|---|---|---|---|---|",
    ]
    for name, path in outputs.items():
        if path != source:
            scores = score(truth, path, mask)
            cells = " | ".join(f"{scores[r][0]:.2f} | {scores[r][1]:.4f}" for r in REFERENCES)
            rows.append(f"| {name} | {cells} |")
    table = "\n".join(rows) + "\n"
    header = (
        "2× super-resolution of a phantom block (input 2.5 mm, truth 1.25 mm): the b=1000 "
        "volumes divided by the output's own mean b0 (what a tensor fit sees) and by the "
        "truth's (input units), against the truth's S/S0; PSNR inside the brain, SSIM over "
        "its bounding box.\n\n"
    )
    with atomic_path(out / "metrics.md") as tmp:
        tmp.write_text(header + table)
    comparison(outputs, out / "comparison.png", int(scan.shell[0]), truth)
    return table
