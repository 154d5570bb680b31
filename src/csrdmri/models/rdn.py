"""3D Residual Dense Network (Zhang et al. 2018) as a latent feature extractor, no upsampling.

As ArSSR and CSR-dMRI use it: all convolutions 3D, the upsampling tail removed, and a last
convolution to ``out_channels`` latent features per LR voxel. Padding keeps the LR grid, so
feature ``[..., i, j, k]`` belongs to LR voxel ``(i, j, k)``. Receptive field: ``2 + D·C + 2``
3³ convolutions, i.e. a radius of ``D·C + 4`` LR voxels (28 with the defaults).

On a tile of a larger volume (see :mod:`csrdmri.inference.tiling`), the untiled model does not zero-pad at
the tile's sides that lie inside the volume: ``interior`` names them, and each 3³ convolution's
output loses one voxel on each of them, so that every voxel computed equals the untiled one and
no work goes into voxels that no later layer needs. The latent map then covers
the tile less ``receptive_radius`` voxels on those sides.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def encoder_input(lr: torch.Tensor, t1: torch.Tensor | None, uses_t1: bool) -> torch.Tensor:
    """The encoder's input: ``lr`` (B, 1, X, Y, Z), with the T1w as a 2nd channel if ``uses_t1``."""
    if not uses_t1:
        return lr
    if t1 is None:
        raise ValueError("this model uses a T1w, but none was given")
    return torch.cat([lr, t1], dim=1)


#: Per axis, whether the low and the high side of a tile lie inside the volume (None: a whole volume).
Interior = tuple[tuple[bool, bool], tuple[bool, bool], tuple[bool, bool]] | None


def trim(x: torch.Tensor, by: int, interior: Interior) -> torch.Tensor:
    """A view of ``x`` (B, C, X, Y, Z) without ``by`` voxels on each of its ``interior`` sides."""
    if not by or interior is None:
        return x
    keep = [
        slice(by if lo else 0, n - by if hi else n) for n, (lo, hi) in zip(x.shape[2:], interior, strict=True)
    ]
    return x[(slice(None), slice(None), *keep)]


def conv3(cin: int, cout: int) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, 3, padding=1)


class DenseBlock(nn.Module):
    """Residual dense block: ``layers`` densely connected 3³ conv+ReLU, 1³ fusion, residual."""

    def __init__(self, channels: int, growth: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(conv3(channels + i * growth, growth) for i in range(layers))
        self.fuse = nn.Conv3d(channels + layers * growth, channels, 1)

    def forward(self, x: torch.Tensor, interior: Interior = None) -> torch.Tensor:
        """``x`` (B, C, X, Y, Z) -> (B, C, X, Y, Z), less ``layers`` voxels on ``interior`` sides."""
        features = [x]  # the i-th was trimmed i times
        for i, conv in enumerate(self.convs):
            inputs = torch.cat([trim(f, i - j, interior) for j, f in enumerate(features)], dim=1)
            features.append(trim(torch.relu(conv(inputs)), 1, interior))
        last = len(self.convs)
        return trim(x, last, interior) + self.fuse(
            torch.cat([trim(f, last - j, interior) for j, f in enumerate(features)], dim=1)
        )


class RDN(nn.Module):
    """Latent feature extractor: (B, in_channels, X, Y, Z) -> (B, out_channels, X, Y, Z).

    Parameters
    ----------
    in_channels : int
        1 for the DWI alone, 2 for [DWI, T1w].
    out_channels : int
        Latent feature size (128 in the paper).
    g0, growth, blocks, layers : int
        RDN's G0, G, D and C (ArSSR: 64, 64, 8, 3).
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 128,
        g0: int = 64,
        growth: int = 64,
        blocks: int = 8,
        layers: int = 3,
    ) -> None:
        super().__init__()
        self.sfe1 = conv3(in_channels, g0)
        self.sfe2 = conv3(g0, g0)
        self.blocks = nn.ModuleList(DenseBlock(g0, growth, layers) for _ in range(blocks))
        self.gff = nn.Sequential(nn.Conv3d(blocks * g0, g0, 1), conv3(g0, g0))
        self.out = conv3(g0, out_channels)
        self.receptive_radius = blocks * layers + 4

    def forward(self, x: torch.Tensor, interior: Interior = None) -> torch.Tensor:
        """Latent map of ``x``, less ``receptive_radius`` voxels on its ``interior`` sides."""
        f1 = trim(self.sfe1(x), 1, interior)
        h = trim(self.sfe2(f1), 1, interior)
        outs = []  # block outputs, the i-th trimmed (i + 1)·layers times
        for block in self.blocks:
            h = block(h, interior)
            outs.append(h)
        layers = len(self.blocks[0].convs)
        last = len(outs) - 1
        fused = self.gff[0](
            torch.cat([trim(o, (last - i) * layers, interior) for i, o in enumerate(outs)], dim=1)
        )
        h = trim(self.gff[1](fused), 1, interior) + trim(f1, 2 + len(outs) * layers, interior)
        return trim(self.out(h), 1, interior)
