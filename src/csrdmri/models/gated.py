"""An input-adaptive path for the orientation part of the joint model's correction.

The linear path of :mod:`csrdmri.models.orientation` (one learned kernel per SH order) learned
orientation corrections, but one fixed filter cannot serve inputs whose noise differs (made by
cubic sampling or in k-space; docs/results.md, rules 14 and 15) nor tell a white-matter edge,
where the order-2 maps need sharpening, from grey matter, where they are noise. This path lets
the decoder choose the filter at every query: a fixed bank of isotropic Gaussian filters
(σ = 0, 1, 2, … LR voxels; σ = 0 is the identity) is applied to each coefficient map of order
≥ 2 of the LR S/S0, the filtered maps are sampled at the query with the latent map, and the
decoder returns, beside its own coefficients, one gate per SH order and filter; the path adds
``Σ_k gate[l, k] · filtered_k`` to the coefficients of order ``l``. Gates of (1, 0, …) scale the
query's own orientation up (an edge voxel cubic interpolation blurred with isotropic tissue),
(−a, a, 0, …) replace it partly by its neighbourhood's (a denoiser), and so on. The same gate
multiplies the 2l + 1 coefficients of an order, so the path commutes with rotations of the
gradient frame; the gates' head starts at 0, so a model with the path predicts what it did
without it until it learns.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from csrdmri.models.orientation import CHANNELS, ORDER_SIZES
from csrdmri.models.rdn import Interior, trim

#: Filter k of the bank is a Gaussian of σ = k LR voxels, truncated at ``TRUNCATE`` σ.
TRUNCATE = 2.0


def gaussian_taps(sigma: float) -> torch.Tensor:
    """1-D Gaussian taps of standard deviation ``sigma`` voxels summing to 1 ([1.] for 0)."""
    radius = math.ceil(TRUNCATE * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2) if sigma > 0 else torch.ones(1, dtype=torch.float64)
    return (taps / taps.sum()).float()


class GatedFilters(nn.Module):
    """The fixed filter bank and the gated sum of the module docstring.

    Parameters
    ----------
    filters : int
        Filters in the bank, σ = 0 … filters − 1 LR voxels.
    """

    def __init__(self, filters: int) -> None:
        super().__init__()
        if filters < 1:
            raise ValueError(f"the gated path needs at least one filter, got {filters}")
        self.filters = filters
        self.radius = math.ceil(TRUNCATE * (filters - 1))  # LR voxels of context the widest filter reads

    @property
    def channels(self) -> int:
        """Channels of :meth:`maps`: every filter's coefficient maps of orders ≥ 2."""
        return self.filters * CHANNELS

    @property
    def gates(self) -> int:
        """Gates the decoder returns: one per order ≥ 2 and filter."""
        return self.filters * len(ORDER_SIZES)

    def maps(self, coefficients: torch.Tensor, by: int = 0, interior: Interior = None) -> torch.Tensor:
        """(B, 28, X, Y, Z) coefficient maps -> (B, filters · 27, X, Y, Z), filter by filter
        (replicate padding at the volume's edges; on a tile, less ``by`` voxels on its
        ``interior`` sides, ``by`` ≥ :attr:`radius`)."""
        x = coefficients[:, 1:]
        out = []
        for k in range(self.filters):
            taps = gaussian_taps(float(k)).to(x)
            half = len(taps) // 2
            h = F.pad(x, (half,) * 6, mode="replicate") if half else x
            for axis in range(3):  # separable: one 1-D pass per axis
                shape = [1, 1, 1]
                shape[axis] = len(taps)
                h = F.conv3d(h, taps.view(1, 1, *shape).expand(CHANNELS, 1, *shape), groups=CHANNELS)
            out.append(h)
        return trim(torch.cat(out, dim=1), by, interior)

    def forward(self, maps: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """The path's corrections (..., 27) of orders ≥ 2 from the filtered maps sampled at the
        queries (..., filters · 27) and the decoder's gates there (..., gates), order-major."""
        per_order = gates.unflatten(-1, (len(ORDER_SIZES), self.filters)).transpose(-1, -2)  # (..., K, 3)
        repeats = torch.tensor(ORDER_SIZES, device=gates.device)
        per_channel = torch.repeat_interleave(per_order, repeats, dim=-1)  # (..., K, 27)
        return (per_channel * maps.unflatten(-1, (self.filters, CHANNELS))).sum(-2)
