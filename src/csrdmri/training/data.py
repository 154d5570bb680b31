"""Training data: subjects prepared once into memory-mapped caches.

A subject (any layout the I/O layer reads) is prepared into ``<cache>/<key>/``: its b≈1000
volumes divided by the mean b0 inside the brain (S/S0, float16, laid out (V, X, Y, Z) so one
volume's patch is contiguous), that mean b0 where it normalises (0 elsewhere; for simulated
motion), the normalised T1w on the DWI grid (if any) and the corners of the 40³ patches that
lie inside the brain. Sampling (:mod:`csrdmri.dmri.pairs`) then reads patches from the memory
maps; nothing else is loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from csrdmri.core.errors import InputError
from csrdmri.core.patches import patch_origins
from csrdmri.dmri.pairs import PreparedSubject
from csrdmri.dmri.scan import PreparedScan
from csrdmri.io.layout import DatasetPaths
from csrdmri.io.nifti import atomic_path, file_digest, load_dwi

#: Candidate patch corners kept per subject (a random subset of all valid ones).
MAX_ORIGINS = 20000
CACHE_VERSION = 2


def _cache_key(paths: DatasetPaths) -> str:
    """Changes whenever one of the subject's input files does (path, size or modification time)."""
    parts = [str(CACHE_VERSION)]
    for path in (paths.dwi, paths.t1, paths.mask):
        stat = path.stat() if path is not None and path.exists() else None
        parts.append(f"{path and path.resolve()}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def prepare_subject(paths: DatasetPaths, cache: Path, name: str, shell: float = 1000.0) -> PreparedSubject:
    """Prepare (once) and memory-map the training arrays of subject ``name`` under ``cache``."""
    folder = Path(cache) / f"{name}-{_cache_key(paths)}"
    done = folder / "meta.json"
    if not done.exists():
        _write_cache(paths, folder, shell)
    load = lambda key: np.load(folder / f"{key}.npy", mmap_mode="r")  # noqa: E731
    t1 = load("t1") if (folder / "t1.npy").exists() else None
    # The cache key follows the file's size and modification time, so a recorded digest holds.
    digest = json.loads(done.read_text()).get("digest") or file_digest(paths.dwi)
    return PreparedSubject(name, load("dwi"), t1, np.asarray(load("origins")), digest, load("s0"))


def _write_cache(paths: DatasetPaths, folder: Path, shell: float) -> None:
    """The arrays of :func:`prepare_subject` written into ``folder`` (``meta.json`` last)."""
    folder.mkdir(parents=True, exist_ok=True)
    scan = PreparedScan.prepare(load_dwi(paths), t1=paths.t1, shell=shell)
    reciprocal = scan.reciprocal()
    dwi = np.empty((len(scan.shell), *scan.series.shape), dtype=np.float16)
    for i, v in enumerate(scan.shell):
        dwi[i] = scan.series.data[..., v] * reciprocal
    arrays = {"dwi": dwi, "s0": np.where(reciprocal > 0, scan.b0, 0.0).astype(np.float32)}
    if scan.t1 is not None:
        arrays["t1"] = scan.t1
    try:
        origins = patch_origins(scan.mask, MAX_ORIGINS, np.random.default_rng(0))
    except ValueError as exc:
        raise InputError(f"{paths.dwi}: {exc}") from None
    arrays["origins"] = np.unique(origins, axis=0)
    for key, array in arrays.items():
        with atomic_path(folder / f"{key}.npy") as tmp:
            np.save(tmp, array)
    with atomic_path(folder / "meta.json") as tmp:
        meta = {"dwi": str(paths.dwi), "volumes": scan.shell.tolist(), "digest": file_digest(paths.dwi)}
        tmp.write_text(json.dumps(meta))
