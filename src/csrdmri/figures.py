"""Figures of a dataset: axial slices of the T1w, the mean b0, one DWI and the DTI FA map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dipy.reconst.dti import TensorModel
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

from csrdmri.io import atomic_path, load_dwi
from csrdmri.layout import DatasetPaths
from csrdmri.preprocess import mean_b0, series_mask, shell_indices, t1_on_dwi_grid


def overview(paths: DatasetPaths, out: Path, z: int | None = None, title: str | None = None) -> Path:
    """Write a PNG with the axial slice ``z`` (default: the brain's middle) of T1w (on the DWI
    grid), mean b0, the first b≈1000 DWI and the FA of a DIPY tensor fit; returns ``out``."""
    series = load_dwi(paths)
    mask = series_mask(series)
    if z is None:
        zs = np.flatnonzero(mask.any(axis=(0, 1)))
        z = int((zs.min() + zs.max()) // 2)
    b0 = mean_b0(series)
    dwi = series.data[..., shell_indices(series.gtab)[0]]
    fit = TensorModel(series.gtab).fit(series.data[:, :, z], mask=mask[:, :, z])
    panels = [
        ("mean b0", b0[:, :, z], "gray"),
        ("DWI b≈1000", dwi[:, :, z], "gray"),
        ("FA (DTI)", fit.fa, "magma"),
    ]
    if paths.t1 is not None:
        panels.insert(0, ("T1w on the DWI grid", t1_on_dwi_grid(paths.t1, series, mask)[:, :, z], "gray"))
    fig = Figure(figsize=(3.2 * len(panels), 3.6))
    for ax, (label, image, cmap) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels, strict=True):
        vmax = 1.0 if label.startswith("FA") else float(np.percentile(image[mask[:, :, z]], 99.5))
        # Rows = the array's second axis so the slice is shown in the usual radiological layout.
        ax.imshow(np.rot90(image), cmap=cmap, vmin=0.0, vmax=vmax)
        ax.set_title(label, fontsize=10)
        ax.axis("off")
    fig.suptitle(title or f"{paths.dwi} (axial slice {z})", fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    return out
