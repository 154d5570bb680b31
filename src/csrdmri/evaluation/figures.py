"""Figures: a dataset's overview (T1w, mean b0, one DWI, DTI FA) and a side-by-side comparison
of upsampled series."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
from dipy.reconst.dti import TensorModel
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
from PIL import Image

from csrdmri.core.errors import InputError
from csrdmri.core.resample import resample
from csrdmri.dmri.scan import PreparedScan
from csrdmri.io.layout import DatasetPaths
from csrdmri.io.nifti import atomic_path, load_dwi, load_image


def save_png(fig: Figure, out: Path) -> None:
    """Write ``fig`` atomically as a 256-colour PNG (110 dpi): noisy image panels compress about
    three times better than in full colour, with no visible change."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    with atomic_path(out) as tmp:
        Image.open(buffer).convert("RGB").quantize(256).save(tmp, format="PNG", optimize=True)


def overview(paths: DatasetPaths, out: Path, z: int | None = None, title: str | None = None) -> Path:
    """Write a PNG with the axial slice ``z`` (default: the brain's middle) of T1w (on the DWI
    grid), mean b0, the first b≈1000 DWI and the FA of a DIPY tensor fit; returns ``out``."""
    scan = PreparedScan.prepare(load_dwi(paths), t1=paths.t1)
    series, mask = scan.series, scan.mask
    if z is None:
        zs = np.flatnonzero(mask.any(axis=(0, 1)))
        z = int((zs.min() + zs.max()) // 2)
    fit = TensorModel(series.gtab).fit(series.data[:, :, z], mask=mask[:, :, z])
    panels = [
        ("mean b0", scan.b0[:, :, z], "gray"),
        ("DWI b≈1000", series.data[:, :, z, scan.shell[0]], "gray"),
        ("FA (DTI)", fit.fa, "magma"),
    ]
    if scan.t1 is not None:
        panels.insert(0, ("T1w on the DWI grid", scan.t1[:, :, z], "gray"))
    fig = Figure(figsize=(3.2 * len(panels), 3.6))
    for ax, (label, image, cmap) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels, strict=True):
        vmax = 1.0 if label.startswith("FA") else float(np.percentile(image[mask[:, :, z]], 99.5))
        # Rows = the array's second axis so the slice is shown in the usual radiological layout.
        ax.imshow(np.rot90(image), cmap=cmap, vmin=0.0, vmax=vmax)
        ax.set_title(label, fontsize=10)
        ax.axis("off")
    fig.suptitle(title or f"{paths.dwi} (axial slice {z})", fontsize=9)
    fig.tight_layout()
    save_png(fig, out)
    return out


def comparison(
    images: dict[str, Path], out: Path, volume: int, truth: Path | None = None, height: float = 0.5
) -> Path:
    """Write a PNG of one volume of several series side by side: an axial slice at the fraction
    ``height`` (0 bottom, 1 top), each series shown on the finest grid (coarser ones by nearest
    neighbour, so the input's voxels stay visible); with ``truth``, it is the last column and a
    row of |error| maps against it follows. Returns ``out``."""
    series = dict(images) if truth is None else {**images, "truth": truth}
    panels, corners = {}, {}
    for name, path in series.items():
        img = load_image(path, name, ndim=(4,))
        if not -img.shape[3] <= volume < img.shape[3]:
            raise InputError(f"{path} has {img.shape[3]} volumes; there is no volume {volume}")
        panels[name] = np.asarray(img.dataobj[..., volume], dtype=np.float32)
        # World positions of the field of view's outer corners (voxel edges, not centres).
        edges = np.array([[-0.5] * 3, [n - 0.5 for n in img.shape[:3]]])
        corners[path] = (nib.affines.apply_affine(img.affine, edges), max(img.header.get_zooms()[:3]))
    reference, (first, _) = next(iter(corners.items()))
    for path, (corner, zoom) in corners.items():
        if np.abs(corner - first).max() > zoom:
            raise InputError(f"{path} does not cover the same field of view as {reference}")
    shape = max((image.shape for image in panels.values()), key=np.prod)
    panels = {n: im if im.shape == shape else resample(im, shape, order=0) for n, im in panels.items()}
    k = round(height * (shape[2] - 1))
    slices = {name: image[:, :, k] for name, image in panels.items()}
    return panel_grid(slices, out, "truth" if truth is not None else None)


def panel_grid(
    images: dict[str, np.ndarray],
    out: Path,
    truth: str | None = None,
    vmax: float | None = None,
    error_vmax: float | None = None,
    title: str | None = None,
    region: np.ndarray | None = None,
) -> Path:
    """Write a PNG of 2D images (x, y) side by side, shown in the radiological layout; with
    ``truth`` (the label of one of them, drawn last), a second row holds every other image's
    |difference| from it, titled with its mean over ``region`` (bool, default everywhere).
    ``vmax`` defaults to the reference's 99.5th percentile and ``error_vmax`` to a quarter of
    ``vmax``. Returns ``out``."""
    if truth is not None:
        images = {**{n: im for n, im in images.items() if n != truth}, truth: images[truth]}
    ref = images[truth] if truth is not None else next(iter(images.values()))
    vmax = float(np.percentile(ref, 99.5)) if vmax is None else vmax
    error_vmax = vmax / 4 if error_vmax is None else error_vmax
    rows = 2 if truth is not None else 1
    fig = Figure(figsize=(3.6 * len(images), 3.9 * rows))
    axes = np.asarray(fig.subplots(rows, len(images))).reshape(rows, len(images))
    for column, (name, image) in enumerate(images.items()):
        axes[0, column].imshow(np.rot90(image), cmap="gray", vmin=0, vmax=vmax)
        axes[0, column].set_title(name, fontsize=10)
        if truth is not None and name != truth:
            error = np.abs(image - images[truth])
            axes[1, column].imshow(np.rot90(error), cmap="magma", vmin=0, vmax=error_vmax)
            mean = error[region].mean() if region is not None else error.mean()
            axes[1, column].set_title(f"|error|, mean {mean:.3g}", fontsize=9)
        for ax in axes[:, column]:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, out)
    return out
