"""One training loop for every model: presets, validation against tricubic, resumable runs.

A run directory holds ``config.json``, ``last.safetensors`` (every epoch), ``best.safetensors``
(best validation PSNR), ``log.csv`` (one row per step) and ``loss.png``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from tqdm import tqdm

from csrdmri.checkpoint import load_model, load_training_state, read_meta, save_checkpoint
from csrdmri.data import Batch, PreparedSubject, prepare_subject, sample_batch
from csrdmri.errors import InputError
from csrdmri.io import atomic_path
from csrdmri.layout import find_dataset
from csrdmri.losses import FFT_WEIGHT, csr_loss
from csrdmri.metrics import psnr
from csrdmri.models import build_model, model_config
from csrdmri.resample import resample

#: Sizes that make an INR model train on 2 CPU cores (the paper's are 128/64/64/8/3/256).
CPU_INR = {"latent": 64, "g0": 32, "growth": 32, "blocks": 4, "layers": 3, "width": 128}


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

    def model_config(self) -> dict:
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
        return cls(**checked)


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


def predict(
    model: nn.Module, lr: torch.Tensor, t1: torch.Tensor | None, sizes: list[int]
) -> list[torch.Tensor]:
    """Per-sample HR predictions (n, n, n) for a batch whose samples ask for different sizes.

    INR models encode the batch once and decode each sample's grid; others run per size.
    """
    shapes = [(n, n, n) for n in sizes]
    if hasattr(model, "encode") and hasattr(model, "decode_grid"):
        features = model.encode(lr, t1)
        return [model.decode_grid(features[i : i + 1], lr[i : i + 1], s)[0, 0] for i, s in enumerate(shapes)]
    return [
        model(lr[i : i + 1], None if t1 is None else t1[i : i + 1], s)[0, 0] for i, s in enumerate(shapes)
    ]


def batch_loss(model: nn.Module, batch: Batch, fft_weight: float) -> torch.Tensor:
    preds = predict(model, batch.lr, batch.t1, [hr.shape[0] for hr in batch.hr])
    return torch.stack([csr_loss(p, hr, fft_weight) for p, hr in zip(preds, batch.hr, strict=True)]).mean()


@torch.no_grad()
def validate(model: nn.Module, pairs: dict[float, Batch]) -> dict[str, float]:
    """Mean PSNR of the model and of tricubic on fixed validation pairs, per scale."""
    model.eval()
    scores = {}
    for scale, batch in pairs.items():
        preds = predict(model, batch.lr, batch.t1, [hr.shape[0] for hr in batch.hr])
        ours = [psnr(hr.numpy(), p.numpy()) for p, hr in zip(preds, batch.hr, strict=True)]
        base = [
            psnr(hr.numpy(), resample(lr[0].numpy(), hr.shape))
            for lr, hr in zip(batch.lr, batch.hr, strict=True)
        ]
        scores[f"psnr_{scale:g}x"] = float(np.mean(ours))
        scores[f"tricubic_{scale:g}x"] = float(np.mean(base))
    model.train()
    return scores


def _subjects(data: Path, split: str, cache: Path) -> list[PreparedSubject]:
    """Prepared subjects of a cohort split, or every subject folder of a plain directory."""
    manifest = Path(data) / "cohort.json"
    if manifest.exists():
        names = json.loads(manifest.read_text())["split"].get(split, [])
    elif split == "train":
        names = sorted(p.name for p in Path(data).iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        names = []
    return [prepare_subject(find_dataset(Path(data) / n), cache, n) for n in names]


def _plot_losses(log: Path, out: Path) -> None:
    with open(log) as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    steps = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    window = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(steps, loss, alpha=0.3, label="loss")
    ax.plot(steps[window - 1 :], smooth, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)


def train(
    config: TrainConfig,
    data: Path,
    out: Path,
    resume: bool = False,
    cache: Path | None = None,
    epochs: int | None = None,
) -> dict:
    """Train (or resume) a run; returns the last validation scores.

    On ``resume`` the run's own configuration is used (``config`` is ignored) except that
    ``epochs``, if given, extends or shortens it.
    """
    out = Path(out)
    last = out / "last.safetensors"
    if resume:
        if not last.exists():
            raise InputError(f"nothing to resume: {last} does not exist")
        config = TrainConfig.from_dict(read_meta(last)["training"])
    elif last.exists():
        raise InputError(f"{out} already holds a run; use --resume to continue it or choose another --out")
    if epochs is not None:
        config = replace(config, epochs=epochs)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    cache = cache or Path(data) / ".csrdmri-cache"
    train_subjects = _subjects(data, "train", cache)
    val_subjects = _subjects(data, "validation", cache) or train_subjects[-1:]
    if not train_subjects:
        raise InputError(f"no training subjects found in {data}")
    model, meta = load_model(last) if resume else (build_model(config.model_config()), {})
    use_t1 = bool(getattr(model, "uses_t1", False))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step_epochs, gamma=0.5)
    start_epoch, best = 0, -math.inf
    if resume:
        load_training_state(last, optimizer)  # restores the learning rate reached, too
        start_epoch, best = meta["epoch"] + 1, meta["best"]
        scheduler.last_epoch = start_epoch
    val_rng = np.random.default_rng([config.seed, 2**31])
    pairs = {
        s: sample_batch(val_subjects, config.val_patches, val_rng, (s, s), config.lr_size, use_t1)
        for s in config.val_scales
    }
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(
            json.dumps({"training": asdict(config), "model": config.model_config()}, indent=2) + "\n"
        )
    steps_per_epoch = math.ceil(config.patches_per_subject * len(train_subjects) / config.batch_size)
    log_path = out / "log.csv"
    new_log = not log_path.exists() or not resume
    scores: dict[str, float] = {}
    with open(log_path, "w" if new_log else "a", newline="") as log_file:
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["epoch", "step", "loss", "lr", "seconds"])
        for epoch in range(start_epoch, config.epochs):
            bar = tqdm(
                range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=None, leave=False
            )
            for i in bar:
                step = epoch * steps_per_epoch + i
                start = time.perf_counter()
                rng = np.random.default_rng([config.seed, step])
                batch = sample_batch(
                    train_subjects, config.batch_size, rng, config.scale_range, config.lr_size, use_t1
                )
                loss = batch_loss(model, batch, config.fft_weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                seconds = time.perf_counter() - start
                log.writerow(
                    [epoch, step, f"{loss.item():.6g}", f"{scheduler.get_last_lr()[0]:.3g}", f"{seconds:.3f}"]
                )
                bar.set_postfix(loss=f"{loss.item():.4f}", samples_per_s=f"{config.batch_size / seconds:.1f}")
            log_file.flush()
            scheduler.step()
            meta = {"model": config.model_config(), "training": asdict(config), "epoch": epoch, "best": best}
            if (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs:
                scores = validate(model, pairs)
                score = float(np.mean([v for k, v in scores.items() if k.startswith("psnr_")]))
                tqdm.write(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
                if score > best:
                    best = meta["best"] = score
                    save_checkpoint(out / "best.safetensors", model, {**meta, "validation": scores})
                _plot_losses(log_path, out / "loss.png")
            save_checkpoint(last, model, meta, optimizer)
    return scores
