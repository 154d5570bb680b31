"""A DWI series prepared for the models, once: brain mask, mean b0, the shell, T1w on its grid.

Every user of the models — ``csrdmri upsample``, training caches, both evaluation protocols,
the demo and the figures — builds its normalisation from one :class:`PreparedScan`, so the
recipe (mean b0 → signal-void floor → reciprocal inside the brain → shell → T1w on the DWI
grid) has one home. Units as :mod:`csrdmri.dmri.preprocess`: S/S0 is a fraction of the mean b0,
the T1w is normalised to ~[0, 1] inside the brain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from dipy.core.gradients import GradientTable
from scipy import ndimage

from csrdmri.core.errors import about
from csrdmri.dmri.alignment import alignment
from csrdmri.dmri.preprocess import (
    DEFAULT_SHELL,
    b0_floor,
    b0_reciprocal,
    load_t1,
    mean_b0,
    normalise_t1,
    series_mask,
    shell_indices,
    shells,
    t1_on_dwi_grid,
)
from csrdmri.io.layout import DatasetPaths
from csrdmri.io.nifti import DWISeries, Source, describe

log = logging.getLogger(__name__)

#: What the sidecar says of a mask found from the data rather than read from a file.
FOUND_MASK = "median_otsu on the mean b0"


@dataclass
class PreparedScan:
    """A series with everything the models need to read it, computed once.

    Attributes
    ----------
    series : DWISeries
        The data (X, Y, Z, V) in the scanner's units, with its affine, b-table and paths.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask on the DWI grid (the given or the dataset's, else ``median_otsu``).
    b0 : ndarray, shape (X, Y, Z), float32
        Mean of the b0 volumes.
    floor : float
        Mean-b0 value below which the signal counts as void (:func:`b0_floor` of the brain).
    shell : ndarray of int, shape (K,)
        Indices of the volumes of the models' shell (b = ``DEFAULT_SHELL`` ± tolerance), or of
        every diffusion-weighted volume (prepared with ``shell=None``, for the q-space model).
    t1 : ndarray, shape (X, Y, Z), float32, or None
        The T1w resampled onto the DWI grid by the affines and normalised inside the brain.
    t1_source : path or image, or None
        The T1w as given (a file or an in-memory image), for what reads it again at another
        resolution.
    provenance : dict
        Where the mask and the T1w came from (``"mask"``, ``"t1w"``) and, with ``align_t1``, the
        rigid world transform applied to the T1w (``"t1w_transform"``, 4×4 nested lists, or None),
        for sidecars and reports.
    """

    series: DWISeries
    mask: np.ndarray
    b0: np.ndarray
    floor: float
    shell: np.ndarray
    t1: np.ndarray | None = None
    provenance: dict = field(default_factory=dict)
    t1_source: Source | None = None

    @classmethod
    def prepare(
        cls,
        series: DWISeries,
        mask: Source | None = None,
        t1: Source | None = None,
        shell: float | None = DEFAULT_SHELL,
        align_t1: bool = False,
        t1_transform: np.ndarray | None = None,
        t1_resampled: np.ndarray | None = None,
    ) -> PreparedScan:
        """Prepare ``series``: brain mask (file ``mask``, else the dataset's, else found from the
        mean b0), the volumes of ``shell`` (s/mm²; every diffusion-weighted one when None), mean
        b0 and its floor, and the T1w file ``t1`` (none when None) on the DWI grid — moved by
        ``t1_transform`` (4, 4) when given, else, with ``align_t1``, by the rigid transform that
        registers it to the mean b0 (:mod:`csrdmri.dmri.alignment`). ``t1_resampled`` (X, Y, Z):
        that T1w already on the DWI grid (:func:`~csrdmri.dmri.preprocess.t1_resampled`), only
        normalised here — for several preparations of one grid (the safeguard's checks).
        Refuses a series without that shell or whose mean b0 is void in most of the brain, and
        a T1w that does not overlap the brain or cannot be aligned with it."""
        brain = series_mask(series, mask)
        with about(series.paths.dwi):
            weighted = np.flatnonzero(~series.gtab.b0s_mask)
            indices = shell_indices(series.gtab, shell) if shell is not None else weighted
            b0 = mean_b0(series)
            floor = b0_floor(b0, brain)
        if t1 is None:
            t1_grid = None
        elif t1_resampled is not None:
            t1_grid = normalise_t1(t1_resampled, brain)
        else:
            t1_grid = t1_on_dwi_grid(t1, series, brain, t1_transform)
        if t1_grid is not None and align_t1 and t1_transform is None:
            t1_transform = alignment(load_t1(t1), b0, series.affine, brain, describe(t1, "T1w"))
            if t1_transform is not None:
                t1_grid = t1_on_dwi_grid(t1, series, brain, t1_transform)
        mask_path = mask if mask is not None else series.paths.mask
        provenance = {
            "mask": describe(mask_path, "mask") if mask_path is not None else FOUND_MASK,
            "t1w": describe(t1, "T1w") if t1 is not None else None,
        }
        if align_t1 or t1_transform is not None:
            provenance["t1w_transform"] = None if t1_transform is None else t1_transform.tolist()
        return cls(series, brain, b0, floor, indices, t1_grid, provenance, t1)

    @property
    def t1_transform(self) -> np.ndarray | None:
        """The rigid world transform (4, 4) applied to the T1w, or None."""
        moved = self.provenance.get("t1w_transform")
        return None if moved is None else np.asarray(moved, float)

    @property
    def gtab(self) -> GradientTable:
        return self.series.gtab

    @property
    def paths(self) -> DatasetPaths:
        return self.series.paths

    @property
    def shells(self) -> dict[float, np.ndarray]:
        """Every diffusion-weighted shell of the series: mean b-value → volume indices
        (:func:`csrdmri.dmri.preprocess.shells`); ``shell`` is the models' one."""
        return shells(self.series.gtab)

    def region(self, margin: int = 0) -> np.ndarray:
        """The brain mask dilated by ``margin`` voxels (bool, (X, Y, Z))."""
        return ndimage.binary_dilation(self.mask, iterations=margin) if margin else self.mask

    def reciprocal(self, margin: int = 0) -> np.ndarray:
        """``1 / S0`` in the brain dilated by ``margin`` voxels where the mean b0 is above the
        brain's floor, 0 elsewhere (float32, (X, Y, Z)): the factor that turns a DWI into S/S0."""
        return b0_reciprocal(self.b0, self.region(margin), floor=self.floor)

    def ratio(self, volumes: np.ndarray, margin: int = 0) -> np.ndarray:
        """S/S0 of ``volumes`` (indices into the series): float32, shape (X, Y, Z, K)."""
        return self.series.data[..., volumes] * self.reciprocal(margin)[..., None]
