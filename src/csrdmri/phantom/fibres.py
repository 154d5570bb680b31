"""Fibre orientations from the local structure of the white-matter map.

WM tracts are tubes and sheets in the WM probability map: its gradients point *across* them. The
structure tensor ``J = G_ρ * (∇w ∇wᵀ)`` therefore has its smallest eigenvector along the tract.
Where the two smallest eigenvalues are close (sheet-like or featureless WM) the in-plane
direction is ambiguous; there a second population along the middle eigenvector is added.
Optionally the frames are turned by a smooth random rotation field (brains bend and fan at the
scale of a voxel; the structure tensor's orientations are smoother), and the grey matter gets
an axis: the cortical normal, the direction of fastest change of ``wm − csf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

#: Gaussian scales in voxels: derivative (noise) and integration (neighbourhood) of J.
GRADIENT_SIGMA = 1.0
INTEGRATION_SIGMA = 2.5
#: λ_min / λ_mid above which the orientation is called ambiguous (crossing allowed).
AMBIGUITY = 0.5
#: Share of the WM fraction given to the second population in an ambiguous voxel.
SECOND_FRACTION = 0.4


@dataclass
class Fibres:
    """Fibre populations of the voxels of a mask (``N`` = number of mask voxels).

    Attributes
    ----------
    frame : ndarray, shape (N, 3, 3), float32
        Orthonormal frames in voxel-axis coordinates, eigenvectors of the structure tensor in
        columns, ascending eigenvalue: column 0 is the main fibre direction, column 1 the second.
    f2 : ndarray, shape (N,), float32
        Share of the WM fraction in the second population (0 where unambiguous or crossings are
        off); the main population has ``1 - f2``.
    coherent : ndarray, shape (N,), bool
        Voxels with one well-defined orientation.
    """

    frame: np.ndarray
    f2: np.ndarray
    coherent: np.ndarray


def structure_tensor(wm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Structure tensor of a 3D map at the voxels of ``mask``, shape (N, 3, 3), float32."""
    grads = [
        ndimage.gaussian_filter(wm, GRADIENT_SIGMA, order=tuple(int(a == b) for b in range(3)))
        for a in range(3)
    ]
    J = np.empty((int(mask.sum()), 3, 3), dtype=np.float32)
    for a in range(3):
        for b in range(a, 3):
            smoothed = ndimage.gaussian_filter(grads[a] * grads[b], INTEGRATION_SIGMA)
            J[:, a, b] = J[:, b, a] = smoothed[mask]
    return J


def fibre_orientations(wm: np.ndarray, mask: np.ndarray, crossing: bool) -> Fibres:
    """Fibre frames and second-population shares at the voxels of ``mask``."""
    J = structure_tensor(wm, mask)
    J += 1e-8 * np.eye(3, dtype=np.float32)  # featureless WM: equal eigenvalues -> ambiguous
    evals, frame = np.linalg.eigh(J)  # ascending eigenvalues, eigenvectors in columns
    ambiguous = evals[:, 0] / np.maximum(evals[:, 1], 1e-12) > AMBIGUITY
    f2 = np.where(ambiguous & crossing, SECOND_FRACTION, 0.0).astype(np.float32)
    return Fibres(frame.astype(np.float32), f2, ~ambiguous)


def rotation_field(
    rng: np.random.Generator, mask: np.ndarray, angle_deg: float, length_vox: float
) -> np.ndarray:
    """Rotation vectors (N, 3) at the voxels of ``mask``: white noise smoothed over ``length_vox``
    voxels, each component scaled to s.d. ``angle / √3`` so that the rotation angle's r.m.s. over
    the mask is ``angle_deg``."""
    noise = [rng.standard_normal(mask.shape, dtype=np.float32) for _ in range(3)]
    vectors = np.stack([ndimage.gaussian_filter(n, length_vox)[mask] for n in noise], axis=-1)
    vectors = vectors.astype(np.float64)
    return vectors * (np.radians(angle_deg) / np.sqrt(3) / np.maximum(vectors.std(axis=0), 1e-12))


def rotated(frame: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    """Frames (N, 3, 3) turned by the rotations ``rotvec`` (N, 3); still orthonormal."""
    return (Rotation.from_rotvec(rotvec).as_matrix() @ frame).astype(np.float32)


def cortical_normals(wm: np.ndarray, csf: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit vectors (N, 3) at the voxels of ``mask`` across the grey-matter ribbon: the largest
    eigenvector of the structure tensor of ``wm − csf``."""
    J = structure_tensor(wm - csf, mask) + 1e-8 * np.eye(3, dtype=np.float32)
    return np.linalg.eigh(J)[1][:, :, 2]
