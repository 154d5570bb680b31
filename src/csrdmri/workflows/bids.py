"""A BIDS App run (``csrdmri bids BIDS_DIR OUTPUT_DIR participant``): find, check, run, summarise.

Each DWI series is an independent task (:func:`process`, run in turn or on Dask by
:func:`csrdmri.cohort.run.run_jobs`). A task chooses the model that fits what the series has
(the requested one, or the default; when it cannot run the series — it needs a T1w and the
participant has none that covers the DWI, or a b ≈ 1000 shell the series lacks — the joint
q-space model, which reads a T1w when there is one and runs without: workflows.upsample),
super-resolves the series with ``csrdmri upsample``'s code into the derivative dataset,
completes the sidecar, and returns an :class:`Outcome` instead of raising, so that one failing
participant does not stop the others. A finished series (its image and completed sidecar exist)
is skipped unless ``force``. Every task's log goes to ``OUTPUT_DIR/logs/<series>.log`` as well.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from csrdmri.cohort.derivatives import complete_sidecar, output_path, write_description, write_mrtrix
from csrdmri.cohort.discover import Job, find_jobs
from csrdmri.cohort.report import participant_report, series_section
from csrdmri.cohort.run import run_jobs, task_log, threads_per_task
from csrdmri.core.errors import InputError
from csrdmri.core.grid import TargetGrid
from csrdmri.dmri.preprocess import T1_OVERLAP_MIN, fov_fraction
from csrdmri.inference.output import output_paths
from csrdmri.inference.upsampler import DEFAULT_OPTIONS, Options
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import atomic_path, gradient_paths, load_dwi, load_gradients, load_image
from csrdmri.workflows.upsample import check_target, upsample_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """What every series of the run gets (``csrdmri upsample``'s options)."""

    scale: Sequence[float] | None = None
    voxel_size: Sequence[float] | None = None
    model: str | None = None  # None: the default (workflows.upsample)
    options: Options = DEFAULT_OPTIONS
    force: bool = False
    mrtrix: bool = False
    max_output_gb: float = 64.0
    threads: int | None = None  # torch threads per task (None: cohort.run.threads_per_task decides)
    adapt_steps: int = 0
    seed: int = 0
    out_directions: np.ndarray | None = None


@dataclass(frozen=True)
class Outcome:
    """How one series went: ``done``, ``skipped`` (already there) or ``failed`` (``message``)."""

    series: str
    status: str
    message: str = ""
    output: str | None = None
    model: str | None = None
    seconds: float = 0.0


def run_bids(
    bids_dir: Path,
    out_dir: Path,
    level: str,
    labels: list[str] | None,
    settings: Settings,
    workers: int = 1,
    scheduler: str | None = None,
    command: str = "csrdmri bids",
) -> list[Outcome]:
    """Super-resolve every DWI series of the participants ``labels`` (all when None) of the
    BIDS dataset ``bids_dir`` into the derivative dataset ``out_dir``. The inputs are never
    written to."""
    if level != "participant":
        raise InputError(f"the analysis level must be 'participant' (there is no group level), got {level!r}")
    check_target(settings.scale, settings.voxel_size)
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}", "workers")
    bids_dir, out_dir = Path(bids_dir).absolute(), Path(out_dir).absolute()
    if not bids_dir.is_dir():
        raise InputError(f"BIDS folder not found: {bids_dir}", "bids_dir")
    if out_dir == bids_dir:
        raise InputError("the output folder must not be the BIDS dataset itself (e.g. derivatives/csrdmri)")
    jobs = find_jobs(bids_dir, labels)
    write_description(out_dir, bids_dir, command)
    settings = replace(settings, threads=threads_per_task(workers, scheduler, settings.threads))
    task = functools.partial(process, out_dir=out_dir, bids_dir=bids_dir, settings=settings)
    outcomes = run_jobs(jobs, task, workers, scheduler)
    for subject in sorted({job.subject for job in jobs}):
        participant_report(out_dir, subject)
    return outcomes


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch uses ``threads`` threads while the block runs (None: as it is)."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def covering_t1(job: Job, img) -> Path | None:
    """The job's T1w if it covers at least ``T1_OVERLAP_MIN`` of the DWI's grid (one that does
    not is said in the log and left out)."""
    if job.t1 is None:
        return None
    if fov_fraction(load_image(job.t1, "T1w"), img.affine, img.shape[:3]) >= T1_OVERLAP_MIN:
        return job.t1
    log.warning("%s: its T1w (%s) does not cover the DWI and is left out", job.name, job.t1.name)
    return None


def process(job: Job, out_dir: Path, bids_dir: Path, settings: Settings) -> Outcome:
    """Super-resolve one series into the derivative dataset; never raises (see :class:`Outcome`)."""
    started = time.monotonic()
    with task_log(out_dir / "logs" / f"{job.name}.log"), torch_threads(settings.threads):
        try:
            out, model = upsample_job(job, out_dir, bids_dir, settings)
        except InputError as exc:
            log.error("%s failed: %s", job.name, exc)
            return Outcome(job.name, "failed", str(exc), seconds=time.monotonic() - started)
        except Exception as exc:  # a bug or a system error: reported, the other series go on
            log.exception("%s failed", job.name)
            message = f"{type(exc).__name__}: {exc}"
            return Outcome(job.name, "failed", message, seconds=time.monotonic() - started)
    status = "skipped" if model is None else "done"
    return Outcome(job.name, status, output=str(out), model=model, seconds=time.monotonic() - started)


def upsample_job(job: Job, out_dir: Path, bids_dir: Path, settings: Settings) -> tuple[Path, str | None]:
    """The output of ``job`` and the model that made it (None: it was there already)."""
    img = load_image(job.dwi, "DWI", ndim=(4,))
    grid = TargetGrid.over(img.shape, img.affine, scale=settings.scale, voxel_size=settings.voxel_size)
    out = output_path(out_dir, job, grid.zooms)
    sidecar = output_paths(out)[3]
    done = all(p.exists() for p in output_paths(out)) and '"Resolution"' in sidecar.read_text()
    if done and not settings.force:
        log.info("%s: already done (%s); --force redoes it", job.name, out.name)
        if not report_path(out, job).exists():
            write_section(job, out)
        return out, None
    result = upsample_dataset(
        job.dwi,
        out,
        scale=settings.scale,
        voxel_size=settings.voxel_size,
        model=settings.model,
        t1=covering_t1(job, img),
        mask=job.mask,
        bval=job.bval,
        bvec=job.bvec,
        options=settings.options,
        adapt_steps=settings.adapt_steps,
        seed=settings.seed,
        max_output_gb=settings.max_output_gb,
        force=True,
        out_directions=settings.out_directions,
        substitute=True,
    )
    log.info(
        "%s: %s with %s%s",
        job.name,
        job.dwi.name,
        result.model,
        f", T1w {result.t1w.name}" if result.t1w else "",
    )
    complete_sidecar(sidecar, job, bids_dir, result.grid.zooms, result.grid.scales)
    if settings.mrtrix:
        written = load_gradients(*gradient_paths(out), result.volumes)  # the b-table only, no voxel
        write_mrtrix(out, written, result.grid.affine)
    write_section(job, out)
    return out, result.model


def report_path(out: Path, job: Job) -> Path:
    """Where the series' section of its participant's report goes (``.../figures/``)."""
    return out.parent.parent / "figures" / f"{job.name}_report.html"


def write_section(job: Job, out: Path) -> None:
    """The series' section of the participant's report; a failure there is logged, the
    output stays (it is complete without its figures)."""
    try:
        series = load_dwi(find_dataset(job.dwi, job.bval, job.bvec))
        section = series_section(series, out, job.t1, job.mask)
    except Exception:
        log.exception("%s: the report's figures could not be made (the output is complete)", job.name)
        return
    path = report_path(out, job)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(section)
