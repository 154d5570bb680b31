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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csrdmri.errors import InputError
from csrdmri.io import load_dwi
from csrdmri.layout import find_dataset
from csrdmri.metrics import psnr, ssim
from csrdmri.patches import PATCH, central_crop, degrade, hr_size, patch_origins
from csrdmri.preprocess import mean_b0, normalise_by_b0, series_mask, shell_indices
from csrdmri.resample import resample

#: A method maps an LR patch (10, 10, 10) to the HR grid ``shape``.
Method = Callable[[np.ndarray, tuple[int, int, int]], np.ndarray]

METHODS: dict[str, Method] = {"tricubic": lambda lr, shape: resample(lr, shape)}


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
    methods: Sequence[str],
    scales: Sequence[float],
    patches_per_subject: int = 9,
    seed: int = 0,
    split: str = "test",
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[float, Scores]]:
    """Scores of each method at each scale on the paper's patch protocol."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; available: {', '.join(METHODS)}")
    results = {m: {s: Scores([], []) for s in scales} for m in methods}
    subjects = cohort_split(cohort, split)
    for index, name in enumerate(subjects):
        series = load_dwi(find_dataset(Path(cohort) / name))
        mask = series_mask(series)
        b0 = mean_b0(series)
        rng = np.random.default_rng([seed, index])
        origins = patch_origins(mask, patches_per_subject, rng)
        volumes = rng.choice(shell_indices(series.gtab), size=len(origins))
        for origin, volume in zip(origins, volumes, strict=True):
            box = tuple(slice(int(o), int(o) + PATCH) for o in origin)
            patch = normalise_by_b0(series.data[..., volume], b0, mask)[box].astype(np.float64)
            for s in scales:
                hr = central_crop(patch, hr_size(s))
                lr = degrade(hr)
                for m in methods:
                    sr = METHODS[m](lr, hr.shape)
                    results[m][s].psnr.append(psnr(hr, sr))
                    results[m][s].ssim.append(ssim(hr, sr))
        if progress:
            progress(name)
    return results
