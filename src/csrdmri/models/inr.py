"""CSR-dMRI / ArSSR: RDN latent features + an implicit function of [feature, coordinate].

For a query at normalised coordinate ``c`` (``grid_sample(align_corners=False)`` convention of
:mod:`csrdmri.core.grid`, over the LR input's field of view), the 128 latent features are sampled
trilinearly at ``c`` and concatenated with a coordinate code; an 8-layer ReLU MLP maps them to
the intensity. The coordinate code is

* ``"global"`` (the paper): ``c`` itself, in [-1, 1] over the input patch;
* ``"local"``: the offset of the query from the nearest LR voxel centre, in LR voxels
  ([-0.5, 0.5]³, as LIIF's relative coordinate) — translation-invariant, so a model trained on
  patches applies unchanged to tiles of a whole volume.

``residual=True`` (beyond the paper) adds the tricubic interpolation of the LR input at the
query, so the MLP learns the correction to tricubic instead of the intensity itself.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from csrdmri.core.grid import dst_grid_normalized, grid_sample_order, normalized, unnormalized
from csrdmri.core.resample import resample_torch
from csrdmri.models import register
from csrdmri.models.rdn import RDN, Interior, encoder_input

COORDS = ("global", "local")
#: Queries within this many LR voxels below a half-way point belong to the upper voxel.
HALF_MARGIN = 1e-4


def sample_latent(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Latent map (B, C, X, Y, Z) sampled trilinearly (border padding) at normalised coordinates
    ``coords`` (B, N, 3), (x, y, z) order -> (B, N, C)."""
    grid = grid_sample_order(coords)[:, :, None, None, :]
    sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[:, :, :, 0, 0].transpose(1, 2)


def local_code(index: torch.Tensor) -> torch.Tensor:
    """Offset of continuous LR indices ``index`` from their nearest LR voxel centre, in
    [-0.5, 0.5). The nearest voxel of a query exactly between two (scale 1.5, 2.5, ...) must not
    depend on where a tile starts: round half up (not torch.round's half to even), with a margin
    above float32 round-off of the tile-relative index."""
    return index - torch.floor(index + (0.5 + HALF_MARGIN))


class ImplicitMLP(nn.Module):
    """8 fully connected ReLU layers with the input concatenated to the 4th layer's output
    (the paper's skip from the input to the 4th ReLU, NeRF/ArSSR-style concatenation), then a
    linear projection to ``out_features`` values (no activation, so the output is not clamped).

    (N, in_features) -> (N, out_features)
    """

    def __init__(
        self, in_features: int, width: int = 256, depth: int = 8, skip_at: int = 4, out_features: int = 1
    ) -> None:
        super().__init__()
        if not 0 < skip_at < depth:
            raise ValueError(f"skip_at must be within 1..{depth - 1}, got {skip_at}")
        self.skip_at = skip_at
        sizes = [in_features] + [width] * depth
        sizes_in = [s + (in_features if i == skip_at else 0) for i, s in enumerate(sizes[:-1])]
        self.hidden = nn.ModuleList(nn.Linear(a, width) for a in sizes_in)
        self.head = nn.Linear(width, out_features)
        # He initialisation: torch's default keeps 1/6 of the signal variance per ReLU layer, so
        # 8 layers all but silence the features and training crawls (the paper does not say).
        for layer in self.hidden:
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.hidden):
            if i == self.skip_at:
                h = torch.cat([h, x], dim=-1)
            h = layer(h).relu_()  # in place: the linear's output is needed by nothing else
        return self.head(h)


@register("inr")
class INR(nn.Module):
    """The INR model of CSR-dMRI (``use_t1=True``) and ArSSR (``use_t1=False``).

    Parameters
    ----------
    use_t1 : bool
        Encode [LR DWI, T1w on the LR grid] (2 channels) instead of the DWI alone.
    latent, g0, growth, blocks, layers : int
        RDN encoder sizes (paper: 128, 64, 64, 8, 3).
    width, depth, skip_at : int
        MLP width, number of hidden layers and the layer receiving the input skip (256, 8, 4).
    coord : {"global", "local"}
        Coordinate code given to the MLP (see the module docstring).
    residual : bool
        Predict the correction to tricubic interpolation (beyond the paper).
    """

    def __init__(
        self,
        use_t1: bool = True,
        latent: int = 128,
        g0: int = 64,
        growth: int = 64,
        blocks: int = 8,
        layers: int = 3,
        width: int = 256,
        depth: int = 8,
        skip_at: int = 4,
        coord: str = "global",
        residual: bool = False,
    ) -> None:
        super().__init__()
        if coord not in COORDS:
            raise ValueError(f"coord must be one of {COORDS}, got {coord!r}")
        self.uses_t1 = bool(use_t1)
        self.coord = coord
        self.residual = bool(residual)
        self.encoder = RDN(1 + self.uses_t1, latent, g0, growth, blocks, layers)
        self.decoder = ImplicitMLP(latent + 3, width, depth, skip_at)
        if self.residual:  # start exactly at tricubic and learn the correction from there
            nn.init.zeros_(self.decoder.head.weight)
            nn.init.zeros_(self.decoder.head.bias)

    def encode(self, lr: torch.Tensor, t1: torch.Tensor | None, interior: Interior = None) -> torch.Tensor:
        """Latent map (B, latent, X, Y, Z) of LR patches (B, 1, X, Y, Z) [+ T1w]; on a tile, less
        the encoder's receptive radius on its ``interior`` sides (see :mod:`csrdmri.models.rdn`)."""
        return self.encoder(encoder_input(lr, t1, self.uses_t1), interior)

    def decode(self, features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Intensities (B, N) at normalised coordinates ``coords`` (B, N, 3), (x, y, z) order."""
        sampled = sample_latent(features, coords)
        if self.coord == "global":
            code = coords
        else:
            code = self.code(unnormalized(coords, tuple(features.shape[-3:])), tuple(features.shape[-3:]))
        return self.decode_sampled(sampled, code)

    def code(self, index: torch.Tensor, n: int | tuple[int, ...]) -> torch.Tensor:
        """Coordinate code of continuous LR indices ``index`` (any shape; per axis with a scalar
        ``n``, or (..., 3) with ``n`` the 3 sizes) over a latent map of ``n`` voxels."""
        if self.coord == "global":
            return normalized(index, n)
        return local_code(index)

    def decode_sampled(self, sampled: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Intensities (...,) from latent features (..., latent) sampled at the queries and their
        coordinate codes (..., 3)."""
        return self.decoder(torch.cat([sampled, code.to(sampled.dtype)], dim=-1))[..., 0]

    def decode_grid(
        self, features: torch.Tensor, lr: torch.Tensor, shape: tuple[int, int, int]
    ) -> torch.Tensor:
        """HR prediction (B, 1, *shape) on a grid over the field of view of ``lr``."""
        coords = torch.from_numpy(dst_grid_normalized(shape)).to(lr.device).reshape(1, -1, 3)
        out = self.decode(features, coords.expand(lr.shape[0], -1, -1)).reshape(lr.shape[0], 1, *shape)
        return out + resample_torch(lr, shape) if self.residual else out

    def forward(self, lr: torch.Tensor, t1: torch.Tensor | None, shape: tuple[int, int, int]) -> torch.Tensor:
        """HR prediction (B, 1, *shape) over the field of view of ``lr``."""
        return self.decode_grid(self.encode(lr, t1), lr, shape)
