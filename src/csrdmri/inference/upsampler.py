"""What runs a super-resolution: the method (tricubic or a trained model) and how it is run."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from csrdmri.core.errors import InputError
from csrdmri.inference.adapt import adapt
from csrdmri.inference.consistency import CONSISTENCY, INPUT_NOISE
from csrdmri.inference.tiling import CHUNK, TILE
from csrdmri.models.checkpoint import find_checkpoint, load_model

OUTSIDE = ("tricubic", "zero")
#: ``--safeguard`` choices (inference.safeguard): on (the default, with every model) or off.
SAFEGUARD = ("on", "off")
#: ``--precision`` choices: ``auto`` is bf16 for the joint model where the hardware computes it
#: (inference.precision.resolve_precision), else fp32.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Smallest allowed value of the integer options.
LEAST = {"tile": 1, "chunk": 1, "margin": 0}


@dataclass
class Upsampler:
    """``tricubic`` (``model`` None) or a trained model with its checkpoint metadata."""

    name: str
    model: nn.Module | None = None
    meta: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    adapt_steps: int = 0  # fine-tune a copy on each series first (csrdmri.inference.adapt); 0: off
    seed: int = 0  # of that adaptation
    choice: str = "named"  # why this method runs (the sidecar's model_choice; workflows.upsample)

    @property
    def uses_t1(self) -> bool:
        return bool(getattr(self.model, "uses_t1", False))

    @property
    def reads_t1(self) -> bool:
        """Whether the model uses a T1w when there is one (required if ``uses_t1``)."""
        return self.uses_t1 or bool(getattr(self.model, "optional_t1", False))

    @property
    def native_t1(self) -> bool:
        """Whether the model also reads the T1w at the output resolution (and so the T1w is
        aligned with the mean b0 first, :mod:`csrdmri.dmri.alignment`)."""
        return bool(getattr(self.model, "native_t1", False))

    @property
    def joint(self) -> bool:
        """Whether the model corrects whole shells at once (:mod:`csrdmri.inference.joint`)."""
        return bool(getattr(self.model, "joint", False))

    @classmethod
    def load(cls, name: str, adapt_steps: int = 0, seed: int = 0) -> Upsampler:
        """``tricubic``, a shipped model's name, a checkpoint or a run folder; ``adapt_steps``
        of per-scan adaptation (models only)."""
        if adapt_steps < 0:
            raise InputError(f"adaptation steps must not be negative, got {adapt_steps}", "adapt_steps")
        if name == "tricubic":
            if adapt_steps:
                raise InputError("adaptation needs a model; tricubic has nothing to adapt", "adapt_steps")
            return cls(name)
        path = find_checkpoint(name)
        model, meta = load_model(path)
        if adapt_steps and (not hasattr(model, "decode") or getattr(model, "joint", False)):
            raise InputError(f"adaptation works with INR models (csr-dmri, arssr), not {name}", "adapt_steps")
        return cls(name, model.eval(), meta, path, adapt_steps, seed)

    def adapted(
        self, volumes: np.ndarray, t1: np.ndarray | None, mask: np.ndarray, scale: float
    ) -> Upsampler:
        """This upsampler with its model fine-tuned on a scan (:func:`csrdmri.inference.adapt.adapt`)."""
        training = self.meta.get("training", {})
        options = {k: training[k] for k in ("lr_size", "degradation") if k in training}
        model = adapt(self.model, volumes, t1, mask, scale, self.adapt_steps, self.seed, **options)
        return replace(self, model=model, adapt_steps=0)


@dataclass(frozen=True)
class Options:
    """How a model is run over a volume (see :func:`csrdmri.inference.tiling.predict_tiles`)."""

    device: str = "cpu"
    precision: str = "auto"
    tile: int = TILE  # largest encoder tile side, LR voxels with the halo (local-coordinate INR models)
    chunk: int = CHUNK  # queries decoded at once
    margin: int = 2  # LR voxels by which the brain mask is dilated
    outside: str = "tricubic"  # what the output holds outside the dilated mask
    consistency: str = "off"  # data consistency with the input (csrdmri.inference.consistency)
    safeguard: str = "on"  # weigh the model's correction by a check on the input (inference.safeguard)
    input_noise: str = "auto"  # the input's noise under the consistency (inference.consistency)

    def __post_init__(self) -> None:
        if self.consistency not in CONSISTENCY:
            raise InputError(
                f"consistency must be one of {', '.join(CONSISTENCY)}, got {self.consistency!r}",
                "consistency",
            )
        if self.consistency != "off" and self.outside == "zero":
            raise InputError(
                "data consistency needs the output outside the mask (--outside tricubic): zeroing "
                "it would undo the consistency",
                "consistency",
            )
        if self.input_noise not in INPUT_NOISE:
            raise InputError(
                f"input noise must be one of {', '.join(INPUT_NOISE)}, got {self.input_noise!r}",
                "input_noise",
            )
        if self.input_noise in ("tensor", "checked") and self.consistency == "off":
            raise InputError(
                "the input's noise is taken out through the data consistency: choose "
                f"--consistency image or kspace with --input-noise {self.input_noise}",
                "input_noise",
            )
        if self.safeguard not in SAFEGUARD:
            raise InputError(
                f"safeguard must be one of {', '.join(SAFEGUARD)}, got {self.safeguard!r}", "safeguard"
            )
        if self.outside not in OUTSIDE:
            raise InputError(
                f"the output outside the mask must be one of {', '.join(OUTSIDE)}, got {self.outside!r}",
                "outside",
            )
        if self.precision not in PRECISIONS:
            raise InputError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}", "precision"
            )
        for option, least in LEAST.items():
            if getattr(self, option) < least:
                raise InputError(f"{option} must be at least {least}, got {getattr(self, option)}", option)
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise InputError(f"unknown device {self.device!r} (use cpu, cuda or cuda:N)", "device") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {self.device} was asked for, but no CUDA GPU is available", "device")
        if self.precision == "fp16" and device.type != "cuda":
            raise InputError("precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)", "precision")


#: The options of ``csrdmri upsample`` when none are given (frozen: safe as a default argument).
DEFAULT_OPTIONS = Options()
