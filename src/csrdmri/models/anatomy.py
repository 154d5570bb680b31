"""Features of the T1w at the output resolution (beyond the paper; issue 22).

The encoders of the paper read the T1w resampled *down* onto the LR grid of the DWIs, which
throws its fine anatomy away before it can help. :class:`AnatomyCNN` reads the T1w resampled
onto the *output* (HR) grid by the affines instead — a few 3×3×3 convolutions, so that each
query's decoder also sees the tissue boundaries around its own position at the target
resolution. The convolutions are unpadded: a feature map of shape (X, Y, Z) is computed from
the T1w over (X + 2r, Y + 2r, Z + 2r), ``r`` = :attr:`AnatomyCNN.radius`; callers pad with the
image itself where it exists and with zeros (the normalised T1w's background) beyond its edges,
so that tiles and training patches see exactly what a whole volume would.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn

#: Unpadded 3×3×3 convolutions, hence HR voxels of T1w context on each side of a feature.
RADIUS = 3


class AnatomyCNN(nn.Module):
    """``RADIUS`` unpadded 3×3×3 convolutions with ReLUs between them.

    (B, 1, X + 2r, Y + 2r, Z + 2r) normalised T1w on the HR grid -> (B, features, X, Y, Z).
    """

    radius = RADIUS

    def __init__(self, features: int = 8, width: int = 16) -> None:
        super().__init__()
        sizes = [1] + [width] * (RADIUS - 1) + [features]
        self.convs = nn.ModuleList(nn.Conv3d(a, b, 3) for a, b in itertools.pairwise(sizes))
        self.features = features

    def forward(self, t1: torch.Tensor) -> torch.Tensor:
        h = t1
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = h.relu()
        return h
