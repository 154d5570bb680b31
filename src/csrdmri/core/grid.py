"""The project's one coordinate convention between two grids over the same field of view.

Two grids of ``n_src`` and ``n_dst`` voxels along an axis cover the *same* field of view, their
outer voxel edges aligned (cell-centred convention, as ``scipy.ndimage.zoom(grid_mode=True)``
and ``torch.nn.functional.grid_sample(align_corners=False)``). Voxel ``k`` of the destination
grid then sits at the continuous source index::

    i = (k + 0.5) * n_src / n_dst - 0.5

Upsampling (LR source, HR destination), downsampling for training pairs (HR source, LR
destination), feature sampling, output affines and evaluation all use this module; nowhere
else in the project is this arithmetic written.

Conventions
-----------
* Indices are voxel indices along the array axes ``(x, y, z)`` of a NIfTI image (``i, j, k``).
* An affine is the 4×4 NIfTI voxel-to-world matrix (world = RAS+ millimetres).
* Normalised coordinates are those of ``grid_sample(align_corners=False)``: the outer voxel
  *edges* are at -1 and +1, so voxel centre ``i`` of an ``n``-voxel axis is at
  ``(2 i + 1) / n - 1``. ``grid_sample`` wants them in reversed axis order ``(z, y, x)`` for
  an input laid out ``(N, C, X, Y, Z)``; :func:`grid_sample_order` does that flip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nibabel.affines import voxel_sizes

from csrdmri.core.errors import InputError

Shape3 = tuple[int, int, int]


def per_axis(value: float | Sequence[float], name: str) -> tuple[float, float, float]:
    """One positive number or three (per axis) as three floats; ``name`` in the refusal."""
    values = [float(v) for v in np.atleast_1d(value)]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputError(f"{name} needs 1 or 3 values, got {len(values)}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{name} must be positive and finite, got {values}")
    return values[0], values[1], values[2]


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def source_index(n_src: int, n_dst: int) -> np.ndarray:
    """Continuous source index of every destination voxel centre along one axis.

    Parameters
    ----------
    n_src, n_dst : int
        Number of voxels of the source and destination grids (same field of view).

    Returns
    -------
    ndarray, shape (n_dst,), float64
        ``(k + 0.5) * n_src / n_dst - 0.5`` for ``k = 0 .. n_dst - 1``.
    """
    return (np.arange(n_dst, dtype=np.float64) + 0.5) * (n_src / n_dst) - 0.5


def dst_to_src_index_affine(src_shape: Sequence[int], dst_shape: Sequence[int]) -> np.ndarray:
    """4×4 map from destination voxel indices to source voxel indices (same field of view)."""
    ratio = np.asarray(src_shape[:3], dtype=np.float64) / np.asarray(dst_shape[:3], np.float64)
    index_map = np.diag([*ratio, 1.0])
    index_map[:3, 3] = 0.5 * ratio - 0.5
    return index_map


def resampled_affine(
    src_affine: np.ndarray, src_shape: Sequence[int], dst_shape: Sequence[int]
) -> np.ndarray:
    """Voxel-to-world affine of a ``dst_shape`` grid covering the field of view of the source.

    The source affine composed with :func:`dst_to_src_index_affine`: a destination voxel
    centre and the source point it samples are the same world point.
    """
    return np.asarray(src_affine, np.float64) @ dst_to_src_index_affine(src_shape, dst_shape)


def _sizes(n: int | Sequence[int], like):
    """Grid sizes as a scalar, or as an array of the same kind (numpy or torch) as ``like``."""
    if np.isscalar(n):
        return float(n)
    if isinstance(like, np.ndarray) or np.isscalar(like):
        return np.asarray(n, dtype=np.float64)
    import torch  # only reached with torch inputs

    return torch.as_tensor(n, dtype=like.dtype, device=like.device)


def normalized(index, n: int | Sequence[int]):
    """Continuous voxel index → ``grid_sample(align_corners=False)`` coordinate, ``(2i+1)/n-1``.

    ``index`` has shape ``(..., d)`` with ``n`` of length ``d`` (or a scalar ``n`` for any shape).
    Works on numpy arrays and torch tensors alike.
    """
    return (2.0 * index + 1.0) / _sizes(n, index) - 1.0


def unnormalized(coord, n: int | Sequence[int]):
    """Inverse of :func:`normalized`: ``grid_sample`` coordinate → continuous voxel index."""
    return ((coord + 1.0) * _sizes(n, coord) - 1.0) / 2.0


def dst_grid_normalized(dst_shape: Sequence[int]) -> np.ndarray:
    """Normalised coordinates of every voxel centre of a ``dst_shape`` grid.

    Because both grids span the same field of view, these are also the coordinates at which
    the destination samples *any* grid over that field of view (``(2k+1)/n_dst - 1`` per axis).

    Returns
    -------
    ndarray, shape (*dst_shape, 3), float32, last axis ordered (x, y, z).
    """
    axes = [normalized(np.arange(n, dtype=np.float64), n) for n in dst_shape[:3]]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float32)


def grid_sample_order(coords):
    """Flip ``(..., (x, y, z))`` coordinates to ``grid_sample``'s ``(z, y, x)`` order."""
    return coords[..., [2, 1, 0]] if isinstance(coords, np.ndarray) else coords.flip(-1)


def shape_for_scale(shape: Sequence[int], scale: float | Sequence[float]) -> Shape3:
    """Destination shape ``round(n * s)`` per axis (half rounded up) for a scale factor."""
    scales = per_axis(scale, "scale")
    out = tuple(_round_half_up(n * s) for n, s in zip(shape[:3], scales, strict=True))
    if min(out) < 1:
        raise InputError(f"scale {scales} leaves an empty grid for shape {tuple(shape[:3])}")
    return out  # type: ignore[return-value]


def shape_for_voxel_size(
    shape: Sequence[int], zooms: Sequence[float], voxel_size: float | Sequence[float]
) -> Shape3:
    """Destination shape ``round(n * voxel / target)`` per axis for a target voxel size in mm."""
    targets = per_axis(voxel_size, "voxel size")
    scales = [z / t for z, t in zip(zooms[:3], targets, strict=True)]
    return shape_for_scale(shape, scales)


@dataclass(frozen=True)
class TargetGrid:
    """A destination grid over the field of view of a source image.

    Attributes
    ----------
    src_shape, shape : (3,) int
        Source and destination grid shapes.
    affine : (4, 4) float64
        Voxel-to-world affine of the destination grid (RAS+ mm).
    """

    src_shape: Shape3
    shape: Shape3
    affine: np.ndarray

    @classmethod
    def over(
        cls,
        src_shape: Sequence[int],
        src_affine: np.ndarray,
        scale: float | Sequence[float] | None = None,
        voxel_size: float | Sequence[float] | None = None,
    ) -> TargetGrid:
        """Grid over a source image's field of view, by scale factor *or* target voxel size."""
        if (scale is None) == (voxel_size is None):
            raise InputError("give exactly one of a scale factor or a target voxel size")
        src_shape3 = tuple(int(n) for n in src_shape[:3])
        if scale is not None:
            shape = shape_for_scale(src_shape3, scale)
        else:
            shape = shape_for_voxel_size(src_shape3, voxel_sizes(src_affine), voxel_size)
        return cls(src_shape3, shape, resampled_affine(src_affine, src_shape3, shape))  # type: ignore[arg-type]

    @property
    def scales(self) -> tuple[float, float, float]:
        """Exact per-axis scale factors ``n_dst / n_src`` that the rounding produced."""
        return tuple(m / n for m, n in zip(self.shape, self.src_shape, strict=True))  # type: ignore[return-value]

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Exact voxel size of the destination grid in mm (column norms of the affine)."""
        return tuple(float(z) for z in voxel_sizes(self.affine))  # type: ignore[return-value]

    def source_indices(self) -> list[np.ndarray]:
        """Per-axis continuous source indices of the destination voxel centres."""
        return [source_index(n, m) for n, m in zip(self.src_shape, self.shape, strict=True)]
