"""Diffusion signal of the phantom: DIPY tensor compartments, Rician noise, an HCP-like scheme.

Per brain voxel (b-vectors and fibre frames in voxel-axis coordinates, as FSL b-vectors of an
LAS image):

    S = B · [ f_wm S0_wm ((1 - f2) E(D_1) + f2 E(D_2))
              + f_gm S0_gm e^{-b MD_gm} + f_csf S0_csf e^{-b MD_csf} ]

with ``E(D) = exp(-b gᵀ D g)`` from DIPY's ``tensor_prediction`` for the cylindrically symmetric
WM tensors ``D_k`` (axial diffusivity along frame column ``k``), ``B`` a smooth bias field, and
(with ``gm_anisotropy`` above 1) the GM term a cylindrical tensor of mean ``MD_gm`` along the
cortical normal instead of ``e^{-b MD_gm}``, and
WM and GM diffusivities multiplied by a fine heterogeneity field (CSF is free water).
Magnitude data get Rician noise of sigma = S0_wm / SNR (DIPY's SNR definition); outside the
head region (the brain dilated by ``HEAD_MARGIN_MM``) the image is 0.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from dipy.core.gradients import GradientTable, gradient_table
from dipy.core.sphere import HemiSphere, disperse_charges
from dipy.reconst.dti import tensor_prediction
from scipy import ndimage, special
from scipy.spatial.transform import Rotation

from csrdmri.phantom.anatomy import Anatomy
from csrdmri.phantom.params import PhantomParams

#: Noise is added within this distance of the brain (skull and scalp carry noise, air is 0).
HEAD_MARGIN_MM = 10.0
#: Voxels per chunk of signal simulation (bounds memory at about chunk × volumes × 16 bytes).
CHUNK = 65536


@functools.lru_cache(maxsize=8)
def gradient_scheme(n_dirs: int, n_b0: int, bvalue: float | tuple[float, ...]) -> GradientTable:
    """``n_dirs`` directions spread by electrostatic repulsion (DIPY) per shell (``bvalue``: one
    or several b-values; each further shell's set rotated), shells in turn, with ``n_b0`` b0s
    interleaved evenly (the first volume is a b0). The same for every subject, like a protocol."""
    shells = tuple(bvalue) if isinstance(bvalue, tuple) else (float(bvalue),)
    rng = np.random.default_rng(20240101 + n_dirs)
    start = rng.normal(size=(n_dirs, 3))
    hemi, _ = disperse_charges(HemiSphere(xyz=start / np.linalg.norm(start, axis=1, keepdims=True)), 1000)
    sets = [hemi.vertices] + [
        Rotation.random(random_state=k).apply(hemi.vertices) for k in range(1, len(shells))
    ]
    n = n_dirs * len(shells) + n_b0
    b0_at = np.unique(np.round(np.linspace(0, n - 1, n_b0 + 1)[:-1]).astype(int))
    weighted = np.setdiff1d(np.arange(n), b0_at)
    bvals = np.zeros(n)
    bvecs = np.zeros((n, 3))
    bvals[weighted] = np.repeat(np.asarray(shells, dtype=np.float64), n_dirs)
    bvecs[weighted] = np.concatenate(sets)
    return gradient_table(bvals, bvecs=bvecs)


def head_region(mask: np.ndarray, voxel_size: float) -> np.ndarray:
    """The brain mask dilated by ``HEAD_MARGIN_MM``."""
    radius = max(1, round(HEAD_MARGIN_MM / voxel_size))
    ball = ndimage.generate_binary_structure(3, 1)
    return ndimage.binary_dilation(mask, ball, iterations=radius)


def _tensor_signal(
    frame: np.ndarray, axis: int, evals: tuple[float, float], dscale: np.ndarray, gtab: GradientTable
) -> np.ndarray:
    """Normalised signal (N, V) of cylindrical tensors along ``frame[:, :, axis]`` with axial and
    radial diffusivities ``evals`` (mm²/s) scaled per voxel by ``dscale`` (N,)."""
    order = [axis, *[c for c in range(3) if c != axis]]
    evecs = frame[:, :, order]
    evals = np.asarray([evals[0], evals[1], evals[1]])[None, :] * dscale[:, None]
    dti_params = np.concatenate([evals, evecs.reshape(len(frame), 9)], axis=1)
    return tensor_prediction(dti_params, gtab, 1.0)


def gm_diffusivities(params: PhantomParams) -> tuple[float, float]:
    """Axial and radial diffusivities (mm²/s) of the grey-matter tensor: mean ``gm_md``, ratio
    ``gm_anisotropy``."""
    radial = 3 * params.gm_md / (params.gm_anisotropy + 2)
    return params.gm_anisotropy * radial, radial


def axis_frames(axis: np.ndarray) -> np.ndarray:
    """Orthonormal frames (N, 3, 3) whose first column is the unit vector ``axis`` (N, 3)."""
    helper = np.where(np.abs(axis[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    second = np.cross(axis, helper)
    second /= np.linalg.norm(second, axis=1, keepdims=True)
    return np.stack([axis, second, np.cross(axis, second)], axis=-1)


def brain_signal(
    tissue: dict[str, np.ndarray], params: PhantomParams, gtab: GradientTable, rows: slice
) -> np.ndarray:
    """Noise-free signal of brain voxels ``rows``, shape (n, V), float64.

    ``tissue`` holds per-brain-voxel arrays: fractions ``wm``, ``gm``, ``csf``, ``bias``, the
    WM/GM diffusivity scale ``dscale`` (tissue heterogeneity; free water has none), the fibre
    ``frame`` (N, 3, 3), the second-population share ``f2`` and, with ``params.gm_anisotropy``
    above 1, the grey-matter tensor's axis ``gm_axis`` (N, 3).
    """
    keys = ("wm", "gm", "csf", "bias", "dscale", "frame", "f2")
    wm, gm, csf, b, ds, frame, f2 = (tissue[k][rows] for k in keys)
    s0_wm, wm_evals = params.s0_wm, (params.wm_axial, params.wm_radial)
    out = (wm * s0_wm * (1.0 - f2))[:, None] * _tensor_signal(frame, 0, wm_evals, ds, gtab)
    crossing = f2 > 0
    if crossing.any():
        second = _tensor_signal(frame[crossing], 1, wm_evals, ds[crossing], gtab)
        out[crossing] += (wm * s0_wm * f2)[crossing, None] * second
    bvals = gtab.bvals[None, :]
    if params.gm_anisotropy != 1:
        grey = _tensor_signal(axis_frames(tissue["gm_axis"][rows]), 0, gm_diffusivities(params), ds, gtab)
    else:
        grey = np.exp(-bvals * ds[:, None] * params.gm_md)
    out += (gm * s0_wm * params.s0_gm_ratio)[:, None] * grey
    out += (csf * s0_wm * params.s0_csf_ratio)[:, None] * np.exp(-bvals * params.csf_md)  # free water
    return out * b[:, None]


def rician(signal: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Magnitude of ``signal`` plus complex Gaussian noise of s.d. ``sigma`` per channel."""
    noise = torch.randn((2, *signal.shape), generator=generator, dtype=torch.float32) * sigma
    return torch.sqrt((signal + noise[0]) ** 2 + noise[1] ** 2)


@functools.cache
def _rician_table() -> tuple[np.ndarray, np.ndarray]:
    """``E|ν + n|`` for σ = 1 at ``ν`` = 0 … 8 in steps of 1/512 (:func:`rician_mean`'s formula)."""
    nu = np.linspace(0.0, 8.0, 4097)
    t = nu**2 / 2
    return nu, np.sqrt(np.pi / 2) * ((1 + t) * special.i0e(t / 2) + t * special.i1e(t / 2))


def rician_mean(signal: np.ndarray, sigma: float) -> np.ndarray:
    """The expected magnitude ``E|signal + n|`` under the noise of :func:`rician` (s.d.
    ``sigma`` per channel): ``σ √(π/2) L_{1/2}(−ν²/2σ²)``, with the Laguerre polynomial written
    through exponentially scaled Bessel functions. Equals ``σ √(π/2)`` at ``ν = 0`` and tends
    to ``ν`` when ``ν ≫ σ`` (the Rician floor in between); same shape and dtype as ``signal``.
    Read from a table up to ``|ν| = 8σ`` and ``√(ν² + σ²)`` beyond (both within 5·10⁻⁴ σ)."""
    ratio = np.abs(np.asarray(signal, np.float64)) / sigma
    nu, mean = _rician_table()
    position = np.minimum(ratio, nu[-1]) * ((len(nu) - 1) / nu[-1])  # the table's step is uniform
    below = np.minimum(position.astype(np.int64), len(nu) - 2)
    share = position - below
    table = (1 - share) * mean[below] + share * mean[below + 1]
    out = np.where(ratio <= nu[-1], table, np.sqrt(ratio**2 + 1.0))
    return (sigma * out).astype(np.asarray(signal).dtype)


def simulate_dwi(
    tissue: dict[str, np.ndarray],
    mask: np.ndarray,
    params: PhantomParams,
    generator: torch.Generator,
    noise: bool = True,
) -> np.ndarray:
    """The 4D DWI series, shape (X, Y, Z, V), int16 (rounded; scanner-like integer units).

    ``tissue``: per brain voxel arrays of :func:`brain_signal` for the voxels of ``mask``
    (X, Y, Z) in C order. ``noise=False`` gives the noise-free signal (the generator is not
    used), against which resolution can be scored apart from denoising.
    """
    gtab = gradient_scheme(params.n_dirs, params.n_b0, params.bvalue)
    n_vol = len(gtab.bvals)
    head = head_region(mask, params.voxel_size)
    in_brain = mask[head]  # brain voxels among head voxels, in the same (C) order
    brain_rows = np.cumsum(in_brain) - 1
    head_flat = np.flatnonzero(head)
    out = np.zeros((head.size, n_vol), dtype=np.int16)
    sigma = params.s0_wm / params.snr
    for start in range(0, len(head_flat), CHUNK):
        sel = slice(start, start + CHUNK)
        chunk = np.zeros((len(head_flat[sel]), n_vol), dtype=np.float32)
        brain = in_brain[sel]
        if brain.any():
            rows = brain_rows[sel][brain]
            chunk[brain] = brain_signal(tissue, params, gtab, slice(rows[0], rows[-1] + 1))
        noisy = rician(torch.from_numpy(chunk), sigma, generator) if noise else torch.from_numpy(chunk)
        out[head_flat[sel]] = torch.round(noisy).clamp_(max=np.iinfo(np.int16).max).numpy().astype(np.int16)
    return out.reshape((*mask.shape, n_vol))


def simulate_t1(
    anatomy: Anatomy, bias: np.ndarray, params: PhantomParams, generator: torch.Generator
) -> np.ndarray:
    """T1w: template intensity scaled to 1000 in WM, bias field, Rician noise; int16."""
    wm_level = float(np.median(anatomy.t1[anatomy.wm > 0.9])) if (anatomy.wm > 0.9).any() else 1.0
    signal = anatomy.t1 * (1000.0 / wm_level) * bias
    head = head_region(anatomy.mask, params.voxel_size)
    noisy = rician(torch.from_numpy(signal[head].astype(np.float32)), 1000.0 / params.t1_snr, generator)
    out = np.zeros(anatomy.t1.shape, dtype=np.int16)
    out[head] = torch.round(noisy).clamp_(max=np.iinfo(np.int16).max).numpy().astype(np.int16)
    return out
