"""Whole-series model inference: ``csrdmri upsample``'s path against a naive one, same weights.

The shared Philips Ingenia scan (128×128×82×17, 2 mm, with its 1 mm T1w) is super-resolved 2×
by the shipped ``csr-dmri-cpu``:

* **naive reference** (implemented here, as public ArSSR-style code does it): per diffusion
  volume, the encoder over the whole volume at once, the decoder (``grid_sample`` + MLP) at every
  output voxel, air included, fp32, chunks of 16 384 queries; composed into the output exactly
  as ``csrdmri upsample`` composes its prediction (b0s tricubic, correction × upsampled b0);
* **csrdmri**: :func:`csrdmri.inference.series.upsample_series` with its default options (brain-mask
  restricted decoding, planned tiles, separable interpolation), fp32;
* **bf16** (lossy, reported apart): the same with ``precision="bf16"`` (CPU autocast).

Printed: time of each, speed-up against the reference, the largest difference from the
reference inside the dilated brain mask (relative to the output's intensity range) and, for
bf16, the PSNR of its output against the fp32 output inside the mask. With ``--levers``, the
levers one by one on the first diffusion volume.

Usage: python benchmarks/bench_inference.py [DATASET] [--threads N] [--volumes N] [--levers]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio

from csrdmri.core.grid import TargetGrid, dst_grid_normalized, normalized, source_index
from csrdmri.core.resample import resample
from csrdmri.dmri.preprocess import b0_indices, b0_reciprocal, mean_b0
from csrdmri.dmri.scan import PreparedScan
from csrdmri.inference.series import upsample_series
from csrdmri.inference.tiling import CHUNK, TILE, as_input, decode_volume, encoder_halo, plan_tiles
from csrdmri.inference.upsampler import Options, Upsampler
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import DWISeries, load_dwi

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "philips-ingenia-2mm"


def _inputs(series: DWISeries, grid: TargetGrid, mask: np.ndarray):
    region = ndimage.binary_dilation(mask, iterations=Options().margin)
    s0 = mean_b0(series)
    reciprocal = b0_reciprocal(s0, region)
    where = resample((reciprocal > 0).astype(np.float32), grid.shape, order=0) > 0.5
    return reciprocal, np.maximum(resample(s0, grid.shape), 0.0), where


def naive_prediction(model, x: np.ndarray, t1: np.ndarray, shape) -> np.ndarray:
    """Whole-volume encoder, ``grid_sample`` + MLP at every output voxel (S/S0)."""
    features = model.encode(as_input(x), as_input(t1))
    coords = torch.from_numpy(dst_grid_normalized(shape).reshape(1, -1, 3))
    values = torch.cat(
        [model.decode(features, coords[:, s : s + CHUNK])[0] for s in range(0, coords.shape[1], CHUNK)]
    )
    ratio = resample(x, shape).astype(np.float32)
    return ratio + values.numpy().reshape(shape) if model.residual else values.numpy().reshape(shape)


@torch.no_grad()
def naive_series(series, grid, up, mask, t1, out) -> None:
    """The naive reference over the whole series, composed as :func:`upsample_series`."""
    reciprocal, s0_hr, _ = _inputs(series, grid, mask)
    b0s = set(b0_indices(series.gtab).tolist())
    for v in range(series.data.shape[3]):
        volume = series.data[..., v]
        result = resample(volume, grid.shape)
        if v not in b0s:
            x = (volume * reciprocal).astype(np.float32)
            ratio = resample(x, grid.shape).astype(np.float32)
            result = result + s0_hr * (naive_prediction(up.model, x, t1, grid.shape) - ratio)
        out[..., v] = np.maximum(result, 0.0)


@torch.no_grad()
def masked_grid_sample(model, x, t1, out, where, tiles: bool) -> None:
    """Levers 1-2: decode only inside the mask with ``grid_sample``, the encoder over the whole
    volume or over the planned tiles (one tile on this scan)."""
    positions = [source_index(n, m) for n, m in zip(x.shape, out.shape, strict=True)]
    owners = [np.floor(p + 0.5).astype(np.int64) for p in positions]
    halo = encoder_halo(model)
    cores = plan_tiles(owners, where, x.shape, TILE, halo) if tiles else [tuple(slice(0, n) for n in x.shape)]
    model.to(memory_format=torch.channels_last_3d)
    for core in cores:
        lo = [max(c.start - halo, 0) for c in core]
        hi = [min(c.stop + halo, n) for c, n in zip(core, x.shape, strict=True)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        hr = tuple(
            slice(int(np.searchsorted(o, c.start)), int(np.searchsorted(o, c.stop)))
            for o, c in zip(owners, core, strict=True)
        )
        inputs = [as_input(v[box]).to(memory_format=torch.channels_last_3d) for v in (x, t1)]
        features = model.encode(*inputs)
        local = np.nonzero(where[hr])
        index = np.stack([positions[a][hr[a].start + local[a]] - lo[a] for a in range(3)], axis=-1)
        coords = torch.from_numpy(
            normalized(index, [b - a for a, b in zip(lo, hi, strict=True)]).astype(np.float32)
        )
        values = torch.cat(
            [model.decode(features, coords[None, s : s + CHUNK])[0] for s in range(0, len(index), CHUNK)]
        )
        block = out[hr]
        block[where[hr]] += values.numpy()


def levers(series, grid, up, mask, t1) -> None:
    reciprocal, _, where = _inputs(series, grid, mask)
    v = next(i for i in range(series.data.shape[3]) if i not in set(b0_indices(series.gtab).tolist()))
    x = (series.data[..., v] * reciprocal).astype(np.float32)
    base = resample(x, grid.shape).astype(np.float32)
    rows, reference = [], None
    steps = [
        ("naive: whole-volume encoder, every voxel, grid_sample", None),
        (
            "+ decode only inside the dilated mask",
            lambda o: masked_grid_sample(up.model, x, t1, o, where, False),
        ),
        (
            "+ encoder on the planned tiles around the mask",
            lambda o: masked_grid_sample(up.model, x, t1, o, where, True),
        ),
        ("+ separable interpolation (csrdmri default)", lambda o: decode_volume(up.model, x, t1, o, where)),
    ]
    print(
        "\nLevers, one diffusion volume:\n\n| configuration | time (s) | speed-up | max \\|diff\\| / range |"
    )
    print("|---|---|---|---|")
    with torch.no_grad():
        up.model.encode(as_input(x), as_input(t1))  # warm-up: oneDNN prepares its kernels
        for label, run in steps:
            start = time.perf_counter()
            if run is None:
                out = naive_prediction(up.model, x, t1, grid.shape)
            else:
                out = base.copy()
                run(out)
            seconds = time.perf_counter() - start
            if reference is None:
                reference = (seconds, out)
            diff = np.abs(out - reference[1])[where].max() / np.ptp(reference[1][where])
            rows.append(f"| {label} | {seconds:.1f} | {reference[0] / seconds:.2f}× | {diff:.1e} |")
            print(rows[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default=str(DEFAULT))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--volumes", type=int, default=0, help="first N volumes only (0: all)")
    parser.add_argument("--levers", action="store_true", help="also time the levers on one volume")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = find_dataset(args.dataset)
    series = load_dwi(paths)
    if args.volumes:
        series.data = series.data[..., : args.volumes]
    scan = PreparedScan.prepare(series, t1=paths.t1)
    mask, t1 = scan.mask, scan.t1
    grid = TargetGrid.over(series.shape, series.affine, scale=2.0)
    up = Upsampler.load("csr-dmri-cpu")
    _, _, where = _inputs(series, grid, mask)
    print(describe(args.threads))
    print(f"{paths.dwi}: {series.data.shape} -> {grid.shape}, {int(where.sum())} output voxels in the mask")
    if args.levers:
        levers(series, grid, up, mask, t1)
    shape = (*grid.shape, series.data.shape[3])
    outputs, times = {}, {}
    runs = [
        ("naive reference", lambda o: naive_series(series, grid, up, mask, t1, o)),
        ("csrdmri upsample (fp32)", lambda o: upsample_series(series, grid, up, o, scan)),
        (
            "csrdmri upsample --precision bf16",
            lambda o: upsample_series(series, grid, up, o, scan, Options(precision="bf16")),
        ),
    ]
    for label, run in runs:
        outputs[label] = np.zeros(shape, np.float32, order="F")  # as upsample_series needs
        start = time.perf_counter()
        run(outputs[label])
        times[label] = time.perf_counter() - start
        print(f"{label}: {times[label]:.1f} s", flush=True)
    # Diffusion-weighted volumes inside the mask (b0s are tricubic in every path).
    dwis = np.setdiff1d(np.arange(shape[3]), b0_indices(series.gtab))
    inside = {label: out[where][:, dwis] for label, out in outputs.items()}
    reference, fp32 = inside[runs[0][0]], inside[runs[1][0]]
    span = float(np.ptp(reference))  # the intensity range
    print("\n| path | time (s) | speed-up | max \\|diff\\| / range | PSNR vs fp32 (dB) |")
    print("|---|---|---|---|---|")
    for label, _ in runs:
        diff = float(np.abs(inside[label] - reference).max()) / span
        quality = "—"
        if label == runs[2][0]:
            quality = f"{peak_signal_noise_ratio(fp32, inside[label], data_range=span):.1f}"
        speed = times[runs[0][0]] / times[label]
        print(f"| {label} | {times[label]:.1f} | {speed:.2f}× | {diff:.1e} | {quality} |")


if __name__ == "__main__":
    main()
