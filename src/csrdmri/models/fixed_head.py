"""Table 2's "INR off": the CSR-dMRI encoder with a fixed-scale head instead of the implicit
function.

The RDN latent map (B, latent, X, Y, Z) goes through a 3³ convolution to ``r³`` channels and a
3D sub-pixel shuffle to the (rX, rY, rZ) grid, ``r`` the integer training scale (sub-voxel
``k`` of LR voxel ``i`` lands at ``i + (k + 0.5)/r``: the cell-centred grid of
:mod:`csrdmri.core.grid`). Any other grid is reached, as the fixed-scale baselines do, by tricubic
resampling of that output, so the model trains on the same U(2, 3) pairs as the INR.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from csrdmri.core.resample import resample_torch
from csrdmri.models import register
from csrdmri.models.rdn import RDN, conv3, encoder_input


def pixel_shuffle_3d(x: torch.Tensor, r: int) -> torch.Tensor:
    """(B, C·r³, X, Y, Z) -> (B, C, rX, rY, rZ), channel ``c·r³ + (a·r + b)·r + d`` to sub-voxel
    (a, b, d)."""
    b, c, x_, y_, z_ = x.shape
    c //= r**3
    x = x.reshape(b, c, r, r, r, x_, y_, z_).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c, x_ * r, y_ * r, z_ * r)


@register("rdn-fixed")
class FixedHeadSR(nn.Module):
    """RDN encoder (+ T1w) and a sub-pixel head at integer scale ``scale``.

    Parameters
    ----------
    use_t1 : bool
        Encode [LR DWI, T1w on the LR grid] instead of the DWI alone.
    scale : int
        Upsampling factor of the head (its output grid is ``scale`` × the LR grid).
    latent, g0, growth, blocks, layers : int
        RDN sizes, as :class:`csrdmri.models.inr.INR`.
    residual : bool
        Add the tricubic upsampling of the input (beyond the paper; the head starts at zero).
    """

    def __init__(
        self,
        use_t1: bool = True,
        scale: int = 3,
        latent: int = 128,
        g0: int = 64,
        growth: int = 64,
        blocks: int = 8,
        layers: int = 3,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.uses_t1 = bool(use_t1)
        self.scale = scale
        self.residual = bool(residual)
        self.encoder = RDN(1 + self.uses_t1, latent, g0, growth, blocks, layers)
        self.head = conv3(latent, scale**3)
        if self.residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, lr: torch.Tensor, t1: torch.Tensor | None, shape: tuple[int, int, int]) -> torch.Tensor:
        """Super-resolve ``lr`` (B, 1, X, Y, Z) onto ``shape``: returns (B, 1, *shape)."""
        y = pixel_shuffle_3d(self.head(self.encoder(encoder_input(lr, t1, self.uses_t1))), self.scale)
        if self.residual:
            y = y + resample_torch(lr, tuple(y.shape[-3:]))
        return y if tuple(y.shape[-3:]) == tuple(shape) else resample_torch(y, tuple(shape))
