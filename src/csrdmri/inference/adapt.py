"""Per-scan self-supervised adaptation (beyond the paper): fine-tune a copy of a model on the scan
it is about to super-resolve.

The scan's own b ≈ 1000 volumes (S/S0) play the high-resolution part: round(L·s)³ patches inside
its brain are degraded to L³ exactly as in training (:func:`csrdmri.dmri.pairs.sample_batch`), with
``s`` the requested scale, and a copy of the model learns to undo that degradation (same loss
as training). The adapted copy is then applied to the scan itself. The scan's data, the model
given and the files are never modified; the result depends only on the inputs and ``seed``.
Measured on two real scans it has not helped yet (docs/results.md), so it is off by default.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from csrdmri.core.errors import InputError
from csrdmri.core.patches import LR_SIZE, hr_size, patch_origins
from csrdmri.dmri.pairs import PreparedSubject, sample_batch
from csrdmri.models.losses import FFT_WEIGHT
from csrdmri.models.objective import Objective

#: Adam learning rate of the adaptation (the paper's initial training rate).
LR = 1e-4
#: Pairs per step, and most volumes of the scan used (spread over the series).
BATCH = 4
VOLUMES = 16
#: Patch positions drawn once (pairs are then drawn among them).
ORIGINS = 512


def spread(indices: list[int], most: int = VOLUMES) -> list[int]:
    """At most ``most`` of ``indices``, evenly spaced (the volumes adaptation learns from)."""
    picks = np.linspace(0, len(indices) - 1, min(most, len(indices))).round().astype(int)
    return [indices[i] for i in np.unique(picks)]


def adapt(
    model: nn.Module,
    volumes: np.ndarray,
    t1: np.ndarray | None,
    mask: np.ndarray,
    scale: float,
    steps: int,
    seed: int = 0,
    lr_size: int = LR_SIZE,
    degradation: str = "tricubic",
) -> nn.Module:
    """A copy of ``model`` fine-tuned for ``steps`` Adam steps to undo a ``scale``× degradation
    of the scan's own patches.

    Parameters
    ----------
    model : INR
        The trained model (left untouched).
    volumes : ndarray, shape (V, X, Y, Z)
        Some of the scan's b ≈ 1000 volumes divided by its mean b0 (S/S0): see :func:`spread`.
    t1 : ndarray, shape (X, Y, Z), or None
        The normalised T1w on the scan's grid, for models that use one.
    mask : ndarray of bool, shape (X, Y, Z)
        The brain mask: patches are drawn inside it.
    scale : float
        The scale the scan is about to be super-resolved by (isotropic; 2 ≤ a usual value).
    steps, seed : int
        Adam steps, and the seed of the patches drawn and of torch's RNG.
    lr_size, degradation :
        As the model was trained (its checkpoint's training configuration).
    """
    size = hr_size(scale, lr_size)  # the HR crop: patches are drawn at this size in the brain
    try:
        origins = np.unique(
            patch_origins(mask, ORIGINS, np.random.default_rng([seed, 2**32 - 1]), size), axis=0
        )
    except ValueError as exc:
        raise InputError(f"cannot adapt to this scan: {exc}") from None
    subject = PreparedSubject("scan", volumes, t1, origins, "")
    tuned = copy.deepcopy(model).float().train()
    objective = Objective(tuned, FFT_WEIGHT)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=LR)
    use_t1 = bool(getattr(tuned, "uses_t1", False))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in tqdm(range(steps), desc="adapting to the scan", unit="step", disable=None):
            batch = sample_batch(
                [subject],
                BATCH,
                np.random.default_rng([seed, step]),
                (scale, scale),
                lr_size,
                use_t1,
                degradation,
                patch=size,
            )
            loss = objective(batch.lr, batch.t1, batch.hr) / BATCH
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return tuned.eval()
