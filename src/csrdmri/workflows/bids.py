"""A BIDS App run (``csrdmri bids BIDS_DIR OUTPUT_DIR participant``): find, check, run, summarise."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

from csrdmri.cohort.derivatives import write_description
from csrdmri.cohort.discover import find_jobs
from csrdmri.cohort.run import Outcome, Settings, process, run_jobs, threads_per_task
from csrdmri.core.errors import InputError
from csrdmri.workflows.upsample import check_target


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
    BIDS dataset ``bids_dir`` into the derivative dataset ``out_dir`` (:mod:`csrdmri.cohort`).
    The inputs are never written to."""
    if level != "participant":
        raise InputError(f"the analysis level must be 'participant' (there is no group level), got {level!r}")
    check_target(settings.scale, settings.voxel_size)
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}", "workers")
    bids_dir, out_dir = Path(bids_dir).absolute(), Path(out_dir).absolute()
    if not bids_dir.is_dir():
        raise InputError(f"BIDS folder not found: {bids_dir}", "bids_dir")
    if out_dir == bids_dir:
        raise InputError(
            "the output folder must not be the BIDS dataset itself (use e.g. derivatives/csrdmri)"
        )
    jobs = find_jobs(bids_dir, labels)
    write_description(out_dir, bids_dir, command)
    settings = replace(settings, threads=threads_per_task(workers, scheduler))
    task = functools.partial(process, out_dir=out_dir, bids_dir=bids_dir, settings=settings)
    return run_jobs(jobs, task, workers, scheduler)
