"""A linear path for the orientation part of the joint model's correction.

The decoder of :mod:`csrdmri.models.qspace` learns a correction that is the same for every
direction (SH order 0) and next to nothing of orders ≥ 2 (docs/results.md, "Why the models
leave FA alone"), although one linear filter of the order-2 coefficient maps already predicts
a fifth to a half of what is needed there. This path gives the model that filter: one learned
3-D kernel per SH order (2, 4, 6), applied to each coefficient map of that order of the LR
S/S0 — the same kernel for the 2l + 1 coefficients of an order, so the path commutes with
rotations of the gradient frame — and added to the decoder's coefficients of orders ≥ 2 at
each query (sampled trilinearly with the latent map). The kernels start at 0: a model with the
path predicts what it predicted without it until it learns.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from csrdmri.dmri.sh import MAX_ORDER, n_coefficients
from csrdmri.models.rdn import Interior, trim

#: Coefficients of each even order from 2 to MAX_ORDER (5, 9, 13), in the SH channels' order.
ORDER_SIZES = tuple(2 * order + 1 for order in range(2, MAX_ORDER + 1, 2))
#: Channels the path returns: every coefficient but the order-0 one.
CHANNELS = n_coefficients(MAX_ORDER) - 1


class OrientationFilter(nn.Module):
    """Per-order linear filtering of SH coefficient maps.

    Parameters
    ----------
    size : int
        Odd side of each kernel, in LR voxels.

    (B, 28, X, Y, Z) coefficient maps -> (B, 27, X, Y, Z) corrections of orders ≥ 2 (replicate
    padding at the volume's edges; on a tile, less ``by`` voxels on its ``interior`` sides).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"the orientation kernel's side must be odd and positive, got {size}")
        self.kernels = nn.Parameter(torch.zeros(len(ORDER_SIZES), 1, size, size, size))  # a conv3d weight

    def forward(self, coefficients: torch.Tensor, by: int = 0, interior: Interior = None) -> torch.Tensor:
        half = self.kernels.shape[-1] // 2
        repeats = torch.tensor(ORDER_SIZES, device=self.kernels.device)
        weight = torch.repeat_interleave(self.kernels, repeats, dim=0).to(coefficients.dtype)
        padded = F.pad(coefficients[:, 1:], (half,) * 6, mode="replicate")
        return trim(F.conv3d(padded, weight, groups=CHANNELS), by, interior)
