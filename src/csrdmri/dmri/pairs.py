"""Training pairs: the paper's LR/HR patch pairs drawn from a subject's prepared arrays.

Used by training (:mod:`csrdmri.training`) and by per-scan adaptation
(:mod:`csrdmri.inference.adapt`). Each batch is drawn from ``numpy.random.default_rng([seed,
step])``: a batch depends only on the seed and the step number, so a resumed run sees exactly
the batches an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from csrdmri.core.errors import InputError
from csrdmri.core.patches import LR_SIZE, PATCH, central_crop, degrade, hr_size
from csrdmri.dmri.randomise import MOTION_MARGIN, Acquisition, Randomisation


@dataclass
class PreparedSubject:
    """Memory-mapped training arrays of one subject."""

    name: str
    dwi: np.ndarray  # (V, X, Y, Z) float16, S/S0
    t1: np.ndarray | None  # (X, Y, Z) float32
    origins: np.ndarray  # (K, 3) int, corners of 40³ patches inside the brain
    digest: str  # SHA-256 of the DWI file (see :func:`csrdmri.io.nifti.file_digest`)
    s0: np.ndarray | None = None  # (X, Y, Z) float32, mean b0 where S/S0 is defined, else 0


@dataclass
class Batch:
    """LR inputs (B, 1, L, L, L), optional T1w on the LR grid, and one HR target per sample."""

    lr: torch.Tensor
    t1: torch.Tensor | None
    hr: list[torch.Tensor]  # (n_i, n_i, n_i), n_i = round(L · s_i)


def read_box(array: np.ndarray, box: tuple[slice, slice, slice]) -> np.ndarray:
    """``array[box]`` of a 3D array as float32, zero where ``box`` leaves the array."""
    inside = tuple(slice(max(b.start, 0), min(b.stop, n)) for b, n in zip(box, array.shape, strict=True))
    pads = [(i.start - b.start, b.stop - i.stop) for b, i in zip(box, inside, strict=True)]
    return np.pad(np.asarray(array[inside], dtype=np.float32), pads)


def draw_scale(rng: np.random.Generator, scale_range: tuple[float, float], lr_size: int = LR_SIZE) -> int:
    """HR size ``round(lr_size · U(lo, hi))``, so the scale is a multiple of 1/lr_size."""
    return hr_size(rng.uniform(*scale_range), lr_size)


def sample_batch(
    subjects: list[PreparedSubject],
    batch_size: int,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (2.0, 3.0),
    lr_size: int = LR_SIZE,
    use_t1: bool = True,
    degradation: str = "tricubic",
    part: slice = slice(None),
    patch: int = PATCH,
    randomise: Randomisation | None = None,
    weights: np.ndarray | None = None,
) -> Batch:
    """The paper's pairs: a random subject, 40³ patch and b≈1000 volume per sample; HR = the
    central round(L·s)³ crop; LR (and T1w) = its downsampling to L³ (see
    :func:`csrdmri.core.patches.degrade`). The T1w is always downsampled tricubically: at inference
    it is resampled onto the DWI grid in the image domain, whatever the DWI's acquisition.

    All ``batch_size`` samples are drawn, but only those in ``part`` are read: the processes of
    a distributed run each take their share of the same batch. ``patch``: the side of the
    patches at the subjects' ``origins``. ``randomise``: a randomised acquisition per pair
    (:mod:`csrdmri.dmri.randomise`; ``degradation`` is then not used). ``weights``: the probability
    of each subject (default: all alike).
    """
    draws = []
    for _ in range(batch_size):
        pick = rng.integers(len(subjects)) if weights is None else rng.choice(len(subjects), p=weights)
        subject = subjects[pick]
        corner = subject.origins[rng.integers(len(subject.origins))]
        n = min(draw_scale(rng, scale_range, lr_size), patch)
        volume = int(rng.integers(subject.dwi.shape[0]))
        # Drawn here, for every sample, so that each process of a distributed run sees the same.
        acquisition = Acquisition.draw(rng, randomise) if randomise else None
        draws.append((subject, corner, n, volume, acquisition))
    lrs, t1s, hrs = [], [], []
    for subject, corner, n, volume, acquisition in draws[part]:
        box = tuple(slice(int(c), int(c) + patch) for c in corner)
        if acquisition and acquisition.shift is not None:
            if subject.s0 is None:
                raise InputError(f"subject {subject.name} has no mean b0 to simulate motion against")
            wide = tuple(slice(b.start - MOTION_MARGIN, b.stop + MOTION_MARGIN) for b in box)
            hr = acquisition.move(read_box(subject.dwi[volume], wide), read_box(subject.s0, wide))
        else:
            hr = np.asarray(subject.dwi[(volume, *box)], dtype=np.float32)
        hr = central_crop(hr, n)
        if acquisition:
            hr = acquisition.signal(hr)
            lrs.append(acquisition.acquire(hr, lr_size))
        else:
            lrs.append(degrade(hr, lr_size, degradation))
        hrs.append(torch.from_numpy(hr))
        if use_t1:
            if subject.t1 is None:
                raise InputError(f"subject {subject.name} has no T1w, but the model needs one")
            t1 = degrade(central_crop(np.asarray(subject.t1[box], dtype=np.float32), n), lr_size)
            t1s.append(acquisition.t1(t1) if acquisition else t1)
    lr = torch.from_numpy(np.stack(lrs))[:, None]
    t1 = torch.from_numpy(np.stack(t1s))[:, None] if use_t1 else None
    return Batch(lr, t1, hrs)
