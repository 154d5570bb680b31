"""Train a run: a preset, a JSON file of options and the named model resolved into one
:class:`~csrdmri.training.TrainConfig`, then :func:`csrdmri.training.train`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from csrdmri.core.errors import InputError
from csrdmri.training import TrainConfig, preset_for, train


def read_options(path: Path | None) -> dict:
    """The training options of a JSON file (an object); none without a file."""
    if path is None:
        return {}
    try:
        options = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read training config {path}: {exc}", "config") from None
    if not isinstance(options, dict):
        raise InputError(f"training config {path} must hold a JSON object", "config")
    return options


def run_config(preset: str, model: str | None = None, options: dict | None = None) -> TrainConfig:
    """The preset for the model (``model``, else the options' ``"model"``, else the preset's),
    overridden by ``options``; ``model`` wins over the options' model."""
    options = options or {}
    name = model or options.get("model")
    values = asdict(preset_for(preset, name if isinstance(name, str) else None))
    values.update(options)
    if model is not None:
        values["model"] = model
    return TrainConfig.from_dict(values)


def train_run(
    data: Sequence[Path],
    out: Path,
    *,
    preset: str = "cpu",
    model: str | None = None,
    config: Path | None = None,
    epochs: int | None = None,
    resume: bool = False,
    device: str | None = None,
    cache: Path | None = None,
    weights: Sequence[float] | None = None,
    init: str | None = None,
) -> dict[str, float]:
    """Train (or resume) the run in ``out``; returns the last validation scores (process 0 of a
    distributed run; ``{}`` on the others). See :func:`csrdmri.training.train` for the rest."""
    return train(
        run_config(preset, model, read_options(config)),
        data,
        out,
        resume=resume,
        cache=cache,
        epochs=epochs,
        device=device,
        weights=weights,
        init=init,
    )
