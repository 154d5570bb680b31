"""Training throughput: samples/s and queries/s of one training step, and the share of the step
spent preparing data, for the ``cpu`` and ``paper`` presets.

A phantom cohort (3 subjects at 2.5 mm, generated into a temporary folder unless ``--data``
names one) is prepared as training does; then, per preset, a few steps (after one warm-up) of
the real training step: :func:`csrdmri.dmri.pairs.sample_batch` (patches, scales, tricubic
degradation) and the model's forward and backward pass with the L1 + FFT loss and an Adam step.
Printed per preset: the time of each part, samples/s, HR queries/s and the share of the step
spent preparing data.

Usage: python benchmarks/bench_train.py [--data COHORT] [--threads N] [--steps N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe

from csrdmri.dmri.pairs import sample_batch
from csrdmri.io.layout import find_dataset
from csrdmri.models import build_model
from csrdmri.models.objective import Objective
from csrdmri.phantom import PhantomParams, generate_cohort
from csrdmri.training import preset_for
from csrdmri.training.data import prepare_subject


def measure(preset: str, subjects, steps: int) -> None:
    config = preset_for(preset)
    torch.manual_seed(0)
    model = build_model(config.model_config())
    objective = Objective(model, config.fft_weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    use_t1 = bool(model.uses_t1)

    def draw(step: int):
        rng = np.random.default_rng([0, step])
        return sample_batch(subjects, config.batch_size, rng, config.scale_range, config.lr_size, use_t1)

    def compute(batch) -> None:
        loss = objective(batch.lr, batch.t1, batch.hr) / config.batch_size
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    compute(draw(steps))  # warm-up (a batch the timed steps do not use)
    data = work = 0.0
    queries = 0
    for step in range(steps):
        start = time.perf_counter()
        batch = draw(step)
        middle = time.perf_counter()
        compute(batch)
        data, work = data + middle - start, work + time.perf_counter() - middle
        queries += sum(h.numel() for h in batch.hr)
    step = (data + work) / steps
    size = f"batch {config.batch_size}, LR {config.lr_size}³, {queries / steps:.0f} HR queries/step"
    print(f"\n{preset} preset: {size}")
    print("| data (s) | compute (s) | step (s) | samples/s | queries/s | data share |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {data / steps:.3f} | {work / steps:.3f} | {step:.3f} | {config.batch_size / step:.1f} | "
        f"{queries / steps / step / 1e3:.0f} k | {data / (data + work):.1%} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a phantom cohort (default: 3 subjects generated)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--presets", default="cpu,paper")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "cohort"
            generate_cohort(data, 3, seed=0, params=PhantomParams(voxel_size=2.5, n_dirs=12, n_b0=2))
        folders = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
        subjects = [prepare_subject(find_dataset(f), Path(tmp) / "cache", f.name) for f in folders]
        for preset in args.presets.split(","):
            measure(preset, subjects, args.steps)


if __name__ == "__main__":
    main()
