"""The options of a q-space training run (:mod:`csrdmri.training.qspace`), validated, recorded
in every checkpoint, with the learning-rate schedule and the phantom subjects they imply."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from csrdmri.core.errors import InputError
from csrdmri.models.anatomy import RADIUS
from csrdmri.phantom.params import PhantomParams

#: What the training loss compares the output with (Sample's fields: ``target`` is "noisy").
TARGETS = {"noisy": "target", "expected": "expected", "consistent": "consistent"}


@dataclass
class QSpaceConfig:
    """Options of a q-space training run (recorded in every checkpoint)."""

    steps: int = 6000
    batch: int = 4
    lr: float = 3e-4
    warmup: int = 0  # steps over which the learning rate rises linearly to ``lr``
    lr_size: int = 12  # LR patch side
    scale_range: tuple[float, float] = (1.6, 3.2)
    queries: int = 2048  # HR voxels scored per sample
    t1_dropout: float = 0.3  # share of steps trained without the T1w
    fa_weight: float = 0.0  # weight of the FA term of the loss
    sh_weight: float = 0.0  # weight of the orientation (SH order >= 2) term of the loss
    kspace: float = 0.0  # share of samples degraded by k-space truncation (else tricubic)
    kspace_variants: bool = False  # those with random apodisation, partial Fourier, slice profile
    target: str = "noisy"  # what the loss compares with: the noisy HR DWIs, their "expected" value or
    # that value made "consistent" with the input (csrdmri.training.qspace_data.consistent_expectation)
    subjects: int = 4  # phantom subjects 0..subjects-1 of ``seed``; subject ``subjects`` validates
    seed: int = 0
    voxel_size: float = 1.25  # [mm] of the phantom subjects (the HR grid)
    texture_sd: float = 0.5  # their diffusivity texture (PhantomParams.texture_sd; 0: none)
    orientation_sd: float = 0.0  # [°] their fibres' random turn (PhantomParams.orientation_sd)
    gm_anisotropy: float = 1.0  # their grey matter's λ∥/λ⊥ (PhantomParams.gm_anisotropy)
    real: tuple[str, ...] = ()  # real scans (dataset folders) trained on, self-supervised
    real_share: float = 0.0  # share of batches drawn from them (csrdmri.training.qspace_batches)
    checkpoint_every: int = 250
    init: str | None = None  # a checkpoint (shipped name, file, run folder) the weights start from
    model: dict = field(default_factory=lambda: {"architecture": "qspace"})

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.subjects < 1 or self.queries < 1:
            raise InputError("steps, batch, subjects and queries must be at least 1")
        if not 0.0 <= self.t1_dropout <= 1.0:
            raise InputError(f"T1w dropout must be within 0..1, got {self.t1_dropout}", "t1_dropout")
        if not 0.0 <= self.kspace <= 1.0:
            raise InputError(f"kspace must be within 0..1, got {self.kspace}", "kspace")
        if self.texture_sd < 0:
            raise InputError(f"texture_sd must be at least 0, got {self.texture_sd}", "texture_sd")
        self.phantom_params  # noqa: B018 - built to be checked: PhantomParams refuses what it cannot make
        if self.target not in TARGETS:
            raise InputError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}", "target")
        self.real = tuple(str(p) for p in self.real)
        if not 0.0 <= self.real_share <= 1.0 or bool(self.real) != bool(self.real_share):
            raise InputError(
                "real_share must be within 0..1, above 0 exactly when real scans are given, got "
                f"{self.real_share} with {len(self.real)} scans",
                "config",
            )
        if self.real and (self.b0_channel or self.rolloff):
            raise InputError("real scans train models without a b0 channel or roll-off maps only", "config")
        if self.warmup < 0:
            raise InputError(f"warmup must be at least 0, got {self.warmup}", "warmup")
        for name in ("fa_weight", "sh_weight"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be at least 0, got {getattr(self, name)}", name)

    @property
    def phantom_params(self) -> PhantomParams:
        """The phantom subjects' parameters."""
        options = ("voxel_size", "texture_sd", "orientation_sd", "gm_anisotropy")
        return PhantomParams(**{name: getattr(self, name) for name in options})

    @property
    def radius(self) -> int:
        """HR voxels of T1w context the model's native T1w branch needs (0: it has none)."""
        return RADIUS if self.model.get("t1_features") else 0

    @property
    def b0_channel(self) -> bool:
        """Whether the model reads the relative mean b0 (its samples carry it)."""
        return bool(self.model.get("b0_channel"))

    @property
    def rolloff(self) -> bool:
        """Whether the model reads the input's measured roll-off (its samples carry it)."""
        return bool(self.model.get("rolloff"))

    def learning_rate(self, step: int) -> float:
        """The learning rate of ``step`` (0-based): linear from 0 to ``lr`` over ``warmup``
        steps, then a cosine from ``lr`` to ``lr / 10``."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        floor = self.lr / 10
        return floor + (self.lr - floor) * (1 + math.cos(math.pi * min(step, self.steps) / self.steps)) / 2
