"""The visual report of a BIDS App run, one HTML page per participant (as the nipreps tools write).

Each series gets a section (:func:`series_section`, written by its task next to its output as
``sub-X[/ses-Y]/figures/<series>_report.html``) and :func:`participant_report` joins a
participant's sections into ``OUTPUT_DIR/sub-X.html``. A section shows, through the middle of
the field of view: the input, cubic interpolation and the output side by side (b0 and one DWI,
axial, coronal, sagittal), the output minus cubic (what the model changed), FA of the input
grid and of the output, the T1w beside the mean b0 with how well they align, and the sidecar
(command, model, provenance). Figures are PNGs inside the page (base64): it needs no network
and no other file.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

from csrdmri.core.resample import resample
from csrdmri.dmri.alignment import MIN_DISPLACEMENT, register_t1, summary
from csrdmri.dmri.dti import tensor_maps
from csrdmri.dmri.preprocess import load_t1
from csrdmri.dmri.scan import PreparedScan
from csrdmri.io.nifti import DWISeries, atomic_path, gradient_paths, load_gradients

PLANES = ("axial", "coronal", "sagittal")
AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%}"
    "pre{background:#f4f4f4;padding:1em}"
)


def _figure(rows: int, columns: int, size: tuple[float, float]):
    fig = Figure(figsize=size)
    return fig, fig.subplots(rows, columns, squeeze=False)


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _plane(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """A 2D plane of a 3D array, rotated for display (anterior/superior up)."""
    return np.rot90(np.take(volume, index, axis=AXIS[plane]))


def _box(plane: str, index: int):
    """The output grid's block of one plane (``index`` along ``plane``'s axis)."""
    return tuple(slice(index, index + 1) if a == AXIS[plane] else slice(None) for a in range(3))


def comparison_figure(series: DWISeries, out: nib.Nifti1Image, volumes: dict[str, int]) -> str:
    """Input | cubic | output | output − cubic, per shown volume and plane."""
    shape = out.shape[:3]
    rows = [(name, v, plane) for name, v in volumes.items() for plane in PLANES]
    fig, axes = _figure(len(rows), 4, (13, 3.1 * len(rows)))
    for row, (name, v, plane) in zip(axes, rows, strict=True):
        k_in, k_out = series.shape[AXIS[plane]] // 2, shape[AXIS[plane]] // 2
        box = _box(plane, k_out)
        cubic = resample(series.data[..., v], shape, box=box)
        written = np.asarray(out.dataobj[(*box, v)], dtype=np.float32)
        images = [
            _plane(series.data[..., v], plane, k_in),
            _plane(cubic, plane, 0),
            _plane(written, plane, 0),
        ]
        top = float(np.percentile(images[0], 99.5)) or 1.0
        for ax, image, title in zip(row[:3], images, ("input", "cubic", "csrdmri"), strict=True):
            ax.imshow(image, cmap="gray", vmin=0, vmax=top)
            ax.set_title(f"{name} {plane}: {title}")
        change = images[2] - images[1]
        limit = float(np.percentile(np.abs(change), 99.5)) or 1.0
        shown = row[3].imshow(change, cmap="RdBu_r", vmin=-limit, vmax=limit)
        row[3].set_title("csrdmri − cubic")
        fig.colorbar(shown, ax=row[3], fraction=0.046)
        for ax in row:
            ax.axis("off")
    return _png(fig)


def fa_figure(series: DWISeries, out: nib.Nifti1Image, out_gtab, mask: np.ndarray) -> str:
    """FA (DIPY's tensor fit) through the middle axial plane, input grid and output grid (with
    its own gradient table ``out_gtab``: new directions may have been written)."""
    k_in, k_out = series.shape[2] // 2, out.shape[2] // 2
    out_mask = resample(mask.astype(np.float32), out.shape[:3], order=0, box=_box("axial", k_out)) > 0.5
    maps = [
        tensor_maps(series.data[:, :, k_in : k_in + 1], series.gtab, mask[:, :, k_in : k_in + 1]).fa,
        tensor_maps(np.asarray(out.dataobj[:, :, k_out : k_out + 1], np.float32), out_gtab, out_mask).fa,
    ]
    fig, axes = _figure(1, 2, (9, 4.5))
    for ax, fa, title in zip(axes[0], maps, ("FA, input grid", "FA, csrdmri output"), strict=True):
        ax.imshow(_plane(fa, "axial", 0), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    return _png(fig)


def alignment_figure(scan: PreparedScan, sidecar: dict) -> str:
    """The T1w on the DWI grid (as the model read it) beside the mean b0, and the rigid transform
    that registers them: the one the model applied (the sidecar's ``t1w_transform``, None when
    under ``MIN_DISPLACEMENT``) or, for a model that reads the T1w as given, the one registration
    finds now."""
    affine, mask = scan.series.affine, scan.mask
    registration = "rigid registration to the mean b0"
    if "t1w_transform" not in sidecar:
        found = register_t1(load_t1(scan.t1_source), scan.b0, affine)
        verdict = (
            f"{registration} would move it by {summary(found, affine, mask)}; this model reads it as given."
        )
    elif sidecar["t1w_transform"] is None:
        verdict = f"{registration} found them aligned to {MIN_DISPLACEMENT} mm: the model read it as given."
    else:
        found = np.asarray(sidecar["t1w_transform"], float)
        verdict = f"the model read the T1w moved by {registration}: {summary(found, affine, mask)}."
    correlation = float(np.corrcoef(scan.t1[scan.mask], scan.b0[scan.mask])[0, 1])
    k = scan.series.shape[2] // 2
    fig, grid = _figure(1, 2, (9, 4.5))
    axes = grid[0]
    axes[0].imshow(_plane(scan.b0, "axial", k), cmap="gray")
    axes[0].contour(_plane(scan.t1, "axial", k), levels=[0.5], colors="r", linewidths=0.7)
    axes[0].set_title("mean b0, T1w contour (red)")
    axes[1].imshow(_plane(scan.t1, "axial", k), cmap="gray")
    axes[1].set_title("T1w on the DWI grid")
    for ax in axes:
        ax.axis("off")
    text = (
        f"<p>T1w–b0 correlation in the brain {correlation:.2f} (aligned anatomy: clearly negative); "
        f"{html.escape(verdict)}</p>"
    )
    return text + _png(fig)


def series_section(series: DWISeries, out_path: Path, t1: Path | None, mask: Path | None) -> str:
    """The HTML section of one written series (module docstring)."""
    out = nib.load(out_path)
    sidecar = json.loads(out_path.with_name(out_path.name.replace(".nii.gz", ".json")).read_text())
    moved = sidecar.get("t1w_transform")
    scan = PreparedScan.prepare(
        series, mask=mask, t1=t1, shell=None, t1_transform=None if moved is None else np.asarray(moved)
    )
    bval, bvec = gradient_paths(out_path)
    out_gtab = load_gradients(bval, bvec, out.shape[3])
    b0 = int(np.flatnonzero(series.gtab.b0s_mask)[0])  # the volumes kept in place (b0s: always)
    shown = {"b0": b0}
    if sidecar.get("directions") == "acquired":
        dwi = int(np.flatnonzero(~series.gtab.b0s_mask)[0])
        shown[f"DWI (b = {series.gtab.bvals[dwi]:g})"] = dwi
    parts = [
        f"<h2>{html.escape(out_path.name)}</h2>",
        f"<p>Input {html.escape(str(series.paths.dwi))}, "
        f"model <b>{html.escape(str(sidecar.get('model')))}</b>, "
        f"voxel {sidecar.get('input_voxel_size_mm')} → {sidecar.get('voxel_size_mm')} mm.</p>",
        "<h3>Input, cubic interpolation and csrdmri</h3>",
        comparison_figure(series, out, shown),
        "<h3>FA</h3>",
        fa_figure(series, out, out_gtab, scan.mask),
    ]
    if scan.t1 is not None:
        parts += ["<h3>T1w alignment</h3>", alignment_figure(scan, sidecar)]
    parts += [
        "<h3>Sidecar (command and provenance)</h3>",
        f"<pre>{html.escape(json.dumps(sidecar, indent=2))}</pre>",
    ]
    return "\n".join(parts)


def participant_report(out_dir: Path, subject: str) -> Path:
    """``OUTPUT_DIR/sub-X.html`` from the sections of the participant's series (by name)."""
    sections = sorted((out_dir / f"sub-{subject}").rglob("figures/*_report.html"))
    body = "\n".join(p.read_text() for p in sections) or "<p>No series was written.</p>"
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>csrdmri: sub-{html.escape(subject)}</title><style>{STYLE}</style></head>"
        f"<body><h1>csrdmri — sub-{html.escape(subject)}</h1>\n{body}\n</body></html>\n"
    )
    path = out_dir / f"sub-{subject}.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page)
    return path
