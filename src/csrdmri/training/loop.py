"""One training loop for every model: validation against tricubic, resumable runs.

A run directory holds ``config.json``, ``last.safetensors`` (every epoch), ``best.safetensors``
(best validation PSNR), ``log.csv`` (one row per step) and ``loss.png``.

Under ``torchrun --nproc_per_node=K`` the same loop runs data-parallel (DistributedDataParallel,
NCCL on GPUs, gloo on CPU): every process draws the same global batch and takes its share, so a
K-process step equals a one-process step of the same batch; process 0 validates and writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from csrdmri.core.errors import InputError
from csrdmri.dmri.pairs import Batch, sample_batch
from csrdmri.io.nifti import atomic_path
from csrdmri.models.checkpoint import read_meta, save_checkpoint
from csrdmri.training.config import TrainConfig
from csrdmri.training.distributed import in_turn, mean_over_processes, process_device, process_group
from csrdmri.training.runlog import StepLog, plot_losses
from csrdmri.training.sources import TrainingData, check_weights, prepare_data
from csrdmri.training.state import Run, Start, initial_model, resumed_model, set_up
from csrdmri.training.validation import mean_psnr, validate, validation_pairs

LAST = "last.safetensors"
BEST = "best.safetensors"


def train(
    config: TrainConfig,
    data: Path | Sequence[Path],
    out: Path,
    resume: bool = False,
    cache: Path | None = None,
    epochs: int | None = None,
    device: str | None = None,
    weights: Sequence[float] | None = None,
    init: str | Path | None = None,
) -> dict[str, float]:
    """Train (or resume) a run in folder ``out``.

    Parameters
    ----------
    config
        The run's configuration; on ``resume`` the run's own is used instead.
    data
        One source or several (multi-source training), each a cohort folder, a folder of
        subjects or one scan's folder (any layout :func:`csrdmri.io.layout.find_dataset` reads).
    resume
        Continue the run in ``out`` from its last checkpoint.
    cache
        Where the prepared subjects are kept (default: ``out/cache``).
    epochs
        If given, the run's number of epochs (extends or shortens a resumed run).
    device
        A torch device (default: the GPU when there is one).
    weights
        The share of the pairs each source gives (default: every training subject alike).
    init
        Start from the weights of this checkpoint, shipped model name or run folder
        (fine-tuning; its model must be the one ``config`` describes, and the subjects it saw
        stay recorded as seen).

    Returns
    -------
    dict
        The last validation scores (PSNR in dB; process 0; ``{}`` elsewhere or when a resumed
        run had no epoch left).

    Raises
    ------
    InputError
        For missing or unreadable data, a run folder that does (or, on ``resume``, does not)
        hold a run, bad weights, or a batch that the processes cannot share evenly.
    """
    sources = _sources(data)
    out = Path(out)
    config = _run_config(config, out, resume, init, epochs)
    check_weights(weights, len(sources))
    torch.manual_seed(config.seed)  # a new model's initial weights
    start = resumed_model(out / LAST) if resume else initial_model(config, init)
    rank, world, started = process_group()
    try:
        if config.batch_size % world:
            raise InputError(f"batch size {config.batch_size} cannot be split evenly over {world} processes")
        run_device = process_device(device, world)
        return _run(config, sources, weights, start, out, cache or out / "cache", run_device, rank, world)
    finally:
        if started:
            dist.destroy_process_group()


def _sources(data: Path | Sequence[Path]) -> list[Path]:
    """The ``--data`` sources as paths, refused when none is given or one does not exist."""
    sources = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    if not sources:
        raise InputError("no training data given")
    for source in sources:
        if not source.exists():
            raise InputError(f"training data not found: {source}")
    return sources


def _run_config(
    config: TrainConfig, out: Path, resume: bool, init: str | Path | None, epochs: int | None
) -> TrainConfig:
    """``config`` for a new run in ``out``, the run's own on ``resume``; ``epochs`` if given."""
    last = out / LAST
    if resume:
        if not last.exists():
            raise InputError(f"nothing to resume: {last} does not exist")
        config = TrainConfig.from_dict(read_meta(last)["training"])
    elif last.exists():
        raise InputError(f"{out} already holds a run; resume it, or choose another folder", "resume")
    if resume and init is not None:
        raise InputError(
            "starting weights begin a new run; a resumed run continues from its own checkpoint", "init"
        )
    return config if epochs is None else replace(config, epochs=epochs)


def _run(
    config: TrainConfig,
    sources: list[Path],
    weights: Sequence[float] | None,
    start: Start,
    out: Path,
    cache: Path,
    device: torch.device,
    rank: int,
    world: int,
) -> dict[str, float]:
    """Prepare the data, set the run up, then train it epoch by epoch."""

    def prepare() -> TrainingData:
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
        return prepare_data(sources, weights, cache)

    # Process 0 prepares the caches, the others then reuse them.
    data = in_turn(prepare, rank, world, "prepare the training data")
    run = set_up(config, data, start, device, rank, world)
    pairs: dict[float, Batch] = {}
    if run.lead:
        pairs = validation_pairs(data.validation, config, run.use_t1)
        with atomic_path(out / "config.json") as tmp:
            tmp.write_text(json.dumps(run.description(), indent=2) + "\n")
    scores: dict[str, float] = {}
    resume = start.checkpoint is not None
    with StepLog(out / "log.csv", resume, run.start_epoch) if run.lead else nullcontext() as log:
        for epoch in range(run.start_epoch, config.epochs):
            _train_epoch(run, epoch, log)
            run.scheduler.step()
            if log is not None:  # process 0
                log.flush()
                scores = _end_epoch(run, epoch, pairs, out)  # the last epoch always validates
            if world > 1:
                dist.barrier()  # the others wait while process 0 validates and writes
    return scores


def _train_epoch(run: Run, epoch: int, log: StepLog | None) -> None:
    """Train epoch ``epoch``: ``run.steps_per_epoch`` steps, logged by process 0."""
    steps = run.steps_per_epoch
    bar = tqdm(
        range(steps),
        desc=f"epoch {epoch + 1}/{run.config.epochs}",
        disable=None if run.lead else True,
        leave=False,
    )
    for i in bar:
        step = epoch * steps + i
        began = time.perf_counter()
        loss = _train_step(run, step)
        seconds = time.perf_counter() - began
        if log is not None:
            log.row(epoch, step, loss, run.lr, seconds)
        bar.set_postfix(loss=f"{loss:.4f}", samples_per_s=f"{run.config.batch_size / seconds:.1f}")


def _train_step(run: Run, step: int) -> float:
    """One optimiser step on this process's share of global batch ``step`` (drawn from
    ``default_rng([seed, step])``, so every process draws the same batch); returns the batch's
    mean loss."""
    config, device = run.config, run.device
    batch = sample_batch(
        run.data.train,
        config.batch_size,
        np.random.default_rng([config.seed, step]),
        config.scale_range,
        config.lr_size,
        run.use_t1,
        config.degradation,
        run.part,
        randomise=run.randomisation,
        weights=run.data.probabilities,
    )
    t1 = None if batch.t1 is None else batch.t1.to(device)
    hr = [h.to(device) for h in batch.hr]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.bf16):
        # DDP averages the gradients over processes: scaling each process's sum by world / B
        # makes that the mean over the global batch.
        loss = run.objective(batch.lr.to(device), t1, hr) * (run.world / config.batch_size)
    run.optimizer.zero_grad()
    loss.backward()
    run.optimizer.step()
    return mean_over_processes(loss.detach(), run.world).item()


def _end_epoch(run: Run, epoch: int, pairs: dict[float, Batch], out: Path) -> dict[str, float]:
    """Process 0 after epoch ``epoch``: validate when due (keeping the best checkpoint and
    redrawing the loss plot), then write the last checkpoint. Returns the validation scores
    (``{}`` when not due)."""
    config = run.config
    meta = run.meta(epoch)
    scores: dict[str, float] = {}
    if (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs:
        scores = validate(run.model, pairs, run.device)
        tqdm.write(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
        score = mean_psnr(scores)
        if score > run.best:
            run.best = meta["best"] = score
            save_checkpoint(out / BEST, run.model, {**meta, "validation": scores})
        plot_losses(out / "log.csv", out / "loss.png")
    save_checkpoint(out / LAST, run.model, meta, run.optimizer, run.scheduler)
    return scores
