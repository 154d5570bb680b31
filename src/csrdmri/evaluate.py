"""The paper's evaluation protocol on a cohort (Tables 1 and 2).

Per subject of the chosen split (the test split by default): ``n`` 40³ patches inside the brain
and one b≈1000 volume per patch, drawn from ``numpy.random.default_rng([seed, subject index])``
so every method sees the same patches. For each scale ``s``: HR = the central (10·s)³ crop of the
b0-normalised patch, LR = its tricubic downsampling to 10³ (:mod:`csrdmri.patches`), SR = the
method's output on the HR grid; PSNR and SSIM (:mod:`csrdmri.metrics`) of SR against HR.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from csrdmri.errors import InputError
from csrdmri.infer import Upsampler
from csrdmri.io import file_digest, load_dwi
from csrdmri.layout import DatasetPaths, find_dataset
from csrdmri.metrics import psnr, ssim
from csrdmri.patches import PATCH, central_crop, degrade, hr_size, patch_origins
from csrdmri.preprocess import b0_reciprocal, mean_b0, series_mask, shell_indices, t1_on_dwi_grid
from csrdmri.resample import resample
from csrdmri.tiling import as_input


@dataclass(frozen=True)
class Method:
    """An upsampler under evaluation.

    ``fn(lr (L, L, L), t1_lr or None, shape) -> (*shape)`` runs it on one patch (S/S0);
    ``upsampler`` runs it on whole series (:mod:`csrdmri.infer`); ``meta`` is its checkpoint
    metadata (model and training configuration; empty for tricubic).
    """

    fn: Callable[[np.ndarray, np.ndarray | None, tuple[int, int, int]], np.ndarray]
    uses_t1: bool = False
    #: DWI file digests (→ subject name) the model was trained or selected on: never evaluated.
    seen: dict[str, str] = field(default_factory=dict)
    upsampler: Upsampler = field(default_factory=lambda: Upsampler("tricubic"))
    meta: dict = field(default_factory=dict)


def model_method(up: Upsampler) -> Method:
    """Wrap a trained model (eval mode, no gradients, float32 on the CPU)."""
    model = up.model.eval()
    uses_t1 = up.uses_t1

    @torch.no_grad()
    def fn(lr: np.ndarray, t1: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
        out = model(as_input(lr), as_input(t1) if uses_t1 else None, shape)
        return out[0, 0].double().numpy()

    return Method(fn, uses_t1, up.meta.get("seen_subjects", {}), up, up.meta)


def resolve_method(name: str) -> Method:
    """``tricubic``, a shipped model, a checkpoint (``.safetensors``) or a run folder (its
    best, else its last checkpoint)."""
    up = Upsampler.load(name)
    if up.model is None:
        return Method(lambda lr, t1, shape: resample(lr, shape), upsampler=up)
    return model_method(up)


def parse_methods(spec: str) -> dict[str, Method]:
    """``"tricubic,dcsrn=runs/dcsrn,csr-dmri-cpu"`` -> label -> Method (a label is the text
    before ``=``, else the name itself)."""
    methods = {}
    for item in (part.strip() for part in spec.split(",")):
        if item:
            label, _, name = item.rpartition("=")
            label = label or name
            if label in methods:
                raise InputError(f"--models names {label!r} twice")
            methods[label] = resolve_method(name)
    if not methods:
        raise InputError("--models names no method")
    return methods


@dataclass
class Scores:
    """Per-patch scores of one method at one scale."""

    psnr: list[float]
    ssim: list[float]

    def summary(self) -> dict:
        p, s = np.asarray(self.psnr), np.asarray(self.ssim)
        return {
            "psnr_mean": float(p.mean()),
            "psnr_std": float(p.std()),
            "ssim_mean": float(s.mean()),
            "ssim_std": float(s.std()),
            "patches": len(p),
        }


def refuse_seen(paths: DatasetPaths, methods: dict[str, Method]) -> None:
    """Refuse a dataset whose DWI file trained or selected one of the methods (by content)."""
    if not any(m.seen for m in methods.values()):
        return
    digest = file_digest(paths.dwi)
    for label, method in methods.items():
        if digest in method.seen:
            raise InputError(
                f"{paths.dwi} is subject {method.seen[digest]!r} that trained or selected "
                f"{label}: evaluating on it is refused (use held-out subjects)"
            )


def cohort_split(cohort: Path, split: str) -> list[str]:
    """Subject names of a split recorded in ``cohort.json``."""
    manifest = Path(cohort) / "cohort.json"
    if not manifest.exists():
        raise InputError(f"{cohort} is not a cohort folder (no cohort.json)")
    content = json.loads(manifest.read_text())
    if split not in content.get("split", {}):
        raise InputError(f"cohort.json has no split {split!r}")
    names = content["split"][split]
    if not names:
        raise InputError(f"the {split} split of {cohort} is empty")
    return names


def paper_protocol(
    cohort: Path,
    methods: dict[str, Method],
    scales: Sequence[float],
    patches_per_subject: int = 9,
    seed: int = 0,
    split: str = "test",
    progress: Callable[[str], None] | None = None,
    examples: dict[float, dict[str, np.ndarray]] | None = None,
) -> dict[str, dict[float, Scores]]:
    """Scores of each method at each scale on the paper's patch protocol.

    ``examples``, when given, receives the first patch of the first subject at each scale:
    scale -> {"HR": (n, n, n), "LR": (L, L, L), label: (n, n, n) for each method}, S/S0.
    """
    results = {m: {s: Scores([], []) for s in scales} for m in methods}
    need_t1 = any(method.uses_t1 for method in methods.values())
    subjects = cohort_split(cohort, split)
    for index, name in enumerate(subjects):
        paths = find_dataset(Path(cohort) / name)
        refuse_seen(paths, methods)
        series = load_dwi(paths)
        mask = series_mask(series)
        reciprocal = b0_reciprocal(mean_b0(series), mask)
        if need_t1 and paths.t1 is None:
            raise InputError(f"subject {name} has no T1w, but a method under evaluation needs one")
        t1 = t1_on_dwi_grid(paths.t1, series, mask) if need_t1 else None
        rng = np.random.default_rng([seed, index])
        origins = patch_origins(mask, patches_per_subject, rng)
        volumes = rng.choice(shell_indices(series.gtab), size=len(origins))
        for number, (origin, volume) in enumerate(zip(origins, volumes, strict=True)):
            box = tuple(slice(int(o), int(o) + PATCH) for o in origin)
            patch = (series.data[(*box, volume)] * reciprocal[box]).astype(np.float64)
            for s in scales:
                n = hr_size(s)
                hr = central_crop(patch, n)
                lr = degrade(hr)
                t1_lr = degrade(central_crop(t1[box], n)) if t1 is not None else None
                for m, method in methods.items():
                    sr = method.fn(lr, t1_lr if method.uses_t1 else None, hr.shape)
                    results[m][s].psnr.append(psnr(hr, sr))
                    results[m][s].ssim.append(ssim(hr, sr))
                    if examples is not None and index == 0 and number == 0:
                        examples.setdefault(s, {"HR": hr, "LR": lr})[m] = sr
        if progress:
            progress(name)
    return results
