"""DCSRN: the densely connected 3D CNN of Chen et al. (ISBI 2018), a fixed-scale baseline.

Chen, Xie, Christodoulou, Zhou, Li, "Brain MRI super resolution using 3D deep densely connected
neural networks", ISBI 2018. The network refines the tricubic upsampling of the LR image at the
one scale it was trained for; another scale is reached, as in the paper's protocol, by resampling
that fixed-scale output tricubically onto the requested grid.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from csrdmri.core.errors import InputError
from csrdmri.models import register
from csrdmri.models.fixed_scale import FixedScaleModel


class DenseUnit(nn.Module):
    """BatchNorm3d -> ELU -> Conv3d 3³: ``(B, C_in, X, Y, Z) -> (B, growth, X, Y, Z)``."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm3d(in_channels)
        self.act = nn.ELU()
        self.conv = nn.Conv3d(in_channels, growth, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.norm(x)))


class DenseBlock(nn.Module):
    """``units`` dense units, each fed the concatenation of the block input and all earlier outputs.

    Maps ``(B, C, X, Y, Z)`` to ``(B, C + units * growth, X, Y, Z)`` (input and every unit's output).
    """

    def __init__(self, in_channels: int, growth: int, units: int) -> None:
        super().__init__()
        self.units = nn.ModuleList(DenseUnit(in_channels + i * growth, growth) for i in range(units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for unit in self.units:
            features.append(unit(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


@register("dcsrn")
class DCSRN(FixedScaleModel):
    """Densely connected super-resolution network at a fixed training scale.

    Parameters
    ----------
    scale : float
        The scale the network is trained at: the input is the tricubic upsampling of the LR image
        onto ``round(n * scale)`` voxels per axis (half rounded up).
    growth : int
        Growth rate ``k``: the first conv has ``2k`` channels and each dense unit adds ``k``.
    units : int
        Number of units in the dense block.
    """

    def __init__(self, scale: float = 2.0, growth: int = 24, units: int = 4) -> None:
        super().__init__(scale)
        if growth < 1 or units < 1:
            raise InputError(f"DCSRN needs growth >= 1 and units >= 1, got growth={growth}, units={units}")
        self.head = nn.Conv3d(1, 2 * growth, kernel_size=3, padding=1)
        self.block = DenseBlock(2 * growth, growth, units)
        self.tail = nn.Conv3d(2 * growth + units * growth, 1, kernel_size=1)

    def refine(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.block(self.head(x)))
