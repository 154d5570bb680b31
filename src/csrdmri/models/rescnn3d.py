"""ResCNN3D: the residual 3D CNN of Du et al. (Neurocomputing 2020), a fixed-scale baseline.

Du, He, Li, Yu, Zhang, "Super-resolution reconstruction of single anisotropic 3D MR images using
residual convolutional neural network", Neurocomputing 2020. A plain stack of 3³ convolutions
learns the residual between the tricubic upsampling of the LR image (at the one scale it was
trained for) and the HR image; another scale is reached, as in the paper's protocol, by resampling
that fixed-scale output tricubically onto the requested grid.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from csrdmri.core.errors import InputError
from csrdmri.models import register
from csrdmri.models.fixed_scale import FixedScaleModel


@register("rescnn3d")
class ResCNN3D(FixedScaleModel):
    """Global-residual CNN at a fixed training scale.

    Parameters
    ----------
    scale : float
        The scale the network is trained at: the input is the tricubic upsampling of the LR image
        onto ``round(n * scale)`` voxels per axis (half rounded up).
    depth : int
        Number of Conv3d 3³ layers (>= 2), ReLU between them, the last one to 1 channel.
    width : int
        Channels of the hidden layers.
    """

    def __init__(self, scale: float = 3.0, depth: int = 10, width: int = 64) -> None:
        super().__init__(scale)
        if depth < 2 or width < 1:
            raise InputError(f"ResCNN3D needs depth >= 2 and width >= 1, got depth={depth}, width={width}")
        layers: list[nn.Module] = [nn.Conv3d(1, width, kernel_size=3, padding=1)]
        for _ in range(depth - 2):
            layers += [nn.ReLU(inplace=True), nn.Conv3d(width, width, kernel_size=3, padding=1)]
        layers += [nn.ReLU(inplace=True), nn.Conv3d(width, 1, kernel_size=3, padding=1)]
        self.body = nn.Sequential(*layers)

    @property
    def last_conv(self) -> nn.Conv3d:
        """The final convolution (to 1 channel, no activation) that produces the residual."""
        return self.body[-1]  # type: ignore[return-value]

    def refine(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
