"""Model upsampling of one real DWI volume: time and memory by tile size and brain-mask restriction.

One b=1000 volume of the shared Philips Ingenia scan (128×128×82, 2 mm, with its 1 mm T1w) is
super-resolved 2× by the shipped ``csr-dmri-cpu`` through ``csrdmri.tiling.decode_volume``:

* the **reference**: the whole volume in one tile, every output voxel decoded (what a naive
  implementation does);
* decoding restricted to the dilated brain mask (as ``csrdmri upsample`` does), in one tile and
  in tiles of at most 128, 96 (the default), 64 and 48 voxels.

Each configuration runs in a fresh process (so its peak memory is its own); the table gives the
decoding time, the peak resident memory added by decoding, their ratios to the reference and
the largest difference from the reference inside the mask.

Usage: python benchmarks/bench_upsample.py [DATASET] [--threads N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "philips-ingenia-2mm"
CONFIGS = [("whole volume, every voxel", False, None), ("mask, one tile", True, None)] + [
    (f"mask, tile {t}", True, t) for t in (128, 96, 64, 48)
]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _run(dataset: str, use_mask: bool, tile: int | None, threads: int, queue) -> None:
    import torch
    from scipy import ndimage

    from csrdmri.grid import TargetGrid
    from csrdmri.infer import Upsampler
    from csrdmri.io import load_dwi
    from csrdmri.layout import find_dataset
    from csrdmri.preprocess import b0_reciprocal, mean_b0, series_mask, shell_indices, t1_on_dwi_grid
    from csrdmri.resample import resample
    from csrdmri.tiling import decode_volume

    torch.set_num_threads(threads)
    paths = find_dataset(dataset)
    series = load_dwi(paths)
    mask = series_mask(series)
    region = ndimage.binary_dilation(mask, iterations=2)
    x = (series.data[..., shell_indices(series.gtab)[0]] * b0_reciprocal(mean_b0(series), region)).astype(
        np.float32
    )
    t1 = t1_on_dwi_grid(paths.t1, series, mask)
    grid = TargetGrid.over(series.shape, series.affine, scale=2.0)
    where = resample(region.astype(np.float32), grid.shape, order=0) > 0.5
    up = Upsampler.load("csr-dmri-cpu")
    out = resample(x, grid.shape).astype(np.float32)
    before = _rss_mb()
    start = time.perf_counter()
    decode_volume(up.model, x, t1, out, where if use_mask else None, tile or max(x.shape))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    queue.put((seconds, peak - before, out[where], int(where.sum()), grid.shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default=str(DEFAULT))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    rows, reference = [], None
    for label, use_mask, tile in CONFIGS:
        queue = context.Queue()
        process = context.Process(target=_run, args=(args.dataset, use_mask, tile, args.threads, queue))
        process.start()
        seconds, memory, values, decoded, shape = queue.get()
        process.join()
        if reference is None:
            reference = (seconds, memory, values)
            print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads")
            print(f"output grid {shape}, {decoded} voxels in the dilated mask\n")
            print("| configuration | time (s) | × ref. | decode peak (MB) | × ref. | max \\|diff\\| |")
            print("|---|---|---|---|---|---|")
        diff = float(np.abs(values - reference[2]).max())
        rows.append(
            f"| {label} | {seconds:.1f} | {seconds / reference[0]:.2f} | {memory:.0f} | "
            f"{memory / reference[1]:.2f} | {diff:.1e} |"
        )
        print(rows[-1], flush=True)


if __name__ == "__main__":
    main()
