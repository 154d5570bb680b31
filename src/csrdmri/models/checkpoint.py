"""Checkpoints: one safetensors file holding weights, optimizer state and RNG state, with the
configuration (and the learning-rate scheduler's state) as validated JSON in its metadata.
Nothing is ever unpickled.

Writing is atomic (temporary file + rename), so a crash while saving leaves the previous
checkpoint intact, and weights and configuration can never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from csrdmri import __version__
from csrdmri.core.errors import InputError, about
from csrdmri.io.nifti import atomic_path
from csrdmri.models import build_model
from csrdmri.weights import shipped

FORMAT = "csrdmri-checkpoint-1"


def save_checkpoint(
    path: Path,
    model: nn.Module,
    meta: dict,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """Write ``model`` (+ optimizer and torch RNG state, + the scheduler's state: plain numbers,
    kept in the metadata) and ``meta`` (must hold ``"model"``, the model config) to ``path``
    atomically."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {**meta, "format": FORMAT, "csrdmri_version": __version__}
    if optimizer is not None:
        state = optimizer.state_dict()
        for index, values in state["state"].items():
            for key, value in values.items():
                tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
        meta["optimizer_groups"] = state["param_groups"]
        tensors["rng.torch"] = torch.get_rng_state()
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"csrdmri": json.dumps(meta)})


def read_meta(path: str | Path) -> dict:
    """The validated JSON metadata of a checkpoint (no tensors are read)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    if path.suffix != ".safetensors":
        raise InputError(f"{path}: only .safetensors checkpoints are loaded (pickled files are refused)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable safetensors checkpoint ({exc})") from None
    try:
        meta = json.loads(metadata["csrdmri"])
    except (KeyError, json.JSONDecodeError):
        raise InputError(f"{path} has no csrdmri configuration in its metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("model"), dict):
        raise InputError(f"{path} is not a csrdmri checkpoint of format {FORMAT}")
    return meta


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """Build the model a checkpoint describes and load its weights (strictly)."""
    meta = read_meta(path)
    with about(path):
        model = build_model(meta["model"])
    tensors = load_file(str(path))
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        first = lines[1] if len(lines) > 1 else lines[0]  # the first mismatch, not the heading
        raise InputError(f"{path}: weights do not match the configured architecture ({first})") from None
    return model, meta


def phantom_subjects(meta: dict) -> dict[int, int]:
    """Phantom seeds -> how many subjects (indices 0..n-1) of that seed trained or validated a
    q-space checkpoint with metadata ``meta``: its own run's (``subjects`` + 1 validating) and
    those of the runs its starting weights came from (``inherited_phantoms``)."""
    seeds = {int(k): int(v) for k, v in meta.get("inherited_phantoms", {}).items()}
    training = meta.get("training", {})
    if "steps" in training and "seed" in training:  # a q-space run simulates its data from phantoms
        seed = int(training["seed"])
        seeds[seed] = max(seeds.get(seed, 0), int(training["subjects"]) + 1)
    return seeds


def grow_from(model: nn.Module, config: dict, path: str | Path) -> list[str]:
    """Load the weights of checkpoint ``path`` into ``model`` (built from ``config``), a model
    with the checkpoint's parts and possibly more: ``config`` may add options to the saved one
    but not change any; new parts keep their initial values, and a tensor the model names
    ``growable`` (an output layer with more outputs, an input layer with more inputs) gets the
    saved values in its leading block (first rows, first columns).
    Returns the names of the tensors not loaded in full.

    Raises
    ------
    InputError
        When ``config`` changes a saved option, or a saved tensor has no place in ``model``.
    """
    saved_config = read_meta(path)["model"]
    changed = sorted(k for k, v in saved_config.items() if k not in config or config[k] != v)
    if changed:
        raise InputError(
            f"the starting weights {path} are of another model (it differs in {', '.join(changed)}); "
            "give the model config they were trained with, and only add options to it",
            "init",
        )
    saved = {k[len("model.") :]: v for k, v in load_file(str(path)).items() if k.startswith("model.")}
    state, growable = model.state_dict(), getattr(model, "growable", ())
    for name, value in saved.items():
        target = state.get(name)
        if target is None:
            raise InputError(f"{path}: its weight {name} has no place in this model", "init")
        fits = target.ndim == value.ndim and all(
            t >= v for t, v in zip(target.shape, value.shape, strict=True)
        )
        if not (target.shape == value.shape or (name in growable and fits)):
            raise InputError(
                f"{path}: its weight {name} {tuple(value.shape)} has no place in this model", "init"
            )
        target[tuple(slice(0, n) for n in value.shape)] = value
    return sorted(k for k in state if k not in saved or state[k].shape != saved[k].shape)


def load_training_state(
    path: str | Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> bool:
    """Restore optimizer state and the torch RNG (and ``scheduler``'s state, if given) from a
    checkpoint written with an optimizer (and scheduler). Returns whether the checkpoint held a
    scheduler state to restore (older checkpoints do not)."""
    meta = read_meta(path)
    tensors = load_file(str(path))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    if scheduler is None or "scheduler" not in meta:
        return False
    scheduler.load_state_dict(meta["scheduler"])
    return True


def find_checkpoint(name: str | Path) -> Path:
    """A shipped model's name, a ``.safetensors`` checkpoint, or a run folder (its best, else
    its last checkpoint) -> the checkpoint's path."""
    path = shipped().get(str(name), Path(name))
    if path.is_dir():
        candidates = [path / "best.safetensors", path / "last.safetensors"]
        path = next((p for p in candidates if p.exists()), candidates[0])
    if not path.exists():
        names = ", ".join(["tricubic", *shipped()])
        raise InputError(f"unknown model {str(name)!r}: not one of {names}, a checkpoint or a run folder")
    return path
