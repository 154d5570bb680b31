"""Tricubic interpolation as a model, so every tool treats the baseline like the others."""

from __future__ import annotations

import torch
import torch.nn as nn

from csrdmri.core.resample import resample_torch
from csrdmri.models import register


@register("tricubic")
class Tricubic(nn.Module):
    """Cubic B-spline upsampling (:func:`csrdmri.resample.resample_torch`); no parameters."""

    uses_t1 = False

    def forward(self, lr: torch.Tensor, t1: torch.Tensor | None, shape: tuple[int, int, int]) -> torch.Tensor:
        return resample_torch(lr, shape)
