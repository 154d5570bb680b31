"""Running a BIDS App: each DWI series is an independent task, run in turn or on Dask.

A task (:func:`process`) chooses the model that fits what the series has (the requested one;
when it needs a T1w and the participant has none that covers the DWI, the joint q-space model,
which reads a T1w when there is one and runs without), super-resolves the series with
``csrdmri upsample``'s code into the derivative dataset, completes the sidecar, and returns an
:class:`Outcome` instead of raising, so that one failing participant does not stop the others.
A finished series (its image and completed sidecar exist) is skipped unless ``force``.

Many series at once run on Dask (``distributed``): a local cluster of ``workers`` processes
with one thread each (torch gets ``cores // workers`` threads in each, so the cores are not
oversubscribed), or an existing scheduler (``tcp://host:port``: dask-jobqueue, SLURM, any Dask
cluster). Every task's log goes to ``OUTPUT_DIR/logs/<series>.log`` as well.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from csrdmri.cohort.derivatives import complete_sidecar, output_path, write_mrtrix
from csrdmri.cohort.discover import Job
from csrdmri.core.errors import InputError
from csrdmri.core.grid import TargetGrid
from csrdmri.dmri.preprocess import T1_OVERLAP_MIN, fov_fraction
from csrdmri.inference.output import output_paths
from csrdmri.inference.upsampler import DEFAULT_OPTIONS, Options, Upsampler
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import load_dwi, load_image
from csrdmri.weights import DEFAULT_MODEL

log = logging.getLogger(__name__)

#: The model a series gets when the requested one needs a T1w it does not have.
WITHOUT_T1 = "csr-qspace-cpu"


@dataclass(frozen=True)
class Settings:
    """What every series of the run gets (``csrdmri upsample``'s options)."""

    scale: Sequence[float] | None = None
    voxel_size: Sequence[float] | None = None
    model: str = DEFAULT_MODEL
    options: Options = DEFAULT_OPTIONS
    force: bool = False
    mrtrix: bool = False
    max_output_gb: float = 64.0
    threads: int | None = None  # torch threads per task (None: torch's default)


@dataclass(frozen=True)
class Outcome:
    """How one series went: ``done``, ``skipped`` (already there) or ``failed`` (``message``)."""

    series: str
    status: str
    message: str = ""
    output: str | None = None
    model: str | None = None
    seconds: float = 0.0


def covering_t1(job: Job, img) -> bool:
    """Whether the job's T1w exists and covers at least ``T1_OVERLAP_MIN`` of the DWI's grid."""
    if job.t1 is None:
        return False
    return fov_fraction(load_image(job.t1, "T1w"), img.affine, img.shape[:3]) >= T1_OVERLAP_MIN


def choose_model(job: Job, img, requested: str) -> tuple[str, bool]:
    """The model for ``job`` and whether it gets the T1w (module docstring)."""
    up = Upsampler.load(requested)
    has_t1 = covering_t1(job, img)
    if up.uses_t1 and not has_t1:
        why = "has no T1w" if job.t1 is None else f"has a T1w ({job.t1.name}) that does not cover the DWI"
        log.warning("%s %s: %s runs instead of %s, which needs one", job.name, why, WITHOUT_T1, requested)
        return WITHOUT_T1, False
    return requested, has_t1 and up.reads_t1


def process(job: Job, out_dir: Path, bids_dir: Path, settings: Settings) -> Outcome:
    """Super-resolve one series into the derivative dataset; never raises (see :class:`Outcome`)."""
    from csrdmri.workflows.upsample import upsample_dataset

    started = time.monotonic()
    handler, level = _log_to(out_dir / "logs" / f"{job.name}.log")
    try:
        if settings.threads:
            import torch

            torch.set_num_threads(settings.threads)
        img = load_image(job.dwi, "DWI", ndim=(4,))
        grid = TargetGrid.over(img.shape, img.affine, scale=settings.scale, voxel_size=settings.voxel_size)
        out = output_path(out_dir, job, grid.zooms)
        if not settings.force and all(p.exists() for p in output_paths(out)) and _complete(out):
            log.info("%s: already done (%s); --force redoes it", job.name, out.name)
            return Outcome(job.name, "skipped", output=str(out))
        model, with_t1 = choose_model(job, img, settings.model)
        log.info("%s: %s with %s%s", job.name, job.dwi.name, model, f", T1w {job.t1.name}" if with_t1 else "")
        result = upsample_dataset(
            job.dwi,
            out,
            scale=settings.scale,
            voxel_size=settings.voxel_size,
            model=model,
            t1=job.t1 if with_t1 else None,
            mask=job.mask,
            bval=job.bval,
            bvec=job.bvec,
            options=settings.options,
            max_output_gb=settings.max_output_gb,
            force=True,
        )
        complete_sidecar(output_paths(out)[3], job, bids_dir, result.grid.zooms, result.grid.scales)
        if settings.mrtrix:
            write_mrtrix(out, load_dwi(find_dataset(out)).gtab, result.grid.affine)
        return Outcome(job.name, "done", output=str(out), model=model, seconds=time.monotonic() - started)
    except InputError as exc:
        log.error("%s failed: %s", job.name, exc)
        return Outcome(job.name, "failed", str(exc), seconds=time.monotonic() - started)
    except Exception as exc:  # a bug or a system error: reported, the other series go on
        log.exception("%s failed", job.name)
        return Outcome(job.name, "failed", f"{type(exc).__name__}: {exc}", seconds=time.monotonic() - started)
    finally:
        package = logging.getLogger("csrdmri")
        package.removeHandler(handler)
        package.setLevel(level)
        handler.close()


def _complete(out: Path) -> bool:
    """Whether ``out``'s sidecar was completed (the last step of a task)."""
    return '"Resolution"' in output_paths(out)[3].read_text()


def _log_to(path: Path) -> tuple[logging.Handler, int]:
    """The package's messages from INFO on also go to ``path``; returns the handler and the
    package logger's level before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("csrdmri")
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    return handler, level


def run_jobs(
    jobs: Sequence[Job],
    task: Callable[[Job], Outcome],
    workers: int = 1,
    scheduler: str | None = None,
) -> list[Outcome]:
    """``task`` of every job, in the jobs' order: in this process (``workers`` 1, no
    ``scheduler``), else on Dask (module docstring); a progress bar counts finished series."""
    bar = tqdm(total=len(jobs), desc="series", unit="series")
    if workers <= 1 and scheduler is None:
        outcomes = []
        for job in jobs:
            outcomes.append(task(job))
            bar.update()
        bar.close()
        return outcomes
    from distributed import Client, LocalCluster, as_completed

    if scheduler is not None:
        client, cluster = Client(scheduler), None
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        futures = client.map(task, list(jobs), pure=False)
        for _ in as_completed(futures):
            bar.update()
        return client.gather(futures)
    finally:
        bar.close()
        client.close()
        if cluster is not None:
            cluster.close()


def threads_per_task(workers: int, scheduler: str | None) -> int | None:
    """Torch threads per task on a local cluster (the cores shared out); None otherwise."""
    if scheduler is not None or workers <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)
