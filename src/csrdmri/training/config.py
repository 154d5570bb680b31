"""What defines a training run: :class:`TrainConfig`, its validation, and the presets."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from csrdmri.core.degrade import DEGRADATIONS
from csrdmri.core.errors import InputError
from csrdmri.dmri.randomise import Randomisation
from csrdmri.models import RDN_FAMILY, fixed_scale, model_config, parameters
from csrdmri.models.losses import FFT_WEIGHT

#: Sizes that make an INR model train on 2 CPU cores (the paper's are 128/64/64/8/3/256).
CPU_INR = {"latent": 64, "g0": 32, "growth": 32, "blocks": 4, "layers": 3, "width": 128}
#: Values of ``TrainConfig.precision``.
PRECISIONS = ("auto", "fp32", "bf16")
#: Training options that must be > 0.
POSITIVE = (
    "lr",
    "lr_step_epochs",
    "epochs",
    "batch_size",
    "patches_per_subject",
    "lr_size",
    "val_every",
    "val_patches",
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (recorded in ``config.json`` and checkpoints)."""

    model: str = "csr-dmri"  # a model name (see csrdmri.models.NAMED)
    model_overrides: dict = field(default_factory=dict)  # applied to the named model's config
    fft_weight: float = FFT_WEIGHT  # weight of the frequency-domain L1 (0: off)
    lr: float = 1e-4
    lr_step_epochs: int = 200  # the learning rate is halved every this many epochs
    epochs: int = 1000
    batch_size: int = 9
    patches_per_subject: int = 9  # per epoch
    scale_range: tuple[float, float] = (2.0, 3.0)
    lr_size: int = 10  # LR patch side; HR = round(lr_size · s)
    val_every: int = 10  # epochs
    val_patches: int = 32  # fixed validation pairs per scale
    val_scales: tuple[float, ...] = (2.0, 3.0)
    seed: int = 0
    degradation: str = "tricubic"  # or "kspace" (see csrdmri.core.patches.degrade); the paper's: tricubic
    randomise: bool = False  # domain randomisation (csrdmri.dmri.randomise); validation stays plain
    randomisation: dict = field(default_factory=dict)  # its ranges, overriding Randomisation's defaults
    precision: str = "auto"  # "fp32", "bf16" (autocast) or "auto": bf16 on CUDA, fp32 on CPU

    def model_config(self) -> dict:
        """The configuration of the model this run trains (the named model's, overridden)."""
        config = model_config(self.model)
        config.update(self.model_overrides)
        return config

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Type-checked construction from JSON (unknown keys are refused)."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise InputError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        checked = {}
        for key, value in values.items():
            default = getattr(cls(), key)
            if isinstance(default, tuple):
                value = tuple(value)
            elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise InputError(f"training option {key} must be {type(default).__name__}, got {value!r}")
            checked[key] = value
        config = cls(**checked)
        for key in POSITIVE:
            if getattr(config, key) <= 0:
                raise InputError(f"training option {key} must be positive, got {getattr(config, key)!r}")
        if config.fft_weight < 0:
            raise InputError(f"training option fft_weight must not be negative, got {config.fft_weight!r}")
        scales = config.scale_range
        if len(scales) != 2 or not 1 < scales[0] <= scales[1]:
            raise InputError(
                f"training option scale_range must be [low, high] with 1 < low ≤ high, got {list(scales)}"
            )
        if not config.val_scales or min(config.val_scales) <= 1:
            raise InputError(f"training option val_scales must all be > 1, got {list(config.val_scales)}")
        if config.degradation not in DEGRADATIONS:
            raise InputError(
                f"degradation must be one of {', '.join(DEGRADATIONS)}, got {config.degradation!r}"
            )
        Randomisation.from_dict(config.randomisation)  # refuses unknown or impossible ranges
        if config.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {config.precision!r}")
        return config


PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    # 2 CPU cores, about an hour: smaller INR, residual prediction, local coordinates, 8³ LR
    # patches, a faster schedule. Everything else as the paper.
    "cpu": TrainConfig(
        model_overrides={**CPU_INR, "coord": "local", "residual": True},
        lr=3e-4,
        lr_step_epochs=40,
        epochs=120,
        lr_size=8,
        val_every=5,
    ),
}


def preset_for(preset: str, model: str | None = None) -> TrainConfig:
    """Preset ``preset`` adapted to ``model`` (default: the preset's own model).

    The model takes the preset's size overrides when both are built on the RDN encoder (ArSSR,
    the fixed-head models; DCSRN and ResCNN3D keep their own sizes); every model but CSR-dMRI is
    trained without the FFT loss (the baselines are trained with L1, as in the paper), and a
    fixed-scale CNN is trained at its one scale.

    Raises
    ------
    InputError
        For an unknown preset or model name.
    """
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    config = PRESETS[preset]
    if model is None or model == config.model:
        return config
    accepted = parameters(model)  # also refuses an unknown model name
    same_family = {model_config(m)["architecture"] for m in (model, config.model)} <= set(RDN_FAMILY)
    overrides = {k: v for k, v in config.model_overrides.items() if same_family and k in accepted}
    config = replace(config, model=model, model_overrides=overrides, fft_weight=0.0)
    scale = fixed_scale(model)
    return config if scale is None else replace(config, scale_range=(scale, scale))
