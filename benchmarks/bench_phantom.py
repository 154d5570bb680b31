"""Phantom generation: time per stage of one full-size (HCP-like) subject, the amortised time
per subject of a small cohort (writing overlaps the next subject), and the DTI physics checks.

Usage: python benchmarks/bench_phantom.py [N_SUBJECTS]   (default 3)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from dipy.reconst.dti import TensorModel

from csrdmri.phantom import PhantomParams, generate_cohort, generate_subject
from csrdmri.phantom.anatomy import bias_field, texture_field, warp
from csrdmri.phantom.cohort import write_subject
from csrdmri.phantom.fibres import fibre_orientations
from csrdmri.phantom.signal import gradient_scheme, simulate_dwi
from csrdmri.phantom.templates import load_templates


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    names = [
        ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines() if ln.startswith("model name")
    ]
    return names[0] if names else "unknown CPU"


def timed(label: str, fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    print(f"  {label:28s} {time.perf_counter() - start:6.2f} s")
    return out


def stages(params: PhantomParams) -> None:
    print("one subject, stage by stage:")
    templates = timed("load templates (once)", load_templates)
    timed("gradient scheme (once)", gradient_scheme, params.n_dirs, params.n_b0, params.bvalue)
    rng = np.random.default_rng(0)
    anatomy = timed("deform templates", warp, templates, params, rng)
    fibres = timed("fibre orientations", fibre_orientations, anatomy.wm, anatomy.mask, params.crossing)
    bias = bias_field(rng, params.shape, params.bias_sd)
    dscale = texture_field(rng, params.shape, params.texture_sd, params.texture_mm, params.voxel_size)
    timed("DWI signal + Rician noise", simulate_dwi, anatomy, fibres, bias, dscale, params, torch.Generator())
    with tempfile.TemporaryDirectory() as tmp:
        subject = generate_subject(0, 0, params)
        timed("write (gzip NIfTI)", write_subject, Path(tmp), subject)


def physics(params: PhantomParams) -> None:
    subject = generate_subject(0, 0, params)
    anatomy, fibres = subject.anatomy, subject.fibres
    wm = (anatomy.wm[anatomy.mask] > 0.9) & fibres.coherent
    csf = anatomy.csf[anatomy.mask] > 0.9
    data = subject.dwi[anatomy.mask].astype(np.float32)
    model = TensorModel(subject.gtab)
    fit_wm, fit_csf = model.fit(data[wm]), model.fit(data[csf])
    cosine = np.abs(np.sum(fit_wm.evecs[..., 0] * fibres.frame[wm][:, :, 0], axis=-1))
    angle = np.degrees(np.arccos(np.clip(cosine, 0, 1)))
    print("DTI physics (DIPY TensorModel on subject 0, seed 0):")
    print(
        f"  coherent WM voxels {wm.sum()}: FA median {np.median(fit_wm.fa):.3f}, "
        f"FA > 0.5 in {np.mean(fit_wm.fa > 0.5):.1%}"
    )
    print(f"  principal direction error: median {np.median(angle):.2f}°, < 15° in {np.mean(angle < 15):.1%}")
    print(f"  CSF voxels {csf.sum()}: MD median {np.median(fit_csf.md):.2e} mm²/s (free water 3.0e-03)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    params = PhantomParams()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}; grid {params.shape}")
    stages(params)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_cohort(Path(tmp) / "cohort", n, seed=1, params=params)
        total = time.perf_counter() - start
    print(f"cohort of {n}: {total:.1f} s, {total / n:.1f} s per subject (templates already loaded)")
    physics(params)


if __name__ == "__main__":
    main()
