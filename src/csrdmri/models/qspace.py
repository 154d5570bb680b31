"""The joint q-space model: every direction of a shell in one pass, as SH corrections.

Per shell, the encoder (an RDN) reads the LR S/S0 as real symmetric SH coefficient maps
(:mod:`csrdmri.dmri.sh`, 28 channels, orders above the shell's 0) with constant maps of the
b-value (/1000 s/mm²) and of the SH order (/6) — with ``b0_channel``, also the mean b0 as a
fraction of its brain median (:func:`csrdmri.dmri.preprocess.relative_b0`: where the S0 edges
that cubic interpolation blurs are) — plus the T1w on the LR grid and a map saying whether
there is one (zeros without a T1w: one model for both, trained with T1w dropout); with
``rolloff``, last, three constant maps of how sharp the input is near its Nyquist frequency
along each axis (:func:`csrdmri.core.spectrum.measured_rolloff` of the LR mean b0: how it was
acquired or degraded). The
decoder, an MLP of [latent sampled trilinearly at the query, the query's offset from its
nearest LR voxel (LIIF's local code)], returns 28 SH coefficients Δc of the *correction* of the
cubic interpolation, in S/S0. With ``t1_features > 0`` the decoder also reads features of the
T1w at the output resolution (:mod:`csrdmri.models.anatomy`; zeros without a T1w) at the
query. With ``orientation > 0`` a linear path filters each SH order's LR coefficient maps with
one learned kernel per order and adds the result to the decoder's coefficients of orders ≥ 2
(:mod:`csrdmri.models.orientation`); with ``gated > 0`` the decoder also returns gates that mix
a fixed bank of spatial filters of those maps at each query (:mod:`csrdmri.models.gated`).
The caller writes, for each direction ``g`` of the shell::

    DWI_g↑ = cubic(DWI_g) + cubic(mean b0) · Y(g) · Δc

so a model that predicts nothing returns cubic interpolation exactly (the head starts at 0),
and the encoder and decoder run once per shell, whatever its number of directions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from csrdmri.core.grid import unnormalized
from csrdmri.dmri.sh import MAX_ORDER, n_coefficients
from csrdmri.models import register
from csrdmri.models.anatomy import AnatomyCNN
from csrdmri.models.gated import GatedFilters
from csrdmri.models.inr import ImplicitMLP, local_code, sample_latent
from csrdmri.models.orientation import CHANNELS, OrientationFilter
from csrdmri.models.rdn import RDN, Interior

#: Channels of the conditioning maps after the coefficients: b-value, SH order.
CONDITIONING = 2
#: Channels the model adds itself: the T1w and whether it is present.
T1_CHANNELS = 2
#: Channels of the measured roll-off (one per axis).
ROLLOFF = 3
#: b-values are given to the encoder in units of this (s/mm²).
B_UNIT = 1000.0


def shell_input(
    coefficients: np.ndarray,
    bvalue: float,
    order: int,
    b0: np.ndarray | None = None,
    rolloff: np.ndarray | None = None,
) -> np.ndarray:
    """The encoder's input of one shell: ``coefficients`` (28, X, Y, Z) of the LR S/S0, with the
    b-value and order maps appended -> (30, X, Y, Z) float32; with ``b0`` (X, Y, Z), the relative
    mean b0, for a model with a b0 channel, after them; with ``rolloff`` (3,), the measured
    roll-off of each axis (:func:`csrdmri.core.spectrum.measured_rolloff`) as constant maps, last."""
    shape = coefficients.shape[1:]
    maps = [np.full(shape, bvalue / B_UNIT, np.float32), np.full(shape, order / MAX_ORDER, np.float32)]
    if b0 is not None:
        maps.append(np.asarray(b0, np.float32))
    parts = [coefficients.astype(np.float32, copy=False), np.stack(maps)]
    if rolloff is not None:
        parts.append(rolloff_maps(rolloff, shape))
    return np.concatenate(parts)


def rolloff_maps(rolloff: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The measured roll-off (3,) as constant maps (3, X, Y, Z) float32 (a read-only view)."""
    values = np.asarray(rolloff, np.float32)
    return np.broadcast_to(values[:, None, None, None], (len(values), *shape))


@register("qspace")
class QSpaceINR(nn.Module):
    """RDN encoder over one shell's SH maps (+ T1w) and an MLP decoding SH corrections.

    Parameters
    ----------
    latent, g0, growth, blocks, layers : int
        RDN encoder sizes (see :class:`csrdmri.models.rdn.RDN`).
    width, depth, skip_at : int
        Decoder MLP width, hidden layers and the layer receiving the input skip.
    t1_features : int
        Features of the T1w at the output resolution given to the decoder (0: none, the T1w
        is read on the LR grid only, as in the paper).
    b0_channel : bool
        Whether the encoder also reads the relative mean b0 (:func:`shell_input`).
    orientation : int
        Side (LR voxels) of the linear path's kernels (0: no linear path).
    gated : int
        Filters in the gated path's bank (0: no gated path).
    rolloff : bool
        Whether the encoder also reads the input's measured roll-off (:func:`shell_input`); its
        weights start at 0, so a model grown from one without it starts as that model.
    """

    uses_t1 = False  # a T1w is not required ...
    optional_t1 = True  # ... but used when given
    joint = True  # one pass per shell (csrdmri.inference.joint)
    coord = "local"
    residual = False  # the caller adds the cubic interpolation of each DWI (module docstring)
    # Grown from a model without a part: the gated path's gates add rows to the head, the
    # roll-off maps input channels (columns) to the encoder's first layer.
    growable = ("decoder.head.weight", "decoder.head.bias", "encoder.sfe1.weight")

    def __init__(
        self,
        latent: int = 64,
        g0: int = 32,
        growth: int = 32,
        blocks: int = 4,
        layers: int = 3,
        width: int = 256,
        depth: int = 5,
        skip_at: int = 3,
        t1_features: int = 0,
        b0_channel: bool = False,
        orientation: int = 0,
        gated: int = 0,
        rolloff: bool = False,
    ) -> None:
        super().__init__()
        self.coefficients = n_coefficients(MAX_ORDER)
        self.reads_b0, self.reads_rolloff = b0_channel, rolloff
        inputs = self.coefficients + CONDITIONING + int(b0_channel) + T1_CHANNELS + ROLLOFF * rolloff
        self.encoder = RDN(inputs, latent, g0, growth, blocks, layers)
        if rolloff:
            with torch.no_grad():
                self.encoder.sfe1.weight[:, -ROLLOFF:] = 0.0
        self.anatomy = AnatomyCNN(t1_features) if t1_features else None
        decoded = latent + 3 + t1_features
        self.gated = GatedFilters(gated) if gated else None
        if self.gated is not None and self.gated.radius > self.encoder.receptive_radius:
            raise ValueError(
                f"the gated path's {gated} filters read {self.gated.radius} LR voxels around a query, "
                f"farther than the encoder's receptive radius ({self.encoder.receptive_radius}): use fewer"
            )
        outputs = self.coefficients + (self.gated.gates if self.gated is not None else 0)
        self.decoder = ImplicitMLP(decoded, width, depth, skip_at, out_features=outputs)
        nn.init.zeros_(self.decoder.head.weight)
        nn.init.zeros_(self.decoder.head.bias)
        self.orientation = OrientationFilter(orientation) if orientation else None

    def encode(self, lr: torch.Tensor, t1: torch.Tensor | None, interior: Interior = None) -> torch.Tensor:
        """Latent map (B, latent, X, Y, Z) of :func:`shell_input` maps (B, 30 to 34, X, Y, Z) and the
        T1w (B, 1, X, Y, Z) or None; on a tile, less the receptive radius on ``interior`` sides.
        With the linear path, its 27 channels follow the latent ones; with the gated path, its
        filtered maps come last."""
        present = torch.ones_like(lr[:, :1]) if t1 is not None else torch.zeros_like(lr[:, :1])
        anatomy = t1 if t1 is not None else torch.zeros_like(lr[:, :1])
        split = lr.shape[1] - (ROLLOFF if self.reads_rolloff else 0)  # the roll-off last: see ``growable``
        stack = [lr[:, :split], anatomy.to(lr.dtype), present, lr[:, split:]]
        parts = [self.encoder(torch.cat(stack, dim=1), interior)]
        radius, coefficients = self.encoder.receptive_radius, lr[:, : self.coefficients]
        if self.orientation is not None:
            parts.append(self.orientation(coefficients, radius, interior))
        if self.gated is not None:
            parts.append(self.gated.maps(coefficients, radius, interior))
        return torch.cat([p.to(parts[0].dtype) for p in parts], dim=1) if len(parts) > 1 else parts[0]

    def code(self, index: torch.Tensor, n: int | tuple[int, ...]) -> torch.Tensor:
        """Offset of continuous LR indices from their nearest LR voxel (``n`` is not needed)."""
        return local_code(index)

    @property
    def native_t1(self) -> bool:
        """Whether the decoder reads the T1w at the output resolution."""
        return self.anatomy is not None

    def decode_sampled(
        self, sampled: torch.Tensor, code: torch.Tensor, anatomy: torch.Tensor | None = None
    ) -> torch.Tensor:
        """SH corrections (..., 28) from latent features (..., latent, + 27 with the linear
        path, + the filtered maps with the gated one) at the queries, their codes (..., 3) and,
        with :attr:`native_t1`, the T1w features there (..., t1_features; None: no T1w, zeros)."""
        linear = filtered = None
        if self.gated is not None:
            sampled, filtered = sampled[..., : -self.gated.channels], sampled[..., -self.gated.channels :]
        if self.orientation is not None:
            sampled, linear = sampled[..., :-CHANNELS], sampled[..., -CHANNELS:]
        parts = [sampled, code.to(sampled.dtype)]
        if self.anatomy is not None:
            if anatomy is None:
                anatomy = sampled.new_zeros((*sampled.shape[:-1], self.anatomy.features))
            parts.append(anatomy.to(sampled.dtype))
        corrections = self.decoder(torch.cat(parts, dim=-1))
        if filtered is not None:
            corrections, gates = corrections[..., : self.coefficients], corrections[..., self.coefficients :]
            linear = self.gated(filtered.to(gates.dtype), gates) + (0 if linear is None else linear)
        if linear is None:
            return corrections
        return corrections + torch.cat(
            [torch.zeros_like(linear[..., :1]), linear.to(corrections.dtype)], dim=-1
        )

    def decode(
        self, features: torch.Tensor, coords: torch.Tensor, anatomy: torch.Tensor | None = None
    ) -> torch.Tensor:
        """SH corrections (B, N, 28) at normalised coordinates ``coords`` (B, N, 3), (x, y, z),
        with the T1w features (B, N, t1_features) there or None (see :meth:`decode_sampled`)."""
        shape = tuple(features.shape[-3:])
        return self.decode_sampled(
            sample_latent(features, coords), self.code(unnormalized(coords, shape), shape), anatomy
        )
