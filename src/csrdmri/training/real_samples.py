"""Training samples of the joint q-space model from real scans: self-supervised pairs.

A real scan has no finer acquisition to learn from, so its own DWIs play the HR part: a patch of
n³ voxels (n = round(L·s), at most the scan's smallest side) of its largest shell — a random
subset of at least six of its directions, so that every SH order the subset implies is seen —
and 1–4 of its b0s is degraded to L³ as a phantom sample is
(:func:`csrdmri.training.qspace_data.acquire`), and the model learns to bring it back. That a
model which helps from s²- to s-fold coarser data of a scan also helps from the scan to its
output is the premise the safeguard's check already rests on (:mod:`csrdmri.inference.safeguard`).

What such a sample cannot carry: the noise-free signal — its ``expected`` and ``consistent``
targets are the noisy DWIs themselves, and it has no FA target (the loss's FA term skips it) —
and a T1w (the shared real scans have none: real batches train the path without one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csrdmri.core.errors import InputError
from csrdmri.dmri.preprocess import b0_indices, series_mask, shells
from csrdmri.dmri.sh import MIN_DIRECTIONS, unit_directions
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import file_digest, load_dwi
from csrdmri.training.qspace_data import Sample, acquire, draw_operator

#: Most b0s a sample averages (as the phantom samples' protocols).
MAX_B0 = 4


@dataclass
class RealScan:
    """A real scan ready for patch sampling.

    Attributes
    ----------
    name : str
        Its folder's name.
    digest : str
        Its DWI file's digest (:func:`csrdmri.io.nifti.file_digest`): evaluation refuses it for a
        model trained on it.
    data : ndarray, shape (X, Y, Z, B + K), float32
        Its ``B`` b0s, then its largest shell's ``K`` DWIs.
    n_b0, bvalue, directions : int, float, ndarray (K, 3)
        How many b0s lead ``data``; the shell's b-value (s/mm²) and unit directions.
    brain : ndarray (X, Y, Z) bool
        Its brain mask; ``centres`` (M, 3) int: the brain voxels patches are centred on.
    """

    name: str
    digest: str
    data: np.ndarray
    n_b0: int
    bvalue: float
    directions: np.ndarray
    brain: np.ndarray
    centres: np.ndarray

    @classmethod
    def load(cls, path: str | Path) -> RealScan:
        """The scan in the folder ``path`` (any layout :func:`csrdmri.io.layout.find_dataset`
        reads); refused without a b0 or a shell of ``MIN_DIRECTIONS`` directions."""
        if not Path(path).exists():
            raise InputError(f"real training scan not found: {path}", "config")
        paths = find_dataset(Path(path))
        series = load_dwi(paths)
        b0s = b0_indices(series.gtab)
        found = shells(series.gtab)
        if not len(b0s) or not found or max(len(v) for v in found.values()) < MIN_DIRECTIONS:
            raise InputError(
                f"{paths.dwi}: a real training scan needs a b0 and a shell of at least {MIN_DIRECTIONS} "
                "directions",
                "config",
            )
        bvalue, shell = max(found.items(), key=lambda item: len(item[1]))
        brain = series_mask(series)
        data = np.asarray(series.data[..., np.r_[b0s, shell]], np.float32)
        directions = unit_directions(series.gtab.bvecs[shell])
        centres = np.argwhere(brain)[::97]
        return cls(
            Path(path).name, file_digest(paths.dwi), data, len(b0s), float(bvalue), directions, brain, centres
        )


def draw_real_sample(
    scan: RealScan,
    rng: np.random.Generator,
    lr_size: int,
    scale_range: tuple[float, float],
    queries: int,
    kspace: float = 0.0,
    variants: bool = False,
) -> Sample | None:
    """One self-supervised sample of ``scan`` (module docstring; None when the patch holds too
    little brain to normalise); its input made as :func:`csrdmri.training.qspace_data.draw_sample`
    makes a phantom sample's (``kspace``, ``variants``), without a T1w."""
    n = min(round(float(lr_size * rng.uniform(*scale_range))), *scan.brain.shape)
    centre = scan.centres[rng.integers(len(scan.centres))]
    start = [int(np.clip(c - n // 2, 0, s - n)) for c, s in zip(centre, scan.brain.shape, strict=True)]
    box = tuple(slice(a, a + n) for a in start)
    k = len(scan.directions)
    picked = np.sort(rng.choice(k, size=int(rng.integers(MIN_DIRECTIONS, k + 1)), replace=False))
    b0s = np.sort(rng.choice(scan.n_b0, size=int(rng.integers(1, min(MAX_B0, scan.n_b0) + 1)), replace=False))
    hr = scan.data[box][..., np.r_[b0s, scan.n_b0 + picked]]
    method = draw_operator(rng, kspace, variants)
    shared = acquire(
        hr, scan.brain[box], len(b0s), scan.bvalue, scan.directions[picked], lr_size, method, queries, rng
    )
    if shared is None:
        return None
    target = (hr[tuple(shared.picked.T)][:, len(b0s) :] / shared.scale).astype(np.float32)
    return Sample(
        shared.inputs,
        None,
        shared.coords,
        target,
        target,
        shared.cubic,
        shared.s0,
        None,
        shared.basis,
        shared.tensor,
        consistent=target,
    )
