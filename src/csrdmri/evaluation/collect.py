"""What an evaluation asks for (:class:`EvaluationRequest`), and running its protocols into
:class:`EvaluationResults`: the paper's patch protocol on a cohort split
(:mod:`csrdmri.evaluation.patch_protocol`), whole held-out volumes of that split and real scans
degraded then super-resolved back (:mod:`csrdmri.evaluation.volume_protocol`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from csrdmri.core.degrade import DEGRADATIONS
from csrdmri.core.errors import InputError
from csrdmri.dmri.sh import MIN_DIRECTIONS
from csrdmri.evaluation.angular import angular_protocol
from csrdmri.evaluation.patch_protocol import (
    Method,
    Scores,
    cohort_split,
    paper_protocol,
    refuse_seen_phantom,
)
from csrdmri.evaluation.volume_protocol import VolumeCase, central_slab, subset_series, volume_protocol
from csrdmri.inference.consistency import noise_treatment
from csrdmri.inference.precision import bf16_faster
from csrdmri.inference.upsampler import Options
from csrdmri.io.layout import DatasetPaths, find_dataset
from csrdmri.io.nifti import DWISeries, load_dwi
from csrdmri.phantom.cohort import draw_subject
from csrdmri.phantom.params import PhantomParams
from csrdmri.phantom.signal import simulate_dwi


@dataclass(frozen=True, kw_only=True)
class EvaluationRequest:
    """An evaluation: which methods, on which data, with which protocol settings, written where.

    Parameters
    ----------
    methods
        Methods under evaluation by label (:func:`csrdmri.evaluation.patch_protocol.parse_methods`).
    cohort
        Cohort folder (``cohort.json``) for the patch and whole-volume protocols, or None.
    scales
        Scale factors of the paper's patch protocol.
    patches
        40³ patches per subject of the split (0: no patch protocol, e.g. for a cohort without
        a b ≈ 1000 shell).
    seed
        Seed of the patch positions and volumes.
    split
        Cohort split evaluated.
    volume_subjects
        The first this many subjects of the split are also evaluated as whole volumes.
    volume_scales
        Scale factors of the whole-volume protocol.
    directions
        b ≈ 1000 volumes kept per whole volume or real scan (None: all).
    real
        Real scans (dataset folders, or folders of them) for the degradation-based protocol.
    real_scales
        Scale factors of the real-scan protocol.
    degradation
        How the LR data are made from the truth in every protocol: ``"tricubic"`` (the
        paper's) or ``"kspace"`` (:mod:`csrdmri.core.degrade`).
    slab
        Cut every whole volume and real scan to its central ``slab`` LR slices through the third
        axis (``round(slab · scale)`` slices of the truth, :func:`central_slab`) before degrading
        it: thin-slab acquisitions. None: whole.
    angular
        Directions kept per shell to score angular super-resolution on each whole volume and
        real scan at its first scale (:mod:`csrdmri.evaluation.angular`); None: not scored.
    options
        How models run over whole volumes and real scans (device, precision, tiles); the patch
        protocol runs on the CPU.
    out
        Report folder (``report.md``, ``results.json``, ``figures/``), or None to write nothing.
    command
        The command line recorded in the report.
    """

    methods: dict[str, Method]
    cohort: Path | None = None
    scales: Sequence[float] = (2.0, 3.0, 4.0, 2.4)
    patches: int = 9
    seed: int = 0
    split: str = "test"
    volume_subjects: int = 1
    volume_scales: Sequence[float] = (2.0,)
    directions: int | None = 30
    real: Sequence[Path] = ()
    real_scales: Sequence[float] = (2.0, 2.4)
    degradation: str = "tricubic"
    slab: int | None = None
    angular: int | None = None
    options: Options = field(default_factory=Options)
    out: Path | None = None
    command: str = "csrdmri evaluate"

    def __post_init__(self) -> None:
        if self.cohort is None and not self.real:
            raise InputError("nothing to evaluate: give a cohort, real scans or both", "data")
        for name in ("scales", "volume_scales", "real_scales"):
            values = getattr(self, name)
            if not values or min(values) <= 1:
                raise InputError(f"{name.replace('_', ' ')} must all be > 1, got {list(values)}", name)
        if self.patches < 0:
            raise InputError(f"patches per subject must not be negative, got {self.patches}", "patches")
        if self.volume_subjects < 0:
            raise InputError(
                f"whole-volume subjects must not be negative, got {self.volume_subjects}", "volume_subjects"
            )
        if self.angular is not None and self.angular < MIN_DIRECTIONS:
            raise InputError(
                f"an SH fit needs at least {MIN_DIRECTIONS} kept directions, got {self.angular}", "angular"
            )
        if self.degradation not in DEGRADATIONS:
            raise InputError(
                f"degradation must be one of {', '.join(DEGRADATIONS)}, got {self.degradation!r}",
                "degradation",
            )
        if self.slab is not None and self.slab < 2:
            raise InputError(f"a slab needs at least 2 slices, got {self.slab}", "slab")
        if self.directions is not None and self.directions < 0:
            raise InputError(f"directions must not be negative, got {self.directions}", "directions")


@dataclass
class EvaluationResults:
    """What the protocols of an :class:`EvaluationRequest` measured."""

    methods: dict[str, Method]
    patch: dict[str, dict[float, Scores]]  # method -> scale -> scores (empty without a cohort)
    examples: dict[float, dict[str, np.ndarray]]  # scale -> the first patch: HR, LR, each method
    volume_cases: list[VolumeCase]  # whole held-out volumes of the cohort split
    real_cases: list[VolumeCase]  # real scans, degradation-based
    data_label: str  # the data the patch protocol measured, as the tables name it
    protocol: dict  # the settings, as results.json records them
    angular_cases: list[VolumeCase] = field(default_factory=list)  # held-out directions

    @property
    def case_groups(self) -> dict[str, list[VolumeCase]]:
        """The whole-volume cases by kind, in report order: ``volume``, ``real``, ``angular``."""
        return {"volume": self.volume_cases, "real": self.real_cases, "angular": self.angular_cases}


def real_datasets(paths: Sequence[Path]) -> dict[str, DatasetPaths]:
    """Scan name -> files, for each path that is a dataset, or each dataset folder inside one."""
    found: dict[str, DatasetPaths] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise InputError(f"real scan folder not found: {path}")
        try:
            found[path.name.split(".nii")[0]] = find_dataset(path)
            continue
        except InputError:
            if not path.is_dir():
                raise
        inside = {}
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            try:
                inside[sub.name] = find_dataset(sub)
            except InputError:
                continue
        if not inside:
            raise InputError(f"{path} is neither a dMRI dataset nor a folder of dMRI datasets")
        found.update(inside)
    return found


def _protocol_record(
    request: EvaluationRequest, volume_names: list[str], scans: dict[str, DatasetPaths]
) -> dict:
    return {
        "data": str(request.cohort) if request.cohort is not None else None,
        "split": request.split,
        "scales": list(request.scales),
        "patches_per_subject": request.patches,
        "seed": request.seed,
        "volume_subjects": volume_names,
        "volume_scales": list(request.volume_scales),
        "directions": request.directions,
        "real": {name: str(paths.dwi) for name, paths in scans.items()},
        "real_scales": list(request.real_scales),
        "angular_kept_directions": request.angular,
        "degradation": request.degradation,
        "consistency": request.options.consistency,
        "input_noise": noise_treatment(request.options.consistency, request.options.input_noise),
        "safeguard": request.options.safeguard,
        "precision": precision_text(request.options),
        "slab": request.slab,
    }


def precision_text(options: Options) -> str:
    """``--precision`` as it runs here: ``auto`` says what it makes of the joint model."""
    if options.precision != "auto":
        return options.precision
    joint = "bf16" if bf16_faster(torch.device(options.device).type) else "fp32"
    return f"auto ({joint} for joint models on this machine, fp32 for the others)"


def _volume_cases(
    request: EvaluationRequest,
    cohort: Path | None,
    datasets: dict[str, DatasetPaths],
    scales: Sequence[float],
    progress: Callable[[str], None],
    angular: list[VolumeCase],
) -> list[VolumeCase]:
    """The whole-volume cases of ``datasets`` (phantom subjects of ``cohort``, or real scans);
    their angular cases (at the first scale) are appended to ``angular`` when requested."""
    cases: list[VolumeCase] = []
    for name, paths in datasets.items():
        full = load_dwi(paths)
        series = subset_series(full, request.directions)
        reference = None
        if cohort is not None:  # a phantom subject: also scored against its noise-free signal
            refuse_seen_phantom(cohort, name, request.methods)
            reference = subset_series(replace(full, data=noise_free(cohort, name)), request.directions).data
        for label, part, part_reference, part_scales in _cuts(name, series, reference, scales, request.slab):
            settings = (request.options, progress, part_reference, request.degradation)
            cases += volume_protocol(label, part, request.methods, part_scales, *settings)
            if request.angular is None or part_scales[0] != scales[0]:
                continue
            case = angular_protocol(label, part, request.methods, scales[0], request.angular, *settings)
            if case is not None:
                angular.append(case)
            else:  # too few directions (said in a warning)
                for _ in request.methods:
                    progress(f"{label} angular (skipped)")
    return cases


def _cuts(
    name: str, series: DWISeries, reference: np.ndarray | None, scales: Sequence[float], slab: int | None
) -> list[tuple[str, DWISeries, np.ndarray | None, list[float]]]:
    """What to score of a dataset — (label, series, noise-free signal, scales): the whole series at
    every scale, or per scale its central slab of ``slab`` LR slices."""
    if slab is None:
        return [(name, series, reference, list(scales))]
    cuts = []
    for scale in scales:
        slices = round(slab * scale)
        part = central_slab(series, slices)
        part_reference = (
            None if reference is None else central_slab(replace(series, data=reference), slices).data
        )
        cuts.append((f"{name} slab {slab}", part, part_reference, [scale]))
    return cuts


def noise_free(cohort: Path, name: str) -> np.ndarray:
    """The noise-free series (X, Y, Z, V) of phantom subject ``name`` of ``cohort``, rebuilt from
    its seed and parameters (``cohort.json``): the signal before Rician noise, rounded."""
    manifest = json.loads((Path(cohort) / "cohort.json").read_text())
    values = dict(manifest["parameters"])
    values["fov_mm"] = tuple(values["fov_mm"])
    if isinstance(values["bvalue"], list):  # a multi-shell cohort
        values["bvalue"] = tuple(values["bvalue"])
    params = PhantomParams(**values)
    draw = draw_subject(manifest["subjects"].index(name), manifest["seed"], params)
    return simulate_dwi(draw.tissue(), draw.anatomy.mask, params, draw.generator, noise=False)


def run_protocols(request: EvaluationRequest) -> EvaluationResults:
    """Run the paper protocol and the first ``volume_subjects`` subjects' whole-volume protocol
    on the ``split`` of the cohort (if any), and the degradation-based protocol on the real
    scans, with a progress bar (one step per subject and per method on each volume and scale).

    Raises
    ------
    InputError
        When a cohort, split or real scan is missing or malformed, or a method would be
        evaluated on a subject that trained or selected it.
    """
    cohort = request.cohort
    subjects = cohort_split(cohort, request.split) if cohort is not None else []
    scans = real_datasets(request.real)
    volume_names = subjects[: request.volume_subjects]
    volumes = {name: find_dataset(Path(cohort) / name) for name in volume_names}
    angular = int(request.angular is not None)
    units = len(subjects) * bool(request.patches) + len(request.methods) * (
        len(volume_names) * (len(request.volume_scales) + angular)
        + len(scans) * (len(request.real_scales) + angular)
    )
    patch: dict[str, dict[float, Scores]] = {}
    examples: dict[float, dict[str, np.ndarray]] = {}
    with tqdm(total=units, desc="evaluating", unit="step", disable=None) as bar:

        def progress(what: str) -> None:
            bar.set_postfix_str(what)
            bar.update()

        if cohort is not None and request.patches:
            patch = paper_protocol(
                cohort,
                {label: m for label, m in request.methods.items() if not m.joint},
                request.scales,
                request.patches,
                request.seed,
                request.split,
                progress,
                examples,
                request.degradation,
            )
        angular_cases: list[VolumeCase] = []
        volume_cases = _volume_cases(request, cohort, volumes, request.volume_scales, progress, angular_cases)
        real_cases = _volume_cases(request, None, scans, request.real_scales, progress, angular_cases)
    plural = "s" if len(subjects) != 1 else ""
    return EvaluationResults(
        methods=request.methods,
        patch=patch,
        examples=examples,
        volume_cases=volume_cases,
        real_cases=real_cases,
        angular_cases=angular_cases,
        data_label=f"phantom ({request.split}, {len(subjects)} subject{plural} × {request.patches} patches)",
        protocol=_protocol_record(request, volume_names, scans),
    )
