"""Training of the joint q-space model on phantom acquisitions simulated on the fly (and, with
``real`` among its options, on real scans, self-supervised: :mod:`csrdmri.training.qspace_batches`).

The loss is what users consume: L1 of every DWI of the sample's shell in raw intensity
(divided by the patch's mean b0 only so that samples compare), at random HR voxels, where the
output is ``cubic(DWI_g) + cubic(b0) · Y(g) · Δc`` (:mod:`csrdmri.models.qspace`); plus
``fa_weight`` × the L1 error of the FA of the tensors fitted to the output and to the
noise-free truth there (:mod:`csrdmri.training.tensor_loss`): the FA of the noisy truth is
biased up by its noise, and matching it would teach the model to add anisotropic noise; plus
``sh_weight`` × the L1 size of the error's SH coefficients of order ≥ 2 against the noise-free
expectation (its orientation part: a correction the same for every direction, order 0, is all
the L1 term alone has taught, docs/results.md).
With ``target`` "expected" the L1 term compares with the noisy DWIs' expectation given the
noise-free signal (their Rician mean) instead of the noisy DWIs themselves: the gradient no
longer carries the target's noise, but the estimator rewarded moves too, since the input shares
part of that noise (docs/results.md, rule 5). With ``target`` "consistent" it compares with
that expectation made consistent with the input: the part of the target's noise the input
determines is kept, so the estimator rewarded is the noisy DWIs' again, and only the noise no
input can predict is gone (:func:`csrdmri.training.qspace_data.consistent_expectation`).
Validation always scores against the noisy DWIs, as evaluation does.
Validation: fixed samples of a subject not trained on; ``val_gain_db`` is the gain over cubic
interpolation in mean squared raw error (10·log10(MSE_cubic / MSE_model), a raw ΔPSNR),
``val_fa_ratio`` the FA error (against the noise-free truth) relative to cubic's. The learning
rate rises linearly from 0 over the first ``warmup`` steps, then follows a cosine from ``lr``
to ``lr / 10`` until ``steps``, a function of the step alone, so a run resumed with more steps
decays over its new length. Checkpoints
(``last.safetensors`` every ``checkpoint_every`` steps and at the end, ``best.safetensors`` on
the best validation) hold the optimiser, and every batch depends only on (seed, step):
``resume`` continues exactly, and simulating the batches in worker processes (``workers``, for
machines with more cores than one training process uses) draws the same batches (equal to
float rounding: a process's torch threads may sum in another order).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from csrdmri.core.errors import InputError
from csrdmri.models import build_model
from csrdmri.models.checkpoint import (
    find_checkpoint,
    grow_from,
    load_model,
    load_training_state,
    phantom_subjects,
    read_meta,
    save_checkpoint,
)
from csrdmri.training.qspace_batches import Simulator, draw_batch, draw_subjects
from csrdmri.training.qspace_config import TARGETS, QSpaceConfig
from csrdmri.training.qspace_data import Sample
from csrdmri.training.real_samples import RealScan
from csrdmri.training.tensor_loss import fractional_anisotropy

VALIDATION_SAMPLES = 24
#: A run stops when fewer than this share of its decoder's last hidden units respond to any
#: validation query (healthy runs: 92-98 %; three that died: 0-2 %, docs/training.md).
MIN_ALIVE = 1 / 8
LOG_COLUMNS = ("step", "loss", "val_l1_ratio", "val_gain_db", "val_fa_ratio", "seconds")


def on_device(sample: Sample, device: torch.device) -> Sample:
    """The sample with each of its arrays as a tensor on ``device``."""
    arrays = {f.name: getattr(sample, f.name) for f in fields(sample)}
    return replace(sample, **{k: torch.from_numpy(v).to(device) for k, v in arrays.items() if v is not None})


def native_features(model: torch.nn.Module, samples: list[Sample]) -> torch.Tensor | None:
    """The native T1w features (B, Q, F) at the samples' queries, or None (no native branch or
    no T1w in this batch); samples :func:`on_device`, as in the functions below."""
    if samples[0].native is None:
        return None
    gathered = []
    for s in samples:
        maps = model.anatomy(s.native[None])[0]  # (F, n, n, n)
        gathered.append(maps[(slice(None), *s.index.T)].T)
    return torch.stack(gathered)


def raw_output(model: torch.nn.Module, features: torch.Tensor, samples: list[Sample]) -> list[torch.Tensor]:
    """Per sample, the model's HR DWIs (Q, K) at its queries (in the sample's units)."""
    coords = torch.stack([s.coords for s in samples])
    corrections = model.decode(features, coords, native_features(model, samples))  # (B, Q, 28)
    return [s.cubic + s.s0[:, None] * (c @ s.basis.T) for s, c in zip(samples, corrections, strict=True)]


def encode(model: torch.nn.Module, samples: list[Sample]) -> torch.Tensor:
    inputs = torch.stack([s.inputs for s in samples])
    t1 = None if samples[0].t1 is None else torch.stack([s.t1 for s in samples])
    return model.encode(inputs, t1)


def fa_error(output: torch.Tensor, sample: Sample) -> torch.Tensor:
    """Mean |FA(output) - FA(noise-free truth)| over the sample's queries; the output's tensors
    use the cubic b0 (what an upsampled series holds)."""
    fa = fractional_anisotropy(output, sample.s0, sample.tensor)
    return (fa - sample.fa).abs().mean()


def anisotropic_error(output: torch.Tensor, sample: Sample) -> torch.Tensor:
    """Mean over the sample's queries of the summed |SH coefficients of order >= 2| of the
    output's error (Q, K) against the noise-free expectation, in the sample's units."""
    coefficients = (output - sample.expected) @ torch.linalg.pinv(sample.basis).T  # (Q, 28)
    return coefficients[:, 1:].abs().sum(-1).mean()


def validate(model: torch.nn.Module, batches: list[list[Sample]]) -> dict[str, float]:
    """Mean L1 ratio to cubic, the raw MSE gain over cubic (dB) and the FA error ratio to
    cubic on the validation batches."""
    errors = dict.fromkeys(("l1", "l1_cubic", "mse", "mse_cubic", "fa", "fa_cubic"), 0.0)
    with torch.no_grad():
        for samples in batches:
            for s, out in zip(samples, raw_output(model, encode(model, samples), samples), strict=True):
                for key, value in (("", out), ("_cubic", s.cubic)):
                    errors["l1" + key] += float((value - s.target).abs().mean())
                    errors["mse" + key] += float(((value - s.target) ** 2).mean())
                    errors["fa" + key] += float(fa_error(value, s))
    return {
        "val_l1_ratio": errors["l1"] / errors["l1_cubic"],
        "val_gain_db": 10.0 * float(np.log10(errors["mse_cubic"] / errors["mse"])),
        "val_fa_ratio": errors["fa"] / errors["fa_cubic"],
    }


@contextmanager
def decoder_activity(model: torch.nn.Module) -> Iterator[torch.Tensor]:
    """Within the block, records which of the decoder's last hidden units are active (> 0) at
    one query at least of what the model decodes; yields that mask (last layer's width,) bool.
    A ReLU unit inactive at every query gets no gradient and stays so; a decoder whose last
    layer has (almost) all died returns (almost) its output bias everywhere, and the run cannot
    recover (three runs of the shipped recipe did this, docs/results.md rules 6 and 7)."""
    last = model.decoder.hidden[-1]
    active = torch.zeros(last.out_features, dtype=torch.bool, device=last.weight.device)

    def record(module, inputs, output):
        active.logical_or_(output.detach().flatten(0, -2).gt(0).any(dim=0))

    hook = last.register_forward_hook(record)
    try:
        yield active
    finally:
        hook.remove()


def _start(out: Path, config: QSpaceConfig, resume: bool, device: torch.device):
    """Model (on ``device``), optimiser, first step, best validation gain and what the starting
    weights were trained on (checkpoint metadata ``inherited_phantoms``: phantom seed -> subject
    count, and ``seen_subjects``: DWI digest -> name of the real scans; evaluation refuses both):
    new, from ``config.init``'s weights, or from ``out/last.safetensors``."""
    last = out / "last.safetensors"
    inherited: dict = {"inherited_phantoms": {}, "seen_subjects": {}}
    if resume:
        if not last.exists():
            raise InputError(f"nothing to resume in {out}: no last.safetensors", "resume")
        model, meta = load_model(last)
        step, best = int(meta["step"]), float(meta.get("best_gain_db", -np.inf))
        inherited = {key: meta.get(key, {}) for key in inherited}
    else:
        if last.exists():
            raise InputError(f"{out} already holds a run; resume it or choose another folder", "out")
        torch.manual_seed(config.seed)
        model, step, best = build_model(config.model), 0, -np.inf
        if config.init:
            path = find_checkpoint(config.init)
            new = grow_from(model, config.model, path)
            meta = read_meta(path)
            inherited = {
                "inherited_phantoms": {str(k): v for k, v in phantom_subjects(meta).items()},
                "seen_subjects": meta.get("seen_subjects", {}),
            }
            tqdm.write(f"weights from {config.init}" + (f"; new or grown: {', '.join(new)}" if new else ""))
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    if resume:
        load_training_state(last, optimizer)
    return model, optimizer, step, best, inherited


def optimise(model, optimizer, samples: list[Sample], lr: float, config: QSpaceConfig) -> float:
    """One optimisation step on ``samples`` at learning rate ``lr`` with ``config``'s loss (the
    L1 error against its ``target``, its FA and orientation terms); returns the loss."""
    model.train()
    outputs = raw_output(model, encode(model, samples), samples)
    errors = []
    for o, s in zip(outputs, samples, strict=True):
        error = (o - getattr(s, TARGETS[config.target])).abs().mean()
        if config.fa_weight and s.fa is not None:  # a real scan's sample has no FA target
            error = error + config.fa_weight * fa_error(o, s)
        if config.sh_weight:
            error = error + config.sh_weight * anisotropic_error(o, s)
        errors.append(error)
    loss = torch.stack(errors).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    return float(loss.detach())


def train_qspace(
    out: Path, config: QSpaceConfig, resume: bool = False, device: str | None = None, workers: int = 0
) -> dict[str, float]:
    """Train (or resume with ``config``) the q-space run in ``out``; returns the last
    validation scores. A resumed run keeps its weights and optimiser state; ``config`` may
    differ from the saved one (more steps, another loss weight). ``device``: a torch device
    (default: the GPU if there is one); ``workers``: processes simulating the batches ahead
    (0: one thread)."""
    if workers < 0:
        raise InputError(f"workers must be at least 0, got {workers}", "workers")
    scans = [RealScan.load(path) for path in config.real]  # refused before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, optimizer, step, best, inherited = _start(out, config, resume, run_device)
    inherited["seen_subjects"] = {**inherited["seen_subjects"], **{s.digest: s.name for s in scans}}
    simulator = Simulator(config, workers, scans)
    (held_out,) = draw_subjects(config, range(config.subjects, config.subjects + 1))
    val_rng = np.random.default_rng([config.seed, 10**9])
    val_batches = [
        [on_device(s, run_device) for s in draw_batch([held_out], config, val_rng, with_t1=i % 2 == 0)]
        for i in range(VALIDATION_SAMPLES // config.batch)
    ]
    scores: dict[str, float] = {}
    started = time.monotonic()
    bar = tqdm(range(step, config.steps), desc="training", initial=step, total=config.steps)
    log = out / "log.csv"
    new_log = not log.exists()
    with open(log, "a", newline="") as handle, closing(simulator.batches(step)) as batches:
        writer = csv.writer(handle)
        if new_log:
            writer.writerow(LOG_COLUMNS)
        for step, batch in zip(bar, batches, strict=True):
            samples = [on_device(s, run_device) for s in batch]
            loss = optimise(model, optimizer, samples, config.learning_rate(step), config)
            bar.set_postfix(loss=f"{loss:.4f}")
            done = step + 1
            if done % config.checkpoint_every and done != config.steps:
                continue
            model.eval()
            with decoder_activity(model) as active:  # read from validation's own decoding
                scores = validate(model, val_batches)
            meta = {"model": config.model, "training": asdict(config), "step": done, **scores}
            meta.update(inherited)
            if scores["val_gain_db"] > best:
                best = scores["val_gain_db"]
                save_checkpoint(out / "best.safetensors", model, meta)
            save_checkpoint(out / "last.safetensors", model, {**meta, "best_gain_db": best}, optimizer)
            elapsed = time.monotonic() - started
            writer.writerow([done, f"{loss:.5f}", *(f"{v:.5f}" for v in scores.values()), f"{elapsed:.0f}"])
            handle.flush()
            alive = float(active.float().mean())
            if alive < MIN_ALIVE:
                raise InputError(
                    f"training stopped at step {done}: the model's output hardly depends on its input any "
                    f"more ({alive:.0%} of the decoder's last layer still responds, and no gradient revives "
                    f"the rest); {out} keeps the run: start again in a new folder with another seed, a "
                    "lower lr or a warmup in --config",
                    "seed",
                )
    return scores
