"""The batches of a q-space training run: what each step trains on, drawn from (seed, step) alone.

A run's sources are its phantom subjects (:class:`~csrdmri.training.qspace_data.SimulatedSubject`,
every sample a new simulated acquisition) and, with ``real`` in its options, real scans
(:class:`~csrdmri.training.real_samples.RealScan`, self-supervised): a step's batch comes from the
real scans with probability ``real_share``, else from the phantoms, whole (a batch's samples share
whether they carry a T1w, and the real scans have none). Every batch depends only on the run's
seed and the step, so a resumed run sees the batches an uninterrupted one would; :class:`Simulator`
draws them ahead, in a thread beside the training or in worker processes.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from tqdm import tqdm

from csrdmri.training.qspace_config import QSpaceConfig
from csrdmri.training.qspace_data import Sample, SimulatedSubject, draw_sample
from csrdmri.training.real_samples import RealScan, draw_real_sample


@dataclass
class Sources:
    """What a run's training batches are drawn from: ``phantoms`` and ``scans`` (possibly none)."""

    phantoms: list[SimulatedSubject]
    scans: list[RealScan]

    @classmethod
    def of(cls, config: QSpaceConfig, bar: bool = True) -> Sources:
        """The training sources of ``config``: its phantom subjects and real scans."""
        return cls(
            draw_subjects(config, range(config.subjects), bar), [RealScan.load(p) for p in config.real]
        )


def draw_subjects(config: QSpaceConfig, indices: range, bar: bool = True) -> list[SimulatedSubject]:
    """The phantom subjects ``indices`` of the run's seed, ready for simulation."""
    params = config.phantom_params
    indices = tqdm(indices, desc="subjects", disable=not bar)
    return [SimulatedSubject.draw(i, config.seed, params) for i in indices]


def draw_batch(
    subjects: list[SimulatedSubject], config: QSpaceConfig, rng: np.random.Generator, with_t1: bool
) -> list[Sample]:
    """``config.batch`` phantom samples of random ``subjects``."""
    samples: list[Sample] = []
    while len(samples) < config.batch:
        subject = subjects[rng.integers(len(subjects))]
        settings = (
            config.lr_size,
            config.scale_range,
            config.queries,
            with_t1,
            config.kspace,
            config.kspace_variants,
            config.radius,
            config.b0_channel,
            config.rolloff,
            config.target == "consistent",
        )
        sample = draw_sample(subject, rng, *settings)
        if sample is not None:
            samples.append(sample)
    return samples


def draw_real_batch(scans: list[RealScan], config: QSpaceConfig, rng: np.random.Generator) -> list[Sample]:
    """``config.batch`` self-supervised samples of random real ``scans``."""
    samples: list[Sample] = []
    while len(samples) < config.batch:
        scan = scans[rng.integers(len(scans))]
        settings = (config.lr_size, config.scale_range, config.queries, config.kspace, config.kspace_variants)
        sample = draw_real_sample(scan, rng, *settings)
        if sample is not None:
            samples.append(sample)
    return samples


def step_batch(sources: Sources, config: QSpaceConfig, step: int) -> list[Sample]:
    """The batch of ``step`` (depends only on the seed and the step)."""
    rng = np.random.default_rng([config.seed, step])
    if config.real_share and rng.random() < config.real_share:  # no draw without real scans: old runs replay
        return draw_real_batch(sources.scans, config, rng)
    return draw_batch(sources.phantoms, config, rng, with_t1=rng.random() >= config.t1_dropout)


_worker_sources: list[Sources] = []


def _start_worker(config: QSpaceConfig) -> None:
    torch.set_num_threads(1)
    _worker_sources[:] = [Sources.of(config, bar=False)]


def _worker_batch(config: QSpaceConfig, step: int) -> list[Sample]:
    return step_batch(_worker_sources[0], config, step)


class Simulator:
    """The batches of the coming steps, simulated ahead: in one thread beside the training
    (``workers`` 0), or in ``workers`` processes, each holding its own copy of the sources;
    ``scans``: the run's real scans already loaded (the thread uses them, processes load their own)."""

    def __init__(self, config: QSpaceConfig, workers: int, scans: list[RealScan]) -> None:
        self.config, self.ahead = config, max(1, 2 * workers)
        self.pending: deque = deque()
        if workers:
            spawn = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
            self.pool: Executor = ProcessPoolExecutor(workers, spawn, _start_worker, (config,))
            self.task = _worker_batch
        else:
            self.pool = ThreadPoolExecutor(max_workers=1)
            self.task = partial(step_batch, Sources(draw_subjects(config, range(config.subjects)), scans))

    def batches(self, start: int):
        """Yield the batch of every step from ``start`` to the run's end."""
        queued = start
        with self.pool:
            for _ in range(start, self.config.steps):
                while queued < self.config.steps and len(self.pending) < self.ahead:
                    self.pending.append(self.pool.submit(self.task, self.config, queued))
                    queued += 1
                yield self.pending.popleft().result()
