"""Memory scaling of ``csrdmri upsample``: peak memory on a volume and on one 4× larger.

Two phantom subjects with the same anatomy (1 b0 + 6 diffusion volumes, generated into a
temporary folder) at 2 mm (91×109×91) and at 1.25 mm (145×174×145, 4.05× the voxels) are
super-resolved 2× by the shipped ``csr-dmri-cpu``, each by the steps of ``upsample_to_file``
(mask and T1w, ``upsample_series`` into the unnamed working file, ``write_result``) in a fresh
process, at the default ``--tile`` and at a smaller one. Printed per run: peak resident memory
(VmHWM) and peak anonymous memory (RssAnon sampled every 20 ms: what the process itself holds,
without the file pages of the input and of the output memory map), overall and per step, all
minus the process's memory once the input is loaded, their ratio large/small, and the time.

Usage: python benchmarks/bench_memory.py [--threads N] [--tiles 130,64] [--volumes N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path

from machine import describe


def _status(key: str) -> float:
    """A /proc/self/status memory figure, MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _run(subject: str, out: str, tile: int, threads: int, volumes: int, queue) -> None:
    import numpy as np
    import torch
    from dipy.core.gradients import gradient_table

    from csrdmri.core.grid import TargetGrid
    from csrdmri.dmri.scan import PreparedScan
    from csrdmri.inference.output import working_file, write_result
    from csrdmri.inference.series import upsample_series
    from csrdmri.inference.upsampler import Options, Upsampler
    from csrdmri.io.layout import find_dataset
    from csrdmri.io.nifti import load_dwi

    torch.set_num_threads(threads)
    paths = find_dataset(subject)
    series = load_dwi(paths)
    if volumes:  # the first volumes only (the b0 comes first)
        series.data = series.data[..., :volumes]
        series.gtab = gradient_table(series.gtab.bvals[:volumes], bvecs=series.gtab.bvecs[:volumes])
    up = Upsampler.load("csr-dmri-cpu")
    base_rss, base_anon = _status("VmRSS"), _status("RssAnon")
    stage, peaks, running = ["mask"], {"mask": base_anon}, True

    def sample() -> None:
        while running:
            peaks[stage[0]] = max(peaks.get(stage[0], base_anon), _status("RssAnon"))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    scan = PreparedScan.prepare(series, t1=paths.t1)
    grid = TargetGrid.over(series.shape, series.affine, scale=2.0)
    shape = (*grid.shape, series.data.shape[3])
    with working_file(Path(out).parent, int(np.prod(shape)) * 4) as handle:  # as upsample_to_file
        data = np.memmap(handle, dtype=np.float32, mode="r+", shape=shape, order="F")
        stage[0] = "upsample"
        upsample_series(series, grid, up, data, scan, Options(tile=tile))
        stage[0] = "write"
        write_result(Path(out), data, grid, series, up, scan)
        del data
    seconds = time.perf_counter() - start
    running = False
    sampler.join()
    stages = {name: peak - base_anon for name, peak in peaks.items()}
    queue.put((series.shape, grid.shape, _status("VmHWM") - base_rss, stages, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--tiles", default="130,64")
    parser.add_argument("--volumes", type=int, default=0, help="first N volumes only (0: all 7)")
    args = parser.parse_args()
    from csrdmri.phantom import PhantomParams, generate_cohort

    print(describe(args.threads))
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        subjects = {}
        for voxel in (2.0, 1.25):
            folder = Path(tmp) / f"{voxel}mm"
            generate_cohort(folder, 1, seed=0, params=PhantomParams(voxel_size=voxel, n_dirs=6, n_b0=1))
            subjects[voxel] = folder / "phantom000"
        print(
            "| --tile | input | output | peak RSS (MB) | peak anonymous (MB) "
            "| of which mask+T1w / upsample / write (MB) | time (s) |"
        )
        print("|---|---|---|---|---|---|---|")
        for tile in (int(t) for t in args.tiles.split(",")):
            peaks = []
            for voxel, subject in subjects.items():
                queue = context.Queue()
                out = Path(tmp) / f"sr-{voxel}-{tile}.nii.gz"
                process = context.Process(
                    target=_run, args=(str(subject), str(out), tile, args.threads, args.volumes, queue)
                )
                process.start()
                shape, grid, rss, stages, seconds = queue.get()
                process.join()
                anon = max(stages.values())
                peaks.append((rss, anon))
                parts = " / ".join(f"{stages.get(name, 0.0):.0f}" for name in ("mask", "upsample", "write"))
                print(
                    f"| {tile} | {shape} | {grid} | {rss:.0f} | {anon:.0f} | {parts} | {seconds:.1f} |",
                    flush=True,
                )
            (rss_a, anon_a), (rss_b, anon_b) = peaks
            print(
                f"| {tile} | growth, 4.05× the voxels | | {rss_b / rss_a:.2f}× | {anon_b / anon_a:.2f}× | | |"
            )


if __name__ == "__main__":
    main()
