"""Methods under evaluation (``--models``), and the paper's patch protocol (Tables 1 and 2).

Per subject of the chosen split (the test split by default): ``n`` 40³ patches inside the brain
and one b≈1000 volume per patch, drawn from ``numpy.random.default_rng([seed, subject index])``
so every method sees the same patches. For each scale ``s``: HR = the central (10·s)³ crop of the
b0-normalised patch, LR = its tricubic downsampling to 10³ (:mod:`csrdmri.core.patches`), SR = the
method's output on the HR grid; PSNR and SSIM (:mod:`csrdmri.core.metrics`) of SR against HR.
Whole volumes are :mod:`csrdmri.evaluation.volume_protocol`; the report is :mod:`csrdmri.evaluation.report`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from csrdmri.core.errors import InputError
from csrdmri.core.metrics import psnr, ssim
from csrdmri.core.patches import PATCH, central_crop, degrade, hr_size, patch_origins
from csrdmri.core.resample import resample
from csrdmri.dmri.scan import PreparedScan
from csrdmri.inference.tiling import as_input
from csrdmri.inference.upsampler import Upsampler
from csrdmri.io.layout import DatasetPaths, find_dataset
from csrdmri.io.nifti import file_digest, load_dwi
from csrdmri.models.checkpoint import phantom_subjects


def training_scale(up: Upsampler) -> float | None:
    """The one scale a model was trained at (``scale_range`` (s, s)); None for tricubic and for
    models trained on a range of scales."""
    low, high = up.meta.get("training", {}).get("scale_range", (None, None))
    return float(low) if low is not None and low == high else None


@dataclass(frozen=True)
class Method:
    """A method under evaluation: tricubic, a trained model, or fixed-scale models of one
    architecture trained at different scales.

    Fixed-scale models serve a scale as the paper does: the model trained at that scale, else
    the one trained at the largest scale, its output resampled (e.g. the 3× model for 2.4× and 4×).
    """

    upsamplers: tuple[Upsampler, ...] = (Upsampler("tricubic"),)

    def at(self, scale: float) -> Upsampler:
        """The upsampler that serves ``scale``."""
        if len(self.upsamplers) == 1:
            return self.upsamplers[0]
        by_scale = {training_scale(up): up for up in self.upsamplers}
        exact = [s for s in by_scale if abs(s - scale) < 1e-6]
        return by_scale[exact[0] if exact else max(by_scale)]

    @property
    def uses_t1(self) -> bool:
        return any(up.uses_t1 for up in self.upsamplers)

    @property
    def reads_t1(self) -> bool:
        return any(up.reads_t1 for up in self.upsamplers)

    @property
    def joint(self) -> bool:
        """A joint q-space model: it corrects whole shells, so the patch protocol (one volume's
        patches) does not apply; the whole-volume protocols score it."""
        return any(up.joint for up in self.upsamplers)

    @property
    def seen(self) -> dict[str, str]:
        """DWI file digests (→ subject name) that trained or selected it: never evaluated on."""
        return {k: v for up in self.upsamplers for k, v in up.meta.get("seen_subjects", {}).items()}

    @property
    def phantoms(self) -> dict[int, int]:
        """Phantom seeds → how many subjects (indices 0..n-1) of that seed trained or validated
        the method (q-space runs simulate their data from phantom subjects, not from files)."""
        seeds: dict[int, int] = {}
        for up in self.upsamplers:
            for seed, count in phantom_subjects(up.meta).items():
                seeds[seed] = max(seeds.get(seed, 0), count)
        return seeds

    @property
    def meta(self) -> dict:
        """Checkpoint metadata (model and training configuration; empty for tricubic)."""
        return self.upsamplers[0].meta

    @torch.no_grad()
    def patch(self, lr: np.ndarray, t1: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
        """Super-resolve one LR patch (L, L, L) of S/S0 onto ``shape`` (float64 on the CPU: the
        metrics are computed in double precision)."""
        up = self.at(shape[0] / lr.shape[0])
        if up.model is None:
            return resample(lr, shape)
        out = up.model(as_input(lr), as_input(t1) if up.uses_t1 else None, shape)
        return out[0, 0].double().numpy()


def resolve_method(name: str) -> Method:
    """``tricubic``, a shipped model, a checkpoint (``.safetensors``) or a run folder (its best,
    else its last checkpoint); or fixed-scale models of one architecture joined by ``+``
    (``runs/dcsrn-x2+runs/dcsrn-x3``). ``NAME@N``: with ``N`` steps of per-scan adaptation
    (:mod:`csrdmri.inference.adapt`) before each whole volume or real scan."""
    base, _, steps = name.rpartition("@") if "@" in name else (name, "", "0")
    if not steps.isdigit():
        raise InputError(f"{name}: the number after '@' is the adaptation steps, e.g. csr-dmri-cpu@100")
    ups = tuple(Upsampler.load(part.strip(), int(steps)) for part in base.split("+"))
    if len(ups) > 1:
        scales = [training_scale(up) for up in ups]
        architectures = {up.meta["model"]["architecture"] if up.model else None for up in ups}
        if None in scales or len(architectures) > 1 or len(set(scales)) < len(scales):
            raise InputError(
                f"{name}: only fixed-scale models of one architecture, each trained at another "
                "scale, can be joined with '+'"
            )
    return Method(ups)


def parse_methods(spec: str) -> dict[str, Method]:
    """``"tricubic,dcsrn=runs/dcsrn-x2+runs/dcsrn-x3,csr-dmri-cpu"`` -> label -> Method (a
    label is the text before ``=``, else the name itself)."""
    methods = {}
    for item in (part.strip() for part in spec.split(",")):
        if item:
            label, _, name = item.rpartition("=")
            label = label or name
            if label in methods:
                raise InputError(f"the methods name {label!r} twice", "models")
            methods[label] = resolve_method(name)
    if not methods:
        raise InputError("no method to evaluate is named", "models")
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


def refuse_seen_phantom(cohort: Path, name: str, methods: dict[str, Method]) -> None:
    """Refuse a phantom subject whose anatomy (seed and index, whatever the other parameters)
    trained or validated one of the methods."""
    content = json.loads((Path(cohort) / "cohort.json").read_text())
    seed, index = content.get("seed"), content.get("subjects", []).index(name)
    for label, method in methods.items():
        count = method.phantoms.get(seed)
        if count is not None and index < count:
            raise InputError(
                f"{name} of the cohort {cohort} (seed {seed}) is a phantom subject that trained or "
                f"validated {label} (seed {seed}, subjects 0–{count - 1}): evaluating on it is "
                "refused (generate the test cohort with another seed)"
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
    degradation: str = "tricubic",
) -> dict[str, dict[float, Scores]]:
    """Scores of each method at each scale on the paper's patch protocol, the LR S/S0 patches
    made by ``degradation`` (:mod:`csrdmri.core.degrade`; the T1w's always tricubic, as in
    training).

    ``examples``, when given, receives the first patch of the first subject at each scale:
    scale -> {"HR": (n, n, n), "LR": (L, L, L), label: (n, n, n) for each method}, S/S0.
    """
    results = {m: {s: Scores([], []) for s in scales} for m in methods}
    need_t1 = any(method.uses_t1 for method in methods.values())
    subjects = cohort_split(cohort, split)
    for index, name in enumerate(subjects):
        paths = find_dataset(Path(cohort) / name)
        refuse_seen(paths, methods)
        if need_t1 and paths.t1 is None:
            raise InputError(f"subject {name} has no T1w, but a method under evaluation needs one")
        scan = PreparedScan.prepare(load_dwi(paths), t1=paths.t1 if need_t1 else None)
        series, t1, reciprocal = scan.series, scan.t1, scan.reciprocal()
        rng = np.random.default_rng([seed, index])
        origins = patch_origins(scan.mask, patches_per_subject, rng)
        volumes = rng.choice(scan.shell, size=len(origins))
        for number, (origin, volume) in enumerate(zip(origins, volumes, strict=True)):
            box = tuple(slice(int(o), int(o) + PATCH) for o in origin)
            patch = (series.data[(*box, volume)] * reciprocal[box]).astype(np.float64)
            for s in scales:
                n = hr_size(s)
                hr = central_crop(patch, n)
                lr = degrade(hr, method=degradation)
                t1_lr = degrade(central_crop(t1[box], n)) if t1 is not None else None
                for m, method in methods.items():
                    sr = method.patch(lr, t1_lr, hr.shape)
                    results[m][s].psnr.append(psnr(hr, sr))
                    results[m][s].ssim.append(ssim(hr, sr))
                    if examples is not None and index == 0 and number == 0:
                        examples.setdefault(s, {"HR": hr, "LR": lr})[m] = sr
        if progress:
            progress(name)
    return results
