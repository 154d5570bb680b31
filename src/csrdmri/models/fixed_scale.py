"""Base of the fixed-scale CNN baselines (DCSRN, ResCNN3D): refine the tricubic upsampling at
the one scale the network is trained for; reach any other grid, as the paper's protocol does,
by resampling that fixed-scale output tricubically (e.g. the 3× model, then 2.4× or 4×)."""

from __future__ import annotations

import torch
import torch.nn as nn

from csrdmri.core.grid import shape_for_scale
from csrdmri.core.resample import resample_torch


class FixedScaleModel(nn.Module):
    """``forward(lr, t1, shape)``: tricubic to ``round(n · scale)``, :meth:`refine`, resample to
    ``shape`` if it differs. ``t1`` is ignored. Subclasses implement :meth:`refine`."""

    uses_t1 = False

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def refine(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, X, Y, Z) tricubic upsampling at the training scale -> the network's estimate."""
        raise NotImplementedError

    def forward(self, lr: torch.Tensor, t1: torch.Tensor | None, shape: tuple[int, int, int]) -> torch.Tensor:
        """Super-resolve ``lr`` (B, 1, X, Y, Z) onto ``shape``: returns (B, 1, *shape)."""
        fixed = shape_for_scale(lr.shape[-3:], self.scale)
        y = self.refine(resample_torch(lr, fixed))
        return y if fixed == tuple(shape) else resample_torch(y, shape)
