"""Models, built by name from a JSON-able config (a small registry, as LIIF keeps its models).

Every model maps a batch of LR patches to an HR grid over the same field of view::

    model(lr, t1, shape) -> Tensor (B, 1, *shape)

with ``lr`` (B, 1, X, Y, Z) b0-normalised DWIs (S/S0), ``t1`` (B, 1, X, Y, Z) the normalised T1w
on the LR grid (or ``None`` for models that do not use it) and ``shape`` the HR grid (3 ints).
``model.uses_t1`` says whether ``t1`` is required.

A config is ``{"architecture": NAME, **kwargs}``; :data:`NAMED` maps the user-facing model
names (``csr-dmri``, ``arssr``, ...) to configs.
"""

from __future__ import annotations

import copy
import inspect
import typing
from collections.abc import Callable

import torch
import torch.nn as nn

from csrdmri.core.errors import InputError

ARCHITECTURES: dict[str, type[nn.Module]] = {}
#: Bounds on a model read from a config (a checkpoint's metadata is untrusted input): every
#: integer size, and the parameter count (the paper's model has about 6.4 M).
MAX_SIZE = 1024
MAX_PARAMETERS = 200_000_000


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding an architecture to the registry under ``name``."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        ARCHITECTURES[name] = cls
        return cls

    return add


#: User-facing model names -> architecture configs (the rows of the paper's tables).
NAMED: dict[str, dict] = {
    "csr-dmri": {"architecture": "inr", "use_t1": True},
    "arssr": {"architecture": "inr", "use_t1": False},
    "rdn-fixed-t1": {"architecture": "rdn-fixed", "use_t1": True},  # Table 2: M2 (INR off, T1w)
    "rdn-fixed": {"architecture": "rdn-fixed", "use_t1": False},  # Table 2: the baseline (INR off)
    "tricubic": {"architecture": "tricubic"},
    "csr-qspace": {"architecture": "qspace"},  # joint q-space: one pass per shell, T1w optional
    "dcsrn": {"architecture": "dcsrn", "scale": 2.0},
    "rescnn3d": {"architecture": "rescnn3d", "scale": 3.0},
}


def model_config(name_or_config: str | dict) -> dict:
    """A full config from a model name or a config dict (copied, never shared)."""
    if isinstance(name_or_config, str):
        if name_or_config not in NAMED:
            raise InputError(f"unknown model {name_or_config!r}; available: {', '.join(sorted(NAMED))}")
        return copy.deepcopy(NAMED[name_or_config])
    return copy.deepcopy(name_or_config)


def build_model(name_or_config: str | dict) -> nn.Module:
    """Instantiate a model from its name or config; unknown keys or types are an InputError."""
    _import_all()
    config = model_config(name_or_config)
    arch = config.pop("architecture", None)
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture {arch!r}; available: {', '.join(sorted(ARCHITECTURES))}")
    cls = ARCHITECTURES[arch]
    check_config(arch, cls, config)
    try:
        with torch.device("meta"):  # sized without allocating: a config can ask for anything
            size = sum(p.numel() for p in cls(**config).parameters())
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad configuration for {arch!r}: {exc}") from None
    if size > MAX_PARAMETERS:
        raise InputError(
            f"configuration of {arch!r} asks for {size:,} parameters (at most {MAX_PARAMETERS:,})"
        )
    return cls(**config)


def check_config(arch: str, cls: type[nn.Module], config: dict) -> None:
    """Each value of ``config`` has the type its constructor's annotation names (a bool is not an
    int, an int is a float), sizes are 1..``MAX_SIZE``; unknown keys are left to the constructor."""
    hints = typing.get_type_hints(cls.__init__)
    for key, value in config.items():
        expected = hints.get(key)
        if expected is None:
            continue
        allowed = (int, float) if expected is float else (expected,)
        if isinstance(value, bool) != (expected is bool) or not isinstance(value, allowed):
            raise InputError(f"model option {key} of {arch!r} must be {expected.__name__}, got {value!r}")
        if expected is int and not 1 <= value <= MAX_SIZE:
            raise InputError(f"model option {key} of {arch!r} must be within 1..{MAX_SIZE}, got {value}")


#: Architectures built on the RDN encoder: their size keys (g0, growth, ...) mean the same.
RDN_FAMILY = ("inr", "rdn-fixed")


def parameters(name: str) -> set[str]:
    """The configuration keys the architecture of model ``name`` accepts."""
    _import_all()
    cls = ARCHITECTURES[model_config(name)["architecture"]]
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def fixed_scale(name: str) -> float | None:
    """The one scale a fixed-scale CNN baseline of model ``name`` is trained at; None for models
    that train on a range of scales."""
    from csrdmri.models.fixed_scale import FixedScaleModel

    _import_all()
    config = model_config(name)
    fixed = issubclass(ARCHITECTURES[config["architecture"]], FixedScaleModel)
    return float(config["scale"]) if fixed else None


def _import_all() -> None:
    """Import the model modules so that their ``@register`` decorators run."""
    from csrdmri.models import dcsrn, fixed_head, inr, qspace, rescnn3d, tricubic  # noqa: F401
