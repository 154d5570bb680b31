"""One training loop for every model: presets, validation against tricubic, resumable runs.

A run directory holds ``config.json``, ``last.safetensors`` (every epoch), ``best.safetensors``
(best validation PSNR), ``log.csv`` (one row per step) and ``loss.png``.

Under ``torchrun --nproc_per_node=K`` the same loop runs data-parallel (DistributedDataParallel,
NCCL on GPUs, gloo on CPU): every process draws the same global batch and takes its share, so a
K-process step equals a one-process step of the same batch; process 0 validates and writes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from matplotlib.figure import Figure
from tqdm import tqdm

from csrdmri.checkpoint import find_checkpoint, load_model, load_training_state, read_meta, save_checkpoint
from csrdmri.data import Batch, PreparedSubject, prepare_subject, sample_batch
from csrdmri.errors import InputError
from csrdmri.io import atomic_path, file_digest
from csrdmri.layout import find_dataset
from csrdmri.losses import FFT_WEIGHT, csr_loss
from csrdmri.metrics import psnr
from csrdmri.models import RDN_FAMILY, build_model, fixed_scale, model_config, parameters
from csrdmri.patches import DEGRADATIONS
from csrdmri.randomise import Randomisation
from csrdmri.resample import resample

#: Sizes that make an INR model train on 2 CPU cores (the paper's are 128/64/64/8/3/256).
CPU_INR = {"latent": 64, "g0": 32, "growth": 32, "blocks": 4, "layers": 3, "width": 128}


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
    degradation: str = "tricubic"  # or "kspace" (see csrdmri.patches.degrade); the paper's: tricubic
    randomise: bool = False  # domain randomisation of the pairs (csrdmri.randomise); validation stays plain
    randomisation: dict = field(default_factory=dict)  # its ranges, overriding Randomisation's defaults
    precision: str = "auto"  # "fp32", "bf16" (autocast) or "auto": bf16 on CUDA, fp32 on CPU

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
    """Preset ``preset`` for ``model`` (default: the preset's own): the preset's size overrides
    that the model takes when both are built on the RDN encoder (ArSSR, the fixed-head models;
    DCSRN and ResCNN3D keep their own sizes), no FFT loss except for CSR-dMRI (the baselines are
    trained with L1, as in the paper), and fixed-scale CNNs trained at their one scale."""
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


class Objective(nn.Module):
    """Sum of the per-sample losses of a batch (B, 1, L, L, L) against its HR targets.

    A module, so that DistributedDataParallel can wrap the whole forward pass (INR models encode
    once and decode per sample). Predictions are cast to float32 before the loss, so the FFT
    term is never computed in bf16.
    """

    def __init__(self, model: nn.Module, fft_weight: float) -> None:
        super().__init__()
        self.model = model
        self.fft_weight = fft_weight

    def forward(self, lr: torch.Tensor, t1: torch.Tensor | None, hr: list[torch.Tensor]) -> torch.Tensor:
        preds = predict(self.model, lr, t1, [h.shape[0] for h in hr])
        return torch.stack(
            [csr_loss(p.float(), h, self.fft_weight) for p, h in zip(preds, hr, strict=True)]
        ).sum()


@torch.no_grad()
def validate(model: nn.Module, pairs: dict[float, Batch], device: torch.device) -> dict[str, float]:
    """Mean PSNR of the model (in float32) and of tricubic on fixed validation pairs, per scale."""
    model.eval()
    scores = {}
    for scale, batch in pairs.items():
        t1 = None if batch.t1 is None else batch.t1.to(device)
        preds = predict(model, batch.lr.to(device), t1, [hr.shape[0] for hr in batch.hr])
        ours = [psnr(hr.numpy(), p.float().cpu().numpy()) for p, hr in zip(preds, batch.hr, strict=True)]
        base = [
            psnr(hr.numpy(), resample(lr[0].numpy(), hr.shape))
            for lr, hr in zip(batch.lr, batch.hr, strict=True)
        ]
        scores[f"psnr_{scale:g}x"] = float(np.mean(ours))
        scores[f"tricubic_{scale:g}x"] = float(np.mean(base))
    model.train()
    return scores


def _subjects(data: Path, split: str, cache: Path) -> list[PreparedSubject]:
    """Prepared subjects of a cohort's split (``cohort.json``); of a plain folder, for the
    training split only: the one scan it holds, else each of its subject folders."""
    manifest = data / "cohort.json"
    if manifest.exists():
        folders = [data / n for n in json.loads(manifest.read_text())["split"].get(split, [])]
    elif split != "train":
        folders = []
    else:
        try:
            paths = find_dataset(data)
            return [prepare_subject(paths, cache, data.name)]
        except InputError:  # no scan of its own: a folder of subjects
            folders = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [prepare_subject(find_dataset(f), cache, f.name) for f in folders]


def check_weights(weights: Sequence[float] | None, sources: int) -> None:
    """Refuse sampling weights that are not one finite, non-negative number per source."""
    if weights is None:
        return
    if len(weights) != sources:
        raise InputError(f"{len(weights)} sampling weights given for {sources} --data source(s)")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise InputError(f"sampling weights must be ≥ 0 and not all 0, got {list(weights)}")


def subject_weights(sizes: list[int], weights: Sequence[float] | None) -> np.ndarray | None:
    """Probability of each subject when sources of ``sizes`` subjects are sampled in proportion
    to ``weights`` (one per source; a source's share split evenly over its subjects).
    ``None`` (every subject alike) for one source or no weights."""
    if weights is None or len(sizes) < 2:
        return None
    shares = [w / sum(weights) / n for w, n in zip(weights, sizes, strict=True) for _ in range(n)]
    return np.asarray(shares)


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


def _process_group() -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group) under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, False
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, started


def _device(device: str | None) -> torch.device:
    """``device`` if given, else this process's GPU (``LOCAL_RANK``) when CUDA is available."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


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
) -> dict:
    """Train (or resume) a run; returns the last validation scores (process 0; ``{}`` elsewhere).

    ``data``: one source or several (multi-source training), each a cohort folder, a folder
    of subjects or one scan's folder (any layout :func:`csrdmri.layout.find_dataset` reads);
    ``weights``: the share of the pairs each source gives (default: every training subject
    alike). ``init``: start from the weights of this checkpoint, shipped model name or run
    folder (fine-tuning; its model must be the one ``config`` describes, and the subjects it
    saw stay recorded as seen). On ``resume`` the run's own configuration is used (``config``
    is ignored) except that ``epochs``, if given, extends or shortens it. ``device`` defaults
    to the GPU when there is one.
    """
    sources = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    if not sources:
        raise InputError("no training data given")
    for source in sources:
        if not source.exists():
            raise InputError(f"training data not found: {source}")
    out = Path(out)
    last = out / "last.safetensors"
    if resume:
        if not last.exists():
            raise InputError(f"nothing to resume: {last} does not exist")
        config = TrainConfig.from_dict(read_meta(last)["training"])
    elif last.exists():
        raise InputError(f"{out} already holds a run; use --resume to continue it or choose another --out")
    if resume and init is not None:
        raise InputError("--init starts a new run; a resumed run continues from its own checkpoint")
    if epochs is not None:
        config = replace(config, epochs=epochs)
    check_weights(weights, len(sources))
    torch.manual_seed(config.seed)  # a new model's initial weights
    start = None if resume else _initial_model(config, init)
    rank, world, started = _process_group()
    if config.batch_size % world:
        raise InputError(f"batch size {config.batch_size} cannot be split evenly over {world} processes")
    try:
        return _train(config, sources, weights, start, out, cache, _device(device), rank, world)
    finally:
        if started:
            dist.destroy_process_group()


def _initial_model(config: TrainConfig, init: str | Path | None) -> tuple[nn.Module, dict, dict | None]:
    """A new model for ``config``, or the weights of checkpoint ``init`` (a shipped name, a
    file or a run folder); with the subjects it has seen and a record of where it came from."""
    if init is None:
        return build_model(config.model_config()), {}, None
    path = find_checkpoint(init)
    model, meta = load_model(path)
    wanted = config.model_config()
    differs = sorted(k for k in set(wanted) | set(meta["model"]) if wanted.get(k) != meta["model"].get(k))
    if differs:
        raise InputError(
            f"--init {init}: its model differs from the one this run trains in {', '.join(differs)}; "
            "give the --preset / --model / --config it was trained with"
        )
    return model, meta.get("seen_subjects", {}), {"checkpoint": str(init), "digest": file_digest(path)}


def _keep_log_rows(path: Path, epochs: int) -> None:
    """Drop the rows of epochs ≥ ``epochs`` from a run's log.csv (atomically): a run killed in
    mid-epoch logged steps that its resumption repeats."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) < epochs]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)


def _train(
    config: TrainConfig,
    sources: list[Path],
    weights: Sequence[float] | None,
    start: tuple[nn.Module, dict, dict | None] | None,
    out: Path,
    cache: Path | None,
    device: torch.device,
    rank: int,
    world: int,
) -> dict:
    last = out / "last.safetensors"
    lead = rank == 0
    if lead:
        out.mkdir(parents=True, exist_ok=True)
    cache = cache or out / "cache"  # inside the run: nothing is written beside the data
    if not lead:
        dist.barrier()  # process 0 prepares the caches first
    per_source = [_subjects(data, "train", cache) for data in sources]
    train_subjects = [s for subjects in per_source for s in subjects]
    val_subjects = [s for data in sources for s in _subjects(data, "validation", cache)]
    val_subjects = val_subjects or train_subjects[-1:]
    if lead and world > 1:
        dist.barrier()
    for data, subjects in zip(sources, per_source, strict=True):
        if not subjects:
            raise InputError(f"no training subjects found in {data}")
    probabilities = subject_weights([len(s) for s in per_source], weights)
    resume = start is None
    if resume:
        model, meta = load_model(last)
        seen, started_from = meta.get("seen_subjects", {}), meta.get("init")
    else:
        model, seen, started_from = start
    # DWI digests of the subjects that trained or selected the model: evaluation refuses them.
    seen = {**seen, **{s.digest: s.name for s in train_subjects + val_subjects}}
    provenance = {
        "sources": [
            {"data": str(data), "subjects": [s.name for s in subjects]}
            | ({"weight": weights[i]} if probabilities is not None else {})
            for i, (data, subjects) in enumerate(zip(sources, per_source, strict=True))
        ],
        "init": started_from,
    }
    model.to(device)
    use_t1 = bool(getattr(model, "uses_t1", False))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step_epochs, gamma=0.5)
    start_epoch, best = 0, -math.inf
    if resume:
        load_training_state(last, optimizer)  # restores the learning rate reached, too
        start_epoch, best = meta["epoch"] + 1, meta["best"]
        scheduler.last_epoch = start_epoch
    objective: nn.Module = Objective(model, config.fft_weight)
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        objective = nn.parallel.DistributedDataParallel(objective, device_ids=ids)
    bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    share = config.batch_size // world
    part = slice(rank * share, (rank + 1) * share)
    pairs: dict[float, Batch] = {}
    if lead:
        val_rng = np.random.default_rng([config.seed, 2**31])
        pairs = {
            s: sample_batch(
                val_subjects, config.val_patches, val_rng, (s, s), config.lr_size, use_t1, config.degradation
            )
            for s in config.val_scales
        }
        with atomic_path(out / "config.json") as tmp:
            run = {"training": asdict(config), "model": config.model_config(), **provenance}
            tmp.write_text(json.dumps(run, indent=2) + "\n")
    steps_per_epoch = math.ceil(config.patches_per_subject * len(train_subjects) / config.batch_size)
    log_path = out / "log.csv"
    new_log = not log_path.exists() or not resume
    if lead and not new_log:
        _keep_log_rows(log_path, start_epoch)
    ranges = Randomisation.from_dict(config.randomisation) if config.randomise else None
    scores: dict[str, float] = {}
    log_file = open(log_path, "w" if new_log else "a", newline="") if lead else None
    try:
        log = csv.writer(log_file) if log_file else None
        if log and new_log:
            log.writerow(["epoch", "step", "loss", "lr", "seconds"])
        for epoch in range(start_epoch, config.epochs):
            bar = tqdm(
                range(steps_per_epoch),
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=None if lead else True,
                leave=False,
            )
            for i in bar:
                step = epoch * steps_per_epoch + i
                start = time.perf_counter()
                rng = np.random.default_rng([config.seed, step])
                batch = sample_batch(
                    train_subjects,
                    config.batch_size,
                    rng,
                    config.scale_range,
                    config.lr_size,
                    use_t1,
                    config.degradation,
                    part,
                    randomise=ranges,
                    weights=probabilities,
                )
                t1 = None if batch.t1 is None else batch.t1.to(device)
                hr = [h.to(device) for h in batch.hr]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    # DDP averages the gradients over processes: scaling each process's sum by
                    # world / B makes that the mean over the global batch.
                    loss = objective(batch.lr.to(device), t1, hr) * (world / config.batch_size)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                reported = loss.detach()
                if world > 1:
                    dist.all_reduce(reported)
                    reported /= world
                seconds = time.perf_counter() - start
                if log:
                    log.writerow(
                        [
                            epoch,
                            step,
                            f"{reported.item():.6g}",
                            f"{scheduler.get_last_lr()[0]:.3g}",
                            f"{seconds:.3f}",
                        ]
                    )
                bar.set_postfix(
                    loss=f"{reported.item():.4f}", samples_per_s=f"{config.batch_size / seconds:.1f}"
                )
            scheduler.step()
            if lead:
                log_file.flush()
                meta = {
                    "model": config.model_config(),
                    "training": asdict(config),
                    "epoch": epoch,
                    "best": best,
                    "seen_subjects": seen,
                    **provenance,
                }
                if (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs:
                    scores = validate(model, pairs, device)
                    score = float(np.mean([v for k, v in scores.items() if k.startswith("psnr_")]))
                    tqdm.write(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
                    if score > best:
                        best = meta["best"] = score
                        save_checkpoint(out / "best.safetensors", model, {**meta, "validation": scores})
                    _plot_losses(log_path, out / "loss.png")
                save_checkpoint(last, model, meta, optimizer)
            if world > 1:
                dist.barrier()  # the others wait while process 0 validates and writes
    finally:
        if log_file:
            log_file.close()
    return scores
