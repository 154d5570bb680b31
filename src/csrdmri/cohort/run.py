"""Running many independent tasks: in turn, or on Dask (``distributed``).

A local cluster of ``workers`` processes with one thread each (a task sets torch to ``cores //
workers`` threads, :func:`threads_per_task`, so the cores are not oversubscribed), or an existing
scheduler (``tcp://host:port``: dask-jobqueue, SLURM, any Dask cluster). Results come back in the
tasks' order; a progress bar counts finished tasks. :func:`task_log` sends the package's messages
of one task to its own file as well.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from csrdmri.core.errors import InputError

#: Seconds to wait for a Dask scheduler given by address.
SCHEDULER_TIMEOUT = 20


@contextlib.contextmanager
def task_log(path: Path) -> Iterator[None]:
    """While the block runs, the package's messages from INFO on also go to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("csrdmri")
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)
        handler.close()


def run_jobs(
    jobs: Sequence,
    task: Callable,
    workers: int = 1,
    scheduler: str | None = None,
) -> list:
    """``task`` of every job, in the jobs' order: in this process (``workers`` 1, no
    ``scheduler``), else on Dask (module docstring)."""
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
        try:
            client, cluster = Client(scheduler, timeout=SCHEDULER_TIMEOUT), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({exc})", "scheduler") from None
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


def threads_per_task(workers: int, scheduler: str | None, threads: int | None = None) -> int | None:
    """Torch threads per task: ``threads`` when given, else on a local cluster the cores shared
    out among the workers; None (torch's default) otherwise. Torch's sums depend on its number
    of threads in the last bit, so two runs write the same bytes when their tasks have the same
    number of threads."""
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be at least 1, got {threads}", "threads")
        return threads
    if scheduler is not None or workers <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)
