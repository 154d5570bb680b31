"""The MNI152 2009a templates that nilearn ships (T1w, GM, WM, brain mask at 1 mm)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Templates:
    """Template maps on nilearn's 1 mm MNI152 2009a grid.

    Attributes
    ----------
    t1, gm, wm, mask : ndarray, shape (197, 233, 189), float32
        T1w intensity (brain only, ~[0, 1]), GM and WM probabilities in [0, 1], brain mask (0/1).
    affine : ndarray, shape (4, 4)
        Voxel-to-MNI-world affine (mm).
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    mask: np.ndarray
    affine: np.ndarray

    def brain_centre(self) -> np.ndarray:
        """Centre of the brain mask's bounding box in MNI world mm, shape (3,)."""
        idx = np.argwhere(self.mask > 0)
        centre = (idx.min(0) + idx.max(0)) / 2.0
        return self.affine[:3, :3] @ centre + self.affine[:3, 3]


@functools.lru_cache(maxsize=1)
def load_templates() -> Templates:
    """Load (once per process) the templates from nilearn's package data; no download."""
    from nilearn import datasets

    images = {
        "t1": datasets.load_mni152_template(resolution=1),
        "gm": datasets.load_mni152_gm_template(resolution=1),
        "wm": datasets.load_mni152_wm_template(resolution=1),
        "mask": datasets.load_mni152_brain_mask(resolution=1),
    }
    arrays = {k: np.clip(img.get_fdata(dtype=np.float32), 0.0, None) for k, img in images.items()}
    for name in ("gm", "wm"):
        arrays[name] = np.minimum(arrays[name], 1.0)
    return Templates(**arrays, affine=images["t1"].affine.copy())
