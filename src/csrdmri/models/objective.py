"""The training objective of every model: per-sample predictions of a batch and their loss.

Used by training (:mod:`csrdmri.training`) and by per-scan adaptation
(:mod:`csrdmri.inference.adapt`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from csrdmri.models.losses import csr_loss


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
