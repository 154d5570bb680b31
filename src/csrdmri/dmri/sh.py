"""One shell's signal as real symmetric spherical harmonics (DIPY's ``descoteaux07`` basis).

Per voxel, the K directions of a shell are fitted by the SH series of even order ``order``
(2 for 6–14 directions, 4 for 15–27, 6 for 28 and more) with DIPY's Laplace–Beltrami
regularisation (``smooth``); ``sh_to_sf_matrix`` gives both the fit and the synthesis matrix.
Coefficients are stored padded to :data:`MAX_ORDER` (28 values), higher orders 0, so one
model serves every order. Directions are unit vectors in the b-table's frame (voxel axes for
FSL b-vectors); the basis is antipodally symmetric, so ``g`` and ``-g`` are the same.
"""

from __future__ import annotations

import functools

import numpy as np
from dipy.core.sphere import HemiSphere, Sphere, disperse_charges
from dipy.reconst.shm import sh_to_sf_matrix

from csrdmri.core.errors import InputError

#: Highest SH order modelled (28 coefficients).
MAX_ORDER = 6
#: Fewest directions a shell needs to be modelled (an order-2 fit has 6 coefficients).
MIN_DIRECTIONS = 6
#: Laplace–Beltrami regularisation weight of the fit (DIPY's ``smooth``).
SMOOTH = 0.006
BASIS = "descoteaux07"


def n_coefficients(order: int) -> int:
    """Number of real symmetric SH coefficients up to even ``order``: (order+1)(order+2)/2."""
    return (order + 1) * (order + 2) // 2


def order_for(n_directions: int) -> int:
    """The SH order a shell of ``n_directions`` directions is fitted with (2, 4 or 6)."""
    if n_directions < MIN_DIRECTIONS:
        raise InputError(
            f"a shell needs at least {MIN_DIRECTIONS} directions for an SH fit, got {n_directions}"
        )
    return 2 if n_directions < 15 else 4 if n_directions < 28 else MAX_ORDER


def sh_matrices(directions: np.ndarray, order: int, smooth: float = SMOOTH) -> tuple[np.ndarray, np.ndarray]:
    """Fit and synthesis matrices of ``directions`` (K, 3) at ``order``, padded to MAX_ORDER.

    Returns
    -------
    fit : ndarray, shape (K, 28), float64
        ``signal (..., K) @ fit`` gives the coefficients (..., 28), orders above ``order`` 0;
        equal to DIPY's ``sf_to_sh(signal, Sphere(xyz=directions), order, smooth=smooth)``.
    basis : ndarray, shape (K, 28), float64
        ``coefficients (..., 28) @ basis.T`` gives the signal on ``directions``.
    """
    sphere = Sphere(xyz=np.asarray(directions, dtype=np.float64))
    synthesis, fit = sh_to_sf_matrix(
        sphere, sh_order_max=order, basis_type=BASIS, legacy=False, return_inv=True, smooth=smooth
    )
    n = n_coefficients(MAX_ORDER)
    padded_fit = np.zeros((len(directions), n))
    padded_basis = np.zeros((len(directions), n))
    padded_fit[:, : fit.shape[1]] = fit
    padded_basis[:, : synthesis.shape[0]] = synthesis.T
    return padded_fit, padded_basis


def unit_directions(bvecs: np.ndarray) -> np.ndarray:
    """``bvecs`` (K, 3) scaled to unit length; a zero vector is an InputError."""
    norms = np.linalg.norm(bvecs, axis=1, keepdims=True)
    if np.any(norms < 1e-6):
        raise InputError("a diffusion-weighted volume has a zero b-vector; its direction is unknown")
    return bvecs / norms


@functools.cache
def sphere_directions(n: int) -> np.ndarray:
    """``n`` unit directions spread over the hemisphere by electrostatic repulsion (DIPY),
    shape (n, 3); the same for the same ``n``."""
    if n < MIN_DIRECTIONS:
        raise InputError(f"at least {MIN_DIRECTIONS} directions are needed, got {n}")
    start = np.random.default_rng(n).normal(size=(n, 3))
    hemi, _ = disperse_charges(HemiSphere(xyz=start / np.linalg.norm(start, axis=1, keepdims=True)), 300)
    return hemi.vertices
