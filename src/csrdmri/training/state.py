"""A training run's state in one process: the weights it starts from, its optimiser and
learning-rate schedule, and how far it has come."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import torch
import torch.nn as nn

from csrdmri.core.errors import InputError
from csrdmri.dmri.randomise import Randomisation
from csrdmri.io.nifti import file_digest
from csrdmri.models import build_model
from csrdmri.models.checkpoint import find_checkpoint, load_model, load_training_state
from csrdmri.models.objective import Objective
from csrdmri.training.config import TrainConfig
from csrdmri.training.distributed import data_parallel
from csrdmri.training.sources import TrainingData


@dataclass(frozen=True)
class Start:
    """Where a run's weights start.

    Attributes
    ----------
    model
        The model, on the CPU.
    seen
        DWI digest -> name of the subjects these weights were trained or selected on.
    init
        The ``--init`` checkpoint and its SHA-256 (``None``: a new model).
    epoch, best
        The first epoch to train and the best mean validation PSNR so far (dB).
    checkpoint
        The checkpoint whose optimiser, schedule and RNG state a resumed run restores.
    """

    model: nn.Module
    seen: dict[str, str]
    init: dict | None
    epoch: int = 0
    best: float = -math.inf
    checkpoint: Path | None = None


def initial_model(config: TrainConfig, init: str | Path | None) -> Start:
    """A new model for ``config``, or the weights of checkpoint ``init`` (a shipped name, a file
    or a run folder) with the subjects they have seen.

    Raises
    ------
    InputError
        When ``init``'s model is not the one ``config`` describes.
    """
    if init is None:
        return Start(build_model(config.model_config()), {}, None)
    path = find_checkpoint(init)
    model, meta = load_model(path)
    wanted = config.model_config()
    differs = sorted(k for k in set(wanted) | set(meta["model"]) if wanted.get(k) != meta["model"].get(k))
    if differs:
        raise InputError(
            f"the starting weights {init} are of another model than this run trains (it differs in "
            f"{', '.join(differs)}); give the preset, model or config they were trained with",
            "init",
        )
    return Start(model, meta.get("seen_subjects", {}), {"checkpoint": str(init), "digest": file_digest(path)})


def resumed_model(last: Path) -> Start:
    """The weights and progress of the run whose last checkpoint is ``last``."""
    model, meta = load_model(last)
    seen = meta.get("seen_subjects", {})
    return Start(model, seen, meta.get("init"), epoch=meta["epoch"] + 1, best=meta["best"], checkpoint=last)


@dataclass
class Run:
    """One process's share of a training run, set up: what its steps and epoch ends need.

    ``objective`` is the model's loss on a batch, wrapped in DistributedDataParallel under
    torchrun; ``best`` is the best mean validation PSNR so far (dB); ``seen`` maps the DWI digest
    of every subject that trained or selected the model to its name (evaluation refuses them).
    """

    config: TrainConfig
    data: TrainingData
    model: nn.Module
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    device: torch.device
    rank: int
    world: int
    start_epoch: int
    best: float
    seen: dict[str, str]
    init: dict | None

    @property
    def lead(self) -> bool:
        """Whether this is process 0 (it validates and writes)."""
        return self.rank == 0

    @property
    def lr(self) -> float:
        """The learning rate the steps use now."""
        return self.optimizer.param_groups[0]["lr"]

    @cached_property
    def use_t1(self) -> bool:
        return bool(getattr(self.model, "uses_t1", False))

    @cached_property
    def bf16(self) -> bool:
        """Whether the steps run under bf16 autocast."""
        precision = self.config.precision
        return precision == "bf16" or (precision == "auto" and self.device.type == "cuda")

    @cached_property
    def part(self) -> slice:
        """This process's share of each step's global batch."""
        share = self.config.batch_size // self.world
        return slice(self.rank * share, (self.rank + 1) * share)

    @cached_property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.config.patches_per_subject * len(self.data.train) / self.config.batch_size)

    @cached_property
    def randomisation(self) -> Randomisation | None:
        """The ranges of domain randomisation, ``None`` when it is off."""
        config = self.config
        return Randomisation.from_dict(config.randomisation) if config.randomise else None

    def description(self) -> dict:
        """The run as ``config.json`` records it."""
        config = self.config
        return {"training": asdict(config), "model": config.model_config(), **self._provenance()}

    def meta(self, epoch: int) -> dict:
        """The metadata of the checkpoints written after ``epoch``."""
        config = self.config
        return {
            "model": config.model_config(),
            "training": asdict(config),
            "epoch": epoch,
            "best": self.best,
            "seen_subjects": self.seen,
            **self._provenance(),
        }

    def _provenance(self) -> dict:
        return {"sources": self.data.sources, "init": self.init}


def set_up(
    config: TrainConfig, data: TrainingData, start: Start, device: torch.device, rank: int, world: int
) -> Run:
    """Move the model to ``device``, build its optimiser (Adam) and schedule (halved every
    ``config.lr_step_epochs`` epochs), restore their state on a resumed run, and wrap the
    objective for data-parallel training under torchrun."""
    model = start.model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step_epochs, gamma=0.5)
    # load_training_state restores the learning rate reached, too; a checkpoint older than the
    # scheduler's state only gets the epoch count back.
    if start.checkpoint is not None and not load_training_state(start.checkpoint, optimizer, scheduler):
        scheduler.last_epoch = start.epoch
    objective = data_parallel(Objective(model, config.fft_weight), device, world)
    return Run(
        config=config,
        data=data,
        model=model,
        objective=objective,
        optimizer=optimizer,
        scheduler=scheduler,
        device=device,
        rank=rank,
        world=world,
        start_epoch=start.epoch,
        best=start.best,
        seen={**start.seen, **data.digests()},
        init=start.init,
    )
