"""The report's figures (Fig. 2 style): the first test patch of each scale, and each whole
volume or real scan with its FA map, every method beside the truth with |error| maps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csrdmri.core.resample import resample
from csrdmri.evaluation.collect import EvaluationResults
from csrdmri.evaluation.figures import panel_grid
from csrdmri.evaluation.volume_protocol import VolumeCase


@dataclass(frozen=True)
class CaseFigures:
    """The figures of one whole-volume case; paths relative to the report folder."""

    stem: str  # e.g. volume-phantom001-2x
    signal: Path  # S/S0 of the first b ≈ 1000 volume
    fa: Path  # FA maps


@dataclass(frozen=True)
class ReportFigures:
    """Every figure of a report; paths relative to the report folder."""

    patches: dict[float, Path]  # scale -> the first test patch
    cases: dict[str, list[CaseFigures]]  # kind (volume, real) -> one per case, in order


def _middle(volume: np.ndarray, mask: np.ndarray | None = None) -> int:
    """Axial index at the middle of the brain (of the array when no mask)."""
    if mask is None:
        return volume.shape[2] // 2
    zs = np.flatnonzero(mask.any(axis=(0, 1)))
    return int((zs.min() + zs.max()) // 2)


def patch_figure(example: dict[str, np.ndarray], scale: float, out: Path) -> Path:
    """Fig. 2 style, one patch: HR crop, LR (its own voxels), each method, |error| maps."""
    hr = example["HR"]
    k = _middle(hr)
    images = {"LR (nearest)": resample(example["LR"], hr.shape, order=0)[:, :, k]}
    images.update({label: sr[:, :, k] for label, sr in example.items() if label not in ("HR", "LR")})
    images["HR"] = hr[:, :, k]
    title = f"{scale:g}×: middle axial slice of the first test patch (S/S0)"
    return panel_grid(images, out, "HR", vmax=float(np.percentile(hr, 99.5)), title=title)


def volume_figures(case: VolumeCase, folder: Path, stem: str) -> tuple[Path, Path]:
    """Fig. 2 style on a whole volume (S/S0 of its first b ≈ 1000 volume) and the FA maps,
    each with |error| maps against the truth (mean errors over the brain); the same axial
    slice (the brain's middle)."""
    k = _middle(case.truth, case.mask)
    brain = case.mask[:, :, k]
    images = {"LR (nearest)": resample(case.lr, case.truth.shape, order=0)[:, :, k] * brain}
    images.update({label: s.example[:, :, k] * brain for label, s in case.methods.items()})
    images["truth"] = case.truth[:, :, k] * brain
    where = f"{case.dataset}, {case.scale:g}×, axial slice {k}"
    vmax = float(np.percentile(case.truth[case.mask], 99.5))
    sr = panel_grid(images, folder / f"{stem}.png", "truth", vmax=vmax, title=f"S/S0: {where}", region=brain)
    fa = {label: s.fa[:, :, k] for label, s in case.methods.items()}
    fa["truth"] = case.truth_fa[:, :, k]
    fa_path = panel_grid(fa, folder / f"{stem}-fa.png", "truth", 1.0, 0.25, f"DTI FA: {where}", brain)
    return sr, fa_path


def draw_figures(results: EvaluationResults, out: Path) -> ReportFigures:
    """Draw every figure of ``results`` into ``out/figures`` (created).

    Returns
    -------
    ReportFigures
        The figures' paths relative to ``out``, as the report links them.
    """
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    patches = {
        s: patch_figure(example, s, folder / f"patch-{s:g}x.png").relative_to(out)
        for s, example in results.examples.items()
    }
    cases: dict[str, list[CaseFigures]] = {}
    for kind, group in results.case_groups.items():
        cases[kind] = []
        for case in group:
            # A plain file name: Markdown links break at spaces, and shells at arrows.
            stem = re.sub(r"[^A-Za-z0-9._]+", "-", f"{kind}-{case.dataset}-{case.scale:g}x").strip("-")
            sr, fa = volume_figures(case, folder, stem)
            cases[kind].append(CaseFigures(stem, sr.relative_to(out), fa.relative_to(out)))
    return ReportFigures(patches, cases)
