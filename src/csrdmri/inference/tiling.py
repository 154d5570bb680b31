"""Whole-volume INR inference in bounded memory.

**Tiles.** The encoder runs on LR tiles: a core plus a halo of ``halo`` voxels on every side
(clipped at the volume's edges, where the untiled encoder's zero padding applies anyway). The
cores split the bounding box of the LR voxels the selected HR voxels need, so nothing outside the
(dilated) brain is encoded except the halo; of the splits whose tiles hold at most ``tile``³
voxels, halo included, the one encoding the fewest voxels in all is taken (every tile re-encodes
its halo, so fewer and larger tiles are faster). Each HR voxel belongs to the tile whose core
holds its nearest LR voxel. With a halo of the encoder's receptive radius + 1 (the trilinear
sample reaches one voxel past the core), every feature a query uses is exactly the untiled one,
so tiled and untiled results agree to float tolerance. Peak memory depends on ``tile`` and
``chunk``, not on the volume's size.

**Decoding.** The HR voxels of a tile lie on a regular grid, so the trilinear interpolation of the
latent map is separable: for a slab of HR planes the latent map is interpolated along x, then
along y, then along z at the selected voxels only. This computes what ``grid_sample``
(``align_corners=False``, ``padding_mode="border"``) computes per query, without its 8-corner
gather per query (see docs/benchmarks.md). The features and coordinate codes of about ``chunk``
selected voxels at a time then go through the MLP.

Coordinates follow :mod:`csrdmri.core.grid`: HR voxel ``j`` of ``M`` over ``N`` LR voxels sits at
continuous LR index ``(j + 0.5)·N/M − 0.5``.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import functools
import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from csrdmri.core.errors import InputError
from csrdmri.core.grid import source_index
from csrdmri.core.patches import padded_crop
from csrdmri.core.resample import resample
from csrdmri.inference.precision import autocast, resolve_precision

#: Default largest tile side (LR voxels, halo included): a tile holds at most 130³ voxels; with the
#: shipped models ``csrdmri upsample`` then peaks at ~1.7–2.3 GB besides its input (docs/benchmarks.md).
TILE = 130
#: Default number of queries decoded at once (smaller chunks stay in cache: faster than 65 536).
CHUNK = 16384
#: A slab of HR planes holds at most this many chunks' worth of partly interpolated features.
SLAB_CHUNKS = 4

Box = tuple[slice, slice, slice]


def as_input(volume: np.ndarray | None, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """A 3D array (X, Y, Z) or channels (C, X, Y, Z) as a model input (1, 1 or C, X, Y, Z),
    float32 on ``device``; None stays None."""
    if volume is None:
        return None
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))
    return (tensor[None, None] if volume.ndim == 3 else tensor[None]).to(device)


def encoder_halo(model: torch.nn.Module) -> int:
    """LR voxels of context a tile needs so that its core's queries see untiled features."""
    return model.encoder.receptive_radius + 1


def _channels_last(volume: torch.Tensor) -> torch.Tensor:
    return volume.to(memory_format=torch.channels_last_3d)


def _split(lo: int, hi: int, parts: int) -> list[slice]:
    """``[lo, hi)`` in ``parts`` near-equal consecutive slices."""
    bounds = np.linspace(lo, hi, parts + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def plan_tiles(
    owners: Sequence[np.ndarray],
    where: np.ndarray | None,
    shape: Sequence[int],
    tile: int,
    halo: int,
    side: int | None = None,
) -> list[Box]:
    """Tile cores (LR slices) covering the LR voxels that own a selected HR voxel.

    Parameters
    ----------
    owners : 3 arrays of int
        Per axis, the LR voxel nearest to each HR voxel.
    where : ndarray of bool, shape of the HR grid, or None
        The HR voxels to decode (None: all).
    shape : 3 ints
        The LR grid.
    tile, halo : int
        Tiles (core + halo on each side, clipped to the grid) hold at most ``tile``³ voxels.
    side : int, optional
        Largest core side (models whose coordinates are relative to a patch of this size).

    Returns
    -------
    The cores, splitting the owners' bounding box per axis into near-equal parts: of the splits
    within the limits, the one with the fewest tile voxels in all, then the fewest tiles.

    Raises
    ------
    InputError
        If ``tile`` leaves no room for a core beside the halo (``tile <= 2·halo``).
    """
    if tile <= 2 * halo:
        raise InputError(
            f"the tile side must exceed twice the model's halo of {halo} voxels, got {tile}", "tile"
        )
    spans = []
    for axis, owner in enumerate(owners):
        if where is None:
            spans.append((0, int(shape[axis])))
            continue
        used = np.flatnonzero(where.any(axis=tuple(a for a in range(3) if a != axis)))
        if used.size == 0:
            return []
        spans.append((int(owner[used[0]]), int(owner[used[-1]]) + 1))
    choices = []
    for lo, hi in spans:
        fewest = -(-(hi - lo) // side) if side else 1
        most = max(fewest, -(-(hi - lo) // (tile - 2 * halo)))
        choices.append(range(fewest, most + 1))

    def extents(parts: tuple[int, ...]) -> list[list[int]]:
        return [
            [min(c.stop + halo, n) - max(c.start - halo, 0) for c in _split(lo, hi, k)]
            for (lo, hi), n, k in zip(spans, shape, parts, strict=True)
        ]

    def cost(parts: tuple[int, ...]) -> tuple[bool, int, int]:
        sizes = extents(parts)
        too_large = np.prod([max(e) for e in sizes]) > tile**3
        return bool(too_large), int(np.prod([sum(e) for e in sizes])), int(np.prod(parts))

    best = min(itertools.product(*choices), key=cost)
    return list(itertools.product(*(_split(lo, hi, k) for (lo, hi), k in zip(spans, best, strict=True))))


def _taps(position: np.ndarray, n: int, device: torch.device, dtype: torch.dtype):
    """Linear interpolation at continuous indices ``position`` of ``n`` samples, clamped to the
    border (``grid_sample``'s ``padding_mode="border"``): lower and upper sample, upper's weight."""
    p = np.clip(position, 0, n - 1)
    lower = np.minimum(np.floor(p), max(n - 2, 0)).astype(np.int64)
    upper = np.minimum(lower + 1, n - 1)
    weight = torch.from_numpy(p - lower).to(device=device, dtype=dtype)
    return torch.from_numpy(lower).to(device), torch.from_numpy(upper).to(device), weight


def _slabs(counts: np.ndarray, plane: int, chunk: int) -> list[slice]:
    """Consecutive HR planes grouped so that a slab holds about ``chunk`` selected voxels and at
    most ``SLAB_CHUNKS · chunk`` partly interpolated ones (``plane`` per HR plane)."""
    slabs, start, total = [], 0, 0
    for j, count in enumerate(counts):
        if j > start and (total + count > chunk or (j - start + 1) * plane > SLAB_CHUNKS * chunk):
            slabs.append(slice(start, j))
            start, total = j, 0
        total += count
    slabs.append(slice(start, len(counts)))
    return [s for s in slabs if counts[s].any()]


def decode_tile(
    model: torch.nn.Module,
    features: torch.Tensor,
    positions: Sequence[np.ndarray],
    selected: np.ndarray,
    chunk: int = CHUNK,
    precision: str = "fp32",
    native: torch.Tensor | None = None,
) -> np.ndarray:
    """The model's prediction at the selected voxels of a regular grid of queries.

    Parameters
    ----------
    features : Tensor, shape (1, latent, X, Y, Z)
        A tile's latent map.
    positions : 3 arrays, shapes (M_x,), (M_y,), (M_z,)
        Continuous LR indices (within the tile) of the query grid's planes along each axis.
    selected : ndarray of bool, shape (M_x, M_y, M_z)
        The queries to decode.
    native : Tensor, shape (1, 1, M_x + 2r, M_y + 2r, M_z + 2r), optional
        For a model reading the T1w at the output resolution (``model.native_t1``), the T1w on
        the query grid padded by ``r = model.anatomy.radius`` voxels on every side.

    Returns
    -------
    ndarray, shape (selected.sum(),) or (selected.sum(), C) for a model decoding C values per
    query, float32, in the C order of ``np.nonzero(selected)``; the same as ``model.decode`` at
    those queries' normalised coordinates, to float round-off.
    """
    device = features.device
    latent = features[0].permute(1, 2, 3, 0).contiguous()  # (X, Y, Z, C); free if channels-last
    grid = latent.shape[:3]
    (lox, hix, wx), (loy, hiy, wy), (loz, hiz, wz) = (
        _taps(p, n, device, latent.dtype) for p, n in zip(positions, grid, strict=True)
    )
    codes = [
        model.code(torch.from_numpy(p).to(device), n).float() for p, n in zip(positions, grid, strict=True)
    ]
    values = []
    for slab in _slabs(selected.sum(axis=(1, 2)), selected.shape[1] * grid[2], chunk):
        jj, yy, zz = (torch.from_numpy(a).to(device) for a in np.nonzero(selected[slab]))
        y0, y1 = int(yy.min()), int(yy.max()) + 1
        planes = torch.lerp(latent[lox[slab]], latent[hix[slab]], wx[slab, None, None, None])  # (k, Y, Z, C)
        rows = torch.lerp(planes[:, loy[y0:y1]], planes[:, hiy[y0:y1]], wy[y0:y1, None, None])  # (k, y, Z, C)
        yy = yy - y0
        sampled = torch.lerp(rows[jj, yy, loz[zz]], rows[jj, yy, hiz[zz]], wz[zz, None])  # (n, C)
        code = torch.stack([codes[0][slab][jj], codes[1][yy + y0], codes[2][zz]], dim=-1)
        anatomy = None
        if native is not None:
            r2, z0, z1 = 2 * model.anatomy.radius, int(zz.min()), int(zz.max()) + 1
            with autocast(device, precision):  # over the slab's rectangle of selected voxels only
                maps = model.anatomy(native[..., slab.start : slab.stop + r2, y0 : y1 + r2, z0 : z1 + r2])[0]
            anatomy = maps.permute(1, 2, 3, 0)[jj, yy, zz - z0]  # (n, F)
        for start in range(0, len(sampled), chunk):
            part_of = slice(start, start + chunk)
            extra = () if anatomy is None else (anatomy[part_of],)
            with autocast(device, precision):
                part = model.decode_sampled(sampled[part_of], code[part_of], *extra)
            values.append(part.float().cpu().numpy())
    return np.concatenate(values)


@torch.no_grad()
def predict_tiles(
    model: torch.nn.Module,
    lr: np.ndarray,
    t1: np.ndarray | None,
    shape: Sequence[int],
    where: np.ndarray | None = None,
    tile: int = TILE,
    halo: int | None = None,
    chunk: int = CHUNK,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    side: int | None = None,
    native: np.ndarray | None = None,
) -> Iterator[tuple[Box, np.ndarray, np.ndarray]]:
    """An INR model's prediction over a volume's HR grid, tile by tile.

    Parameters
    ----------
    model : INR
        A model with ``encode``, ``code``, ``decode_sampled`` and ``residual`` (see
        :mod:`csrdmri.models.inr`).
    lr : ndarray, shape (X, Y, Z) or (C, X, Y, Z), float32
        The LR volume (S/S0) or the channels the model encodes (the q-space model's shell
        maps), and ``t1`` the normalised T1w on the same grid (or None).
    shape : 3 ints
        The HR grid over the same field of view.
    where : ndarray of bool, shape ``shape``, optional
        The HR voxels to predict (default: all).
    tile, halo, side : int
        Largest tile side (LR voxels, halo included: a tile holds at most ``tile``³ voxels), the
        halo (default: :func:`encoder_halo`) and the largest core side (default: no limit).
    chunk : int
        The number of queries decoded at once.
    device, precision :
        Torch device, and ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA) autocast, or ``"auto"``
        (:func:`resolve_precision`).
    native : ndarray, shape ``shape``, float32, optional
        The normalised T1w on the HR grid, for a model that reads it there (``native_t1``);
        each block sees it padded with zeros beyond the volume, as a whole volume would.

    Yields
    ------
    box : 3 slices
        A block of the HR grid (the HR voxels whose nearest LR voxel lies in a tile's core).
    selected : ndarray of bool, the block's shape
        The block's voxels in ``where``.
    values : ndarray, shape (selected.sum(),) or (selected.sum(), C), float32
        The prediction at those voxels (a residual model's correction added to the tricubic
        upsampling of ``lr``), in the C order of ``np.nonzero(selected)``. Every voxel of
        ``where`` is in exactly one block.
    """
    device = torch.device(device)
    precision = resolve_precision(precision, model, device)
    halo = encoder_halo(model) if halo is None else halo
    exact = halo == encoder_halo(model)
    trimmed = halo - 1 if exact else 0  # voxels the encoder drops on each interior side
    src = lr.shape[-3:]
    positions = [source_index(n, m) for n, m in zip(src, shape, strict=True)]
    owners = [np.floor(p + 0.5).astype(np.int64) for p in positions]
    # Channels-last 3D convolutions: ~1.3x faster encoding on the CPU (oneDNN), and the latent
    # map's rows (one voxel's features) contiguous for the interpolation. On a copy: the
    # caller's model keeps its device, layout and mode.
    model = copy.deepcopy(model).eval().to(device, memory_format=torch.channels_last_3d)
    for core in plan_tiles(owners, where, src, tile, halo, side):
        # HR voxels whose nearest LR voxel lies in this core (a contiguous block per axis).
        hr = tuple(
            slice(int(np.searchsorted(o, c.start)), int(np.searchsorted(o, c.stop)))
            for o, c in zip(owners, core, strict=True)
        )
        selected = np.ones([s.stop - s.start for s in hr], bool) if where is None else where[hr]
        if not selected.any():
            continue
        lo = [max(c.start - halo, 0) for c in core]
        hi = [min(c.stop + halo, n) for c, n in zip(core, src, strict=True)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        # With the exact halo, layers skip what only the halo needs: the latent map covers the
        # tile less the receptive radius on the sides inside the volume.
        interior = tuple((a > 0, b < n) for a, b, n in zip(lo, hi, src, strict=True)) if exact else None
        with autocast(device, precision):
            inputs = [
                None if v is None else _channels_last(as_input(v[(..., *box)], device)) for v in (lr, t1)
            ]
            features = model.encode(*inputs, interior)
        start = [a + trimmed if a > 0 else a for a in lo]  # the latent map's first voxel
        local = [positions[a][hr[a]] - start[a] for a in range(3)]  # continuous LR index in the latent map
        t1_block = None
        if native is not None and getattr(model, "native_t1", False):
            r = model.anatomy.radius
            size = [h.stop - h.start + 2 * r for h in hr]
            t1_block = as_input(padded_crop(native, [h.start - r for h in hr], size), device)
        values = decode_tile(model, features, local, selected, chunk, precision, t1_block)
        if model.residual:
            values += resample(lr, shape, box=hr)[selected]
        del inputs, features
        release_memory()
        yield hr, selected, values


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up on first use; None with other C libraries (musl,
    macOS, Windows)."""
    libc = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None


def release_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Tiles of different shapes leave the heap fragmented, and glibc keeps freed pages: without
    this, peak memory grew with the number of tiles, i.e. with the volume (docs/benchmarks.md).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def decode_volume(
    model: torch.nn.Module,
    lr: np.ndarray,
    t1: np.ndarray | None,
    out: np.ndarray,
    where: np.ndarray | None = None,
    **options,
) -> None:
    """:func:`predict_tiles` written into ``out`` (the HR grid, shape (X', Y', Z')) where ``where``
    (everywhere if None); ``options`` are those of :func:`predict_tiles`."""
    for box, selected, values in predict_tiles(model, lr, t1, out.shape, where, **options):
        out[box][selected] = values
