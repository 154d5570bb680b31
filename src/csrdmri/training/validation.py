"""Validation during training: fixed pairs, the model's and tricubic's PSNR on them."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from csrdmri.core.metrics import psnr
from csrdmri.core.resample import resample
from csrdmri.dmri.pairs import Batch, PreparedSubject, sample_batch
from csrdmri.models.objective import predict
from csrdmri.training.config import TrainConfig


def validation_pairs(
    subjects: list[PreparedSubject], config: TrainConfig, use_t1: bool
) -> dict[float, Batch]:
    """``config.val_patches`` fixed (seeded) plain pairs per validation scale, by scale."""
    rng = np.random.default_rng([config.seed, 2**31])
    return {
        s: sample_batch(subjects, config.val_patches, rng, (s, s), config.lr_size, use_t1, config.degradation)
        for s in config.val_scales
    }


@torch.no_grad()
def validate(model: nn.Module, pairs: dict[float, Batch], device: torch.device) -> dict[str, float]:
    """Mean PSNR (dB) of the model (in float32) and of tricubic on fixed validation pairs.

    Returns ``{"psnr_<s>x": …, "tricubic_<s>x": …}`` for each scale ``s`` of ``pairs``.
    """
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


def mean_psnr(scores: dict[str, float]) -> float:
    """The model's PSNR (dB) averaged over the validation scales: what selects the best checkpoint."""
    return float(np.mean([v for k, v in scores.items() if k.startswith("psnr_")]))
