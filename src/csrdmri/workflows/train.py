"""Train a run: a preset, a JSON file of options and the named model resolved into one
:class:`~csrdmri.training.TrainConfig`, then :func:`csrdmri.training.train`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from csrdmri.core.errors import InputError
from csrdmri.models import model_config
from csrdmri.models.checkpoint import read_meta
from csrdmri.training import TrainConfig, preset_for, train
from csrdmri.training.qspace import train_qspace
from csrdmri.training.qspace_config import QSpaceConfig


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


def qspace_config(
    name: str, options: dict, steps: int | None, saved: dict | None = None, init: str | None = None
) -> QSpaceConfig:
    """The q-space run's options: defaults (or, resuming, the ``saved`` run's options and
    model), then the JSON options (its ``model`` a name or a config), then ``steps`` and the
    starting weights ``init``."""
    if saved and init is not None:
        raise InputError(
            "starting weights begin a new run; a resumed run continues from its own checkpoint", "init"
        )
    values = dict(saved or {})
    values.update({k: v for k, v in options.items() if k != "model"})
    values["model"] = saved["model"] if saved else model_config(options.get("model", name))
    if steps is not None:
        values["steps"] = steps
    if init is not None:
        values["init"] = str(init)
    if "scale_range" in values:
        values["scale_range"] = tuple(values["scale_range"])
    known = set(QSpaceConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown csr-qspace training option(s): {', '.join(unknown)}", "config")
    return QSpaceConfig(**values)


def train_run(
    data: Sequence[Path],
    out: Path,
    *,
    preset: str = "cpu",
    model: str | None = None,
    config: Path | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    resume: bool = False,
    device: str | None = None,
    cache: Path | None = None,
    weights: Sequence[float] | None = None,
    init: str | None = None,
    workers: int = 0,
) -> dict[str, float]:
    """Train (or resume) the run in ``out``; returns the last validation scores (process 0 of a
    distributed run; ``{}`` on the others). See :func:`csrdmri.training.train` for the rest;
    the joint q-space model (its architecture) trains with
    :func:`csrdmri.training.qspace.train_qspace` on simulated acquisitions (no ``data``; the
    JSON options are :class:`~csrdmri.training.qspace.QSpaceConfig`'s; ``workers`` processes
    simulate its batches)."""
    options = read_options(config)
    name = model or options.get("model")
    if isinstance(name, str) and model_config(name).get("architecture") == "qspace":
        if data:
            raise InputError(f"model {name} simulates its training data; --data is not used", "data")
        last = out / "last.safetensors"
        saved = read_meta(last).get("training") if resume and last.exists() else None
        config = qspace_config(name, options, steps, saved, init)
        return train_qspace(out, config, resume=resume, device=device, workers=workers)
    if not data:
        raise InputError("training needs data: a cohort folder, subjects or scans", "data")
    return train(
        run_config(preset, model, options),
        data,
        out,
        resume=resume,
        cache=cache,
        epochs=epochs,
        device=device,
        weights=weights,
        init=init,
    )
